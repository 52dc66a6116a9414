//! Shared memory: the OS calls (`os`), named and anonymous segments (`segment`), building
//! and checking a segment's header for any ring kind (`attach`), and [`ShmMemory`], the
//! [`RingMemory`] of a mapped segment. The only part of the crate that talks to the OS.

pub(crate) mod attach;

pub(crate) mod segment;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::{CONTROL_SIZE, ControlBlock, RECORD_HEADER, locks};
use crate::memory::RingMemory;
use crate::sync::AtomicU64;
use segment::Segment;

/// A ring inside a mapped segment. Clones share the mapping.
#[derive(Clone)]
pub struct ShmMemory {
    segment: Arc<Segment>,
    /// Validated once at attach and never re-read from shared memory.
    capacity: u64,
}

impl ShmMemory {
    /// Wraps a segment whose header has been validated: the mapping is at least
    /// `CONTROL_SIZE + capacity` bytes and `capacity` is a multiple of 8, `>= 16`.
    pub(crate) fn new(segment: Arc<Segment>, capacity: u64) -> Self {
        assert!(capacity % RECORD_HEADER == 0 && capacity >= 2 * RECORD_HEADER);
        assert!(
            segment.len() >= CONTROL_SIZE + capacity,
            "mapping too small"
        );
        ShmMemory { segment, capacity }
    }

    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }
}

/// The control block at the start of a mapping.
pub(crate) fn control_of(segment: &Segment) -> &ControlBlock {
    assert!(segment.len() >= CONTROL_SIZE);
    // `ControlBlock` is only atomics: other processes may write them concurrently, and any
    // bit pattern is a valid value.
    // SAFETY: page-aligned, >= CONTROL_SIZE bytes (checked above), lives as long as `segment`.
    unsafe { &*segment.base().cast::<ControlBlock>() }
}

// SAFETY: `new` checked that the mapping covers CONTROL_SIZE + capacity bytes; the data
// region starts at CONTROL_SIZE, a multiple of 128 from a page-aligned base; `capacity` is a
// multiple of 8, so every 8-aligned offset below it leaves 8 bytes for a word.
unsafe impl RingMemory for ShmMemory {
    type Holder = std::os::fd::OwnedFd;

    #[inline]
    fn control(&self) -> &ControlBlock {
        control_of(&self.segment)
    }

    #[inline]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: CONTROL_SIZE is within the mapping (checked in `new`).
        unsafe { self.segment.base().add(CONTROL_SIZE as usize) }
    }

    #[inline]
    fn word(&self, offset: u64) -> &AtomicU64 {
        debug_assert!(offset % RECORD_HEADER == 0 && offset < self.capacity);
        // The ring passes only masked, 8-aligned positions; other processes touch these bytes
        // atomically or after synchronising through such an atomic.
        // SAFETY: 8-aligned, `offset + 8 <= capacity`, so inside the mapped data region.
        unsafe { &*self.data_ptr().add(offset as usize).cast::<AtomicU64>() }
    }

    fn ring_doorbell(&self, role: crate::error::Role, slot: u32) {
        let bells = self.segment.bells();
        if let Some(sender) = &bells.sender {
            crate::os::ring_doorbell(sender, &bells.dir.join(doorbell_file(role, slot)));
        }
    }

    fn new_holder(&self, _owner: u64) -> Result<Self::Holder> {
        let shown = self.segment.location().display();
        crate::os::reopen(self.segment.fd()).map_err(|e| Error::from_os("reopen", &shown, e))
    }

    fn lock_slot(&self, holder: &Self::Holder, slot: u32) -> Result<bool> {
        crate::os::lock_byte(holder, locks::peer_byte(slot)).map_err(|source| Error::Io {
            op: "fcntl(F_OFD_SETLK)",
            source,
        })
    }

    fn unlock_slot(&self, holder: &Self::Holder, slot: u32) {
        // Failure leaves the lock to be dropped when the holder's descriptor closes.
        let _ = crate::os::unlock_byte(holder, locks::peer_byte(slot));
    }

    fn slot_alive(&self, slot: u32) -> bool {
        // The segment's own descriptor never holds a peer lock, so every handle's lock,
        // this process's included, shows. An error counts as alive: a live peer must never
        // be judged dead.
        crate::os::byte_locked(self.segment.fd(), locks::peer_byte(slot)).unwrap_or(true)
    }
}

/// The file name of the doorbell of `role`'s holder in peer slot `slot`.
pub(crate) fn doorbell_file(role: crate::error::Role, slot: u32) -> String {
    match role {
        crate::error::Role::Producer => format!("p{slot}"),
        _ => format!("c{slot}"),
    }
}
