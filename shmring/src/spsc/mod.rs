//! Single-producer single-consumer rings of variable-length messages.
//!
//! A [`Ring`] is a mapped segment; [`Ring::producer`] and [`Ring::consumer`] attach the two
//! ends (one of each, in any processes). Sending and receiving make no system call and
//! allocate nothing. The handles are the crate's generic ones ([`crate::Producer`] …) for
//! the kind [`Spsc`]; what only SPSC rings have is here: a byte capacity, batches that
//! publish with one store when they end ([`Producer::batch`]).
//!
//! ```
//! use shmring::{Config, spsc::Ring};
//! let name = format!("/doc-spsc-{}", std::process::id());
//! let ring = Ring::create(&name, &Config::new().capacity(4096))?;
//! let mut tx = ring.producer()?;
//! let mut rx = Ring::open(&name)?.consumer()?;
//!
//! tx.try_send(b"hello")?;
//! let mut buf = [0u8; 64];
//! let n = rx.try_recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! ring.unlink()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use std::path::Path;

use crate::algo::Identity;
use crate::algo::spsc::{ConsumerEnd, ProducerEnd};
use crate::channel::{self, Kind, sealed::KindImpl};
use crate::config::Config;
use crate::error::Result;
use crate::layout::MIN_CAPACITY;
use crate::layout::geometry::{SpscGeometry, max_message_limit};
use crate::memory::Memory;
use crate::shm::ShmMemory;
use crate::shm::segment::{self, Location};
use crate::stats::{PeerInfo, Stats};

pub use crate::algo::spsc::RELEASE_CHUNK;

/// Bytes in an SPSC ring's data region when the config does not say.
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 20;

/// The SPSC kind: one producer, one consumer, variable-length records in a byte ring.
#[derive(Clone, Copy, Debug)]
pub struct Spsc;

impl Kind for Spsc {}

impl KindImpl for Spsc {
    type Geometry = SpscGeometry;
    type Producer<M: Memory> = ProducerEnd<M>;
    type Consumer<M: Memory> = ConsumerEnd<M>;

    fn requested(config: &Config) -> Result<SpscGeometry> {
        config.refuse(
            "SPSC",
            &[
                ("slots", config.slots.is_some()),
                ("max_peers", config.max_peers.is_some()),
                ("max_readers", config.max_readers.is_some()),
                ("overflow", config.overflow.is_some()),
                ("lag_limit", config.lag_limit.is_some()),
            ],
            "Config::capacity",
        )?;
        config.one_lane("SPSC")?;
        if config.initial_position % 8 != 0 {
            return Err(crate::Error::invalid_argument(format!(
                "initial position {} is not a multiple of 8",
                config.initial_position
            )));
        }
        let capacity = config.capacity.unwrap_or(DEFAULT_CAPACITY) as u64;
        let max_message = match config.max_message {
            Some(max) => max as u64,
            None if capacity.is_power_of_two() && capacity >= MIN_CAPACITY => {
                max_message_limit(capacity)
            }
            None => 1,
        };
        SpscGeometry::new(capacity, max_message)
    }

    fn init<M: Memory>(_memory: &M, _geometry: &SpscGeometry, _first: u64) {}

    fn producer<M: Memory>(
        memory: M,
        geometry: SpscGeometry,
        me: Identity,
    ) -> Result<ProducerEnd<M>> {
        ProducerEnd::attach(memory, geometry, me)
    }

    fn consumer<M: Memory>(
        memory: M,
        geometry: SpscGeometry,
        me: Identity,
    ) -> Result<ConsumerEnd<M>> {
        ConsumerEnd::attach(memory, geometry, me)
    }

    fn stats<M: Memory>(memory: &M, geometry: &SpscGeometry) -> Stats {
        crate::algo::spsc::stats(memory.control(), *geometry)
    }

    fn in_flight<M: Memory>(memory: &M, _geometry: &SpscGeometry) -> u64 {
        crate::algo::spsc::in_flight(memory.control())
    }

    fn peers<M: Memory>(memory: &M, _geometry: &SpscGeometry) -> Vec<PeerInfo> {
        crate::algo::spsc::peers(memory.control(), |slot| memory.slot_alive(slot))
    }
}

/// A mapped SPSC ring segment (see [`channel::Ring`]).
///
/// ```
/// use shmring::{Config, spsc::Ring};
/// let name = format!("/doc-spsc-ring-{}", std::process::id());
/// let ring = Ring::create_or_open(&name, &Config::new().capacity(1 << 12))?;
/// assert_eq!((ring.capacity(), ring.max_message()), (4096, 2040));
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub type Ring = channel::Ring<Spsc>;
/// The writing end of an SPSC ring.
pub type Producer = channel::Producer<Spsc>;
/// The reading end of an SPSC ring.
pub type Consumer = channel::Consumer<Spsc>;
/// Room for one message in an SPSC ring.
pub type WriteGrant<'a> = channel::WriteGrant<'a, Spsc>;
/// A message of an SPSC ring borrowed in place.
pub type ReadGrant<'a> = channel::ReadGrant<'a, Spsc>;

impl channel::Ring<Spsc> {
    /// Bytes in the data region.
    pub fn capacity(&self) -> usize {
        self.geometry().capacity as usize
    }
}

impl<M: Memory> channel::Producer<Spsc, M> {
    /// Bytes in the data region.
    pub fn capacity(&self) -> usize {
        self.core().geometry().capacity as usize
    }

    /// Starts a batch: messages pushed to it are published together, with one store, when
    /// it is [`publish`](SendBatch::publish)ed or dropped.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-batch-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let mut tx = ring.producer()?;
    /// let mut batch = tx.batch();
    /// for msg in [&b"a"[..], b"bb", b"ccc"] {
    ///     batch.try_push(msg)?;
    /// }
    /// assert_eq!(batch.publish(), 3);
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn batch(&mut self) -> SendBatch<'_, M> {
        self.core_mut().begin_batch();
        SendBatch {
            producer: self,
            pushed: 0,
        }
    }
}

impl<M: Memory> channel::Consumer<Spsc, M> {
    /// Bytes in the data region.
    pub fn capacity(&self) -> usize {
        self.core().geometry().capacity as usize
    }
}

/// Messages published together with one store, from [`Producer::batch`]. Dropping the batch
/// publishes what was pushed.
#[must_use = "a batch publishes when it is dropped or published"]
pub struct SendBatch<'a, M: Memory = ShmMemory> {
    producer: &'a mut channel::Producer<Spsc, M>,
    pushed: usize,
}

impl<M: Memory> SendBatch<'_, M> {
    /// Copies `msg` into the batch; `WouldBlock` if the ring has no room (what was pushed
    /// before stays in the batch).
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<()> {
        self.producer.batch_write(msg)?;
        self.pushed += 1;
        Ok(())
    }

    /// Reserves room for a message written in place; its commit joins the batch.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<channel::WriteGrant<'_, Spsc, M>> {
        let claim = self.producer.batch_claim(len)?;
        Ok(channel::WriteGrant::new(self.producer, claim))
    }

    /// Messages copied in with [`try_push`](SendBatch::try_push) so far.
    pub fn len(&self) -> usize {
        self.pushed
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Publishes every message of the batch with one store; returns how many were pushed.
    #[inline]
    pub fn publish(self) -> usize {
        self.pushed
    }
}

impl<M: Memory> Drop for SendBatch<'_, M> {
    #[inline]
    fn drop(&mut self) {
        self.producer.core_mut().flush();
        self.producer.published();
    }
}

/// Removes the ring named `name`. Handles already attached keep working.
///
/// ```
/// let err = shmring::spsc::unlink("/shmring-doc-never-created").unwrap_err();
/// assert!(matches!(err, shmring::Error::NotFound { .. }));
/// ```
pub fn unlink(name: &str) -> Result<()> {
    segment::unlink(&Location::Shm(name.into()))
}

/// Removes a ring stored at `path`.
pub fn unlink_at(path: impl AsRef<Path>) -> Result<()> {
    segment::unlink(&segment::path_location(path.as_ref()))
}

#[cfg(all(test, not(shmring_loom)))]
mod tests;
