//! The handle layer, written once for every ring kind: a [`Ring`] (a mapped segment),
//! its [`Producer`]s and [`Consumer`]s, their zero-copy grants, batches and iterators.
//!
//! A kind plugs in through [`Kind`]: its geometry, how its data region is initialised,
//! and its producer and consumer cores (`crate::algo`). Everything users touch — waiting,
//! timeouts and deadlines, looking for dead peers while waiting, end of stream, grants,
//! statistics — is here, so the same name means the same thing on every kind.
//! `shmring::spsc`, `shmring::mpmc` give the kinds their names (`spsc::Ring` is
//! `Ring<Spsc>`) and add what only one kind has.

/// The accessors producers and consumers share, with one meaning.
macro_rules! end_accessors {
    () => {
        /// Largest message payload in bytes.
        pub fn max_message(&self) -> usize {
            self.core.max_message().saturating_sub(self.stamp_bytes)
        }

        /// Counters and occupancy, read from the segment.
        pub fn stats(&self) -> crate::Stats {
            super::stats_of::<K, M>(self.core.memory(), &self.geometry, self.stamp_bytes > 0)
        }

        /// Messages published and not yet released (MPMC: positions taken by producers
        /// and not yet released), as far as the shared counters know at this instant.
        pub fn len(&self) -> usize {
            self.stats().messages_in_flight as usize
        }

        /// Whether no message is waiting (as [`len`](Self::len) sees it).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// This end's peer slot: its record in `Ring::peers()` (SPSC: 0 for the producer,
        /// 1 for the consumer; MPMC: its registry record).
        pub fn peer_index(&self) -> u32 {
            self.core.slot()
        }

        /// System calls this end made to sleep or to wake the other role (futex strategy;
        /// always 0 for the polling ones).
        pub fn wake_syscalls(&self) -> u64 {
            self.waiter.syscalls()
        }
    };
}
use end_accessors;

mod consumer;
mod producer;
mod ready;

use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

#[cfg(feature = "tokio")]
pub use consumer::Messages;
pub use consumer::{Consumer, ReadGrant, RecvIter, TryRecvIter};
pub use producer::{Producer, WriteGrant};
pub use ready::Readiness;

use crate::algo::{ConsumerCore, Identity, ProducerCore};
use crate::config::{Config, OpenOptions};
use crate::error::Result;
use crate::layout::geometry::Shape;
use crate::memory::Memory;
use crate::os;
use crate::shm::ShmMemory;
use crate::shm::attach::{self, Attached};
use crate::shm::segment::{self, Location};
use crate::stats::{PeerInfo, Stats};
use crate::telemetry::{STAMP_BYTES, Telemetry};
use crate::wait::{Event, WaitStrategy, Waiter};

/// A kind of ring: [`Spsc`](crate::spsc::Spsc) or [`Mpmc`](crate::mpmc::Mpmc). Sealed:
/// the kinds are this crate's.
pub trait Kind: sealed::KindImpl + Sized + Send + 'static {}

pub(crate) mod sealed {
    use super::*;

    /// What a ring kind provides to the handle layer.
    pub trait KindImpl {
        /// The kind's geometry (checked parameters of its data region).
        type Geometry: Shape;
        /// The producer core on memory `M`.
        type Producer<M: Memory>: ProducerCore<Memory = M> + Send;
        /// The consumer core on memory `M`.
        type Consumer<M: Memory>: ConsumerCore<Memory = M> + Send;

        /// The geometry `config` asks for (`InvalidArgument` if it does not fit the kind).
        fn requested(config: &Config) -> Result<Self::Geometry>;
        /// Writes the initial data-region words of a new ring whose first stream position
        /// is `first` (creator, before the header is published).
        fn init<M: Memory>(memory: &M, geometry: &Self::Geometry, first: u64);
        /// Attaches a producer.
        fn producer<M: Memory>(
            memory: M,
            geometry: Self::Geometry,
            me: Identity,
        ) -> Result<Self::Producer<M>>;
        /// Attaches a consumer.
        fn consumer<M: Memory>(
            memory: M,
            geometry: Self::Geometry,
            me: Identity,
        ) -> Result<Self::Consumer<M>>;
        /// Counters and occupancy.
        fn stats<M: Memory>(memory: &M, geometry: &Self::Geometry) -> Stats;
        /// Messages in flight, cheaply (for telemetry's high-water mark).
        fn in_flight<M: Memory>(memory: &M, geometry: &Self::Geometry) -> u64;
        /// Every peer record that has been held.
        fn peers<M: Memory>(memory: &M, geometry: &Self::Geometry) -> Vec<PeerInfo>;
    }
}

/// A ring's statistics, with its telemetry when it keeps any.
pub(crate) fn stats_of<K: Kind, M: Memory>(
    memory: &M,
    geometry: &K::Geometry,
    telemetry: bool,
) -> Stats {
    let mut stats = K::stats(memory, geometry);
    if telemetry {
        // Payload bytes are what producers sent, not the stamps that carried them.
        let stamps = |messages: u64| messages.saturating_mul(STAMP_BYTES as u64);
        stats.max_message = stats.max_message.saturating_sub(STAMP_BYTES as u64);
        stats.bytes_sent = stats.bytes_sent.saturating_sub(stamps(stats.messages_sent));
        stats.bytes_received = stats
            .bytes_received
            .saturating_sub(stamps(stats.messages_received));
        stats.telemetry = Some(Telemetry::read(&memory.control().telemetry));
    }
    stats
}

/// A ring's peer records, their byte counts without telemetry stamps.
pub(crate) fn peers_of<K: Kind, M: Memory>(
    memory: &M,
    geometry: &K::Geometry,
    telemetry: bool,
) -> Vec<PeerInfo> {
    let mut peers = K::peers(memory, geometry);
    if telemetry {
        for peer in &mut peers {
            let stamps = peer.messages.saturating_mul(STAMP_BYTES as u64);
            peer.bytes = peer.bytes.saturating_sub(stamps);
        }
    }
    peers
}

/// The pids of `role`'s live holders, and whether a holder of it has died attached (not
/// yet recovered).
pub(crate) fn live_pids<K: Kind, M: Memory>(
    memory: &M,
    geometry: &K::Geometry,
    role: crate::error::Role,
) -> (Vec<u32>, bool) {
    let peers = K::peers(memory, geometry);
    let holders = || peers.iter().filter(|p| p.role == Some(role));
    let pids = holders()
        .filter(|p| p.status == crate::PeerStatus::Attached)
        .map(|p| p.pid)
        .collect();
    let dead = holders().any(|p| p.status == crate::PeerStatus::AttachedDead);
    (pids, dead)
}

/// This process, as peer records show it.
pub(crate) fn identity() -> Identity {
    let me = os::current_process();
    Identity {
        owner: me.owner_word(),
        pid: me.pid,
    }
}

/// A mapped ring segment of kind `K`. Attach ends with [`producer`](Ring::producer) and
/// [`consumer`](Ring::consumer); the segment persists until [`unlink`](Ring::unlink)ed.
///
/// ```
/// use shmring::{Config, spsc};
/// let name = format!("/doc-ring-{}", std::process::id());
/// let ring = spsc::Ring::create_or_open(&name, &Config::new().capacity(1 << 12))?;
/// assert_eq!(ring.max_message(), 2040);
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub struct Ring<K: Kind> {
    memory: ShmMemory,
    geometry: K::Geometry,
    wait: WaitStrategy,
    spin: Duration,
    /// Whether messages carry telemetry stamps.
    telemetry: bool,
    created: bool,
    kind: PhantomData<K>,
}

impl<K: Kind> Ring<K> {
    fn from_attached(attached: Attached<K::Geometry>, spin: Duration) -> Ring<K> {
        Ring {
            memory: ShmMemory::new(attached.segment, attached.geometry.data_len()),
            geometry: attached.geometry,
            wait: attached.wait,
            spin,
            telemetry: attached.telemetry,
            created: attached.created,
            kind: PhantomData,
        }
    }

    fn create_in(location: &Location, config: &Config) -> Result<Ring<K>> {
        let geometry = K::requested(&config.for_geometry()?)?;
        let first = config.initial_position;
        let attached = attach::create(location, config, geometry, |memory| {
            K::init(memory, &geometry, first)
        })?;
        Ok(Ring::from_attached(attached, config.spin))
    }

    /// A ring of this kind in a segment that is ready (its kind not yet checked).
    pub(crate) fn from_segment(
        segment: crate::shm::segment::Segment,
        options: &OpenOptions,
    ) -> Result<Ring<K>> {
        Ok(Ring::from_attached(
            attach::attached(segment, options)?,
            options.spin,
        ))
    }

    fn open_in(location: &Location, options: &OpenOptions) -> Result<Ring<K>> {
        Ok(Ring::from_attached(
            attach::open(location, options)?,
            options.spin,
        ))
    }

    /// Creates a new ring named `name` (`/` then 1..=250 of `[A-Za-z0-9._-]`), mode 0600
    /// (0660 with [`Config::group_access`]). `AlreadyExists` if the name is taken; `NoSpace`
    /// (and nothing created) if `/dev/shm` cannot hold it.
    pub fn create(name: &str, config: &Config) -> Result<Ring<K>> {
        Ring::create_in(&segment::named(name)?, config)
    }

    /// Opens the ring `name` with default [`OpenOptions`].
    pub fn open(name: &str) -> Result<Ring<K>> {
        Ring::open_with(name, &OpenOptions::default())
    }

    /// Opens the ring `name`, checking owner, mode, layout and kind as `options` say. A
    /// ring of another kind is `Incompatible`.
    pub fn open_with(name: &str, options: &OpenOptions) -> Result<Ring<K>> {
        Ring::open_in(&segment::named(name)?, options)
    }

    /// Creates the ring, or opens it if another process got there first (it must then have
    /// the same parameters and wait strategy). Exactly one racer creates it.
    pub fn create_or_open(name: &str, config: &Config) -> Result<Ring<K>> {
        let location = segment::named(name)?;
        let geometry = K::requested(&config.for_geometry()?)?;
        let first = config.initial_position;
        let attached = attach::create_or_open(&location, config, geometry, |memory| {
            K::init(memory, &geometry, first)
        })?;
        Ok(Ring::from_attached(attached, config.spin))
    }

    /// Creates a ring in a file at `path` (persistent storage, hugetlbfs, another tmpfs).
    pub fn create_at(path: impl AsRef<Path>, config: &Config) -> Result<Ring<K>> {
        Ring::create_in(&segment::path_location(path.as_ref()), config)
    }

    /// Opens a ring stored in a file at `path`.
    pub fn open_at(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Ring<K>> {
        Ring::open_in(&segment::path_location(path.as_ref()), options)
    }

    /// Creates a ring with no name: an anonymous memory file (memfd) sealed against
    /// shrinking and growing, so no process holding it can truncate it under a mapping
    /// (SIGBUS). Share it with [`share_fd`](Ring::share_fd) (pass the descriptor over a Unix
    /// socket or to a child) and attach with [`open_fd`](Ring::open_fd). Linux only.
    ///
    /// ```
    /// use shmring::{Config, OpenOptions, spsc::Ring};
    /// let ring = Ring::create_anonymous(&Config::new().capacity(4096))?;
    /// let other = Ring::open_fd(ring.share_fd()?, &OpenOptions::new())?;
    /// # let _ = other;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn create_anonymous(config: &Config) -> Result<Ring<K>> {
        Ring::create_in(&Location::Anonymous, config)
    }

    /// Attaches to an anonymous ring through a descriptor from
    /// [`share_fd`](Ring::share_fd). `PermissionDenied` if the file is not sealed against
    /// resizing (a holder could truncate it under our mapping).
    pub fn open_fd(fd: std::os::fd::OwnedFd, options: &OpenOptions) -> Result<Ring<K>> {
        Ok(Ring::from_attached(
            attach::open_fd(fd, &Location::Anonymous, options)?,
            options.spin,
        ))
    }

    /// A new descriptor of an anonymous ring (close-on-exec) to hand to another process.
    /// `InvalidArgument` for a named ring (open it by name instead).
    pub fn share_fd(&self) -> Result<std::os::fd::OwnedFd> {
        self.memory.segment().share_fd()
    }

    /// A waiter for the end holding peer slot `slot`, whose sleeps end at once when a
    /// holder of the other role exits.
    fn waiter(&self, slot: u32) -> Waiter<ShmMemory> {
        let geometry = self.geometry;
        Waiter::new(
            self.memory.clone(),
            self.wait,
            self.spin,
            slot,
            self.geometry.peer_slots(),
        )
        .watching(Box::new(move |memory: &ShmMemory, event: Event| {
            // Consumers wait for producers, producers for consumers.
            let other = match event {
                Event::DataAvailable => crate::error::Role::Producer,
                Event::SpaceAvailable => crate::error::Role::Consumer,
            };
            let (pids, any_dead) = live_pids::<K, ShmMemory>(memory, &geometry, other);
            if any_dead {
                // Dead already: look for it now rather than after a slice of sleep.
                return Some(crate::os::ExitWatch::fired_now());
            }
            let memory = memory.clone();
            crate::os::ExitWatch::new(
                &pids,
                Box::new(move || crate::wait::wake_sleepers(&memory, event)),
            )
        }))
    }

    /// Attaches a producing end. SPSC: `AlreadyAttached` while a live producer holds the
    /// role; MPMC: `RegistryFull` when `max_peers` live handles are attached. A role given
    /// up before — closed, or left by a process that died — is taken again (a restarted
    /// producer continues the stream; after a death, right after the last message the
    /// dead one published).
    pub fn producer(&self) -> Result<Producer<K>> {
        let core = K::producer(self.memory.clone(), self.geometry, identity())?;
        Ok(Producer::new(
            self.waiter(core.slot()),
            core,
            self.geometry,
            self.telemetry,
        ))
    }

    /// Attaches a consuming end, as [`producer`](Ring::producer). A consumer taking over a
    /// role resumes at the last position released: after a crash, the messages the dead one
    /// had read but not released are delivered again (at-least-once).
    pub fn consumer(&self) -> Result<Consumer<K>> {
        let core = K::consumer(self.memory.clone(), self.geometry, identity())?;
        Ok(Consumer::new(
            self.waiter(core.slot()),
            core,
            self.geometry,
            self.telemetry,
        ))
    }

    /// A consumer around a core the kind attached itself (a broadcast reader's name and
    /// join position).
    pub(crate) fn consumer_from(&self, core: K::Consumer<ShmMemory>) -> Consumer<K> {
        Consumer::new(
            self.waiter(core.slot()),
            core,
            self.geometry,
            self.telemetry,
        )
    }

    pub(crate) fn memory(&self) -> &ShmMemory {
        &self.memory
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        let stamp = if self.telemetry { STAMP_BYTES } else { 0 };
        (self.geometry.max_message() as usize).saturating_sub(stamp)
    }

    /// The wait strategy every end uses.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Whether this handle created the segment (useful after `create_or_open`).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// When the segment was created, nanoseconds since the Unix epoch, as its creator wrote
    /// it (untrusted; informational). With the name it tells this ring from an earlier one
    /// of the same name, whose stream positions started over.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-created-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new())?;
    /// assert!(ring.created_unix_ns() > 1_600_000_000_000_000_000);
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn created_unix_ns(&self) -> u64 {
        use crate::memory::RingMemory;
        self.memory.control().header.created_unix_ns()
    }

    /// Counters and occupancy, read from the segment.
    pub fn stats(&self) -> Stats {
        stats_of::<K, _>(&self.memory, &self.geometry, self.telemetry)
    }

    /// Messages published and not yet released (MPMC: positions taken by producers and not
    /// yet released), as far as the shared counters know at this instant.
    pub fn len(&self) -> usize {
        self.stats().messages_in_flight as usize
    }

    /// Whether no message is waiting (as [`len`](Self::len) sees it).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every peer record that has been held: role, status (attached, attached but dead,
    /// closed, dead), pid, generation and counters.
    pub fn peers(&self) -> Vec<PeerInfo> {
        peers_of::<K, _>(&self.memory, &self.geometry, self.telemetry)
    }

    /// Removes the ring's name (or path). Attached handles keep working; new opens fail.
    /// Doorbells left by dead holders go too (live ones go when their handles close).
    pub fn unlink(&self) -> Result<()> {
        segment::unlink(self.memory.segment().location())?;
        self.prune_doorbells();
        Ok(())
    }

    /// Removes the doorbell files of slots nobody holds (their holders died), and the
    /// directory if that empties it.
    fn prune_doorbells(&self) {
        use crate::memory::RingMemory;
        let dir = &self.memory.segment().bells().dir;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let slot = name
                .to_str()
                .and_then(|n| n.get(1..))
                .and_then(|n| n.parse().ok());
            if slot.is_none_or(|slot: u32| !self.memory.slot_alive(slot)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }

    pub(crate) fn geometry(&self) -> &K::Geometry {
        &self.geometry
    }

    /// Removes the ring's name if no other process has it open through shmring (not even
    /// one attaching at this moment): see [`any::remove_unused`](crate::any::remove_unused).
    pub(crate) fn remove_if_alone(&self, only_if_dead: bool) -> Result<Removal> {
        let segment = self.memory.segment();
        // Exclusive until this handle is dropped: nobody opens it meanwhile, and whoever
        // was about to finds it gone.
        if !segment.hold_alone()? {
            return Ok(Removal::InUse);
        }
        let peers = self.peers();
        if peers
            .iter()
            .any(|p| p.status == crate::PeerStatus::Attached)
        {
            // Not through a `Ring` of this build (or in a way we cannot see): leave it.
            return Ok(Removal::InUse);
        }
        let dead_holders = peers
            .iter()
            .filter(|p| p.status == crate::PeerStatus::AttachedDead)
            .count() as u32;
        if only_if_dead && dead_holders == 0 {
            return Ok(Removal::Clean);
        }
        segment::unlink(segment.location())?;
        // Nobody has the ring open: every doorbell in its directory is a dead one's.
        os::remove_doorbells(&segment.bells().dir);
        Ok(Removal::Removed { dead_holders })
    }
}

/// What a conditional removal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// The name is gone. `dead_holders`: peer records whose holders had died without
    /// closing (0 for a ring left unfinished by a creator that died).
    Removed {
        /// Records still attached by processes that no longer run.
        dead_holders: u32,
    },
    /// Kept: another process has the ring open (or is opening or creating it).
    InUse,
    /// Kept: nobody has it open and no holder died: every end closed cleanly, so the ring
    /// is kept on purpose (like a FIFO's name between writers).
    Clean,
}

impl<K: Kind> std::fmt::Debug for Ring<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("location", &self.memory.segment().location().display())
            .field("geometry", &self.geometry)
            .field("wait", &self.wait)
            .finish()
    }
}
