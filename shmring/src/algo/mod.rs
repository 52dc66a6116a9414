//! The ring algorithms, one module per kind, on any [`RingMemory`](crate::memory::RingMemory):
//! they never touch the OS, and run the same on a mapped segment, on the heap and under loom.

pub(crate) mod mpmc;
pub(crate) mod registry;
pub(crate) mod spsc;
