//! C ABI for shmring. A skeleton: the C ABI issue fills it with `shmring_*` entry points,
//! the generated `include/shmring.h`, and C programs that CI builds and runs.

/// Version of the shmring crate this library was built from.
pub const SHMRING_VERSION: &str = env!("CARGO_PKG_VERSION");
