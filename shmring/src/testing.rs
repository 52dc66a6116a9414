//! The SPSC algorithm on heap memory, for loom models and tests that need no segment.
//! Not a stable API: it exists so `loom-tests` checks the exact code that ships.

use std::sync::Arc;

use crate::algo::spsc::{ConsumerCore, ProducerCore};
use crate::error::{Result, Role};
use crate::layout::geometry::SpscGeometry as Geometry;
use crate::memory::{HeapMemory, RingMemory};
use crate::peers;
use crate::wait::{Event, Wait, WaitStrategy, Waiter};

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
    fn track_read(&self, offset: u64, len: u64) {
        (**self).track_read(offset, len)
    }
    fn track_write(&self, offset: u64, len: u64) {
        (**self).track_write(offset, len)
    }
}

/// Both ends of an SPSC ring of `capacity` bytes on the heap, positions starting at
/// `initial_position` (rounded down to a multiple of 8), attached as owners 1 (producer)
/// and 2 (consumer). Blocking calls use the futex strategy with no spin window (under
/// loom: the futex mock).
pub fn heap_pair(
    capacity: u64,
    max_message: u64,
    initial_position: u64,
) -> Result<(HeapProducer, HeapConsumer)> {
    let geometry = Geometry::new(capacity, max_message)?;
    let memory = Arc::new(HeapMemory::new(capacity, initial_position & !7));
    let waiter = |m: &Arc<HeapMemory>, role: Role| {
        Waiter::new(
            m.clone(),
            WaitStrategy::Futex,
            std::time::Duration::ZERO,
            peers::spsc_slot(role),
            2,
        )
    };
    let producer_holder = peers::attach_spsc(&memory, Role::Producer, 1, 1)?;
    let consumer_holder = peers::attach_spsc(&memory, Role::Consumer, 2, 2)?;
    Ok((
        HeapProducer {
            waiter: waiter(&memory, Role::Producer),
            core: ProducerCore::new(memory.clone(), geometry)?,
            holder: producer_holder,
        },
        HeapConsumer {
            waiter: waiter(&memory, Role::Consumer),
            core: ConsumerCore::new(memory, geometry)?,
            holder: consumer_holder,
        },
    ))
}

/// The writing end of a heap ring.
pub struct HeapProducer {
    core: ProducerCore<Arc<HeapMemory>>,
    waiter: Waiter<Arc<HeapMemory>>,
    holder: u64,
}

impl HeapProducer {
    /// Sends `msg`, sleeping (futex strategy) while the ring is full, then wakes a sleeping
    /// consumer.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        let core = &mut self.core;
        self.waiter
            .wait_for(Event::SpaceAvailable, None, || core.try_write(msg))?;
        self.waiter.notify(Event::DataAvailable);
        Ok(())
    }

    /// Closes, then wakes a sleeping consumer so it sees the end of the stream.
    pub fn close_and_notify(&mut self) {
        self.close();
        self.waiter.notify(Event::DataAvailable);
    }

    /// Sleep and wake system calls made (futex mock calls under loom).
    pub fn wake_syscalls(&self) -> u64 {
        self.waiter.syscalls()
    }

    /// Copies `msg` in and publishes it (or adds it to the open batch).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.core.try_write(msg)
    }

    /// Reserves `len` bytes, lets `fill` write them in place, commits `fill`'s returned
    /// length (the zero-copy path).
    pub fn try_send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<()> {
        let claim = self.core.try_claim(len)?;
        let ptr = self.core.payload_ptr(&claim);
        // SAFETY: the claim's payload is `len` bytes inside the data region, owned by the
        // producer until committed.
        let written = fill(unsafe { std::slice::from_raw_parts_mut(ptr, len) });
        self.core.commit(claim, written);
        Ok(())
    }

    /// Opens a batch (publication deferred to `flush`).
    pub fn begin_batch(&mut self) {
        self.core.begin_batch();
    }

    /// Publishes everything committed.
    pub fn flush(&mut self) {
        self.core.flush();
    }

    /// Publishes and gives the producer role back: the consumer gets `Closed` after
    /// draining.
    pub fn close(&mut self) {
        self.core.close();
        peers::close_spsc(self.core.memory(), Role::Producer, &self.holder);
    }
}

/// The reading end of a heap ring.
pub struct HeapConsumer {
    core: ConsumerCore<Arc<HeapMemory>>,
    waiter: Waiter<Arc<HeapMemory>>,
    holder: u64,
}

impl HeapConsumer {
    /// Receives into `out`, sleeping (futex strategy) while the ring is empty, then wakes a
    /// sleeping producer. `Closed` at the end of the stream.
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let core = &self.core;
        let msg = self
            .waiter
            .wait_for(Event::DataAvailable, None, || core.try_next())?;
        let src = self.core.payload(&msg);
        out.clear();
        // SAFETY: the payload lies in the data region (checked by `peek`) and is not
        // written by the producer until consumed.
        out.extend_from_slice(unsafe { std::slice::from_raw_parts(src, msg.len()) });
        self.core.consume(msg);
        self.waiter.notify(Event::SpaceAvailable);
        Ok(msg.len())
    }

    /// Copies the next message into `out` (`WouldBlock` when empty, `Closed` at the end).
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.core.try_next()?;
        let src = self.core.payload(&msg);
        out.clear();
        // SAFETY: the payload lies in the data region (checked by `peek`) and is not
        // written by the producer until consumed.
        out.extend_from_slice(unsafe { std::slice::from_raw_parts(src, msg.len()) });
        self.core.consume(msg);
        Ok(msg.len())
    }

    /// Opens a batch (release deferred to `flush`).
    pub fn begin_batch(&mut self) {
        self.core.begin_batch();
    }

    /// Releases everything consumed.
    pub fn flush(&mut self) {
        self.core.flush();
    }

    /// Releases what was consumed and gives the consumer role back: the producer gets
    /// `Closed`.
    pub fn close(&mut self) {
        self.core.close();
        peers::close_spsc(self.core.memory(), Role::Consumer, &self.holder);
    }

    /// Raw access for corruption tests: the 8-byte header word at data offset `offset`.
    pub fn poke_word(&self, offset: u64, value: u64) {
        use crate::sync::Ordering::Relaxed;
        self.core.memory().word(offset).store(value, Relaxed);
    }
}

/// An MPMC ring on the heap. Owners are plain numbers here (a test chooses them and may
/// declare one dead with [`HeapMpmc::mark_dead`]), standing for processes.
pub struct HeapMpmc {
    memory: Arc<HeapMemory>,
    geometry: crate::layout::geometry::MpmcGeometry,
}

/// An MPMC ring with `slots` slots of `max_message` bytes and `max_peers` records on the
/// heap, positions starting at `initial_position`.
pub fn heap_mpmc(
    slots: u64,
    max_message: u64,
    max_peers: u32,
    initial_position: u64,
) -> Result<HeapMpmc> {
    let geometry = crate::layout::geometry::MpmcGeometry::new(slots, max_message, max_peers)?;
    let memory = Arc::new(HeapMemory::new(geometry.data_len(), initial_position));
    crate::algo::mpmc::init_slots(&memory, &geometry, initial_position);
    Ok(HeapMpmc { memory, geometry })
}

impl HeapMpmc {
    /// Attaches a producer owned by `owner` (non-zero).
    pub fn producer(&self, owner: u64) -> Result<HeapMpmcProducer> {
        Ok(HeapMpmcProducer {
            core: crate::algo::mpmc::ProducerCore::attach(
                self.memory.clone(),
                self.geometry,
                owner,
            )?,
        })
    }

    /// Attaches a consumer owned by `owner` (non-zero).
    pub fn consumer(&self, owner: u64) -> Result<HeapMpmcConsumer> {
        Ok(HeapMpmcConsumer {
            core: crate::algo::mpmc::ConsumerCore::attach(
                self.memory.clone(),
                self.geometry,
                owner,
            )?,
        })
    }

    /// Declares `owner` dead, as if its process had exited.
    pub fn mark_dead(&self, owner: u64) {
        self.memory.mark_dead(owner);
    }

    /// Claims of dead producers skipped so far.
    pub fn claims_skipped(&self) -> u64 {
        use crate::sync::Ordering::Relaxed;
        self.memory.control().peers.claims_skipped.load(Relaxed)
    }

    /// Messages lost with dead consumers so far.
    pub fn messages_dropped(&self) -> u64 {
        use crate::sync::Ordering::Relaxed;
        self.memory.control().peers.messages_dropped.load(Relaxed)
    }

    /// Raw access for corruption tests: overwrites the 8-byte word at data-region offset
    /// `offset` (reduced to an 8-aligned offset inside the region: registry and slots).
    pub fn poke_word(&self, offset: u64, value: u64) {
        use crate::sync::Ordering::Relaxed;
        let offset = (offset % self.geometry.data_len()) & !7;
        self.memory.word(offset).store(value, Relaxed);
    }

    /// Producers and consumers the registry counts as attached.
    pub fn attached(&self) -> (u32, u32) {
        let words = crate::peers::slot_words(self.geometry.max_peers);
        let ctl = self.memory.control();
        (
            crate::peers::count(&ctl.producers.present, words),
            crate::peers::count(&ctl.consumers.present, words),
        )
    }
}

/// A writing end of a heap MPMC ring.
pub struct HeapMpmcProducer {
    core: crate::algo::mpmc::ProducerCore<Arc<HeapMemory>>,
}

impl HeapMpmcProducer {
    /// Copies `msg` into a slot and publishes it.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.core.try_write(msg)
    }

    /// Sends as many of `msgs` as fit with one claim.
    pub fn try_send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        self.core.try_write_batch(msgs)
    }

    /// Claims a slot and then stops, as a process killed between claim and publish would:
    /// the claim is never published and the record never closed.
    pub fn claim_and_die(mut self) -> Result<()> {
        // No `Drop` closes the core: dropping it is dying.
        self.core.try_claim(1).map(|_| ())
    }

    /// Reaps dead consumers and frees a slot a dead consumer holds (what blocked sends do).
    pub fn maintain(&mut self) {
        self.core.maintain();
    }

    /// Detaches.
    pub fn close(mut self) {
        self.core.close();
    }
}

/// A reading end of a heap MPMC ring.
pub struct HeapMpmcConsumer {
    core: crate::algo::mpmc::ConsumerCore<Arc<HeapMemory>>,
}

impl HeapMpmcConsumer {
    /// Copies the next message into `out`.
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.core.try_next()?;
        out.clear();
        // SAFETY: the position is ours until consumed; its length was checked.
        out.extend_from_slice(unsafe {
            std::slice::from_raw_parts(self.core.payload(&msg), msg.len as usize)
        });
        self.core.consume(msg);
        Ok(out.len())
    }

    /// Takes up to `max` messages at once, appending each to `out`.
    pub fn try_recv_batch(&mut self, max: usize, out: &mut Vec<Vec<u8>>) -> Result<usize> {
        self.core.try_read_batch(max, &mut |m| out.push(m.to_vec()))
    }

    /// Takes a message and then stops, as a process killed before releasing it would.
    pub fn take_and_die(mut self) -> Result<()> {
        self.core.try_next().map(|_| ())
    }

    /// Reaps dead producers and skips a dead producer's claim at the head (what blocked
    /// receives do).
    pub fn maintain(&mut self) {
        self.core.maintain();
    }

    /// Detaches.
    pub fn close(mut self) {
        self.core.close(None);
    }
}
