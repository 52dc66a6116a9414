//! A ring on the heap: unit tests, fuzz targets and loom models. Owners are numbers a
//! test chooses and may declare dead.

use super::RingMemory;
use crate::error::{Error, Result};
use crate::layout::{ControlBlock, RECORD_HEADER};
use crate::sync::{AccessTracker, AtomicU64, RawCell};

/// Owners a heap-memory test may declare dead at once.
const DEAD_OWNERS: usize = 4;
/// Peer slots a heap ring has locks for (SPSC uses 2; MPMC models use a handful).
const HEAP_SLOTS: usize = 8;

/// A ring on the heap: unit tests, loom models, benchmarks of the algorithm alone.
pub struct HeapMemory {
    control: Box<ControlBlock>,
    /// Data bytes as `u64`s for alignment.
    bytes: Box<[RawCell<u64>]>,
    /// Under loom, header words live apart from the bytes (loom atomics are not plain memory).
    #[cfg(shmring_loom)]
    headers: Box<[AtomicU64]>,
    tracker: AccessTracker,
    capacity: u64,
    /// Owner words a test declared dead (0 = unused entry).
    dead: [AtomicU64; DEAD_OWNERS],
    /// Slot locks: the owner number holding each (0 = free). A dead owner's entry counts
    /// as free, as the kernel drops a dead process's locks.
    slot_locks: [AtomicU64; HEAP_SLOTS],
    /// Doorbell rings per role (producers, consumers) and slot.
    doorbells: [[AtomicU64; HEAP_SLOTS]; 2],
}

// SAFETY: every shared access goes through atomics or through the ring protocol, which
// orders each byte's writes before its reads with Release/Acquire pairs (the same argument
// as for shared memory, where the "threads" are processes).
unsafe impl Sync for HeapMemory {}
// SAFETY: the owned buffers have no thread affinity.
unsafe impl Send for HeapMemory {}

impl HeapMemory {
    /// A zeroed data region of `capacity` bytes (a multiple of 8, >= 16) whose positions
    /// start at `initial_position`.
    pub(crate) fn new(capacity: u64, initial_position: u64) -> Self {
        assert!(capacity % RECORD_HEADER == 0 && capacity >= 2 * RECORD_HEADER);
        let words = (capacity / 8) as usize;
        let control = ControlBlock::new_zeroed();
        control
            .producer
            .tail
            .store(initial_position, crate::sync::Ordering::Relaxed);
        control
            .consumer
            .head
            .store(initial_position, crate::sync::Ordering::Relaxed);
        HeapMemory {
            control,
            bytes: (0..words).map(|_| RawCell::new(0)).collect(),
            #[cfg(shmring_loom)]
            headers: (0..words).map(|_| AtomicU64::new(0)).collect(),
            tracker: AccessTracker::new(words),
            capacity,
            dead: core::array::from_fn(|_| AtomicU64::new(0)),
            slot_locks: core::array::from_fn(|_| AtomicU64::new(0)),
            doorbells: core::array::from_fn(|_| core::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Times the doorbell of `role`'s holder in `slot` was rung.
    pub(crate) fn doorbell_rings(&self, role: crate::error::Role, slot: u32) -> u64 {
        self.doorbells[role_row(role)][slot as usize % HEAP_SLOTS]
            .load(crate::sync::Ordering::Acquire)
    }

    fn owner_alive(&self, owner: u64) -> bool {
        // Acquire: pairs with `mark_dead`'s Release (what the "dead" holder did is visible).
        owner != 0
            && !self
                .dead
                .iter()
                .any(|entry| entry.load(crate::sync::Ordering::Acquire) == owner)
    }

    /// Declares the holder `owner` dead (as if its process had exited).
    pub(crate) fn mark_dead(&self, owner: u64) {
        use crate::sync::Ordering::{Relaxed, Release};
        assert_ne!(owner, 0);
        for entry in &self.dead {
            if entry.compare_exchange(0, owner, Release, Relaxed).is_ok() {
                return;
            }
        }
        panic!("at most {DEAD_OWNERS} owners may be declared dead");
    }
}

fn word_range(offset: u64, len: u64) -> core::ops::Range<usize> {
    (offset / 8) as usize..offset.saturating_add(len).div_ceil(8) as usize
}

// SAFETY: `bytes` holds capacity / 8 `u64`s (8-aligned, capacity bytes); header words are
// either those bytes viewed as atomics (real builds, same as shared memory) or a separate
// array of the same length (loom builds).
unsafe impl RingMemory for HeapMemory {
    type Holder = u64;

    fn control(&self) -> &ControlBlock {
        &self.control
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn data_ptr(&self) -> *mut u8 {
        RawCell::raw_get(self.bytes.as_ptr()).cast()
    }

    #[cfg(not(shmring_loom))]
    fn word(&self, offset: u64) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset < self.capacity);
        // SAFETY: in bounds and 8-aligned (see trait contract); `RawCell<u64>` has the layout
        // of `u64`, which `AtomicU64` shares; concurrent access is atomic or ordered.
        unsafe { &*self.data_ptr().add(offset as usize).cast::<AtomicU64>() }
    }

    #[cfg(shmring_loom)]
    fn word(&self, offset: u64) -> &AtomicU64 {
        &self.headers[(offset / 8) as usize]
    }

    fn new_holder(&self, owner: u64) -> Result<Self::Holder> {
        if owner == 0 {
            return Err(Error::invalid_argument("heap owners are non-zero numbers"));
        }
        Ok(owner)
    }

    fn lock_slot(&self, holder: &Self::Holder, slot: u32) -> Result<bool> {
        use crate::sync::Ordering::{AcqRel, Acquire};
        let Some(lock) = self.slot_locks.get(slot as usize) else {
            return Err(Error::invalid_argument(format!(
                "heap rings have {HEAP_SLOTS} slot locks"
            )));
        };
        loop {
            let current = lock.load(Acquire);
            if current == *holder {
                return Ok(true);
            }
            if current != 0 && self.owner_alive(current) {
                return Ok(false);
            }
            // AcqRel: one winner among racing lockers; the winner sees what the previous
            // holder did.
            if lock
                .compare_exchange(current, *holder, AcqRel, Acquire)
                .is_ok()
            {
                return Ok(true);
            }
            crate::sync::spin_loop();
        }
    }

    fn unlock_slot(&self, holder: &Self::Holder, slot: u32) {
        use crate::sync::Ordering::{Relaxed, Release};
        if let Some(lock) = self.slot_locks.get(slot as usize) {
            // Release: what we did under the lock is visible to the next locker.
            let _ = lock.compare_exchange(*holder, 0, Release, Relaxed);
        }
    }

    fn ring_doorbell(&self, role: crate::error::Role, slot: u32) {
        // Release: pairs with `doorbell_rings`' Acquire (a model sees what came before).
        self.doorbells[role_row(role)][slot as usize % HEAP_SLOTS]
            .fetch_add(1, crate::sync::Ordering::Release);
    }

    fn slot_alive(&self, slot: u32) -> bool {
        self.slot_locks.get(slot as usize).is_some_and(|lock| {
            let holder = lock.load(crate::sync::Ordering::Acquire);
            holder != 0 && self.owner_alive(holder)
        })
    }

    fn track_read(&self, offset: u64, len: u64) {
        self.tracker.read(word_range(offset, len));
    }

    fn track_write(&self, offset: u64, len: u64) {
        self.tracker.write(word_range(offset, len));
    }
}

/// The row of a role in [`HeapMemory`]'s doorbell counters.
fn role_row(role: crate::error::Role) -> usize {
    match role {
        crate::error::Role::Producer => 0,
        _ => 1,
    }
}
