//! The memory a ring runs on: a control block plus a data region.
//!
//! The ring algorithms are generic over [`RingMemory`], so the same code runs on a mapped
//! segment (`shm::ShmMemory`) and on the heap (`HeapMemory`, with the `testing` feature: unit
//! tests, fuzz targets and the loom models, whose atomics cannot live in mapped bytes).

use crate::error::Result;
use crate::layout::ControlBlock;
use crate::sync::AtomicU64;

#[cfg(any(test, feature = "testing"))]
mod heap;
#[cfg(any(test, feature = "testing"))]
pub use heap::HeapMemory;

/// A control block and a data region of `capacity()` bytes.
///
/// # Safety
/// Implementors guarantee, for the lifetime of `self`:
/// - `data_ptr()` is 8-byte aligned and valid for reads and writes of `capacity()` bytes,
///   a multiple of 8 (the SPSC geometry further requires a power of two);
/// - `word(offset)`, for every 8-aligned `offset < capacity()`, is the atomic word at
///   `offset` (on real memory: the 8 bytes at `data_ptr() + offset`);
/// - `control()` is the control block that belongs with this data region.
///
/// Peer slots are locks: a handle holds its slot's lock (through its [`Holder`]) for as
/// long as it is attached, and the lock disappears when the holder's process dies, so a
/// slot is *alive* exactly while it is locked. Shared memory uses open-file-description
/// locks on the segment's file (see `layout::locks`); heap memory keeps a table that a test
/// can make forget a holder it declares dead.
///
/// [`Holder`]: RingMemory::Holder
pub unsafe trait RingMemory {
    /// What one handle holds slot locks through: an open file description of the segment
    /// (shared memory) or an owner number (heap memory). Dropping it releases its locks.
    type Holder: Send;
    /// The control block (header, peers, positions).
    fn control(&self) -> &ControlBlock;
    /// Bytes in the data region.
    fn capacity(&self) -> u64;
    /// First byte of the data region.
    fn data_ptr(&self) -> *mut u8;
    /// The record header word at `offset` (8-aligned, `< capacity()`).
    fn word(&self, offset: u64) -> &AtomicU64;
    /// A holder for a handle about to attach, whose owner word is `owner`.
    fn new_holder(&self, owner: u64) -> Result<Self::Holder>;
    /// Takes `slot`'s lock for `holder` without waiting; `Ok(false)` if another live holder
    /// has it. Taking a lock `holder` already has succeeds.
    fn lock_slot(&self, holder: &Self::Holder, slot: u32) -> Result<bool>;
    /// Gives back `holder`'s lock on `slot`.
    fn unlock_slot(&self, holder: &Self::Holder, slot: u32);
    /// Whether a live holder (any handle, this process's included) holds `slot`'s lock.
    fn slot_alive(&self, slot: u32) -> bool;
    /// Rings the readiness doorbell of the `role` holder in `slot`: never waits, never
    /// fails (a doorbell that is gone or full is the same as one rung).
    fn ring_doorbell(&self, role: crate::error::Role, slot: u32);
    /// Tells a model checker that `len` payload bytes at `offset` are being read.
    #[inline]
    fn track_read(&self, _offset: u64, _len: u64) {}
    /// Tells a model checker that `len` payload bytes at `offset` are being written.
    #[inline]
    fn track_write(&self, _offset: u64, _len: u64) {}
}

/// Memory a ring's handles can run on: shared memory in production, the heap in unit tests
/// and loom models.
pub trait Memory: RingMemory + Clone + Send + 'static {}

impl<M: RingMemory + Clone + Send + 'static> Memory for M {}
