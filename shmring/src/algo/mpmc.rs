//! The MPMC slot ring: the lock-free algorithm, on any [`RingMemory`].
//!
//! Vyukov's bounded queue with variable-length slots. Positions are free-running `u64`s;
//! position `pos` lives in slot `pos mod slot_count`, whose sequence word reads `pos` while
//! the slot waits for that position's producer, `pos + 1` once published, and
//! `pos + slot_count` once its consumer released it (free for the next lap).
//!
//! - A producer reads `tail`, checks the slot's sequence is `tail`, stores its claim word
//!   (K1), takes the position with a compare-and-swap on `tail`, writes length and payload,
//!   publishes with a Release store of `pos + 1` (P1), and clears its claim.
//! - A consumer reads `head`, checks the sequence is `head + 1` (Acquire, C1), stores its
//!   claim word, takes the position with a compare-and-swap on `head`, reads, and releases
//!   with a Release store of `pos + slot_count` (R1), then clears its claim.
//!
//! Recovery: a position that was taken (`tail` or `head` is past it) but not finished, and
//! that no live holder claims, belongs to a dead process. A consumer stuck on a dead
//! producer's claim takes the position and frees the slot unpublished (a *skip*); a producer
//! stuck on a dead consumer's claim frees the slot (the message is *dropped*, it went to a
//! process that died). A live process, however slow or stopped, is never skipped.
//! `docs/ordering.md` names the edges; `docs/reliability.md` states the guarantee.
//!
//! Priority lanes: a ring may have up to 32 lanes, each a queue of its own as above (its
//! own `tail`, `head` and slots; one registry and one pair of role lines for all). A
//! producer writes to the lane it is set to; a consumer looks at its selected lanes from
//! the highest down and takes from the first that has a message, so a message committed
//! in a higher lane before a receive begins is taken before any lower one
//! (`docs/lanes.md`). Claim words name their lane, so recovery is per lane.

use super::registry::{self as reg, Membership};
use crate::error::{Error, Result, Role};
use crate::layout::geometry::MpmcGeometry;
use crate::layout::registry::{ROLE_CONSUMER, ROLE_PRODUCER, claim};
use crate::layout::slot;
use crate::memory::RingMemory;
use crate::stats::{KindStats, LaneStats, Stats, roles};
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync::{AtomicU64, spin_loop};

/// The ordering of P1. Only the loom negative control (`--cfg shmring_weaken_publish`)
/// weakens it, to show that the loom model catches a Relaxed publish.
#[cfg(not(shmring_weaken_publish))]
const PUBLISH: crate::sync::Ordering = Release;
#[cfg(shmring_weaken_publish)]
const PUBLISH: crate::sync::Ordering = Relaxed;

/// A slot's length word for a claim given back unused (a dropped grant): consumers skip it.
const CANCELLED: u64 = u64::MAX;
/// Compare-and-swap attempts on `tail`/`head` per call before answering `WouldBlock`
/// (only a hostile peer makes a call lose this many races in a row).
const CAS_ATTEMPTS: u32 = 1 << 12;
/// Longest batch one call takes.
pub(crate) const MAX_BATCH: u64 = 1024;

/// Positions a producer or consumer took: `count` consecutive from `pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub pos: u64,
    pub count: u64,
}

/// Writes the initial sequence words of an empty ring whose first position is `first`,
/// in every lane, and the cursors of lanes 1 and up (creator, before READY; lane 0's
/// cursors are the control block's, set with the header).
pub(crate) fn init_slots<M: RingMemory>(mem: &M, geo: &MpmcGeometry, first: u64) {
    for lane in 0..geo.lanes {
        if lane > 0 {
            let cursors = geo.lane_cursors(lane);
            mem.word(cursors).store(first, Relaxed);
            mem.word(cursors + slot::LANE_HEAD).store(first, Relaxed);
        }
        for i in 0..geo.slot_count {
            let pos = first.wrapping_add(i);
            mem.word(geo.slot_offset(lane, pos) + slot::SEQ)
                .store(pos, Relaxed);
        }
    }
}

/// Lane `lane`'s producer cursor: the next position a producer takes.
#[inline]
fn tail_of<'m, M: RingMemory>(mem: &'m M, geo: &MpmcGeometry, lane: u32) -> &'m AtomicU64 {
    if lane == 0 {
        &mem.control().producer.tail
    } else {
        mem.word(geo.lane_cursors(lane))
    }
}

/// Lane `lane`'s consumer cursor: the next position a consumer takes.
#[inline]
fn head_of<'m, M: RingMemory>(mem: &'m M, geo: &MpmcGeometry, lane: u32) -> &'m AtomicU64 {
    if lane == 0 {
        &mem.control().consumer.head
    } else {
        mem.word(geo.lane_cursors(lane) + slot::LANE_HEAD)
    }
}

/// What both ends share: memory, geometry, the registry record this handle holds, and
/// the holder of that record's lock.
pub(crate) struct Shared<M: RingMemory> {
    mem: M,
    geo: MpmcGeometry,
    me: Membership,
    holder: M::Holder,
    /// Words of the per-slot bit arrays this ring uses.
    words: usize,
}

impl<M: RingMemory> Shared<M> {
    /// Takes a registry record for `role`; `owner` is this process's owner word.
    fn attach(mem: M, geo: MpmcGeometry, role: u64, owner: u64) -> Result<Self> {
        let holder = mem.new_holder(owner)?;
        let me = reg::attach(&mem, &geo, role, &holder, owner)?;
        Ok(Shared {
            mem,
            geo,
            me,
            holder,
            words: crate::peers::slot_words(geo.max_peers),
        })
    }

    /// Looks for dead holders of `role` and recovers their records.
    fn reap(&self, role: u64) {
        reg::reap(&self.mem, &self.geo, role, &self.holder, self.me.index);
    }

    /// Gives this handle's record back.
    fn close(&self) {
        reg::close(&self.mem, &self.geo, &self.me, &self.holder);
    }

    #[inline]
    fn tail(&self, lane: u32) -> &AtomicU64 {
        tail_of(&self.mem, &self.geo, lane)
    }

    #[inline]
    fn head(&self, lane: u32) -> &AtomicU64 {
        head_of(&self.mem, &self.geo, lane)
    }

    #[inline]
    fn seq(&self, lane: u32, pos: u64) -> &AtomicU64 {
        self.mem.word(self.geo.slot_offset(lane, pos) + slot::SEQ)
    }

    #[inline]
    fn len_word(&self, lane: u32, pos: u64) -> &AtomicU64 {
        self.mem.word(self.geo.slot_offset(lane, pos) + slot::LEN)
    }

    /// Address of the payload of position `pos` in lane `lane`.
    #[inline]
    pub(crate) fn payload_ptr(&self, lane: u32, pos: u64) -> *mut u8 {
        let offset = self.geo.slot_offset(lane, pos) + slot::PAYLOAD;
        // SAFETY: `slot_offset` is inside the slot array and the slot has `stride - 16 >=
        // max_message` payload bytes, all inside the data region (geometry checked at
        // attach against the mapping size).
        unsafe { self.mem.data_ptr().add(offset as usize) }
    }

    #[inline]
    fn claim_word(&self) -> &AtomicU64 {
        reg::record(&self.mem, &self.geo, self.me.index).claim
    }

    /// Adds to this record's counters (only its holder writes them).
    fn count(&self, messages: u64, bytes: u64) {
        let rec = reg::record(&self.mem, &self.geo, self.me.index);
        rec.messages
            .store(rec.messages.load(Relaxed).wrapping_add(messages), Relaxed);
        rec.bytes
            .store(rec.bytes.load(Relaxed).wrapping_add(bytes), Relaxed);
    }

    /// `Err(Revoked)` if our record no longer says we hold it: another process found it
    /// abandoned and recovered it, so our claims may have been skipped (only possible if
    /// the handle was used in a child forked without exec after its parent closed it, or
    /// the segment was altered).
    #[inline]
    fn check_membership(&self) -> Result<()> {
        let rec = reg::record(&self.mem, &self.geo, self.me.index);
        if rec.gen_state.load(Relaxed) == self.me.attached_word() {
            Ok(())
        } else {
            Err(Error::Revoked {
                detail: "its registry record was closed or recovered by another process, \
                         so its claims may have been skipped",
            })
        }
    }

    /// Whether `later` is past `pos` by 1..=slot_count positions (wrapping).
    fn is_past(&self, later: u64, pos: u64) -> bool {
        let ahead = later.wrapping_sub(pos);
        ahead >= 1 && ahead <= self.geo.slot_count
    }

    /// Takes up to `max` consecutive positions of lane `lane` from the shared position
    /// `cursor` (that lane's `tail` or `head`) whose slots read `ready(pos)`; `Ok(Err)` if
    /// the first is not ready (with its position and sequence word).
    #[inline]
    fn take(
        &self,
        cursor: &AtomicU64,
        lane: u32,
        max: u64,
        ready: impl Fn(u64) -> u64,
    ) -> Result<core::result::Result<Taken, (u64, u64)>> {
        let mut pos = cursor.load(Relaxed);
        let mut claimed = false;
        for _ in 0..CAS_ATTEMPTS {
            // ORDERING P0 / C1 (pairs with R1 / P1): Acquire, so what the previous owner of
            // the slot wrote (a consumer's reads, a producer's payload) happened before.
            let seq = self.seq(lane, pos).load(Acquire);
            let diff = seq.wrapping_sub(ready(pos)) as i64;
            if diff == 0 {
                let mut count = 1;
                while count < max
                    && self.seq(lane, pos.wrapping_add(count)).load(Acquire)
                        == ready(pos.wrapping_add(count))
                {
                    count += 1;
                }
                // ORDERING K1 (pairs with K3 via the Release CAS below and the reader's
                // Acquire of the cursor): our claim is visible before the position is taken.
                self.claim_word()
                    .store(claim::new(lane, pos, count), Release);
                claimed = true;
                match cursor.compare_exchange(pos, pos.wrapping_add(count), Release, Relaxed) {
                    Ok(_) => return Ok(Ok(Taken { pos, count })),
                    Err(now) => pos = now,
                }
                spin_loop();
            } else if diff < 0 {
                if claimed {
                    // A stale claim would make a dead taker of `pos` look alive.
                    self.claim_word().store(claim::NONE, Release);
                }
                // Below `ready` by more than a lap (plus one for a consumer's view of an
                // unreleased slot): no protocol state leaves a slot that far behind.
                if diff < -(self.geo.slot_count as i64) - 1 {
                    return Err(self.bad_sequence(lane, pos, seq));
                }
                return Ok(Err((pos, seq)));
            } else {
                // The slot is a lap ahead of our position: another taker moved on, which
                // the cursor must show (its move happened before the slot's store, which we
                // Acquired). If it does not, the sequence word is damage.
                spin_loop();
                let now = cursor.load(Relaxed);
                if now == pos {
                    if claimed {
                        self.claim_word().store(claim::NONE, Release);
                    }
                    return Err(self.bad_sequence(lane, pos, seq));
                }
                pos = now;
            }
        }
        if claimed {
            self.claim_word().store(claim::NONE, Release);
        }
        Ok(Err((pos, self.seq(lane, pos).load(Acquire))))
    }

    /// `InvalidArgument` unless `priority` names a lane of this ring.
    fn check_lane(&self, priority: u32) -> Result<()> {
        if priority < self.geo.lanes {
            return Ok(());
        }
        Err(Error::invalid_argument(format!(
            "priority {priority} is not below the ring's {} lane(s) (priorities 0..={})",
            self.geo.lanes,
            self.geo.lanes - 1
        )))
    }
}

impl<M: RingMemory> Shared<M> {
    #[cold]
    fn bad_sequence(&self, lane: u32, pos: u64, seq: u64) -> Error {
        let lane = if self.geo.lanes > 1 {
            format!(" of lane {lane}")
        } else {
            String::new()
        };
        Error::corrupted(format!(
            "slot of position {pos}{lane} holds sequence {seq}, which no state of the ring allows"
        ))
    }
}

/// A claimed slot a producer writes before publishing.
#[derive(Clone, Copy, Debug)]
pub struct SlotClaim {
    pub lane: u32,
    pub pos: u64,
    pub len: u64,
}

/// The writing end's algorithm state.
pub struct ProducerCore<M: RingMemory> {
    shared: Shared<M>,
    /// The lane the next claims take (its priority).
    lane: u32,
}

impl<M: RingMemory> ProducerCore<M> {
    /// Attaches a producer record owned by `me` (an owner word).
    pub(crate) fn attach(mem: M, geo: MpmcGeometry, me: u64) -> Result<Self> {
        Ok(ProducerCore {
            shared: Shared::attach(mem, geo, ROLE_PRODUCER, me)?,
            lane: 0,
        })
    }

    /// Sends the next messages with priority `priority` (to that lane).
    #[inline]
    pub(crate) fn set_lane(&mut self, priority: u32) -> Result<()> {
        self.shared.check_lane(priority)?;
        self.lane = priority;
        Ok(())
    }

    /// `Closed` once every consumer that attached has detached and none is left
    /// (`PeerDead` if one of them died).
    #[inline]
    fn check_open(&self) -> Result<()> {
        let sh = &self.shared;
        if let Some(end) = crate::peers::ended(sh.mem.control(), Role::Consumer, sh.words) {
            return Err(end.report(sh.mem.control()));
        }
        sh.check_membership()
    }

    /// Takes up to `max` consecutive slots for messages of up to `max_message` bytes.
    #[inline]
    pub(crate) fn try_claim_many(&mut self, max: u64) -> Result<Taken> {
        self.check_open()?;
        let lane = self.lane;
        let tail = self.shared.tail(lane);
        match self
            .shared
            .take(tail, lane, max.clamp(1, MAX_BATCH), |pos| pos)?
        {
            Ok(taken) => {
                crate::crash::point("mpmc-producer-claimed");
                Ok(taken)
            }
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// Takes one slot for a message of `len` bytes.
    #[inline]
    pub(crate) fn try_claim(&mut self, len: usize) -> Result<SlotClaim> {
        let max = self.shared.geo.max_message;
        if len as u64 > max {
            return Err(Error::MessageTooLarge {
                len,
                max: max as usize,
            });
        }
        let taken = self.try_claim_many(1)?;
        Ok(SlotClaim {
            lane: self.lane,
            pos: taken.pos,
            len: len as u64,
        })
    }

    /// Publishes position `pos` of `lane` with `len` payload bytes already written
    /// (`CANCELLED`: nothing). Positions of one batch are published in order.
    #[inline]
    fn publish(&self, lane: u32, pos: u64, len: u64) {
        crate::crash::point("mpmc-producer-written");
        self.shared.len_word(lane, pos).store(len, Relaxed);
        // ORDERING P1 (pairs with C1): the length and payload are visible to a consumer
        // that Acquires this sequence value.
        self.shared
            .seq(lane, pos)
            .store(pos.wrapping_add(1), PUBLISH);
    }

    /// Publishes a claimed slot with its first `len` bytes (clamped to the claim).
    /// `PeerDead` (and nothing published) if this producer's record was reaped meanwhile.
    #[inline]
    pub(crate) fn commit(&mut self, claim: SlotClaim, len: usize) -> Result<()> {
        let len = (len as u64).min(claim.len);
        let fenced = self.shared.check_membership();
        if fenced.is_ok() {
            self.publish(claim.lane, claim.pos, len);
            self.shared.count(1, len);
        }
        // ORDERING K2 (pairs with K3): cleared after the publish, with Release, so a
        // scanner that reads the cleared claim sees the publication.
        self.shared.claim_word().store(claim::NONE, Release);
        fenced
    }

    /// Gives a claimed slot back: consumers skip it.
    pub(crate) fn cancel(&mut self, claim: SlotClaim) {
        if self.shared.check_membership().is_ok() {
            self.publish(claim.lane, claim.pos, CANCELLED);
        }
        self.shared.claim_word().store(claim::NONE, Release);
    }

    /// Copies `msg` into one slot and publishes it.
    #[inline]
    pub(crate) fn try_write(&mut self, msg: &[u8]) -> Result<()> {
        let claim = self.try_claim(msg.len())?;
        self.write_payload(claim.lane, claim.pos, msg);
        self.commit(claim, msg.len())
    }

    #[inline]
    fn write_payload(&self, lane: u32, pos: u64, msg: &[u8]) {
        let offset = self.shared.geo.slot_offset(lane, pos) + slot::PAYLOAD;
        self.shared.mem.track_write(offset, msg.len() as u64);
        // SAFETY: the slot is ours until published (we took its position); `msg.len() <=
        // max_message`, which the slot's payload area holds.
        unsafe {
            core::ptr::copy_nonoverlapping(
                msg.as_ptr(),
                self.shared.payload_ptr(lane, pos),
                msg.len(),
            );
        }
    }

    /// Copies as many of `msgs` as there are free slots (one compare-and-swap for all) and
    /// publishes them. `WouldBlock` if none fit; `MessageTooLarge` before taking anything.
    pub(crate) fn try_write_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        super::check_batch(msgs, self.shared.geo.max_message as usize)?;
        if msgs.is_empty() {
            return Ok(0);
        }
        let taken = self.try_claim_many(msgs.len() as u64)?;
        let fenced = self.shared.check_membership();
        let lane = self.lane;
        let mut bytes = 0;
        for (i, msg) in msgs.iter().take(taken.count as usize).enumerate() {
            let pos = taken.pos.wrapping_add(i as u64);
            let msg = msg.as_ref();
            if fenced.is_ok() {
                self.write_payload(lane, pos, msg);
                self.publish(lane, pos, msg.len() as u64);
                bytes += msg.len() as u64;
            }
        }
        if fenced.is_ok() {
            self.shared.count(taken.count, bytes);
        }
        self.shared.claim_word().store(claim::NONE, Release);
        fenced.map(|()| taken.count as usize)
    }

    /// Lane `lane` is full at `pos` (its slot still holds position `pos - slot_count`). If
    /// a consumer took that message and died before releasing it, free the slot.
    fn recover_full(&self, lane: u32, pos: u64, seq: u64) {
        let sh = &self.shared;
        let lap = pos.wrapping_sub(sh.geo.slot_count);
        // Published-and-taken (lap + 1), or taken by a consumer's skip (lap).
        if seq != lap.wrapping_add(1) && seq != lap {
            return;
        }
        // ORDERING K3 (pairs with K1 through the consumers' Release CAS of `head`).
        let head = sh.head(lane).load(Acquire);
        if !sh.is_past(head, lap) || reg::live_claimer(&sh.mem, &sh.geo, ROLE_CONSUMER, lane, lap) {
            return;
        }
        // Its taker is dead. The CAS fails if the slot changed since (a release we did not
        // see, or another recoverer).
        if sh
            .seq(lane, pos)
            .compare_exchange(seq, pos, AcqRel, Relaxed)
            .is_ok()
        {
            let peers = &sh.mem.control().peers;
            if seq == lap.wrapping_add(1) {
                peers.messages_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Looks for dead holders now: reaps dead consumers' records and frees a slot a dead
    /// consumer holds at the tail of a lane. Blocking sends call this between waits.
    pub(crate) fn maintain(&mut self) {
        let sh = &self.shared;
        sh.reap(ROLE_CONSUMER);
        for lane in 0..sh.geo.lanes {
            let pos = sh.tail(lane).load(Relaxed);
            let seq = sh.seq(lane, pos).load(Acquire);
            if (seq.wrapping_sub(pos) as i64) < 0 {
                self.recover_full(lane, pos, seq);
            }
        }
    }

    /// Gives the record back.
    pub(crate) fn close(&mut self) {
        self.shared.close();
    }
}

/// A message a consumer took: its lane, position and length.
#[derive(Clone, Copy, Debug)]
pub struct SlotMessage {
    pub lane: u32,
    pub pos: u64,
    pub len: u64,
}

/// The reading end's algorithm state.
pub struct ConsumerCore<M: RingMemory> {
    shared: Shared<M>,
    /// The lanes this consumer takes from: `low..=high`.
    low: u32,
    high: u32,
}

impl<M: RingMemory> ConsumerCore<M> {
    /// Attaches a consumer record owned by `me` (an owner word).
    pub(crate) fn attach(mem: M, geo: MpmcGeometry, me: u64) -> Result<Self> {
        let high = geo.lanes - 1;
        Ok(ConsumerCore {
            shared: Shared::attach(mem, geo, ROLE_CONSUMER, me)?,
            low: 0,
            high,
        })
    }

    /// Receives only from lanes `low..=high` from now on.
    pub(crate) fn select_lanes(&mut self, low: u32, high: u32) -> Result<()> {
        self.shared.check_lane(high)?;
        if low > high {
            return Err(Error::invalid_argument(format!(
                "priorities {low}..={high}: the lowest is above the highest"
            )));
        }
        (self.low, self.high) = (low, high);
        Ok(())
    }

    /// The selected lanes, highest first.
    #[inline]
    fn selected(&self) -> impl Iterator<Item = u32> + use<M> {
        // Under the negative control, lowest first: the loom model of the priority order
        // must then fail.
        #[cfg(shmring_lanes_low_first)]
        return self.low..=self.high;
        #[cfg(not(shmring_lanes_low_first))]
        (self.low..=self.high).rev()
    }

    /// Takes up to `max` consecutive published positions of `lane`; `Ok(None)` if the next
    /// is not published (`Err` only for damage).
    #[inline]
    fn take_published(&mut self, lane: u32, max: u64) -> Result<Option<Taken>> {
        let head = self.shared.head(lane);
        match self
            .shared
            .take(head, lane, max, |pos| pos.wrapping_add(1))?
        {
            Ok(taken) => {
                crate::crash::point("mpmc-consumer-taken");
                Ok(Some(taken))
            }
            Err(_) => Ok(None),
        }
    }

    /// The length of a taken position, checked. A damaged length releases the slot (so
    /// the ring keeps moving) and reports `Corrupted`.
    #[inline]
    fn checked_len(&mut self, lane: u32, pos: u64) -> Result<Option<u64>> {
        let len = self.shared.len_word(lane, pos).load(Relaxed);
        if len == CANCELLED {
            return Ok(None);
        }
        if len > self.shared.geo.max_message {
            self.release(lane, pos);
            self.shared.claim_word().store(claim::NONE, Release);
            return Err(Error::corrupted(format!(
                "slot of position {pos} holds length {len}, above max_message {}",
                self.shared.geo.max_message
            )));
        }
        Ok(Some(len))
    }

    /// The next message of the highest selected lane that has one, taken: the caller
    /// reads it in place, then `consume`s it. `WouldBlock` if none is published; `Closed`
    /// / `PeerDead` once every producer has detached (or died) and the lanes are drained.
    #[inline]
    pub(crate) fn try_next(&mut self) -> Result<SlotMessage> {
        let mut retried = false;
        loop {
            for lane in self.selected() {
                while let Some(taken) = self.take_published(lane, 1)? {
                    match self.checked_len(lane, taken.pos)? {
                        Some(len) => {
                            return Ok(SlotMessage {
                                lane,
                                pos: taken.pos,
                                len,
                            });
                        }
                        // A cancelled claim: free it and look again in this lane.
                        None => self.finish(lane, taken.pos, 1, 0, 0),
                    }
                }
            }
            if let Some(err) = self.nothing_published()? {
                return Err(err);
            }
            if retried {
                return Err(Error::WouldBlock);
            }
            retried = true;
        }
    }

    /// Why nothing is published in the selected lanes: `WouldBlock` while a producer is
    /// attached (or none ever was); otherwise the stream has ended, once positions left by
    /// departed producers are skipped. `None`: look again (a message arrived, or a skip
    /// made one reachable).
    fn nothing_published(&mut self) -> Result<Option<Error>> {
        // ORDERING E2 (pairs with E1), inside `ended`: Acquire, so no producer present comes
        // with every slot the departed producers published.
        let Some(end) =
            crate::peers::ended(self.shared.mem.control(), Role::Producer, self.shared.words)
        else {
            return Ok(Some(Error::WouldBlock));
        };
        let mut waiting = false;
        for lane in self.selected() {
            let sh = &self.shared;
            let head = sh.head(lane).load(Acquire);
            if sh.seq(lane, head).load(Acquire) == head.wrapping_add(1) {
                return Ok(None);
            }
            let tail = sh.tail(lane).load(Acquire);
            if tail != head {
                // Taken by producers that are gone: skip them (or wait for a live one).
                if self.recover_empty(lane, head) {
                    return Ok(None);
                }
                waiting = true;
            }
        }
        if waiting {
            return Ok(Some(Error::WouldBlock));
        }
        Ok(Some(end.report(self.shared.mem.control())))
    }

    /// Lane `lane` is empty at `pos` (its slot waits for that position's producer). If a
    /// producer took it and died before publishing, take the position and free the slot.
    /// Returns whether the head moved.
    fn recover_empty(&mut self, lane: u32, pos: u64) -> bool {
        let sh = &self.shared;
        if sh.seq(lane, pos).load(Acquire) != pos {
            return false;
        }
        // ORDERING K3 (pairs with K1 through the producers' Release CAS of `tail`).
        let tail = sh.tail(lane).load(Acquire);
        if !sh.is_past(tail, pos) || reg::live_claimer(&sh.mem, &sh.geo, ROLE_PRODUCER, lane, pos) {
            return false;
        }
        // No live claim: its taker published and cleared its claim after our first look
        // (K2/K3 make the publication visible to this re-check), or it died.
        if sh.seq(lane, pos).load(Acquire) != pos {
            return false;
        }
        // Its taker is dead: take the position as a consumer (one winner among the
        // consumers), then free the slot for the next lap.
        sh.claim_word().store(claim::new(lane, pos, 1), Release);
        let took = sh
            .head(lane)
            .compare_exchange(pos, pos.wrapping_add(1), Release, Relaxed)
            .is_ok();
        if took {
            let peers = &sh.mem.control().peers;
            let free = pos.wrapping_add(sh.geo.slot_count);
            // A CAS, not a store: if the "dead" producer published after all (only possible
            // if its liveness was misjudged), its message is dropped, never overwritten by
            // the slot going backwards.
            match sh
                .seq(lane, pos)
                .compare_exchange(pos, free, Release, Relaxed)
            {
                Ok(_) => peers.claims_skipped.fetch_add(1, Relaxed),
                Err(_) => {
                    sh.seq(lane, pos).store(free, Release);
                    peers.messages_dropped.fetch_add(1, Relaxed)
                }
            };
        }
        sh.claim_word().store(claim::NONE, Release);
        took
    }

    /// Looks for dead holders now: reaps dead producers' records and skips a dead
    /// producer's claim at the head of every lane. Blocking receives call this between
    /// waits.
    pub(crate) fn maintain(&mut self) {
        self.shared.reap(ROLE_PRODUCER);
        for lane in 0..self.shared.geo.lanes {
            let pos = self.shared.head(lane).load(Relaxed);
            let _ = self.recover_empty(lane, pos);
        }
    }

    /// Address of a taken message's payload.
    #[inline]
    pub(crate) fn payload(&self, msg: &SlotMessage) -> *const u8 {
        let offset = self.shared.geo.slot_offset(msg.lane, msg.pos) + slot::PAYLOAD;
        self.shared.mem.track_read(offset, msg.len);
        self.shared.payload_ptr(msg.lane, msg.pos)
    }

    /// Frees a slot for the next lap.
    #[inline]
    fn release(&self, lane: u32, pos: u64) {
        // ORDERING R1 (pairs with P0): our reads of the slot happen before the next lap's
        // producer, which Acquires this value, writes it.
        self.shared
            .seq(lane, pos)
            .store(pos.wrapping_add(self.shared.geo.slot_count), Release);
    }

    /// Releases `count` taken positions of `lane` from `pos` (`messages` of them real,
    /// `bytes` of payload) and clears our claim.
    #[inline]
    fn finish(&mut self, lane: u32, pos: u64, count: u64, messages: u64, bytes: u64) {
        for i in 0..count {
            self.release(lane, pos.wrapping_add(i));
        }
        if messages != 0 {
            self.shared.count(messages, bytes);
        }
        // ORDERING K2 (pairs with K3), as for producers.
        self.shared.claim_word().store(claim::NONE, Release);
    }

    /// Releases a message returned by `try_next`.
    #[inline]
    pub(crate) fn consume(&mut self, msg: SlotMessage) {
        self.finish(msg.lane, msg.pos, 1, 1, msg.len);
    }

    /// Takes up to `max` published messages at once from the highest selected lane that
    /// has one (one compare-and-swap), hands each to `f` in place, and releases them all.
    pub(crate) fn try_read_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize> {
        let mut found = None;
        for lane in self.selected() {
            if let Some(taken) = self.take_published(lane, (max as u64).min(MAX_BATCH))? {
                found = Some((lane, taken));
                break;
            }
        }
        let Some((lane, taken)) = found else {
            return Err(self.nothing_published()?.unwrap_or(Error::WouldBlock));
        };
        let (mut messages, mut bytes) = (0, 0);
        let mut damage = None;
        for i in 0..taken.count {
            let pos = taken.pos.wrapping_add(i);
            let len = self.shared.len_word(lane, pos).load(Relaxed);
            if len == CANCELLED {
                continue;
            }
            if len > self.shared.geo.max_message {
                damage.get_or_insert(pos);
                continue;
            }
            let msg = SlotMessage { lane, pos, len };
            // SAFETY: the position is ours until released; `len <= max_message` bytes of
            // payload lie inside its slot.
            f(unsafe { core::slice::from_raw_parts(self.payload(&msg), len as usize) });
            messages += 1;
            bytes += len;
        }
        self.finish(lane, taken.pos, taken.count, messages, bytes);
        match damage {
            Some(pos) if messages == 0 => Err(Error::corrupted(format!(
                "slot of position {pos} holds a length above max_message"
            ))),
            _ => Ok(messages as usize),
        }
    }

    /// Releases a message taken and never released (it cannot be given back: other
    /// consumers have moved on), then gives the record back.
    pub(crate) fn close(&mut self, held: Option<SlotMessage>) {
        if let Some(msg) = held {
            self.consume(msg);
        }
        self.shared.close();
    }
}

impl<M: RingMemory> super::ProducerCore for ProducerCore<M> {
    type Memory = M;
    type Claim = SlotClaim;

    fn memory(&self) -> &M {
        &self.shared.mem
    }
    fn slot(&self) -> u32 {
        self.shared.me.index
    }
    fn max_message(&self) -> usize {
        self.shared.geo.max_message as usize
    }
    #[inline]
    fn try_claim(&mut self, len: usize) -> Result<SlotClaim> {
        ProducerCore::try_claim(self, len)
    }
    #[inline]
    fn set_lane(&mut self, priority: u32) -> Result<()> {
        ProducerCore::set_lane(self, priority)
    }
    #[inline]
    fn claim_len(claim: &SlotClaim) -> usize {
        claim.len as usize
    }
    #[inline]
    fn payload_ptr(&self, claim: &SlotClaim) -> *mut u8 {
        self.shared.payload_ptr(claim.lane, claim.pos)
    }
    #[inline]
    fn commit(&mut self, claim: SlotClaim, len: usize) -> Result<()> {
        ProducerCore::commit(self, claim, len)
    }
    #[inline]
    fn cancel(&mut self, claim: SlotClaim) {
        ProducerCore::cancel(self, claim)
    }
    #[inline]
    fn try_write(&mut self, msg: &[u8]) -> Result<()> {
        ProducerCore::try_write(self, msg)
    }
    fn try_write_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        ProducerCore::try_write_batch(self, msgs)
    }
    fn maintain(&mut self) {
        ProducerCore::maintain(self)
    }
    fn close(&mut self) {
        ProducerCore::close(self)
    }
}

impl<M: RingMemory> super::ConsumerCore for ConsumerCore<M> {
    type Memory = M;
    type Msg = SlotMessage;

    fn memory(&self) -> &M {
        &self.shared.mem
    }
    fn slot(&self) -> u32 {
        self.shared.me.index
    }
    fn max_message(&self) -> usize {
        self.shared.geo.max_message as usize
    }
    #[inline]
    fn try_next(&mut self) -> Result<SlotMessage> {
        ConsumerCore::try_next(self)
    }
    #[inline]
    fn msg_len(msg: &SlotMessage) -> usize {
        msg.len as usize
    }
    #[inline]
    fn msg_priority(msg: &SlotMessage) -> u32 {
        msg.lane
    }
    fn select_lanes(&mut self, low: u32, high: u32) -> Result<()> {
        ConsumerCore::select_lanes(self, low, high)
    }
    #[inline]
    fn payload(&self, msg: &SlotMessage) -> *const u8 {
        ConsumerCore::payload(self, msg)
    }
    #[inline]
    fn release(&mut self, msg: SlotMessage) -> Result<()> {
        self.consume(msg);
        Ok(())
    }
    fn try_read_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize> {
        ConsumerCore::try_read_batch(self, max, f)
    }
    fn maintain(&mut self) {
        ConsumerCore::maintain(self)
    }
    fn close(&mut self, held: Option<SlotMessage>) {
        ConsumerCore::close(self, held)
    }
}

/// Positions taken and not yet released, from the cursors alone (cheap enough for
/// telemetry's high-water mark), summed over the lanes.
pub(crate) fn in_flight<M: RingMemory>(memory: &M, geometry: &MpmcGeometry) -> u64 {
    (0..geometry.lanes)
        .map(|lane| lane_in_flight(memory, geometry, lane))
        .sum()
}

fn lane_in_flight<M: RingMemory>(memory: &M, geometry: &MpmcGeometry, lane: u32) -> u64 {
    let head = head_of(memory, geometry, lane).load(Relaxed);
    tail_of(memory, geometry, lane)
        .load(Relaxed)
        .wrapping_sub(head)
        .min(geometry.slot_count)
}

/// Each lane's statistics, lowest priority first (values read from shared memory: a
/// damaged ring shows damaged numbers, never more than `slots` in flight).
pub(crate) fn lane_stats<M: RingMemory>(memory: &M, geometry: &MpmcGeometry) -> Vec<LaneStats> {
    let first = memory.control().header.initial_position.load(Relaxed);
    (0..geometry.lanes)
        .map(|lane| LaneStats {
            priority: lane,
            slots: geometry.slot_count,
            in_flight: lane_in_flight(memory, geometry, lane),
            sent: tail_of(memory, geometry, lane)
                .load(Relaxed)
                .wrapping_sub(first),
            received: head_of(memory, geometry, lane)
                .load(Relaxed)
                .wrapping_sub(first),
        })
        .collect()
}

/// An MPMC ring's statistics.
pub(crate) fn stats<M: RingMemory>(memory: &M, geometry: &MpmcGeometry) -> Stats {
    use crate::layout::registry::{ROLE_CONSUMER, ROLE_PRODUCER};
    let ctl = memory.control();
    let (messages_received, bytes_received) =
        super::registry::totals(memory, geometry, ROLE_CONSUMER);
    let (messages_sent, bytes_sent) = super::registry::totals(memory, geometry, ROLE_PRODUCER);
    Stats {
        max_message: geometry.max_message,
        messages_in_flight: in_flight(memory, geometry),
        messages_sent,
        bytes_sent,
        messages_received,
        bytes_received,
        ..roles(ctl, crate::peers::slot_words(geometry.max_peers))
    }
    .with_kind(KindStats::Mpmc {
        slots: geometry.slot_count,
        max_peers: geometry.max_peers,
        lanes: geometry.lanes,
        claims_skipped: ctl.peers.claims_skipped.load(Relaxed),
        messages_dropped: ctl.peers.messages_dropped.load(Relaxed),
    })
}
