//! Multi-producer multi-consumer rings of messages up to a slot size.
//!
//! A [`Ring`] is a mapped segment of sequence-numbered slots. Any number of
//! [`Producer`]s and [`Consumer`]s, in any processes, attach to it (up to
//! [`Config::max_peers`] at once); each message goes to exactly one consumer, and the
//! messages of one producer arrive in the order it sent them. The handles are the crate's
//! generic ones ([`crate::Producer`] …) for the kind [`Mpmc`].
//!
//! A producer that dies between claiming a slot and publishing it does not stall the ring:
//! once its process is found dead (its slot lock is gone, so a stopped process is never
//! taken for dead), consumers skip the slot. Nothing a live producer published is lost.
//!
//! ```
//! use shmring::{Config, mpmc::Ring};
//! let name = format!("/doc-mpmc-{}", std::process::id());
//! let ring = Ring::create(&name, &Config::new().slots(64).max_message(48))?;
//! let mut a = ring.producer()?;
//! let mut b = ring.producer()?;
//! let mut rx = Ring::open(&name)?.consumer()?;
//!
//! a.try_send(b"from a")?;
//! b.try_send(b"from b")?;
//! let mut buf = [0u8; 48];
//! let n = rx.try_recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"from a");
//! ring.unlink()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use crate::algo::Identity;
use crate::algo::mpmc::{ConsumerCore, ProducerCore, init_slots};
use crate::algo::registry;
use crate::channel::{self, Kind, sealed::KindImpl};
use crate::config::Config;
use crate::error::Result;
use crate::layout::geometry::MpmcGeometry;
use crate::memory::Memory;
use crate::shm::segment::{self, Location};
pub use crate::stats::{LaneStats, PeerInfo, PeerStatus};
pub use crate::wait::RECOVERY_INTERVAL;

/// Slot payload of an MPMC ring when the config does not say (a 256-byte slot).
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 240;
/// Slots of an MPMC ring when the config does not say.
pub(crate) const DEFAULT_SLOTS: usize = 1024;
/// Peer records of an MPMC ring when the config does not say.
pub(crate) const DEFAULT_MAX_PEERS: u32 = 16;

/// The MPMC kind: many producers and consumers over sequence-numbered slots.
#[derive(Clone, Copy, Debug)]
pub struct Mpmc;

impl Kind for Mpmc {}

impl KindImpl for Mpmc {
    type Geometry = MpmcGeometry;
    type Producer<M: Memory> = ProducerCore<M>;
    type Consumer<M: Memory> = ConsumerCore<M>;

    fn requested(config: &Config) -> Result<MpmcGeometry> {
        config.refuse(
            "MPMC",
            &[
                ("capacity", config.capacity.is_some()),
                ("max_readers", config.max_readers.is_some()),
                ("overflow", config.overflow.is_some()),
                ("lag_limit", config.lag_limit.is_some()),
            ],
            "Config::slots and Config::max_message",
        )?;
        MpmcGeometry::new(
            config.slots.unwrap_or(DEFAULT_SLOTS) as u64,
            config.max_message.unwrap_or(DEFAULT_MAX_MESSAGE) as u64,
            config.max_peers.unwrap_or(DEFAULT_MAX_PEERS),
            config.lanes.unwrap_or(1),
        )
    }

    fn init<M: Memory>(memory: &M, geometry: &MpmcGeometry, first: u64) {
        init_slots(memory, geometry, first);
    }

    fn producer<M: Memory>(
        memory: M,
        geometry: MpmcGeometry,
        me: Identity,
    ) -> Result<ProducerCore<M>> {
        ProducerCore::attach(memory, geometry, me.owner)
    }

    fn consumer<M: Memory>(
        memory: M,
        geometry: MpmcGeometry,
        me: Identity,
    ) -> Result<ConsumerCore<M>> {
        ConsumerCore::attach(memory, geometry, me.owner)
    }

    fn stats<M: Memory>(memory: &M, geometry: &MpmcGeometry) -> crate::Stats {
        crate::algo::mpmc::stats(memory, geometry)
    }

    fn in_flight<M: Memory>(memory: &M, geometry: &MpmcGeometry) -> u64 {
        crate::algo::mpmc::in_flight(memory, geometry)
    }

    fn peers<M: Memory>(memory: &M, geometry: &MpmcGeometry) -> Vec<PeerInfo> {
        registry::list(memory, geometry)
    }
}

/// A mapped MPMC ring segment (see [`channel::Ring`]).
///
/// ```
/// use shmring::{Config, mpmc::Ring};
/// let name = format!("/doc-mpmc-ring-{}", std::process::id());
/// let ring = Ring::create_or_open(&name, &Config::new().slots(1024))?;
/// assert_eq!((ring.slots(), ring.max_message(), ring.max_peers()), (1024, 240, 16));
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub type Ring = channel::Ring<Mpmc>;
/// A writing end of an MPMC ring.
pub type Producer = channel::Producer<Mpmc>;
/// A reading end of an MPMC ring.
pub type Consumer = channel::Consumer<Mpmc>;
/// Room for one message in an MPMC ring (a claimed slot).
pub type WriteGrant<'a> = channel::WriteGrant<'a, Mpmc>;
/// A message of an MPMC ring borrowed in place (taken from the other consumers).
pub type ReadGrant<'a> = channel::ReadGrant<'a, Mpmc>;

impl channel::Ring<Mpmc> {
    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.geometry().slot_count as usize
    }

    /// Most handles attached at once.
    pub fn max_peers(&self) -> u32 {
        self.geometry().max_peers
    }

    /// Priority lanes ([`Config::lanes`]): messages take priorities `0..lanes()`.
    pub fn lanes(&self) -> u32 {
        self.geometry().lanes
    }

    /// Each lane's figures, lowest priority first (see [`LaneStats`]).
    pub fn lane_stats(&self) -> Vec<LaneStats> {
        crate::algo::mpmc::lane_stats(self.memory(), self.geometry())
    }
}

/// Removes the MPMC ring named `name`.
///
/// ```
/// let err = shmring::mpmc::unlink("/shmring-doc-mpmc-never").unwrap_err();
/// assert!(matches!(err, shmring::Error::NotFound { .. }));
/// ```
pub fn unlink(name: &str) -> Result<()> {
    segment::unlink(&Location::Shm(name.into()))
}

#[cfg(all(test, not(shmring_loom)))]
mod tests;
