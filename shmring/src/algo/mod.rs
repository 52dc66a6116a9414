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
    /// Sends the next messages with priority `priority`, into that lane (`InvalidArgument`
    /// unless below the ring's lanes; rings without lanes have one, priority 0).
    fn set_lane(&mut self, priority: u32) -> Result<()> {
        check_one_lane(priority)
    }
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
    /// The stream position after the last message published (by this producer, or, just
    /// after attaching, by any before it): SPSC and broadcast rings, where one producer
    /// writes at a time.
    fn position(&self) -> Result<u64> {
        Err(Error::invalid_argument(
            "an MPMC ring's producers share its stream: no one producer has a position",
        ))
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
    /// The priority (lane) `msg` was sent with.
    fn msg_priority(_msg: &Self::Msg) -> u32 {
        0
    }
    /// Receives only messages of priorities `low..=high` from now on (`InvalidArgument`
    /// beyond the ring's lanes).
    fn select_lanes(&mut self, low: u32, high: u32) -> Result<()> {
        check_one_lane(high)?;
        check_one_lane(low)
    }
    /// Where `msg`'s bytes are: valid until it is released.
    fn payload(&self, msg: &Self::Msg) -> *const u8;
    /// Frees `msg`'s space for producers (an SPSC consumer publishes released space in
    /// chunks: see [`publish_released`](ConsumerCore::publish_released)). `Lagged`
    /// (broadcast) if the producer overwrote its bytes while they were in use: whatever
    /// was read from them must be dropped.
    fn release(&mut self, msg: Self::Msg) -> Result<()>;
    /// Publishes space released and not yet published: called when a producer sleeps
    /// waiting for it.
    fn publish_released(&mut self) {}
    /// Deferred releases (SPSC, broadcast): from now on released messages keep their space,
    /// and are read again by the next holder of the role, until `give_back_to`.
    fn defer_releases(&mut self) -> Result<()> {
        Err(Error::invalid_argument(NO_MARKS))
    }
    /// Where this end has read to: the position after the last message released.
    fn read_mark(&self) -> Result<ReadMark> {
        Err(Error::invalid_argument(NO_MARKS))
    }
    /// Gives back the space of every message before `mark`.
    fn give_back_to(&mut self, _mark: ReadMark) -> Result<()> {
        Err(Error::invalid_argument(NO_MARKS))
    }
    /// With deferred releases: reads again from the last mark given back.
    fn rewind(&mut self) -> Result<()> {
        Err(Error::invalid_argument(NO_MARKS))
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

/// A ring of one lane takes priority 0 only.
fn check_one_lane(priority: u32) -> Result<()> {
    if priority == 0 {
        return Ok(());
    }
    Err(Error::invalid_argument(format!(
        "priority {priority}: this ring has one lane (priority 0); priority lanes are an \
         MPMC ring's (Config::lanes)"
    )))
}

const NO_MARKS: &str = "an MPMC consumer takes each message out of the ring as it receives it: \
     its releases cannot be deferred (SPSC and broadcast consumers can)";

/// Where a consumer has read to in its ring's stream: the position just after the last
/// message it released, from [`Consumer::read_mark`](crate::Consumer::read_mark). Positions
/// grow along the stream for the ring's whole life (they count bytes of records, so they
/// are not consecutive), so a mark identifies a message within one ring and orders it.
/// With deferred releases (`Consumer::defer_releases`), [`Consumer::release_to`] gives the
/// ring's space back up to a mark.
///
/// ```
/// use shmring::{Config, spsc::Ring};
/// let name = format!("/doc-read-mark-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.try_send(b"a")?;
/// tx.try_send(b"b")?;
/// let mut buf = [0u8; 8];
/// rx.try_recv(&mut buf)?;
/// let after_a = rx.read_mark()?;
/// rx.try_recv(&mut buf)?;
/// assert!(rx.read_mark()?.position() > after_a.position());
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadMark {
    position: u64,
    /// Broadcast: the sequence number of the message after the mark.
    seq: u64,
    /// The consumer's counters of messages and payload bytes received, up to the mark.
    counts: (u64, u64),
}

impl ReadMark {
    pub(crate) fn new(position: u64, seq: u64, counts: (u64, u64)) -> ReadMark {
        ReadMark {
            position,
            seq,
            counts,
        }
    }

    pub(crate) fn counts(&self) -> (u64, u64) {
        self.counts
    }

    /// The mark as four words, for carrying it where a Rust value cannot go (the C ABI):
    /// `[position, sequence, messages, bytes]`. [`from_words`](ReadMark::from_words)
    /// turns them back.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-mark-words-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new())?;
    /// let rx = ring.consumer()?;
    /// let mark = rx.read_mark()?;
    /// assert_eq!(shmring::ReadMark::from_words(mark.to_words()), mark);
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn to_words(&self) -> [u64; 4] {
        [self.position, self.seq, self.counts.0, self.counts.1]
    }

    /// A mark from [`to_words`](ReadMark::to_words). Words that never came from a mark are
    /// still checked where the mark is used: a position out of range is `InvalidArgument`;
    /// made-up counters only make the ring's statistics wrong.
    pub fn from_words(words: [u64; 4]) -> ReadMark {
        ReadMark::new(words[0], words[1], (words[2], words[3]))
    }

    /// The stream position after the marked message: larger for every later message of
    /// the same ring.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
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
