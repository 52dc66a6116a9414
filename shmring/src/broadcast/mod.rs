//! Broadcast rings: one producer, many readers, each reading every message at its own
//! pace (fan-out: a market-data feed read by a strategy, a risk engine and a recorder).
//!
//! One byte ring of variable-length records; each reader's position lives in the segment.
//! The [`Policy`] chosen at creation says what happens when the slowest reader is a ring
//! behind: `Lossless` makes the producer wait (a dead reader stops counting as soon as it
//! is found dead; an optional [`Config::lag_limit`] lets one stalled reader fall behind
//! instead of stalling everyone), `Overwrite` never makes it wait and tells a lapped reader
//! exactly how many messages it lost ([`Error::Lagged`]). A reader never delivers torn
//! bytes: every copy is checked after it is made, and a zero-copy read is checked by
//! [`ReadGrant::release`](crate::ReadGrant::release).
//!
//! ```
//! use shmring::{Config, broadcast::{JoinAt, Ring}};
//! let name = format!("/doc-broadcast-{}", std::process::id());
//! let ring = Ring::create(&name, &Config::new().capacity(1 << 16).max_readers(4))?;
//! let mut feed = ring.producer()?;
//! let mut strategy = ring.reader(JoinAt::Live)?;
//! let mut recorder = ring.reader_named("recorder", JoinAt::Oldest)?;
//! feed.try_send(b"tick 1")?;
//! let mut buf = [0u8; 64];
//! for reader in [&mut strategy, &mut recorder] {
//!     let n = reader.try_recv(&mut buf)?; // each reader gets every message
//!     assert_eq!(&buf[..n], b"tick 1");
//! }
//! ring.unlink()?;
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! [`Config::lag_limit`]: crate::Config::lag_limit
//! [`Error::Lagged`]: crate::Error::Lagged

use crate::algo::Identity;
use crate::algo::broadcast::{self as algo, ConsumerCore, ProducerCore, ReaderOptions};
use crate::algo::registry;
use crate::channel::{self, Kind, sealed::KindImpl};
use crate::config::Config;
use crate::error::Result;
use crate::layout::geometry::BroadcastGeometry;
use crate::layout::registry::ROLE_CONSUMER;
use crate::memory::Memory;
use crate::shm::segment::{self, Location};
use crate::stats::{KindStats, PeerInfo, PeerName, PeerStatus, Stats};
use crate::sync::Ordering::Relaxed;

pub use crate::algo::broadcast::JoinAt;
pub use crate::layout::geometry::Policy;

/// Readers of a broadcast ring when the config does not say.
pub(crate) const DEFAULT_MAX_READERS: u32 = 16;
/// Byte ring of a broadcast ring when the config does not say.
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 20;

/// The broadcast kind: one producer, many readers each at its own position.
#[derive(Clone, Copy, Debug)]
pub struct Broadcast;

impl Kind for Broadcast {}

impl KindImpl for Broadcast {
    type Geometry = BroadcastGeometry;
    type Producer<M: Memory> = ProducerCore<M>;
    type Consumer<M: Memory> = ConsumerCore<M>;

    fn requested(config: &Config) -> Result<BroadcastGeometry> {
        config.refuse(
            "broadcast",
            &[
                ("slots", config.slots.is_some()),
                ("max_peers", config.max_peers.is_some()),
            ],
            "Config::capacity, Config::max_message and Config::max_readers",
        )?;
        config.one_lane("broadcast")?;
        let ring = config.capacity.unwrap_or(DEFAULT_CAPACITY) as u64;
        let max_message = match config.max_message {
            Some(m) => m as u64,
            None => crate::layout::geometry::broadcast_max_message_limit(ring).max(1),
        };
        BroadcastGeometry::new(
            ring,
            max_message,
            config.max_readers.unwrap_or(DEFAULT_MAX_READERS),
            config.overflow.unwrap_or_default(),
            config.lag_limit.unwrap_or(0),
        )
    }

    fn init<M: Memory>(memory: &M, _geometry: &BroadcastGeometry, first: u64) {
        let ctl = memory.control();
        ctl.producer.tail.store(first, Relaxed);
        ctl.consumer.head.store(first, Relaxed);
    }

    fn producer<M: Memory>(
        memory: M,
        geometry: BroadcastGeometry,
        me: Identity,
    ) -> Result<ProducerCore<M>> {
        ProducerCore::attach(memory, geometry, me)
    }

    fn consumer<M: Memory>(
        memory: M,
        geometry: BroadcastGeometry,
        me: Identity,
    ) -> Result<ConsumerCore<M>> {
        ConsumerCore::attach(memory, geometry, me, &ReaderOptions::default())
    }

    fn stats<M: Memory>(memory: &M, geometry: &BroadcastGeometry) -> Stats {
        let ctl = memory.control();
        let (received, bytes_received) = registry::totals(memory, geometry, ROLE_CONSUMER);
        let tail = ctl.producer.tail.load(Relaxed);
        let oldest = ctl.consumer.head.load(Relaxed);
        let missed = algo::readers(memory, geometry)
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.missed));
        Stats {
            max_message: geometry.max_message,
            messages_in_flight: algo::in_flight(memory, geometry),
            messages_sent: ctl.producer.messages.load(Relaxed),
            bytes_sent: ctl.producer.bytes.load(Relaxed),
            messages_received: received,
            bytes_received,
            ..crate::stats::roles(ctl, crate::peers::slot_words(geometry.records()))
        }
        .with_kind(KindStats::Broadcast {
            capacity: geometry.ring,
            policy: geometry.policy,
            max_readers: geometry.max_readers,
            lag_limit: geometry.lag_limit,
            retained_bytes: tail.wrapping_sub(oldest).min(geometry.ring),
            messages_missed: missed,
        })
    }

    fn in_flight<M: Memory>(memory: &M, geometry: &BroadcastGeometry) -> u64 {
        algo::in_flight(memory, geometry)
    }

    fn peers<M: Memory>(memory: &M, geometry: &BroadcastGeometry) -> Vec<PeerInfo> {
        algo::peers(memory, geometry)
    }
}

/// A mapped broadcast ring segment (see [`channel::Ring`]).
pub type Ring = channel::Ring<Broadcast>;
/// The writing end of a broadcast ring (one at a time).
pub type Producer = channel::Producer<Broadcast>;
/// A reader of a broadcast ring: every receive call of [`crate::Consumer`].
pub type Reader = channel::Consumer<Broadcast>;
/// Room for one message in a broadcast ring.
pub type WriteGrant<'a> = channel::WriteGrant<'a, Broadcast>;
/// A message of a broadcast ring borrowed in place; check it with `release()`.
pub type ReadGrant<'a> = channel::ReadGrant<'a, Broadcast>;

/// One reader record, as [`Ring::readers`](channel::Ring::readers) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderInfo {
    /// Registry record (also its `peers()` index).
    pub index: u32,
    /// The durable name, if it has one.
    pub name: Option<PeerName>,
    /// Attached (and alive), attached but dead, closed or dead.
    pub status: PeerStatus,
    /// Process id of the (last) holder.
    pub pid: u32,
    /// Stream position of the next record it reads.
    pub position: u64,
    /// Bytes published that it has not released.
    pub lag_bytes: u64,
    /// Messages published that it has not released.
    pub lag_messages: u64,
    /// Messages released by this record's holders.
    pub delivered: u64,
    /// Messages this record's holders lost to overwrites.
    pub missed: u64,
}

impl channel::Ring<Broadcast> {
    /// Attaches an anonymous reader starting at `join`: the next message published
    /// ([`JoinAt::Live`], what [`consumer`](channel::Ring::consumer) does) or the oldest
    /// still in the ring ([`JoinAt::Oldest`]). `RegistryFull` when `max_readers` records
    /// are in use (named ones included).
    pub fn reader(&self, join: JoinAt) -> Result<Reader> {
        self.reader_with(&ReaderOptions { name: None, join })
    }

    /// Attaches the durable reader `name` (1 to 32 of `[A-Za-z0-9._-]`): a name seen
    /// before resumes right after the last message its previous holder released —
    /// after a crash, the messages it had read and not released come again
    /// (at-least-once); a new name starts at `join`. One live holder per name
    /// (`AlreadyAttached`); a dead holder's name is taken over. The name keeps its record
    /// (and cursor) until [`forget_reader`](Self::forget_reader); while nobody holds it, it
    /// does not hold the producer back, and messages overwritten meanwhile are reported by
    /// the first receive as `Lagged`.
    pub fn reader_named(&self, name: &str, join: JoinAt) -> Result<Reader> {
        self.reader_with(&ReaderOptions {
            name: Some(PeerName::new(name)?),
            join,
        })
    }

    fn reader_with(&self, options: &ReaderOptions) -> Result<Reader> {
        let core = ConsumerCore::attach(
            self.memory().clone(),
            *self.geometry(),
            channel::identity(),
            options,
        )?;
        Ok(self.consumer_from(core))
    }

    /// Forgets durable reader `name`, freeing its record: `Ok(false)` if no record has the
    /// name, `AlreadyAttached` while a live reader holds it.
    pub fn forget_reader(&self, name: &str) -> Result<bool> {
        algo::forget(
            self.memory(),
            self.geometry(),
            &PeerName::new(name)?,
            channel::identity().owner,
        )
    }

    /// Every reader record that has been held: name, liveness, position, lag, counts.
    pub fn readers(&self) -> Vec<ReaderInfo> {
        let ctl = crate::memory::RingMemory::control(self.memory());
        let tail = ctl.producer.tail.load(Relaxed);
        let sent = ctl.producer.messages.load(Relaxed);
        algo::readers(self.memory(), self.geometry())
            .into_iter()
            .map(|r| ReaderInfo {
                index: r.peer.index,
                name: r.peer.name,
                status: r.peer.status,
                pid: r.peer.pid,
                position: r.cursor,
                lag_bytes: tail.wrapping_sub(r.cursor).min(self.geometry().ring),
                lag_messages: sent.saturating_sub(r.next_seq),
                delivered: r.peer.messages,
                missed: r.missed,
            })
            .collect()
    }

    /// Bytes of the byte ring.
    pub fn capacity(&self) -> usize {
        self.geometry().ring as usize
    }

    /// The overflow policy.
    pub fn policy(&self) -> Policy {
        self.geometry().policy
    }

    /// Most readers attached at once.
    pub fn max_readers(&self) -> u32 {
        self.geometry().max_readers
    }
}

/// Removes the broadcast ring named `name`.
pub fn unlink(name: &str) -> Result<()> {
    segment::unlink(&Location::Shm(name.into()))
}

#[cfg(all(test, not(shmring_loom)))]
mod tests;
