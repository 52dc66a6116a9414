//! Low-level calls for callers that cannot hold a borrow — the C ABI, language bindings:
//! a reservation or a message handed out as a raw pointer, valid until the matching commit
//! or release. Rust code uses the grants ([`Producer::reserve`](crate::Producer::reserve),
//! [`Consumer::read`](crate::Consumer::read)), which the borrow checker keeps honest.
//!
//! While a detached reservation (or read) is pending, every other send (receive) on that
//! handle fails with `InvalidArgument`; dropping the handle cancels (releases) it.
//!
//! ```
//! use shmring::raw::{RawConsumer, RawProducer};
//! use shmring::{Config, spsc::Ring};
//! let name = format!("/doc-raw-{}", std::process::id());
//! let ring = Ring::create(&name, &Config::new().capacity(4096))?;
//! let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
//! let ptr = tx.reserve_detached(3, None)?;
//! // SAFETY: 3 reserved bytes; nothing else touches them until the commit.
//! unsafe { ptr.as_ptr().copy_from_nonoverlapping(b"abc".as_ptr(), 3) };
//! tx.commit_detached(3)?;
//! let (data, len) = rx.read_detached(None)?;
//! // SAFETY: `len` bytes at `data`, valid until the release.
//! assert_eq!(unsafe { std::slice::from_raw_parts(data.as_ptr(), len) }, b"abc");
//! rx.release_detached()?;
//! ring.unlink()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use std::ptr::NonNull;
use std::time::Duration;

use crate::channel::{Consumer, Kind, Producer};
use crate::error::Result;

/// Reservations handed out as raw pointers.
pub trait RawProducer {
    /// Reserves room for a message of up to `len` bytes and returns its address, valid
    /// until [`commit_detached`](RawProducer::commit_detached) or
    /// [`cancel_detached`](RawProducer::cancel_detached). `timeout`: `Some(ZERO)` does not
    /// wait (`WouldBlock`), `None` waits without limit.
    fn reserve_detached(&mut self, len: usize, timeout: Option<Duration>) -> Result<NonNull<u8>>;
    /// Publishes the first `len` bytes of the pending reservation. `InvalidArgument` if none
    /// is pending or `len` exceeds it (it stays pending then).
    fn commit_detached(&mut self, len: usize) -> Result<()>;
    /// Gives the pending reservation back: nothing is sent.
    fn cancel_detached(&mut self);
}

/// Messages handed out as raw pointers.
pub trait RawConsumer {
    /// The next message's address and length, valid until
    /// [`release_detached`](RawConsumer::release_detached); calling it again before the
    /// release returns the same message. `timeout` as for
    /// [`RawProducer::reserve_detached`].
    fn read_detached(&mut self, timeout: Option<Duration>) -> Result<(NonNull<u8>, usize)>;
    /// Frees the pending message. `InvalidArgument` if none is pending.
    fn release_detached(&mut self) -> Result<()>;
}

impl<K: Kind> RawProducer for Producer<K> {
    fn reserve_detached(&mut self, len: usize, timeout: Option<Duration>) -> Result<NonNull<u8>> {
        match timeout {
            Some(t) if t.is_zero() => Producer::try_reserve_detached(self, len),
            _ => Producer::reserve_detached(self, len, timeout),
        }
    }
    fn commit_detached(&mut self, len: usize) -> Result<()> {
        Producer::commit_detached(self, len)
    }
    fn cancel_detached(&mut self) {
        Producer::cancel_detached(self)
    }
}

impl<K: Kind> RawConsumer for Consumer<K> {
    fn read_detached(&mut self, timeout: Option<Duration>) -> Result<(NonNull<u8>, usize)> {
        match timeout {
            Some(t) if t.is_zero() => Consumer::try_read_detached(self),
            _ => Consumer::read_detached(self, timeout),
        }
    }
    fn release_detached(&mut self) -> Result<()> {
        Consumer::release_detached(self)
    }
}
