//! Rings on the heap, for loom models, fuzz targets and unit tests that need no segment.
//! The handles are the crate's own [`Producer`] and [`Consumer`] over heap memory, so a
//! model checks exactly the code that ships. Owners are plain numbers standing for
//! processes; a test declares one dead with [`HeapRing::mark_dead`].
//!
//! Not a stable API: only with the `testing` feature.
//!
//! ```
//! use shmring::testing::HeapRing;
//! use shmring::{Config, spsc::Spsc};
//! let ring = HeapRing::<Spsc>::new(&Config::new().capacity(256))?;
//! let (mut tx, mut rx) = (ring.producer(1)?, ring.consumer(2)?);
//! tx.try_send(b"hi")?;
//! let mut out = Vec::new();
//! rx.try_recv_vec(&mut out)?;
//! assert_eq!(out, b"hi");
//! # Ok::<(), shmring::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::algo::{ConsumerCore, Identity, ProducerCore};
use crate::channel::{Consumer, Kind, Producer};
use crate::config::Config;
use crate::error::Result;
use crate::layout::geometry::Shape;
use crate::memory::{HeapMemory, RingMemory};
use crate::peers;
use crate::stats::{PeerInfo, Stats};
use crate::wait::{WaitStrategy, Waiter};

// SAFETY: forwards to the shared `M`, which upholds the contract.
unsafe impl<M: RingMemory> RingMemory for Arc<M> {
    type Holder = M::Holder;

    fn control(&self) -> &crate::layout::ControlBlock {
        (**self).control()
    }
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    fn data_ptr(&self) -> *mut u8 {
        (**self).data_ptr()
    }
    fn word(&self, offset: u64) -> &crate::sync::AtomicU64 {
        (**self).word(offset)
    }
    fn new_holder(&self, owner: u64) -> Result<Self::Holder> {
        (**self).new_holder(owner)
    }
    fn lock_slot(&self, holder: &Self::Holder, slot: u32) -> Result<bool> {
        (**self).lock_slot(holder, slot)
    }
    fn unlock_slot(&self, holder: &Self::Holder, slot: u32) {
        (**self).unlock_slot(holder, slot)
    }
    fn slot_alive(&self, slot: u32) -> bool {
        (**self).slot_alive(slot)
    }
    fn ring_doorbell(&self, role: crate::error::Role, slot: u32) {
        (**self).ring_doorbell(role, slot)
    }
    fn track_read(&self, offset: u64, len: u64) {
        (**self).track_read(offset, len)
    }
    fn track_write(&self, offset: u64, len: u64) {
        (**self).track_write(offset, len)
    }
}

/// The memory heap handles sit on.
pub type Heap = Arc<HeapMemory>;
/// A producing end of a heap ring.
pub type HeapProducer<K> = Producer<K, Heap>;
/// A consuming end of a heap ring.
pub type HeapConsumer<K> = Consumer<K, Heap>;

/// A ring of kind `K` on the heap. Blocking calls use the futex strategy with no spin
/// window (under loom, the futex model), and look for dead peers on every wake-up.
pub struct HeapRing<K: Kind> {
    memory: Heap,
    geometry: K::Geometry,
    telemetry: bool,
}

impl<K: Kind> HeapRing<K> {
    /// A ring with the geometry `config` asks for (SPSC: capacity, max message; MPMC:
    /// slots, max message, max peers) and its first position. The wait strategy in
    /// `config` is not used.
    pub fn new(config: &Config) -> Result<HeapRing<K>> {
        let geometry = K::requested(&config.for_geometry()?)?;
        let first = config.initial_position;
        let memory = Arc::new(HeapMemory::new(geometry.data_len(), first));
        K::init(&memory, &geometry, first);
        let telemetry = config.telemetry > 0;
        if telemetry {
            crate::telemetry::set_up(&memory.control().telemetry, config.telemetry);
        }
        Ok(HeapRing {
            memory,
            geometry,
            telemetry,
        })
    }

    fn waiter(&self, slot: u32) -> Waiter<Heap> {
        Waiter::new(
            self.memory.clone(),
            WaitStrategy::Futex,
            Duration::ZERO,
            slot,
            self.geometry.peer_slots(),
        )
    }

    /// Attaches a producer owned by `owner` (non-zero; a number standing for a process).
    pub fn producer(&self, owner: u64) -> Result<HeapProducer<K>> {
        let core = K::producer(self.memory.clone(), self.geometry, identity(owner))?;
        Ok(Producer::new(
            self.waiter(core.slot()),
            core,
            self.geometry,
            self.telemetry,
        ))
    }

    /// Attaches a consumer owned by `owner` (non-zero).
    pub fn consumer(&self, owner: u64) -> Result<HeapConsumer<K>> {
        let core = K::consumer(self.memory.clone(), self.geometry, identity(owner))?;
        Ok(Consumer::new(
            self.waiter(core.slot()),
            core,
            self.geometry,
            self.telemetry,
        ))
    }

    /// Declares `owner` dead, as if its process had exited: its slot locks count as free.
    /// Its handles must not be used again: [`Abandon::abandon`] them first, as a death
    /// would.
    pub fn mark_dead(&self, owner: u64) {
        self.memory.mark_dead(owner);
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> Stats {
        crate::channel::stats_of::<K, _>(&self.memory, &self.geometry, self.telemetry)
    }

    /// Every peer record that has been held.
    pub fn peers(&self) -> Vec<PeerInfo> {
        crate::channel::peers_of::<K, _>(&self.memory, &self.geometry, self.telemetry)
    }

    /// Producers and consumers the ring counts as attached (present bits).
    pub fn attached(&self) -> (u32, u32) {
        let words = peers::slot_words(self.geometry.peer_slots());
        let ctl = self.memory.control();
        (
            peers::count(&ctl.producers.present, words),
            peers::count(&ctl.consumers.present, words),
        )
    }

    /// Times the readiness doorbell of `role`'s holder in peer slot `slot` was rung (a heap
    /// ring counts rings instead of sending datagrams).
    pub fn doorbell_rings(&self, role: crate::Role, slot: u32) -> u64 {
        self.memory.doorbell_rings(role, slot)
    }

    /// Overwrites the 8-byte word at data-region offset `offset` (reduced to an 8-aligned
    /// offset inside the region), as a scribbling peer would.
    pub fn poke_word(&self, offset: u64, value: u64) {
        let offset = (offset % self.geometry.data_len()) & !7;
        self.memory
            .word(offset)
            .store(value, crate::sync::Ordering::Relaxed);
    }
}

impl HeapRing<crate::broadcast::Broadcast> {
    /// Attaches a broadcast reader owned by `owner`, starting at `join`, durable under
    /// `name` if given.
    pub fn reader(
        &self,
        owner: u64,
        join: crate::broadcast::JoinAt,
        name: Option<&str>,
    ) -> Result<HeapConsumer<crate::broadcast::Broadcast>> {
        let options = crate::algo::broadcast::ReaderOptions {
            name: name.map(crate::PeerName::new).transpose()?,
            join,
        };
        let core = crate::algo::broadcast::ConsumerCore::attach(
            self.memory.clone(),
            self.geometry,
            identity(owner),
            &options,
        )?;
        Ok(Consumer::new(
            self.waiter(core.slot()),
            core,
            self.geometry,
            self.telemetry,
        ))
    }
}

fn identity(owner: u64) -> Identity {
    Identity {
        owner,
        pid: owner as u32,
    }
}

/// The periodic maintenance blocked calls do between waits (reaping dead peers, skipping a
/// dead producer's claim, freeing a slot a dead consumer held), on demand, so a model can
/// interleave it with everything else.
pub trait Maintain {
    /// Looks for dead peers of this end's counterpart role and recovers what they held.
    fn maintain(&mut self);
}

impl<K: Kind, M: crate::memory::Memory> Maintain for Producer<K, M> {
    fn maintain(&mut self) {
        self.core_mut().maintain();
    }
}

impl<K: Kind, M: crate::memory::Memory> Maintain for Consumer<K, M> {
    fn maintain(&mut self) {
        self.core_mut().maintain();
    }
}

/// Ends a handle as a killed process would (see [`HeapRing::mark_dead`]): none of its code
/// runs — no close, no release — but its memory is freed, so leak checkers stay quiet.
pub trait Abandon {
    /// Drops the handle without closing it.
    fn abandon(self);
}

impl<K: Kind, M: crate::memory::Memory> Abandon for Producer<K, M> {
    fn abandon(self) {
        Producer::abandon(self);
    }
}

impl<K: Kind, M: crate::memory::Memory> Abandon for Consumer<K, M> {
    fn abandon(self) {
        Consumer::abandon(self);
    }
}
