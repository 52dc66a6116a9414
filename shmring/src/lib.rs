//! # shmring
//!
//! Lock-free message rings in POSIX shared memory: separate processes pass variable-length
//! messages with no system call, no lock and no allocation on the message path.
//!
//! - [`spsc::Ring`]: a named segment holding a single-producer single-consumer ring;
//!   [`spsc::Producer`] and [`spsc::Consumer`] are its two ends.
//! - [`broadcast::Ring`]: one producer, many readers each at its own position (fan-out),
//!   lossless or overwriting the oldest.
//! - [`mpmc::Ring`]: many producers and consumers over sequence-numbered slots, with a
//!   peer registry; a producer that dies mid-send is skipped once proven dead.
//! - Copy (`try_send` / `recv`), zero-copy (`try_reserve` → commit, `try_read` → release)
//!   and batch forms; non-blocking (`try_*` → [`Error::WouldBlock`]), blocking, and
//!   `*_timeout` calls.
//! - End of stream like a pipe: a closed producer lets the consumer drain, then
//!   [`Error::Closed`]; a closed consumer makes sends fail with `Closed`.
//! - Shared memory is untrusted: every header field, position and length read from it is
//!   checked, and a damaged ring yields [`Error::Corrupted`], never undefined behaviour.
//!
//! ```
//! use shmring::{Config, spsc::Ring};
//! # let name = format!("/doc-lib-{}", std::process::id());
//! // Process A
//! let ring = Ring::create(&name, &Config::new().capacity(1 << 16))?;
//! let mut tx = ring.producer()?;
//! tx.send(b"tick 1")?;
//!
//! // Process B (here the same process, for the example)
//! let mut rx = Ring::open(&name)?.consumer()?;
//! let mut msg = Vec::new();
//! rx.recv_vec(&mut msg)?;
//! assert_eq!(msg, b"tick 1");
//! shmring::spsc::unlink(&name)?;
//! # Ok::<(), shmring::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod algo;
pub mod any;
pub mod broadcast;
mod channel;
mod config;
mod crash;
mod error;
mod memory;
mod os;
mod peers;
pub mod raw;
pub mod rpc;
mod shm;
mod stats;
mod telemetry;
mod wait;

/// The segment's byte layout (with the `testing` feature: for tests that damage it).
#[cfg(feature = "testing")]
pub mod layout;
#[cfg(not(feature = "testing"))]
mod layout;
pub mod mpmc;
pub mod spsc;
mod sync;

pub use algo::ReadMark;
#[cfg(feature = "tokio")]
pub use channel::Messages;
pub use channel::{
    Consumer, Kind, Producer, ReadGrant, Readiness, RecvIter, Ring, TryRecvIter, WriteGrant,
};
pub use config::{Config, OpenOptions};
pub use error::{Error, ErrorKind, Result, Role};
pub use stats::{KindStats, LaneStats, PeerInfo, PeerName, PeerStatus, Stats};
pub use telemetry::Telemetry;
pub use wait::WaitStrategy;

/// The README's code blocks, compiled (and where not `no_run`, run) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
