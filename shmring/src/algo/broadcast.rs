//! The broadcast ring: one producer, many readers, each at its own position, over one
//! byte ring of records (the SPSC record format, the payload preceded by a sequence
//! number). The producer never reads what readers read; readers never write the ring.
//!
//! Space is reclaimed by the producer alone. `oldest` (`ConsumerLine::head`) is where the
//! retained records begin: every record from there to the tail is intact. Before the
//! producer writes over bytes, it walks the records there and moves `oldest` past them,
//! then a Release fence, then the new bytes (B1). A reader reads a record (header,
//! sequence number, payload), then an Acquire fence, then `oldest`: if `oldest` passed the
//! record, the producer may have been writing over it meanwhile, so the bytes are dropped
//! and the reader resynchronises at `oldest`, saying how many messages it lost (B2,
//! `Lagged`). `Lossless` rings reclaim only what every counting reader has released (their
//! cursors, C2/P2 as in SPSC); the producer first announces how far it means to go
//! (`ConsumerLine::bytes`, the reclaim *intent*) and looks at the cursors after a SeqCst
//! fence, so a reader joining at the oldest record at that moment either sees the intent
//! and starts beyond it, or is seen (B3). `docs/ordering.md` ("Broadcast") argues each
//! edge.

use super::registry::{self as reg, Membership, Table};
use super::{Identity, ReadMark};
use crate::error::{Error, Result, Role};
use crate::layout::broadcast::{self as bc, CURSOR, MISSED, NAME, NAME_LEN, NEXT_SEQ};
use crate::layout::geometry::{BroadcastGeometry, Policy};
use crate::layout::registry::{ROLE_CONSUMER, ROLE_PRODUCER, split, state};
use crate::layout::{RECORD_HEADER, record};
use crate::memory::RingMemory;
use crate::stats::{PeerInfo, PeerName};
use crate::sync::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::{AtomicU64, fence};

/// The ordering of P1 (publishing a record). Only the loom negative control
/// (`--cfg shmring_weaken_publish`) weakens it.
#[cfg(not(shmring_weaken_publish))]
const PUBLISH: crate::sync::Ordering = Release;
#[cfg(shmring_weaken_publish)]
const PUBLISH: crate::sync::Ordering = Relaxed;

/// The producer's registry record.
const PRODUCER_RECORD: u32 = 0;
/// How much the producer reclaims at once beyond what it needs (a fraction of the ring),
/// so `oldest`, the fences and the look at the readers come once per chunk.
const RECLAIM_CHUNK_SHIFT: u32 = 4;

impl Table for BroadcastGeometry {
    fn records(&self) -> u32 {
        BroadcastGeometry::records(self)
    }
}

/// Where a new reader starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum JoinAt {
    /// With the next message published (like a subscriber).
    #[default]
    Live,
    /// With the oldest message still in the ring (history first).
    Oldest,
}

/// A record header, checked: `None` for "no record here" (zero, or a record of another
/// lap); otherwise where the next record starts and, for a message, its length.
type Decoded = Option<(u64, Option<u64>)>;

/// What the ring's memory holds for both ends.
struct Shared<M: RingMemory> {
    mem: M,
    geo: BroadcastGeometry,
    me: Membership,
    holder: M::Holder,
}

impl<M: RingMemory> Shared<M> {
    #[inline]
    fn offset(&self, pos: u64) -> u64 {
        self.geo.ring_base() + (pos & self.geo.mask())
    }
    #[inline]
    fn header(&self, pos: u64) -> &AtomicU64 {
        self.mem.word(self.offset(pos))
    }
    #[inline]
    fn seq(&self, pos: u64) -> &AtomicU64 {
        self.mem.word(self.offset(pos) + bc::SEQ)
    }
    #[inline]
    fn oldest(&self) -> &AtomicU64 {
        &self.mem.control().consumer.head
    }
    /// Where a `Lossless` producer means to move `oldest` next (B3).
    #[inline]
    fn intent(&self) -> &AtomicU64 {
        &self.mem.control().consumer.bytes
    }
    /// Whether the producer had not reclaimed `pos` when the reads before this call were
    /// made (B2: an Acquire fence, then `oldest`).
    #[inline]
    fn still_retained(&self, pos: u64) -> bool {
        fence(Acquire);
        !is_before(pos, self.oldest().load(Relaxed))
    }
    fn reader_word(&self, index: u32, offset: u64) -> &AtomicU64 {
        self.mem
            .word(u64::from(index) * crate::layout::registry::RECORD_SIZE + offset)
    }

    /// A record header at `pos`, checked: `Ok(None)` for "no record here" (zero, or a
    /// record of another lap), `Ok(Some((next, Some(len))))` for a message, `Some((next,
    /// None))` for padding; `Err` for a word shmring never writes.
    fn decode(&self, pos: u64, word: u64) -> Result<Decoded> {
        let d = record::decode(word);
        if !d.committed || d.tag != record::tag(pos) {
            if !d.committed && word != record::EMPTY {
                return Err(self.corrupt(pos, word, "an uncommitted header that is not empty"));
            }
            return Ok(None);
        }
        let offset = pos & self.geo.mask();
        if d.padding {
            if d.len != 0 || offset == 0 {
                return Err(self.corrupt(pos, word, "a malformed padding record"));
            }
            return Ok(Some((pos.wrapping_add(self.geo.ring - offset), None)));
        }
        if d.len > self.geo.max_message || offset + bc::size(d.len) > self.geo.ring {
            return Err(self.corrupt(pos, word, "a length beyond the ring's limits"));
        }
        Ok(Some((pos.wrapping_add(bc::size(d.len)), Some(d.len))))
    }

    #[cold]
    fn corrupt(&self, pos: u64, word: u64, what: &str) -> Error {
        Error::corrupted(format!(
            "broadcast record header {word:#018x} at position {pos}: {what}"
        ))
    }

    /// `oldest`, then the published tail: the tail is at or after `oldest` (B4: `oldest` is
    /// stored with Release after the tail it does not pass). The producer may have moved
    /// both on since: whatever is read at `oldest` is checked as any read is (B2).
    fn bounds(&self) -> Result<(u64, u64)> {
        let ctl = self.mem.control();
        // ORDERING B4 (pairs with the Release store of `oldest`).
        let oldest = self.oldest().load(Acquire);
        let tail = ctl.producer.tail.load(Acquire);
        if tail % RECORD_HEADER != 0 || oldest % RECORD_HEADER != 0 || is_before(tail, oldest) {
            return Err(Error::corrupted(format!(
                "broadcast tail {tail} and oldest {oldest} are not a valid ring state"
            )));
        }
        Ok((tail, oldest))
    }

    fn close(&self) {
        reg::close(&self.mem, &self.geo, &self.me, &self.holder);
    }

    /// The record at `pos` as a reader reads it: its header word, what that says, and for a
    /// message its sequence number; `None` if the producer had reclaimed `pos` by the time
    /// they were read (B2) — what a reclaimed position holds means nothing, not damage.
    #[inline]
    fn read_record(&self, pos: u64) -> Option<(u64, Result<Decoded>, u64)> {
        // ORDERING C1 (pairs with P1).
        let word = self.header(pos).load(Acquire);
        let decoded = self.decode(pos, word);
        // Only a message record (checked to lie inside the ring) has a sequence word.
        let seq = match decoded {
            Ok(Some((_, Some(_)))) => self.seq(pos).load(Relaxed),
            _ => 0,
        };
        self.still_retained(pos).then_some((word, decoded, seq))
    }

    /// Under loom: the payload of the record at `pos` goes into the data region's atomic
    /// words as well (loom keeps them apart from the bytes), so a model sees a reader's
    /// payload reads race the producer's writes as the hardware would (B1/B2).
    #[cfg(shmring_loom)]
    fn mirror_out(&self, pos: u64, len: u64) {
        let offset = self.offset(pos) + bc::PAYLOAD;
        let words = len.div_ceil(8);
        // SAFETY: the record lies in the ring and records are 8-aligned, so its payload
        // rounded up to whole words does too.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                self.mem.data_ptr().add(offset as usize),
                (words * 8) as usize,
            )
        }
        .to_vec();
        for (k, chunk) in bytes.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.mem.word(offset + 8 * k as u64).store(word, Relaxed);
        }
    }
}

/// Where a claimed record goes.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    start: u64,
    record_pos: u64,
    len: u64,
}

/// The producer of a broadcast ring.
pub struct ProducerCore<M: RingMemory> {
    sh: Shared<M>,
    /// Next write position.
    tail: u64,
    /// `oldest` as this producer last stored it: bytes below it may be written.
    reclaimed_to: u64,
    /// Record starts at least a reclaim chunk apart, from `reclaimed_to` to the tail (this
    /// producer's own, so reclaiming walks no record headers in shared memory).
    checkpoints: std::collections::VecDeque<u64>,
    /// Sequence number of the next record.
    seq: u64,
    bytes: u64,
    unpublished: super::Unpublished,
    batching: bool,
}

impl<M: RingMemory> ProducerCore<M> {
    /// Takes the producer role (`AlreadyAttached` while a live producer holds it) and
    /// continues after the last record any earlier producer published.
    pub(crate) fn attach(mem: M, geo: BroadcastGeometry, me: Identity) -> Result<Self> {
        let holder = mem.new_holder(me.owner)?;
        let record = reg::record(&mem, &geo, PRODUCER_RECORD);
        let Some(membership) = reg::attach_at(
            &mem,
            &geo,
            PRODUCER_RECORD,
            ROLE_PRODUCER,
            &holder,
            me.owner,
        )?
        else {
            return Err(Error::AlreadyAttached {
                role: Role::Producer,
                pid: (record.owner.load(Relaxed) >> 32) as u32,
            });
        };
        let sh = Shared {
            mem,
            geo,
            me: membership,
            holder,
        };
        let mut core = ProducerCore {
            tail: 0,
            reclaimed_to: 0,
            checkpoints: std::collections::VecDeque::new(),
            seq: 0,
            bytes: 0,
            unpublished: super::Unpublished::default(),
            batching: false,
            sh,
        };
        if let Err(e) = core.recover() {
            core.sh.close();
            return Err(e);
        }
        Ok(core)
    }

    /// Continues after the last record published (a dead producer may have published
    /// records after its last `tail` store).
    fn recover(&mut self) -> Result<()> {
        let sh = &self.sh;
        let ctl = sh.mem.control();
        let (mut tail, oldest) = sh.bounds()?;
        if tail.wrapping_sub(oldest) > sh.geo.ring {
            // Nobody else writes them while we hold the role: damage.
            return Err(Error::corrupted(format!(
                "broadcast tail {tail} is more than a ring past oldest {oldest}"
            )));
        }
        let mut seq = ctl.producer.messages.load(Acquire);
        let mut bytes = ctl.producer.bytes.load(Relaxed);
        while tail.wrapping_sub(oldest) < sh.geo.ring - RECORD_HEADER {
            let word = sh.header(tail).load(Acquire);
            let Some((next, len)) = sh.decode(tail, word)? else {
                break;
            };
            if next.wrapping_sub(oldest) > sh.geo.ring - RECORD_HEADER {
                break;
            }
            if let Some(len) = len {
                let found = sh.seq(tail).load(Relaxed);
                if found != seq {
                    return Err(Error::corrupted(format!(
                        "record at {tail} carries sequence {found} while recovering, not {seq}"
                    )));
                }
                seq = seq.wrapping_add(1);
                bytes = bytes.wrapping_add(len);
            }
            tail = next;
        }
        sh.header(tail).store(record::EMPTY, Release);
        ctl.producer.messages.store(seq, Release);
        ctl.producer.bytes.store(bytes, Relaxed);
        ctl.producer.tail.store(tail, Release);
        self.tail = tail;
        self.reclaimed_to = oldest;
        self.seq = seq;
        self.bytes = bytes;
        Ok(())
    }

    /// Reserves room for `len` payload bytes, reclaiming old records if needed.
    #[inline]
    pub(crate) fn try_claim(&mut self, len: usize) -> Result<Claim> {
        let len = len as u64;
        let geo = self.sh.geo;
        if len > geo.max_message {
            return Err(Error::MessageTooLarge {
                len: len as usize,
                max: geo.max_message as usize,
            });
        }
        let size = bc::size(len);
        let room_to_end = geo.ring - (self.tail & geo.mask());
        let record_pos = if size > room_to_end {
            self.tail.wrapping_add(room_to_end)
        } else {
            self.tail
        };
        // The record and the terminator after it.
        let need = record_pos.wrapping_add(size).wrapping_add(RECORD_HEADER);
        if need.wrapping_sub(self.reclaimed_to) > geo.ring {
            // A batch that wraps onto itself is published up to here first (the walk
            // reads the headers it wrote).
            self.flush_keeping_batch();
            self.reclaim(need)?;
        }
        crate::crash::point("producer-claimed");
        Ok(Claim {
            start: self.tail,
            record_pos,
            len,
        })
    }

    /// Makes room up to `need`: moves `oldest` past every record overlapping the bytes to
    /// be written (and a chunk more), zeroes their headers. `WouldBlock` when a counting
    /// reader of a `Lossless` ring has not released them.
    #[cold]
    fn reclaim(&mut self, need: u64) -> Result<()> {
        let geo = self.sh.geo;
        let must = need.wrapping_sub(geo.ring);
        let want = must.wrapping_add(geo.ring >> RECLAIM_CHUNK_SHIFT);
        // How far the readers let us go.
        let limit = match geo.policy {
            Policy::Overwrite => self.tail,
            Policy::Lossless => self.slowest_reader().unwrap_or(self.tail),
        };
        // The first checkpoint past `must` (a chunk of the ring at most beyond it), else
        // (none yet after a takeover, or a reader stops short of it) the records walked.
        let target = match self
            .checkpoints
            .iter()
            .copied()
            .find(|&c| !is_before(c, must))
        {
            Some(c) if !is_before(limit, c) => c,
            _ => self.walk(self.reclaimed_to, want, limit)?,
        };
        if is_before(target, must) {
            return Err(Error::WouldBlock);
        }
        if geo.policy == Policy::Lossless {
            // ORDERING B3 (Dekker with a joining reader's cursor store, fence, look at the
            // intent): either it sees the intent and starts beyond it, or we see its
            // cursor here and leave its records alone.
            // Release: B4, the tail published before comes with it.
            self.sh.intent().store(target, Release);
            // (Only the loom negative control, `--cfg shmring_weaken_join_fence`, drops it.)
            #[cfg(not(shmring_weaken_join_fence))]
            fence(SeqCst);
            if let Some(slowest) = self.slowest_reader() {
                if is_before(slowest, target) {
                    return Err(Error::WouldBlock);
                }
            }
        }
        // ORDERING B1 (pairs with B2): `oldest` moves before any byte below it is written:
        // a reader whose reads saw one of those bytes sees `oldest` past its record. (Only
        // the loom negative control, `--cfg shmring_weaken_reclaim`, announces it after the
        // record is written instead.)
        // Release: B4, the tail published before comes with it.
        #[cfg(not(shmring_weaken_reclaim))]
        self.sh.oldest().store(target, Release);
        fence(Release);
        crate::crash::point("reclaiming");
        self.reclaimed_to = target;
        while self
            .checkpoints
            .front()
            .is_some_and(|&c| !is_before(target, c))
        {
            self.checkpoints.pop_front();
        }
        Ok(())
    }

    /// Walks records from `from` while short of `want`, never past `limit` (a record is
    /// walked over only if it ends at or before `limit`). Returns where it stopped.
    fn walk(&self, from: u64, want: u64, limit: u64) -> Result<u64> {
        let sh = &self.sh;
        let mut pos = from;
        while is_before(pos, want) && is_before(pos, limit) {
            let word = sh.header(pos).load(Relaxed);
            let Some((next, _)) = sh.decode(pos, word)? else {
                return Err(sh.corrupt(pos, word, "no record where the producer wrote one"));
            };
            if is_before(limit, next) {
                break;
            }
            pos = next;
        }
        Ok(pos)
    }

    /// The cursor of the reader furthest behind among those the producer waits for:
    /// attached, within one ring of the tail and within the lag limit. `None` if none.
    fn slowest_reader(&self) -> Option<u64> {
        let sh = &self.sh;
        let mut slowest: Option<u64> = None;
        for index in 1..sh.geo.records() {
            let rec = reg::record(&sh.mem, &sh.geo, index);
            let (_, role, st) = split(rec.gen_state.load(Acquire));
            if role != ROLE_CONSUMER || st != state::ATTACHED {
                continue;
            }
            // ORDERING P2 (pairs with C2): Acquire, so the reader's reads of what it
            // released happen before we overwrite it.
            let cursor = sh.reader_word(index, CURSOR).load(Acquire);
            let behind = self.tail.wrapping_sub(cursor);
            if cursor % RECORD_HEADER != 0 || behind > sh.geo.lag_limit {
                // Not a position it could read (being attached), or demoted by the limit.
                continue;
            }
            if slowest.is_none_or(|s| self.tail.wrapping_sub(s) < behind) {
                slowest = Some(cursor);
            }
        }
        slowest
    }

    #[inline]
    pub(crate) fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        let offset = self.sh.offset(claim.record_pos) + bc::PAYLOAD;
        self.sh.mem.track_write(offset, claim.len);
        // SAFETY: `try_claim` placed the whole record inside the byte ring, which lies
        // inside the data region.
        unsafe { self.sh.mem.data_ptr().add(offset as usize) }
    }

    #[inline]
    pub(crate) fn commit(&mut self, claim: Claim, len: usize) {
        crate::crash::point("producer-written");
        let len = (len as u64).min(claim.len);
        let end = claim.record_pos.wrapping_add(bc::size(len));
        #[cfg(shmring_loom)]
        self.sh.mirror_out(claim.record_pos, len);
        let sh = &self.sh;
        sh.seq(claim.record_pos).store(self.seq, Relaxed);
        // The terminator (ordered before readers' view by the publishing store, P1).
        sh.header(end).store(record::EMPTY, Relaxed);
        if claim.start != claim.record_pos {
            let offset = self.sh.offset(claim.start);
            self.unpublished
                .header(&self.sh.mem, offset, record::padding(claim.start, 0));
        }
        let offset = self.sh.offset(claim.record_pos);
        self.unpublished
            .header(&self.sh.mem, offset, record::message(claim.record_pos, len));
        let chunk = self.sh.geo.ring >> RECLAIM_CHUNK_SHIFT;
        if self
            .checkpoints
            .back()
            .is_none_or(|&last| claim.record_pos.wrapping_sub(last) >= chunk)
        {
            self.checkpoints.push_back(claim.record_pos);
        }
        self.tail = end;
        self.seq = self.seq.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len);
        #[cfg(shmring_weaken_reclaim)]
        self.sh.oldest().store(self.reclaimed_to, Release);
        if !self.batching {
            self.flush();
        }
    }

    #[inline]
    pub(crate) fn try_write(&mut self, msg: &[u8]) -> Result<()> {
        let claim = self.try_claim(msg.len())?;
        let dst = self.payload_ptr(&claim);
        // SAFETY: `dst` has room for `msg.len()` bytes (see `payload_ptr`); nobody reads the
        // claimed range before it is published.
        unsafe { core::ptr::copy_nonoverlapping(msg.as_ptr(), dst, msg.len()) };
        self.commit(claim, msg.len());
        Ok(())
    }

    /// Publishes everything committed since the last flush with one Release store.
    #[inline]
    pub(crate) fn flush(&mut self) {
        self.batching = false;
        self.flush_keeping_batch();
    }

    #[inline]
    fn flush_keeping_batch(&mut self) {
        if let Some((offset, word)) = self.unpublished.take() {
            // ORDERING P1 (pairs with C1): payloads, sequence words, later headers and the
            // terminator before the first header.
            self.sh.mem.word(offset).store(word, PUBLISH);
            crate::crash::point("producer-published");
            let line = &self.sh.mem.control().producer;
            // After the publish: a reader that counts from it never counts a message as
            // sent before it is there (it skips what it counted as missed).
            line.messages.store(self.seq, Release);
            line.bytes.store(self.bytes, Relaxed);
            line.tail.store(self.tail, Release);
        }
    }
}

impl<M: RingMemory> super::ProducerCore for ProducerCore<M> {
    type Memory = M;
    type Claim = Claim;

    fn memory(&self) -> &M {
        &self.sh.mem
    }
    fn slot(&self) -> u32 {
        PRODUCER_RECORD
    }
    fn max_message(&self) -> usize {
        self.sh.geo.max_message as usize
    }
    #[inline]
    fn try_claim(&mut self, len: usize) -> Result<Claim> {
        ProducerCore::try_claim(self, len)
    }
    fn claim_len(claim: &Claim) -> usize {
        claim.len as usize
    }
    #[inline]
    fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        ProducerCore::payload_ptr(self, claim)
    }
    #[inline]
    fn commit(&mut self, claim: Claim, len: usize) -> Result<()> {
        ProducerCore::commit(self, claim, len);
        Ok(())
    }
    fn cancel(&mut self, _claim: Claim) {
        // Plain data: nothing was published.
    }
    #[inline]
    fn try_write(&mut self, msg: &[u8]) -> Result<()> {
        ProducerCore::try_write(self, msg)
    }
    fn try_write_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        super::check_batch(msgs, self.sh.geo.max_message as usize)?;
        let was_batching = self.batching;
        self.batching = true;
        let sent = super::write_each(msgs, |msg| ProducerCore::try_write(self, msg));
        if !was_batching {
            self.flush();
        }
        sent
    }
    fn batching(&self) -> bool {
        self.batching
    }
    fn position(&self) -> Result<u64> {
        // Stored by this producer at every publish and when it attached (after recovering
        // what a dead one published).
        Ok(self.sh.mem.control().producer.tail.load(Relaxed))
    }
    fn maintain(&mut self) {
        // Dead readers stop counting for back-pressure once reaped.
        reg::reap(
            &self.sh.mem,
            &self.sh.geo,
            ROLE_CONSUMER,
            &self.sh.holder,
            PRODUCER_RECORD,
        );
    }
    fn close(&mut self) {
        self.flush();
        self.sh.close();
    }
}

/// Whether stream position `a` comes before `b` (they are within 2^63 of each other).
#[inline]
fn is_before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

/// A message found by a reader: its place and sequence number.
#[derive(Clone, Copy, Debug)]
pub struct Message {
    pos: u64,
    len: u64,
    seq: u64,
}

/// How a reader attaches.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReaderOptions {
    /// A durable name: resume where the last holder of the name released.
    pub name: Option<PeerName>,
    /// Where a new reader (or a name never used) starts.
    pub join: JoinAt,
}

/// A reader of a broadcast ring.
pub struct ConsumerCore<M: RingMemory> {
    sh: Shared<M>,
    /// Position of the next record to read.
    cursor: u64,
    /// Sequence number expected there.
    next_seq: u64,
    /// No record seen since joining: `next_seq` is only a lower bound.
    fresh: bool,
    /// Whether the producer may overwrite what this reader has not released (records are
    /// then copied and checked before a batch callback sees them).
    may_be_overwritten: bool,
    /// A gap found while releasing inside a batch, told by the next receive.
    pending_lag: u64,
    batching: bool,
    unpublished: bool,
    /// Deferred releases: the cursor published is this mark's (position, next sequence
    /// number, counters), not `cursor`.
    deferred: Option<ReadMark>,
    messages: u64,
    bytes: u64,
    missed: u64,
    scratch: Vec<u8>,
    /// Under loom: where payloads read through atomic words go (`mirror_in`).
    #[cfg(shmring_loom)]
    mirror: crate::sync::RawCell<Box<[u8]>>,
}

impl<M: RingMemory> ConsumerCore<M> {
    /// Attaches a reader as `options` say.
    pub(crate) fn attach(
        mem: M,
        geo: BroadcastGeometry,
        me: Identity,
        options: &ReaderOptions,
    ) -> Result<Self> {
        let holder = mem.new_holder(me.owner)?;
        let (membership, resumed) = match &options.name {
            Some(name) => attach_named(&mem, &geo, &holder, me.owner, name)?,
            None => {
                let unnamed =
                    |index: u32| index != PRODUCER_RECORD && read_name(&mem, index).is_none();
                let m = reg::attach_where(&mem, &geo, ROLE_CONSUMER, &holder, me.owner, unnamed)?;
                (m, false)
            }
        };
        let may_be_overwritten = geo.policy == Policy::Overwrite || geo.lag_limit < geo.ring;
        let mut core = ConsumerCore {
            sh: Shared {
                mem,
                geo,
                me: membership,
                holder,
            },
            cursor: 0,
            next_seq: 0,
            fresh: true,
            may_be_overwritten,
            pending_lag: 0,
            batching: false,
            unpublished: false,
            deferred: None,
            messages: 0,
            bytes: 0,
            missed: 0,
            scratch: Vec::new(),
            #[cfg(shmring_loom)]
            mirror: crate::sync::RawCell::new(
                vec![0; (geo.max_message.div_ceil(8) * 8) as usize].into_boxed_slice(),
            ),
        };
        // A durable name's counters go on from where its last holder left them; a new
        // reader's record starts from zero (what it held goes to the retired totals).
        let index = core.sh.me.index;
        if !resumed {
            reg::retire(&core.sh.mem, &core.sh.geo, index, ROLE_CONSUMER);
            core.sh.reader_word(index, MISSED).store(0, Relaxed);
        }
        let rec = reg::record(&core.sh.mem, &core.sh.geo, index);
        core.messages = rec.messages.load(Relaxed);
        core.bytes = rec.bytes.load(Relaxed);
        core.missed = core.sh.reader_word(index, MISSED).load(Relaxed);
        let placed = if resumed {
            core.resume()
        } else {
            core.join(options.join)
        };
        if let Err(e) = placed {
            core.sh.close();
            return Err(e);
        }
        Ok(core)
    }

    /// A durable reader comes back where its name's last holder released.
    fn resume(&mut self) -> Result<()> {
        let index = self.sh.me.index;
        self.cursor = self.sh.reader_word(index, CURSOR).load(Acquire);
        self.next_seq = self.sh.reader_word(index, NEXT_SEQ).load(Relaxed);
        self.fresh = false;
        let (tail, _) = self.sh.bounds()?;
        if self.cursor % RECORD_HEADER != 0 || tail.wrapping_sub(self.cursor) > self.sh.geo.ring {
            // Further behind than the ring holds (or never a position): overwritten.
            let missed = self.resync(self.next_seq)?;
            self.pending_lag = self.pending_lag.saturating_add(missed);
        }
        self.publish_cursor();
        Ok(())
    }

    /// A new reader takes its place at the live end or the oldest record, then makes sure
    /// the producer sees it before reclaiming past it (B3).
    fn join(&mut self, at: JoinAt) -> Result<()> {
        for _ in 0..64 {
            let count = self.sh.mem.control().producer.messages.load(Acquire);
            let (tail, front) = self.front()?;
            self.cursor = match at {
                JoinAt::Live => tail,
                JoinAt::Oldest => front,
            };
            self.next_seq = match at {
                JoinAt::Live => count,
                JoinAt::Oldest => self.first_seq(front)?.unwrap_or(count),
            };
            self.publish_cursor();
            // ORDERING B3 (Dekker with the producer's intent store, fence, look at the
            // cursors): if it did not see our cursor, we see how far it is going.
            fence(SeqCst);
            let (_, front) = self.front()?;
            if !is_before(self.cursor, front) {
                return Ok(());
            }
        }
        Err(Error::corrupted(
            "the oldest position kept moving past a joining reader for 64 attempts",
        ))
    }

    /// The published tail, and where the retained records begin as far as a joining
    /// reader may count on: `oldest`, or the producer's reclaim intent when it lies between
    /// `oldest` and the tail (the producer may be about to move `oldest` there).
    fn front(&self) -> Result<(u64, u64)> {
        // ORDERING B4: the intent (stored with Release after the tail it does not pass)
        // before the tail.
        let intent = self.sh.intent().load(Acquire);
        let (tail, oldest) = self.sh.bounds()?;
        let planned = !is_before(intent, oldest) && !is_before(tail, intent);
        Ok((tail, if planned { intent } else { oldest }))
    }

    /// The sequence number of the first message at `pos` (past one padding record), if
    /// one is published there intact.
    fn first_seq(&self, mut pos: u64) -> Result<Option<u64>> {
        for _ in 0..2 {
            // Reclaimed meanwhile (the producer may have lapped us again since `oldest`
            // was read): nothing to count from.
            let Some((_, decoded, seq)) = self.sh.read_record(pos) else {
                return Ok(None);
            };
            match decoded? {
                Some((next, None)) => pos = next,
                Some((_, Some(_))) => return Ok(Some(seq)),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Stores where this reader is (its durable cursor, and what the producer waits for).
    fn publish_cursor(&mut self) {
        let index = self.sh.me.index;
        let mark = self.deferred.unwrap_or_else(|| self.read_mark());
        self.sh
            .reader_word(index, NEXT_SEQ)
            .store(mark.seq(), Relaxed);
        // ORDERING C2 (pairs with P2): Release, so our reads of what we released happen
        // before the producer, having Acquired the cursor, overwrites it.
        self.sh
            .reader_word(index, CURSOR)
            .store(mark.position(), Release);
        let rec = reg::record(&self.sh.mem, &self.sh.geo, index);
        let (messages, bytes) = mark.counts();
        rec.messages.store(messages, Relaxed);
        rec.bytes.store(bytes, Relaxed);
        self.unpublished = false;
    }

    /// After the producer overwrote what we were about to read (from sequence `lost_from`
    /// on): go to `oldest`; returns how many messages were lost, and expects the next.
    #[cold]
    fn resync(&mut self, lost_from: u64) -> Result<u64> {
        let (_, oldest) = self.sh.bounds()?;
        let first = self.first_seq(oldest)?;
        // Nothing there yet: the next message will carry the count of those published.
        let first = match first {
            Some(seq) => seq,
            None => self.sh.mem.control().producer.messages.load(Acquire),
        };
        self.cursor = oldest;
        self.fresh = false;
        let missed = first.saturating_sub(lost_from);
        self.next_seq = self.next_seq.max(first);
        self.missed = self.missed.saturating_add(missed);
        self.sh
            .reader_word(self.sh.me.index, MISSED)
            .store(self.missed, Relaxed);
        self.unpublished = true;
        Ok(missed)
    }

    /// The next message, or why there is none.
    #[inline]
    pub(crate) fn try_next(&mut self) -> Result<Message> {
        if self.pending_lag > 0 {
            let missed = core::mem::take(&mut self.pending_lag);
            return Err(Error::Lagged { missed });
        }
        // Each turn moves past padding or a message already counted as missed (a ring
        // holds at most ring / 8 of those), or resynchronises after being lapped (which
        // an honest producer cannot make happen a thousand times in a row): more is damage.
        let mut turns = 0u64;
        loop {
            turns += 1;
            if turns > self.sh.geo.ring / 8 + 1024 {
                return Err(Error::corrupted(
                    "a reader went round the ring without finding its place",
                ));
            }
            let pos = self.cursor;
            let Some((word, decoded, seq)) = self.sh.read_record(pos) else {
                let missed = self.resync(self.next_seq)?;
                if missed > 0 {
                    return Err(Error::Lagged { missed });
                }
                continue;
            };
            let Some((next, len)) = decoded? else {
                if word != record::EMPTY {
                    return Err(self
                        .sh
                        .corrupt(pos, word, "a header tagged for another position"));
                }
                return self.nothing_yet(pos);
            };
            let Some(len) = len else {
                self.cursor = next;
                continue;
            };
            if self.fresh {
                self.fresh = false;
                self.next_seq = seq;
            }
            if is_seq_before(seq, self.next_seq) {
                // Counted as missed when we resynchronised: skip it.
                self.cursor = next;
                self.unpublished = true;
                continue;
            }
            if seq != self.next_seq {
                let missed = seq.wrapping_sub(self.next_seq);
                self.next_seq = seq;
                self.missed = self.missed.saturating_add(missed);
                return Err(Error::Lagged { missed });
            }
            return Ok(Message { pos, len, seq });
        }
    }

    /// Nothing published at `pos`: `WouldBlock`, or the end of the stream once the
    /// producer has left (C3: one more look after seeing it gone).
    #[cold]
    fn nothing_yet(&mut self, pos: u64) -> Result<Message> {
        let words = crate::peers::slot_words(self.sh.geo.records());
        let end = crate::peers::ended(self.sh.mem.control(), Role::Producer, words);
        let Some(end) = end else {
            if self.unpublished {
                self.flush();
            }
            return Err(Error::WouldBlock);
        };
        let word = self.sh.header(pos).load(Acquire);
        if word != record::EMPTY || !self.sh.still_retained(pos) {
            // Published (or reclaimed) meanwhile: look again.
            return self.try_next();
        }
        self.flush();
        Err(end.report(self.sh.mem.control()))
    }

    #[inline]
    pub(crate) fn payload(&self, msg: &Message) -> *const u8 {
        let offset = self.sh.offset(msg.pos) + bc::PAYLOAD;
        if !self.may_be_overwritten {
            // Where the producer may overwrite unread records, reading bytes it is writing
            // is expected (and the reader drops them, B2): not a race to report.
            self.sh.mem.track_read(offset, msg.len);
        }
        #[cfg(shmring_loom)]
        if self.may_be_overwritten {
            return self.mirror_in(msg.pos, msg.len);
        }
        // SAFETY: `decode` checked the record lies inside the byte ring.
        unsafe { self.sh.mem.data_ptr().add(offset as usize) }
    }

    /// Under loom: the payload of the record at `pos` read from the data region's atomic
    /// words (see `Shared::mirror_out`) into this reader's own buffer, whose address is
    /// returned: the model sees every byte the reader uses come from a load that may race
    /// the producer's stores, as on the hardware, and none from bytes loom does not order.
    #[cfg(shmring_loom)]
    fn mirror_in(&self, pos: u64, len: u64) -> *const u8 {
        let offset = self.sh.offset(pos) + bc::PAYLOAD;
        // SAFETY: this reader is the buffer's only user, and a slice handed out of it is
        // used before the next call.
        let buffer = unsafe { &mut *crate::sync::RawCell::raw_get(&self.mirror) };
        for k in 0..len.div_ceil(8) as usize {
            let word = self.sh.mem.word(offset + 8 * k as u64).load(Relaxed);
            // The buffer holds max_message rounded up to whole words.
            buffer[8 * k..8 * k + 8].copy_from_slice(&word.to_le_bytes());
        }
        buffer.as_ptr()
    }

    /// Moves past `msg` if its bytes were intact while used; `Lagged` (and the reader
    /// moves to the oldest record) if the producer overwrote them meanwhile.
    #[inline]
    pub(crate) fn release(&mut self, msg: Message) -> Result<()> {
        // ORDERING B2: the bytes used count only if the record was still retained after.
        if !self.sh.still_retained(msg.pos) {
            let missed = self.resync(msg.seq)?;
            self.flush();
            return Err(Error::Lagged { missed });
        }
        crate::crash::point("consumer-read");
        self.cursor = msg.pos.wrapping_add(bc::size(msg.len));
        self.next_seq = msg.seq.wrapping_add(1);
        self.messages = self.messages.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(msg.len);
        if self.deferred.is_some() {
            return Ok(());
        }
        self.unpublished = true;
        if !self.batching {
            self.flush();
        }
        Ok(())
    }

    /// Where this reader has read to.
    fn read_mark(&self) -> ReadMark {
        ReadMark::new(self.cursor, self.next_seq, (self.messages, self.bytes))
    }

    /// From now on released records stay held (and are read again by the name's next
    /// holder) until `give_back_to`.
    fn defer_releases(&mut self) {
        if self.deferred.is_none() {
            self.flush();
            self.deferred = Some(self.read_mark());
        }
    }

    /// Gives back every record before `mark` (deferred releases).
    fn give_back_to(&mut self, mark: ReadMark) -> Result<()> {
        let Some(given_back) = self.deferred.map(|m| m.position()) else {
            return Err(Error::invalid_argument(
                "releases are not deferred on this reader: call defer_releases first",
            ));
        };
        let pos = mark.position();
        if pos.wrapping_sub(given_back) > self.cursor.wrapping_sub(given_back) {
            return Err(Error::invalid_argument(format!(
                "read mark {pos} is not between the last one given back ({given_back}) and \
                 the last read ({})",
                self.cursor
            )));
        }
        if pos != given_back {
            self.deferred = Some(mark);
            self.unpublished = true;
            self.flush();
        }
        Ok(())
    }

    #[inline]
    fn flush(&mut self) {
        self.batching = false;
        if self.unpublished {
            self.publish_cursor();
            crate::crash::point("consumer-released");
        }
    }
}

/// Whether sequence number `a` comes before `b`.
#[inline]
fn is_seq_before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

/// The name in reader record `index` (`None`: anonymous).
fn read_name<M: RingMemory>(mem: &M, index: u32) -> Option<PeerName> {
    let base = u64::from(index) * crate::layout::registry::RECORD_SIZE + NAME;
    let mut bytes = [0u8; NAME_LEN];
    for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        let word = mem.word(base + 8 * i as u64).load(Acquire);
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    PeerName::from_bytes(bytes)
}

fn write_name<M: RingMemory>(mem: &M, index: u32, name: Option<&PeerName>) {
    let base = u64::from(index) * crate::layout::registry::RECORD_SIZE + NAME;
    let bytes = name.map(|n| *n.as_bytes_padded()).unwrap_or([0; NAME_LEN]);
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        mem.word(base + 8 * i as u64).store(word, Release);
    }
}

/// Takes the record of durable reader `name`: its existing record (`AlreadyAttached` while
/// a live reader holds it), or a free unnamed one that gets the name. Returns whether it
/// resumes an existing cursor.
fn attach_named<M: RingMemory>(
    mem: &M,
    geo: &BroadcastGeometry,
    holder: &M::Holder,
    owner: u64,
    name: &PeerName,
) -> Result<(Membership, bool)> {
    let find = || (1..geo.records()).find(|&i| read_name(mem, i).as_ref() == Some(name));
    for _ in 0..4 {
        if let Some(index) = find() {
            return match reg::attach_at(mem, geo, index, ROLE_CONSUMER, holder, owner)? {
                Some(m) => Ok((m, true)),
                None => Err(Error::AlreadyAttached {
                    role: Role::Consumer,
                    pid: (reg::record(mem, geo, index).owner.load(Relaxed) >> 32) as u32,
                }),
            };
        }
        let unnamed = |index: u32| index != PRODUCER_RECORD && read_name(mem, index).is_none();
        let m = reg::attach_where(mem, geo, ROLE_CONSUMER, holder, owner, unnamed)?;
        write_name(mem, m.index, Some(name));
        // Two processes may have taken the same new name at once: the lower record keeps
        // it (Dekker: each stores its name, then looks for the other's).
        fence(SeqCst);
        let rival = (1..m.index).any(|i| read_name(mem, i).as_ref() == Some(name));
        if !rival {
            return Ok((m, false));
        }
        write_name(mem, m.index, None);
        reg::close(mem, geo, &m, holder);
    }
    Err(Error::corrupted(format!(
        "the durable reader name {name} kept moving between records"
    )))
}

/// Forgets durable reader `name` (its cursor and counters): `Ok(false)` if no record has
/// it, `AlreadyAttached` while a live reader holds it.
pub(crate) fn forget<M: RingMemory>(
    mem: &M,
    geo: &BroadcastGeometry,
    name: &PeerName,
    owner: u64,
) -> Result<bool> {
    let holder = mem.new_holder(owner)?;
    let Some(index) = (1..geo.records()).find(|&i| read_name(mem, i).as_ref() == Some(name)) else {
        return Ok(false);
    };
    let Some(m) = reg::attach_at(mem, geo, index, ROLE_CONSUMER, &holder, owner)? else {
        return Err(Error::AlreadyAttached {
            role: Role::Consumer,
            pid: (reg::record(mem, geo, index).owner.load(Relaxed) >> 32) as u32,
        });
    };
    write_name(mem, index, None);
    reg::close(mem, geo, &m, &holder);
    Ok(true)
}

impl<M: RingMemory> super::ConsumerCore for ConsumerCore<M> {
    type Memory = M;
    type Msg = Message;

    fn memory(&self) -> &M {
        &self.sh.mem
    }
    fn slot(&self) -> u32 {
        self.sh.me.index
    }
    fn max_message(&self) -> usize {
        self.sh.geo.max_message as usize
    }
    #[inline]
    fn try_next(&mut self) -> Result<Message> {
        ConsumerCore::try_next(self)
    }
    fn msg_len(msg: &Message) -> usize {
        msg.len as usize
    }
    #[inline]
    fn payload(&self, msg: &Message) -> *const u8 {
        ConsumerCore::payload(self, msg)
    }
    #[inline]
    fn release(&mut self, msg: Message) -> Result<()> {
        ConsumerCore::release(self, msg)
    }
    fn defer_releases(&mut self) -> Result<()> {
        ConsumerCore::defer_releases(self);
        Ok(())
    }
    fn read_mark(&self) -> Result<ReadMark> {
        Ok(ConsumerCore::read_mark(self))
    }
    fn give_back_to(&mut self, mark: ReadMark) -> Result<()> {
        ConsumerCore::give_back_to(self, mark)
    }
    fn rewind(&mut self) -> Result<()> {
        let Some(mark) = self.deferred else {
            return Err(Error::invalid_argument(
                "releases are not deferred on this reader: nothing to read again",
            ));
        };
        // What was overwritten since (Overwrite, or a lag limit) is told as `Lagged` by the
        // next receive, as for any reader that fell behind.
        self.cursor = mark.position();
        self.next_seq = mark.seq();
        (self.messages, self.bytes) = mark.counts();
        Ok(())
    }
    fn try_read_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let mut msg = ConsumerCore::try_next(self)?;
        self.batching = true;
        let mut count = 0;
        loop {
            let src = ConsumerCore::payload(self, &msg);
            let len = msg.len as usize;
            let released = if self.may_be_overwritten {
                // Copied and checked before the callback sees it: never torn bytes.
                let mut scratch = core::mem::take(&mut self.scratch);
                scratch.clear();
                // SAFETY: the record lies inside the byte ring (checked by `decode`).
                scratch.extend_from_slice(unsafe { core::slice::from_raw_parts(src, len) });
                let released = ConsumerCore::release(self, msg);
                if released.is_ok() {
                    f(&scratch);
                }
                self.scratch = scratch;
                released
            } else {
                // SAFETY: as above; in a Lossless ring without a lag limit the producer
                // does not reclaim a record this counting reader has not released.
                f(unsafe { core::slice::from_raw_parts(src, len) });
                ConsumerCore::release(self, msg)
            };
            match released {
                Ok(()) => count += 1,
                Err(Error::Lagged { missed }) if count > 0 => {
                    self.pending_lag = self.pending_lag.saturating_add(missed);
                    break;
                }
                Err(e) => {
                    self.flush();
                    return Err(e);
                }
            }
            if count == max {
                break;
            }
            match ConsumerCore::try_next(self) {
                Ok(next) => msg = next,
                Err(Error::Lagged { missed }) => {
                    self.pending_lag = self.pending_lag.saturating_add(missed);
                    break;
                }
                Err(_) => break,
            }
        }
        self.flush();
        Ok(count)
    }
    fn maintain(&mut self) {
        reg::reap(
            &self.sh.mem,
            &self.sh.geo,
            ROLE_PRODUCER,
            &self.sh.holder,
            self.sh.me.index,
        );
    }
    fn close(&mut self, _held: Option<Message>) {
        // A message found and not released is read again by the name's next holder.
        self.flush();
        self.sh.close();
    }
}

/// One reader record as [`readers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReaderRecord {
    pub peer: PeerInfo,
    pub cursor: u64,
    pub next_seq: u64,
    pub missed: u64,
}

/// Every reader record that has been held, with its cursor.
pub(crate) fn readers<M: RingMemory>(mem: &M, geo: &BroadcastGeometry) -> Vec<ReaderRecord> {
    peers(mem, geo)
        .into_iter()
        .filter(|p| p.index != PRODUCER_RECORD)
        .map(|peer| {
            let word = |offset| {
                mem.word(u64::from(peer.index) * crate::layout::registry::RECORD_SIZE + offset)
                    .load(Relaxed)
            };
            ReaderRecord {
                cursor: word(CURSOR),
                next_seq: word(NEXT_SEQ),
                missed: word(MISSED),
                peer,
            }
        })
        .collect()
}

/// Every record that has been held (the producer's first), readers with their names.
pub(crate) fn peers<M: RingMemory>(mem: &M, geo: &BroadcastGeometry) -> Vec<PeerInfo> {
    let mut peers = reg::list(mem, geo);
    for peer in &mut peers {
        if peer.index == PRODUCER_RECORD {
            // The producer counts in its line, not its record.
            let line = &mem.control().producer;
            peer.messages = line.messages.load(Relaxed);
            peer.bytes = line.bytes.load(Relaxed);
        } else {
            peer.name = read_name(mem, peer.index);
        }
    }
    peers
}

/// Messages the slowest attached reader has not yet released.
pub(crate) fn in_flight<M: RingMemory>(mem: &M, geo: &BroadcastGeometry) -> u64 {
    let sent = mem.control().producer.messages.load(Relaxed);
    (1..geo.records())
        .filter(|&i| {
            let (_, role, st) = split(reg::record(mem, geo, i).gen_state.load(Relaxed));
            role == ROLE_CONSUMER && st == state::ATTACHED
        })
        .map(|i| {
            let next = mem
                .word(u64::from(i) * crate::layout::registry::RECORD_SIZE + NEXT_SEQ)
                .load(Relaxed);
            sent.saturating_sub(next)
        })
        .max()
        .unwrap_or(0)
}
