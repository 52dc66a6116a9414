//! The ring algorithms, one module per kind, on any [`RingMemory`]: they never touch the
//! OS, and run the same on a mapped segment, on the heap and under loom.
//!
//! Each kind provides a producer core and a consumer core behind the two traits below;
//! the handle layer (`crate::channel`) is written once against them. A core answers at
//! once: `WouldBlock` when it cannot proceed (the handle layer decides how to wait), a
//! typed error when the ring ended or is damaged.

pub(crate) mod broadcast;
pub(crate) mod mpmc;
pub(crate) mod registry;
pub(crate) mod spsc;

use crate::error::{Error, Result};
use crate::memory::RingMemory;

/// Who is attaching: the owner word written in the peer record (pid and start time in
/// shared memory, a test's number on the heap) and the pid shown by `peers()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub owner: u64,
    pub pid: u32,
}

/// The writing end of a ring algorithm.
pub trait ProducerCore {
    /// Where the ring lives.
    type Memory: RingMemory;
    /// Room for one message, claimed and not yet published. Plain data.
    type Claim: Copy;

    /// The ring's memory.
    fn memory(&self) -> &Self::Memory;
    /// This end's peer slot (its sleeper bit, its lock).
    fn slot(&self) -> u32;
    /// Largest payload.
    fn max_message(&self) -> usize;
    /// Claims room for `len` bytes, or says why not (`WouldBlock` when full).
    fn try_claim(&mut self, len: usize) -> Result<Self::Claim>;
    /// Bytes a claim holds.
    fn claim_len(claim: &Self::Claim) -> usize;
    /// Where a claim's bytes are: valid for `claim_len` bytes until committed or cancelled.
    fn payload_ptr(&self, claim: &Self::Claim) -> *mut u8;
    /// Publishes the first `len` (clamped) bytes of `claim` (inside a batch: at its end).
    fn commit(&mut self, claim: Self::Claim, len: usize) -> Result<()>;
    /// Gives `claim` back: consumers never see anything of it.
    fn cancel(&mut self, claim: Self::Claim);
    /// Claims, copies `msg` in and commits.
    fn try_write(&mut self, msg: &[u8]) -> Result<()>;
    /// Sends as many of `msgs` as fit, published with one store (or one atomic operation);
    /// `WouldBlock` if none fits, `MessageTooLarge` before anything is sent.
    fn try_write_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize>;
    /// Whether commits are being held back for a batch (wake-ups wait for its end).
    fn batching(&self) -> bool {
        false
    }
    /// Looks for dead peers and recovers what they left (reaps their slots, frees what they
    /// held). Blocked calls run it between waits; polling calls every few thousand polls.
    fn maintain(&mut self);
    /// Publishes what is pending and gives the role back.
    fn close(&mut self);
}

/// The reading end of a ring algorithm.
pub trait ConsumerCore {
    /// Where the ring lives.
    type Memory: RingMemory;
    /// A message found (and, for MPMC, taken) but not yet released. Plain data.
    type Msg: Copy;

    /// The ring's memory.
    fn memory(&self) -> &Self::Memory;
    /// This end's peer slot.
    fn slot(&self) -> u32;
    /// Largest payload.
    fn max_message(&self) -> usize;
    /// The next message, or why there is none: `WouldBlock`, or the end of the stream.
    fn try_next(&mut self) -> Result<Self::Msg>;
    /// Payload bytes of `msg`.
    fn msg_len(msg: &Self::Msg) -> usize;
    /// Where `msg`'s bytes are: valid until it is released.
    fn payload(&self, msg: &Self::Msg) -> *const u8;
    /// Frees `msg`'s space for producers (an SPSC consumer publishes released space in
    /// chunks: see [`publish_released`](ConsumerCore::publish_released)). `Lagged`
    /// (broadcast) if the producer overwrote its bytes while they were in use: whatever
    /// was read from them must be dropped.
    fn release(&mut self, msg: Self::Msg) -> Result<()>;
    /// Publishes space released and not yet published (a producer may wait for it): true
    /// if there was any. Called when the ring is found empty, before waiting, and when a
    /// producer sleeps.
    fn publish_released(&mut self) -> bool {
        false
    }
    /// Hands up to `max` messages to `f` in place and releases them together; how many
    /// (`WouldBlock` / end of stream if none).
    fn try_read_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize>;
    /// As [`ProducerCore::maintain`].
    fn maintain(&mut self);
    /// Gives the role back. `held`: a message this end found but never released — it is
    /// released if it cannot be left for another consumer (MPMC: it was taken).
    fn close(&mut self, held: Option<Self::Msg>);
}

/// Refuses a batch holding a message longer than `max` (before anything is sent).
pub(crate) fn check_batch<B: AsRef<[u8]>>(msgs: &[B], max: usize) -> Result<()> {
    match msgs.iter().find(|m| m.as_ref().len() > max) {
        Some(big) => Err(Error::MessageTooLarge {
            len: big.as_ref().len(),
            max,
        }),
        None => Ok(()),
    }
}

/// Writes `msgs` one by one with `write` until one does not fit: how many were written
/// (the first one's error if none was).
pub(crate) fn write_each<B: AsRef<[u8]>>(
    msgs: &[B],
    mut write: impl FnMut(&[u8]) -> Result<()>,
) -> Result<usize> {
    let mut sent = 0;
    for msg in msgs {
        match write(msg.as_ref()) {
            Ok(()) => sent += 1,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(sent)
}

/// Header words of records committed and not yet published, in stream order: the first
/// is kept back, the others are stored at once with Relaxed; storing the first last, with
/// Release, publishes them all (P1).
#[derive(Debug, Default)]
pub(crate) struct Unpublished {
    first: Option<(u64, u64)>,
}

impl Unpublished {
    /// The header `word` of the next record, at data-region `offset`.
    #[inline]
    pub(crate) fn header<M: RingMemory>(&mut self, mem: &M, offset: u64, word: u64) {
        if self.first.is_none() {
            self.first = Some((offset, word));
        } else {
            mem.word(offset).store(word, crate::sync::Ordering::Relaxed);
        }
    }

    /// The header that publishes everything: (offset, word), if any is pending.
    #[inline]
    pub(crate) fn take(&mut self) -> Option<(u64, u64)> {
        self.first.take()
    }
}
