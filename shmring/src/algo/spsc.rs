//! The SPSC record ring: the lock-free algorithm, on any [`RingMemory`].
//!
//! Positions are free-running `u64` byte counts, masked with `capacity - 1` on access.
//! The producer owns `[tail, head + capacity)`, the consumer `[head, tail)`.
//!
//! Publication: the producer writes a record's payload, then the header word of the record
//! *after* it as 0 (the terminator), then the record's own header word with Release. The
//! consumer polls the header word at its head with Acquire: 0 means "nothing yet", a
//! COMMITTED word is a record whose bytes are visible. A batch stores every header but the
//! first with Relaxed and the first last with Release, so one store publishes the batch.
//! `docs/ordering.md` lists the edges (P1/C1, C2/P2, P3/C3) named in the comments below.

use super::{Identity, ReadMark};
use crate::error::{Error, Result, Role};
use crate::layout::geometry::SpscGeometry;
use crate::layout::{ControlBlock, RECORD_HEADER, peer_state, record};
use crate::memory::RingMemory;
use crate::peers;
use crate::stats::{KindStats, PeerInfo, PeerStatus, Stats, roles};
use crate::sync::Ordering::{Acquire, Relaxed, Release};
use crate::sync::prefetch_write;

/// Most bytes of records an SPSC consumer takes before it gives their space back to the
/// producer (a quarter of the ring if that is less). It also gives space back as soon as
/// it takes the last message published, sees the producer waiting for room, ends a batch
/// or closes. So a consumer that dies redelivers at most this many
/// bytes of messages to the next one (delivery is at-least-once), and a producer may find
/// up to this much less room than there is while the consumer is between receives with
/// messages still queued. `docs/ordering.md`, "R3".
///
/// ```
/// assert_eq!(shmring::spsc::RELEASE_CHUNK, 4096);
/// ```
pub const RELEASE_CHUNK: usize = 4096;

/// The ordering of P1. Only the loom negative control (`--cfg shmring_weaken_publish`)
/// weakens it, to show that the loom model catches a Relaxed publish.
#[cfg(not(shmring_weaken_publish))]
const PUBLISH: crate::sync::Ordering = Release;
#[cfg(shmring_weaken_publish)]
const PUBLISH: crate::sync::Ordering = Relaxed;

/// Where a claimed record goes. Plain data: a claim dropped unused publishes nothing.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    /// Position of the first header this claim writes (a padding record, or the record).
    start: u64,
    /// Position of the record itself (`start`, or the next lap's beginning after padding).
    record_pos: u64,
    /// Payload bytes reserved.
    len: u64,
}

impl Claim {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

/// A record found at the consumer's head. Plain data: dropping it consumes nothing.
#[derive(Clone, Copy, Debug)]
pub struct Message {
    /// Position of the record (after any padding record at the head).
    record_pos: u64,
    /// Payload bytes.
    len: u64,
}

impl Message {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

/// The writing end's algorithm state.
pub struct ProducerCore<M: RingMemory> {
    mem: M,
    geo: SpscGeometry,
    /// Next write position (local; published through record headers and `tail`).
    tail: u64,
    /// Last consumer head seen: free space is `[tail, cached_head + capacity)`.
    cached_head: u64,
    /// Header word (offset, value) of the first unpublished record, stored last.
    unpublished: super::Unpublished,
    /// True while a batch is open: `commit` leaves publication to `flush`.
    batching: bool,
    messages: u64,
    bytes: u64,
}

impl<M: RingMemory> ProducerCore<M> {
    /// Takes over the producer side at the published tail.
    pub(crate) fn new(mem: M, geo: SpscGeometry) -> Result<Self> {
        debug_assert_eq!(mem.capacity(), geo.capacity);
        let ctl = mem.control();
        let tail = ctl.producer.tail.load(Acquire);
        // ORDERING P2 (pairs with C2): see `refresh_head`.
        let head = ctl.consumer.head.load(Acquire);
        if tail % RECORD_HEADER != 0 || head % RECORD_HEADER != 0 {
            return Err(Error::corrupted(format!(
                "tail {tail} or head {head} is not 8-aligned"
            )));
        }
        // The consumer may be ahead of the published tail when the previous producer died
        // after publishing records and before storing `tail`; `recover_tail` walks past
        // them. Anything else outside one lap is damage.
        if tail.wrapping_sub(head) > geo.capacity && head.wrapping_sub(tail) > geo.capacity {
            return Err(Error::corrupted(format!(
                "tail {tail} and head {head} are not a valid ring state"
            )));
        }
        let messages = ctl.producer.messages.load(Relaxed);
        let bytes = ctl.producer.bytes.load(Relaxed);
        Ok(ProducerCore {
            mem,
            geo,
            tail,
            cached_head: head,
            unpublished: super::Unpublished::default(),
            batching: false,
            messages,
            bytes,
        })
    }

    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    pub(crate) fn geometry(&self) -> SpscGeometry {
        self.geo
    }

    /// Before the first claim of a new producer: moves the local tail past every record a
    /// previous producer published after its last `tail` store (it may have died in
    /// between), at most one lap of scanning, and makes sure the word at the new tail reads
    /// "empty". One header read when there is nothing to recover. Returns how many
    /// records were found.
    pub(crate) fn recover_tail(&mut self) -> Result<u64> {
        let mask = self.geo.mask();
        let mut pos = self.tail;
        let mut found = 0;
        while pos.wrapping_sub(self.tail) < self.geo.capacity {
            let offset = pos & mask;
            // Acquire: pairs with the dead producer's publishing stores (P1).
            let d = record::decode(self.mem.word(offset).load(Acquire));
            if !d.committed || d.tag != record::tag(pos) {
                break;
            }
            let next = if d.padding {
                pos.wrapping_add(self.geo.capacity - offset)
            } else {
                if d.len > self.geo.max_message || offset + record::size(d.len) > self.geo.capacity
                {
                    return Err(Error::corrupted(format!(
                        "record at {pos} claims {} bytes while recovering the tail",
                        d.len
                    )));
                }
                self.messages = self.messages.wrapping_add(1);
                self.bytes = self.bytes.wrapping_add(d.len);
                found += 1;
                pos.wrapping_add(record::size(d.len))
            };
            pos = next;
        }
        // The consumer cannot have read past the last published record.
        let behind = self.cached_head.wrapping_sub(pos);
        if behind != 0 && behind <= self.geo.capacity {
            return Err(Error::corrupted(format!(
                "published records end at {pos}, before the consumer's head {}",
                self.cached_head
            )));
        }
        self.tail = pos;
        // Whatever a dying producer left at the new tail reads as "nothing here".
        self.mem.word(pos & mask).store(record::EMPTY, Release);
        let line = &self.mem.control().producer;
        line.tail.store(self.tail, Release);
        line.messages.store(self.messages, Relaxed);
        line.bytes.store(self.bytes, Relaxed);
        Ok(found)
    }

    /// Reserves room for a record of `len` payload bytes, or says why not.
    #[inline]
    pub(crate) fn try_claim(&mut self, len: usize) -> Result<Claim> {
        let len = len as u64;
        if len > self.geo.max_message {
            return Err(Error::MessageTooLarge {
                len: len as usize,
                max: self.geo.max_message as usize,
            });
        }
        // A consumer that left ends the stream for us (no data is read on the strength of
        // it; one cache-hit load while a consumer is present).
        if let Some(end) = crate::peers::ended(self.mem.control(), Role::Consumer, 1) {
            return Err(end.report(self.mem.control()));
        }
        let size = record::size(len);
        let room_to_end = self.geo.capacity - (self.tail & self.geo.mask());
        let record_pos = if size > room_to_end {
            // Pad to the end of the lap so the record is never split.
            self.tail.wrapping_add(room_to_end)
        } else {
            self.tail
        };
        // Record, plus the terminator word after it.
        let end = record_pos.wrapping_add(size).wrapping_add(RECORD_HEADER);
        if end.wrapping_sub(self.cached_head) > self.geo.capacity {
            self.refresh_head()?;
            if end.wrapping_sub(self.cached_head) > self.geo.capacity {
                return Err(Error::WouldBlock);
            }
        }
        crate::crash::point("producer-claimed");
        Ok(Claim {
            start: self.tail,
            record_pos,
            len,
        })
    }

    /// Re-reads the consumer's head (only when the cached one says "full").
    #[cold]
    fn refresh_head(&mut self) -> Result<()> {
        // ORDERING P2 (pairs with C2): Acquire, so the consumer's reads of the bytes it
        // released happen before we overwrite them.
        let head = self.mem.control().consumer.head.load(Acquire);
        let used = self.tail.wrapping_sub(head);
        let advance = head.wrapping_sub(self.cached_head);
        if used > self.geo.capacity || advance > self.geo.capacity || head % RECORD_HEADER != 0 {
            return Err(Error::corrupted(format!(
                "consumer head {head} is outside [{}, {}]",
                self.cached_head, self.tail
            )));
        }
        self.cached_head = head;
        Ok(())
    }

    /// The payload bytes of a claim: valid until the claim is committed or dropped.
    #[inline]
    pub(crate) fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        let offset = (claim.record_pos & self.geo.mask()) + RECORD_HEADER;
        self.mem.track_write(offset, claim.len);
        // SAFETY: `try_claim` placed the whole record inside the data region
        // (offset + size <= capacity), so the payload is in bounds.
        unsafe { self.mem.data_ptr().add(offset as usize) }
    }

    /// Makes a claimed record of `len <= claim.len` bytes part of the stream. Publishes it
    /// at once unless a batch is open.
    #[inline]
    pub(crate) fn commit(&mut self, claim: Claim, len: usize) {
        crate::crash::point("producer-written");
        let len = (len as u64).min(claim.len);
        let mask = self.geo.mask();
        let end = claim.record_pos.wrapping_add(record::size(len));
        // The next record's slot reads "empty" until it is published. Relaxed: it is ordered
        // before the consumer's view by the Release store that publishes this record (P1).
        self.mem.word(end & mask).store(record::EMPTY, Relaxed);
        // Own the following line before a terminator lands there: otherwise that store's
        // cache miss would hold back the publishing store behind it (stores become visible
        // in order on x86).
        // SAFETY: masked offset, inside the data region.
        prefetch_write(unsafe {
            self.mem
                .data_ptr()
                .add((end.wrapping_add(64) & mask) as usize)
        });
        if claim.start != claim.record_pos {
            self.unpublished.header(
                &self.mem,
                claim.start & mask,
                record::padding(claim.start, 0),
            );
        }
        self.unpublished.header(
            &self.mem,
            claim.record_pos & mask,
            record::message(claim.record_pos, len),
        );
        self.tail = end;
        self.messages = self.messages.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len);
        if !self.batching {
            self.flush();
        }
    }

    /// Copies `msg` into a new record (no publication if a batch is open).
    #[inline]
    pub(crate) fn try_write(&mut self, msg: &[u8]) -> Result<()> {
        let claim = self.try_claim(msg.len())?;
        let dst = self.payload_ptr(&claim);
        // SAFETY: `dst` has room for `claim.len == msg.len()` bytes (see `payload_ptr`); the
        // claimed range belongs to the producer until published, and `msg` is private memory.
        unsafe { core::ptr::copy_nonoverlapping(msg.as_ptr(), dst, msg.len()) };
        self.commit(claim, msg.len());
        Ok(())
    }

    pub(crate) fn is_batching(&self) -> bool {
        self.batching
    }

    /// Opens a batch: commits stay unpublished until `flush`.
    pub(crate) fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Publishes everything committed since the last flush with one Release store, and
    /// closes any open batch.
    #[inline]
    pub(crate) fn flush(&mut self) {
        self.batching = false;
        if let Some((offset, word)) = self.unpublished.take() {
            // ORDERING P1 (pairs with C1): Release makes the payloads, the later headers and
            // the terminator written before it visible to the consumer that Acquires it.
            self.mem.word(offset).store(word, PUBLISH);
            // Published, but `tail` not yet stored: a new producer must recover the tail.
            crate::crash::point("producer-published");
            let line = &self.mem.control().producer;
            // Informational (stats, a later recovery): Release so a reader of `tail` also
            // sees the records before it.
            line.tail.store(self.tail, Release);
            line.messages.store(self.messages, Relaxed);
            line.bytes.store(self.bytes, Relaxed);
        }
    }

    /// Publishes what is pending (before the handle gives its role back, which ends the
    /// stream for the consumer once it has drained).
    pub(crate) fn close(&mut self) {
        self.flush();
    }
}

/// The reading end's algorithm state.
pub struct ConsumerCore<M: RingMemory> {
    mem: M,
    geo: SpscGeometry,
    /// Next read position (local; published through `head` on release).
    head: u64,
    /// True while a batch is open: `consume` leaves the head store to `flush`.
    batching: bool,
    /// A consumed record not yet released to the producer.
    unpublished: bool,
    /// `head` as last published.
    published_head: u64,
    /// Deferred releases: the mark (position, counters) space is given back up to, which
    /// is what `flush` publishes instead of `head`.
    deferred: Option<ReadMark>,
    /// Bytes consumed before `head` is published again (R3): a quarter of the ring, at
    /// most 4 KiB. Also published when the consumer takes the last record published, when
    /// a producer waits, at the end of a batch and on close.
    release_every: u64,
    messages: u64,
    bytes: u64,
}

impl<M: RingMemory> ConsumerCore<M> {
    /// Takes over the consumer side at the published head.
    pub(crate) fn new(mem: M, geo: SpscGeometry) -> Result<Self> {
        debug_assert_eq!(mem.capacity(), geo.capacity);
        let ctl = mem.control();
        let head = ctl.consumer.head.load(Acquire);
        if head % RECORD_HEADER != 0 {
            return Err(Error::corrupted(format!("head {head} is not 8-aligned")));
        }
        let messages = ctl.consumer.messages.load(Relaxed);
        let bytes = ctl.consumer.bytes.load(Relaxed);
        Ok(ConsumerCore {
            mem,
            geo,
            head,
            batching: false,
            unpublished: false,
            published_head: head,
            deferred: None,
            release_every: (geo.capacity / 4).min(RELEASE_CHUNK as u64),
            messages,
            bytes,
        })
    }

    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    pub(crate) fn geometry(&self) -> SpscGeometry {
        self.geo
    }

    /// The record at the head, if one is published. Every field of the header word is
    /// checked before use: a bad word is `Corrupted`, never an out-of-bounds read.
    #[inline]
    pub(crate) fn peek(&self) -> Result<Option<Message>> {
        let mask = self.geo.mask();
        let mut pos = self.head;
        // At most one padding record precedes a message.
        for _ in 0..2 {
            let offset = pos & mask;
            // ORDERING C1 (pairs with P1): Acquire, so the payload (and any later records of
            // the same batch) written before the producer's Release are visible.
            let word = self.mem.word(offset).load(Acquire);
            let found = record::decode(word);
            if !found.committed {
                if word != record::EMPTY {
                    return Err(self.corrupt(pos, word, "an uncommitted header that is not empty"));
                }
                if pos != self.head {
                    return Err(self.corrupt(pos, word, "padding not followed by a record"));
                }
                return Ok(None);
            }
            if found.tag != record::tag(pos) {
                return Err(self.corrupt(pos, word, "a header tagged for another position"));
            }
            if found.padding {
                if found.len != 0 || offset == 0 || pos != self.head {
                    return Err(self.corrupt(pos, word, "a malformed padding record"));
                }
                pos = pos.wrapping_add(self.geo.capacity - offset);
                continue;
            }
            if found.len > self.geo.max_message
                || offset + record::size(found.len) > self.geo.capacity
            {
                return Err(self.corrupt(pos, word, "a length beyond the ring's limits"));
            }
            return Ok(Some(Message {
                record_pos: pos,
                len: found.len,
            }));
        }
        unreachable!("the loop returns on its second iteration")
    }

    #[cold]
    fn corrupt(&self, pos: u64, word: u64, what: &str) -> Error {
        Error::corrupted(format!(
            "record header {word:#018x} at position {pos} (head {}): {what}",
            self.head
        ))
    }

    /// Like `peek`, but an empty ring whose producer has closed is `Closed`, and an empty
    /// ring otherwise is `WouldBlock`.
    #[inline]
    pub(crate) fn try_next(&self) -> Result<Message> {
        if let Some(msg) = self.peek()? {
            return Ok(msg);
        }
        // ORDERING C3 (pairs with E1): the producer's leaving is Acquired (E2), then we look
        // once more: anything published before it left is visible now.
        match crate::peers::ended(self.mem.control(), Role::Producer, 1) {
            Some(end) => match self.peek()? {
                Some(msg) => Ok(msg),
                None => Err(end.report(self.mem.control())),
            },
            None => Err(Error::WouldBlock),
        }
    }

    /// The payload of `msg`: valid until it is consumed.
    #[inline]
    pub(crate) fn payload(&self, msg: &Message) -> *const u8 {
        let offset = (msg.record_pos & self.geo.mask()) + RECORD_HEADER;
        self.mem.track_read(offset, msg.len);
        // SAFETY: `peek` checked offset + record size <= capacity.
        unsafe { self.mem.data_ptr().add(offset as usize) }
    }

    /// Moves past `msg`; the space is released now unless a batch is open.
    #[inline]
    pub(crate) fn consume(&mut self, msg: Message) {
        crate::crash::point("consumer-read");
        self.head = msg.record_pos.wrapping_add(record::size(msg.len));
        self.messages = self.messages.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(msg.len);
        if self.deferred.is_some() {
            return;
        }
        self.unpublished = true;
        if !self.batching
            && (self.head.wrapping_sub(self.published_head) >= self.release_every || self.drained())
        {
            self.flush();
        }
    }

    /// From now on, consumed records keep their space until `give_back_to` (a bridge's
    /// exporter gives back what the broker acknowledged).
    pub(crate) fn defer_releases(&mut self) {
        if self.deferred.is_none() {
            self.flush();
            self.deferred = Some(self.read_mark());
        }
    }

    /// Deferred releases: reads again from the last position given back (its records are
    /// still in the ring: the producer cannot have written over them).
    pub(crate) fn rewind(&mut self) -> Result<()> {
        let Some(mark) = self.deferred else {
            return Err(Error::invalid_argument(
                "releases are not deferred on this consumer: nothing to read again",
            ));
        };
        self.head = mark.position();
        (self.messages, self.bytes) = mark.counts();
        Ok(())
    }

    /// The position after the last record consumed.
    pub(crate) fn read_mark(&self) -> ReadMark {
        ReadMark::new(self.head, 0, (self.messages, self.bytes))
    }

    /// Gives back the space of every record before `mark` (deferred releases), at once.
    pub(crate) fn give_back_to(&mut self, mark: ReadMark) -> Result<()> {
        let pos = mark.position();
        let Some(given_back) = self.deferred.map(|m| m.position()) else {
            return Err(Error::invalid_argument(
                "releases are not deferred on this consumer: call defer_releases first",
            ));
        };
        if pos.wrapping_sub(given_back) > self.head.wrapping_sub(given_back)
            || pos % RECORD_HEADER != 0
        {
            return Err(Error::invalid_argument(format!(
                "read mark {pos} is not between the last one given back ({given_back}) and \
                 the last read ({})",
                self.head
            )));
        }
        if pos != given_back {
            self.deferred = Some(mark);
            self.unpublished = true;
            self.flush();
        }
        Ok(())
    }

    /// True if nothing is published after the head: the consumer has caught up, so what
    /// it consumed goes back now (a producer then finds an empty ring empty). Relaxed: a
    /// hint only, nothing is read on its strength; a record published meanwhile is read
    /// through `peek`'s Acquire.
    #[inline]
    fn drained(&self) -> bool {
        // The loom negative control (`--cfg shmring_keep_releases_when_dry`) gives nothing
        // back on catching up, to show the model catches a producer left asleep.
        if cfg!(shmring_keep_releases_when_dry) {
            return false;
        }
        self.mem.word(self.head & self.geo.mask()).load(Relaxed) == record::EMPTY
    }

    /// Opens a batch: consumed records are released together by `flush`.
    pub(crate) fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Releases every consumed record to the producer with one store; closes any batch.
    #[inline]
    pub(crate) fn flush(&mut self) {
        self.batching = false;
        if self.unpublished {
            self.unpublished = false;
            let line = &self.mem.control().consumer;
            // ORDERING C2 (pairs with P2): Release, so our reads of the released records
            // happen before the producer, having Acquired the new head, overwrites them.
            let mark = self.deferred.unwrap_or_else(|| self.read_mark());
            let (head, (messages, bytes)) = (mark.position(), mark.counts());
            line.head.store(head, Release);
            line.messages.store(messages, Relaxed);
            line.bytes.store(bytes, Relaxed);
            self.published_head = head;
            crate::crash::point("consumer-released");
        }
    }

    /// Releases what is pending (before the handle gives its role back).
    pub(crate) fn close(&mut self) {
        self.flush();
    }
}

/// The producer role of an SPSC ring: the algorithm state and the role's slot, held
/// through `holder` for as long as the end is attached.
pub struct ProducerEnd<M: RingMemory> {
    core: ProducerCore<M>,
    holder: M::Holder,
}

impl<M: RingMemory + Clone> ProducerEnd<M> {
    /// Takes the producer role (`AlreadyAttached` while a live producer holds it) and
    /// continues after the last record any earlier producer published.
    pub(crate) fn attach(mem: M, geo: SpscGeometry, me: Identity) -> Result<Self> {
        let holder = peers::attach_spsc(&mem, Role::Producer, me.owner, me.pid)?;
        let core = ProducerCore::new(mem.clone(), geo).and_then(|mut core| {
            // A previous producer may have published records after its last `tail` store.
            core.recover_tail()?;
            Ok(core)
        });
        match core {
            Ok(core) => Ok(ProducerEnd { core, holder }),
            Err(err) => {
                peers::close_spsc(&mem, Role::Producer, &holder);
                Err(err)
            }
        }
    }
}

impl<M: RingMemory> ProducerEnd<M> {
    /// Opens a batch: commits stay unpublished until [`flush`](ProducerEnd::flush).
    pub(crate) fn begin_batch(&mut self) {
        self.core.begin_batch();
    }

    /// Publishes everything committed since the batch began, with one store.
    pub(crate) fn flush(&mut self) {
        self.core.flush();
    }

    /// The ring's geometry.
    pub(crate) fn geometry(&self) -> SpscGeometry {
        self.core.geometry()
    }
}

impl<M: RingMemory> super::ProducerCore for ProducerEnd<M> {
    type Memory = M;
    type Claim = Claim;

    fn memory(&self) -> &M {
        self.core.memory()
    }
    fn slot(&self) -> u32 {
        peers::PRODUCER_SLOT
    }
    fn max_message(&self) -> usize {
        self.core.geometry().max_message as usize
    }
    #[inline]
    fn try_claim(&mut self, len: usize) -> Result<Claim> {
        self.core.try_claim(len)
    }
    #[inline]
    fn claim_len(claim: &Claim) -> usize {
        claim.len()
    }
    #[inline]
    fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        self.core.payload_ptr(claim)
    }
    #[inline]
    fn commit(&mut self, claim: Claim, len: usize) -> Result<()> {
        self.core.commit(claim, len);
        Ok(())
    }
    #[inline]
    fn cancel(&mut self, _claim: Claim) {
        // A claim is plain data: nothing was written where a consumer looks.
    }
    #[inline]
    fn try_write(&mut self, msg: &[u8]) -> Result<()> {
        self.core.try_write(msg)
    }
    fn try_write_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        super::check_batch(msgs, self.core.geometry().max_message as usize)?;
        let was_batching = self.core.is_batching();
        self.core.begin_batch();
        let sent = super::write_each(msgs, |msg| self.core.try_write(msg));
        if !was_batching {
            self.core.flush();
        }
        sent
    }
    fn batching(&self) -> bool {
        self.core.is_batching()
    }
    fn position(&self) -> Result<u64> {
        // Stored by this producer at every publish and when it attached (after recovering
        // what a dead one published).
        Ok(self.core.memory().control().producer.tail.load(Relaxed))
    }
    fn maintain(&mut self) {
        // An error (the lock call failed) leaves the consumer's liveness unknown: the
        // caller waits on, within its timeout.
        let _ = peers::reap_spsc(self.core.memory(), Role::Consumer, &self.holder);
    }
    fn close(&mut self) {
        self.core.close();
        peers::close_spsc(self.core.memory(), Role::Producer, &self.holder);
    }
}

/// The consumer role of an SPSC ring: the algorithm state and the role's slot.
pub struct ConsumerEnd<M: RingMemory> {
    core: ConsumerCore<M>,
    holder: M::Holder,
}

impl<M: RingMemory + Clone> ConsumerEnd<M> {
    /// Takes the consumer role (`AlreadyAttached` while a live consumer holds it); a new
    /// consumer resumes at the last position released.
    pub(crate) fn attach(mem: M, geo: SpscGeometry, me: Identity) -> Result<Self> {
        let holder = peers::attach_spsc(&mem, Role::Consumer, me.owner, me.pid)?;
        match ConsumerCore::new(mem.clone(), geo) {
            Ok(core) => Ok(ConsumerEnd { core, holder }),
            Err(err) => {
                peers::close_spsc(&mem, Role::Consumer, &holder);
                Err(err)
            }
        }
    }

    pub(crate) fn geometry(&self) -> SpscGeometry {
        self.core.geometry()
    }
}

impl<M: RingMemory> super::ConsumerCore for ConsumerEnd<M> {
    type Memory = M;
    type Msg = Message;

    fn memory(&self) -> &M {
        self.core.memory()
    }
    fn slot(&self) -> u32 {
        peers::CONSUMER_SLOT
    }
    fn max_message(&self) -> usize {
        self.core.geometry().max_message as usize
    }
    #[inline]
    fn try_next(&mut self) -> Result<Message> {
        self.core.try_next()
    }
    #[inline]
    fn msg_len(msg: &Message) -> usize {
        msg.len()
    }
    #[inline]
    fn payload(&self, msg: &Message) -> *const u8 {
        self.core.payload(msg)
    }
    #[inline]
    fn release(&mut self, msg: Message) -> Result<()> {
        self.core.consume(msg);
        Ok(())
    }
    fn publish_released(&mut self) {
        // Inside a batch of releases the batch's end publishes.
        if !self.core.batching {
            self.core.flush();
        }
    }
    fn defer_releases(&mut self) -> Result<()> {
        self.core.defer_releases();
        Ok(())
    }
    fn read_mark(&self) -> Result<ReadMark> {
        Ok(self.core.read_mark())
    }
    fn give_back_to(&mut self, mark: ReadMark) -> Result<()> {
        self.core.give_back_to(mark)
    }
    fn rewind(&mut self) -> Result<()> {
        self.core.rewind()
    }
    fn try_read_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let mut msg = self.core.try_next()?;
        self.core.begin_batch();
        let mut count = 0;
        loop {
            let src = self.core.payload(&msg);
            // SAFETY: the record's payload lies inside the data region (checked by `peek`)
            // and stays untouched by the producer until we release it.
            f(unsafe { core::slice::from_raw_parts(src, msg.len()) });
            self.core.consume(msg);
            count += 1;
            if count == max {
                break;
            }
            match self.core.peek() {
                Ok(Some(next)) => msg = next,
                // Nothing more, or damage: deliver what was good; the next call reports it.
                Ok(None) | Err(_) => break,
            }
        }
        self.core.flush();
        Ok(count)
    }
    fn maintain(&mut self) {
        let _ = peers::reap_spsc(self.core.memory(), Role::Producer, &self.holder);
    }
    fn close(&mut self, _held: Option<Message>) {
        // A message found and not released stays in the ring for the next consumer.
        self.core.close();
        peers::close_spsc(self.core.memory(), Role::Consumer, &self.holder);
    }
}

/// The two role records of an SPSC ring as [`PeerInfo`]s (never-held roles left out);
/// `alive(slot)` says whether a slot's holder lives.
pub(crate) fn peers(ctl: &ControlBlock, alive: impl Fn(u32) -> bool) -> Vec<PeerInfo> {
    let roles = [
        (
            Role::Producer,
            &ctl.peers.producer,
            &ctl.producer.messages,
            &ctl.producer.bytes,
        ),
        (
            Role::Consumer,
            &ctl.peers.consumer,
            &ctl.consumer.messages,
            &ctl.consumer.bytes,
        ),
    ];
    roles
        .into_iter()
        .enumerate()
        .filter_map(|(index, (role, record, messages, bytes))| {
            let state = record.state.load(Acquire);
            let generation = record.generation.load(Relaxed);
            if state == peer_state::FREE && generation == 0 {
                return None;
            }
            let slot = index as u32;
            let status = match state {
                peer_state::ATTACHED if alive(slot) => PeerStatus::Attached,
                peer_state::ATTACHED => PeerStatus::AttachedDead,
                peer_state::CLOSED => PeerStatus::Closed,
                peer_state::DEAD => PeerStatus::Dead,
                // Being attached right now (its holder has the slot, not yet the state).
                _ if alive(slot) => PeerStatus::Attached,
                other => PeerStatus::Unknown(other as u8),
            };
            Some(PeerInfo {
                index: index as u32,
                role: Some(role),
                status,
                pid: record.pid.load(Relaxed),
                generation,
                messages: messages.load(Relaxed),
                bytes: bytes.load(Relaxed),
                name: None,
            })
        })
        .collect()
}

/// Messages published and not yet released, from the two counters alone (cheap enough
/// for telemetry's high-water mark).
pub(crate) fn in_flight(ctl: &ControlBlock) -> u64 {
    let received = ctl.consumer.messages.load(Relaxed);
    ctl.producer.messages.load(Relaxed).saturating_sub(received)
}

/// An SPSC ring's statistics.
pub(crate) fn stats(ctl: &ControlBlock, geometry: SpscGeometry) -> Stats {
    // Consumer first: what it released was sent, so the differences below never go negative
    // for an honest pair (wrapping arithmetic keeps a dishonest one from panicking).
    let received = ctl.consumer.messages.load(Acquire);
    let bytes_received = ctl.consumer.bytes.load(Relaxed);
    let head = ctl.consumer.head.load(Acquire);
    let tail = ctl.producer.tail.load(Acquire);
    let sent = ctl.producer.messages.load(Relaxed);
    let bytes_sent = ctl.producer.bytes.load(Relaxed);
    Stats {
        max_message: geometry.max_message,
        messages_in_flight: sent.saturating_sub(received),
        messages_sent: sent,
        bytes_sent,
        messages_received: received,
        bytes_received,
        ..roles(ctl, 1)
    }
    .with_kind(KindStats::Spsc {
        capacity: geometry.capacity,
        used_bytes: tail.wrapping_sub(head).min(geometry.capacity),
    })
}
