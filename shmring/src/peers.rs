//! Peer slots, for every ring kind: who is attached in which role, whether they live, what
//! happens to the slot of one that died, and when the other role has reached the end of
//! its stream.
//!
//! A slot is alive exactly while its lock is held (see [`RingMemory`]): the kernel drops the
//! lock when its holder's process dies, whatever PID namespace it ran in, so liveness never
//! depends on a process id meaning anything to the checker, and a reused pid cannot pass
//! for a live peer. Everything done to a slot on behalf of a dead holder (reaping it,
//! taking it over, clearing its bits) is done while holding its lock, so it never races a
//! new holder of the same slot.
//!
//! The role lines (`layout::RoleLine`) hold one *present* bit and one *sleeper* bit per
//! slot. A bit is changed only by the slot's holder or under the slot's lock, so it is
//! exact: a holder that dies leaves its bits set until its slot is recovered, and then
//! they are cleared exactly once. A role's stream ends when its last present bit clears;
//! it ended by a death if the role's `deaths` count moved since `stream_start`, which the
//! first holder of a stream records. `docs/ordering.md` ("Peers") argues the edges.

use crate::error::{Error, Result, Role};
use crate::layout::{ControlBlock, PeerRecord, RoleLine, SLEEPER_SLOTS, peer_state, registry};
use crate::memory::RingMemory;
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use crate::sync::fence;

/// An SPSC ring's producer slot.
pub(crate) const PRODUCER_SLOT: u32 = 0;
/// An SPSC ring's consumer slot.
pub(crate) const CONSUMER_SLOT: u32 = 1;

/// Words of the per-slot bit arrays a ring with `slots` peer slots uses.
pub(crate) const fn slot_words(slots: u32) -> usize {
    let words = (slots as usize).div_ceil(64);
    if words > SLEEPER_SLOTS / 64 {
        SLEEPER_SLOTS / 64
    } else {
        words
    }
}

/// The role line of `role`.
#[inline]
pub(crate) fn line(ctl: &ControlBlock, role: Role) -> &RoleLine {
    match role {
        Role::Producer => &ctl.producers,
        Role::Consumer => &ctl.consumers,
    }
}

/// Index of `role` in the per-role arrays of `PeerLine`.
#[inline]
pub(crate) const fn role_index(role: Role) -> usize {
    match role {
        Role::Producer => registry::role_index(registry::ROLE_PRODUCER),
        Role::Consumer => registry::role_index(registry::ROLE_CONSUMER),
    }
}

/// Word and mask of `slot`'s bit (slots beyond the arrays alias the last bits, which a
/// validated geometry never allows).
#[inline]
pub(crate) const fn bit(slot: u32) -> (usize, u64) {
    let slot = (slot as usize) % SLEEPER_SLOTS;
    (slot / 64, 1 << (slot % 64))
}

/// Whether any of the first `words` words of `bits` is non-zero.
#[inline]
pub(crate) fn any(bits: &[crate::sync::AtomicU64], words: usize) -> bool {
    // ORDERING E2 (pairs with E1 / J1): Acquire, so a cleared bit comes with everything
    // its holder did before leaving.
    bits[..words].iter().any(|word| word.load(Acquire) != 0)
}

/// Whether any of the first `words` words of `bits` is non-zero, with Relaxed loads (for a
/// caller that has ordered them with a fence).
#[inline]
pub(crate) fn any_relaxed(bits: &[crate::sync::AtomicU64], words: usize) -> bool {
    bits[..words].iter().any(|word| word.load(Relaxed) != 0)
}

/// Bits set in the first `words` words of `bits`.
pub(crate) fn count(bits: &[crate::sync::AtomicU64], words: usize) -> u32 {
    bits[..words]
        .iter()
        .map(|word| word.load(Relaxed).count_ones())
        .sum()
}

/// Marks `slot` present in `role` and counts the attach in `ever_attached`. If the role
/// had nobody, a new stream begins, carrying the deaths nobody has been told of yet.
pub(crate) fn join(ctl: &ControlBlock, role: Role, slot: u32, words: usize) {
    let line = line(ctl, role);
    let (word, mask) = bit(slot);
    // ORDERING J1 (pairs with E2): our bit is set before `stream_start` moves, so a reader
    // that sees the new `stream_start` also sees us present and does not end the stream.
    let before = line.present[word].fetch_or(mask, AcqRel);
    ctl.peers.ever_attached[role_index(role)].fetch_add(1, Release);
    // ORDERING R2 (Dekker with R1): our attach is counted, then we look at
    // `deaths_reported`. Either we see a report being made now, or its reporter sees our
    // attach counted (and moves `stream_start` past what it reports). The negative control
    // `--cfg shmring_weaken_report_fence` removes this fence and R1's.
    #[cfg(not(shmring_weaken_report_fence))]
    fence(SeqCst);
    let others = (0..words).any(|w| w != word && line.present[w].load(Acquire) != 0);
    // Our own bit already set: we took over a dead holder of this slot, whose stream
    // continues (with its death in it). Otherwise a new stream begins, carrying every
    // death not yet reported to the other role, so each death is reported once.
    if before == 0 && !others {
        #[cfg(not(shmring_forget_unreported_deaths))]
        let carried = line.deaths_reported.load(Relaxed);
        // The negative control of the takeover model: a new stream forgets every death.
        #[cfg(shmring_forget_unreported_deaths)]
        let carried = line.deaths.load(Relaxed);
        // `stream_start` only grows (every value it takes is a count of reported deaths),
        // so this and a reporter's correction may land in either order.
        line.stream_start.fetch_max(carried, Release);
    }
}

/// Clears `slot`'s present bit in `role` (its holder closed, or it is being recovered).
pub(crate) fn leave(ctl: &ControlBlock, role: Role, slot: u32) {
    let (word, mask) = bit(slot);
    // ORDERING E1 (pairs with E2): Release, so the other role, seeing nobody present, also
    // sees everything this holder published (or released) before leaving.
    line(ctl, role).present[word].fetch_and(!mask, Release);
}

/// Counts a holder of `role` that died without closing (before its present bit is
/// cleared, so a reader that finds the role empty also finds the death).
pub(crate) fn record_death(ctl: &ControlBlock, role: Role) {
    // ORDERING D1 (pairs with E2 through the Release clearing of the present bit).
    line(ctl, role).deaths.fetch_add(1, Release);
}

/// Clears `slot`'s sleeper and armed bits in both role lines (its holder is gone or new).
pub(crate) fn clear_sleeper(ctl: &ControlBlock, slot: u32) {
    let (word, mask) = bit(slot);
    for line in [&ctl.producers, &ctl.consumers] {
        line.armed[word].fetch_and(!mask, Relaxed);
        line.sleepers[word].fetch_and(!mask, Relaxed);
    }
}

/// The end of `role`'s stream, found and not yet told to anyone: [`report`](End::report)
/// it when the caller returns it (a caller that finds a message after all drops it).
#[must_use]
#[derive(Debug)]
pub(crate) struct End {
    role: Role,
    deaths: u64,
    start: u64,
    /// `ever_attached` when the end was seen: a different count at the report means a
    /// stream began since.
    joins: u32,
}

impl End {
    /// Records that this end is reported and returns it as the error the caller gives:
    /// `Closed`, or `PeerDead` if a holder of the stream died.
    #[cold]
    pub(crate) fn report(self, ctl: &ControlBlock) -> Error {
        if self.deaths == self.start {
            return Error::Closed;
        }
        let line = line(ctl, self.role);
        // We tell of `deaths`: a stream that begins later need not carry them.
        line.deaths_reported.fetch_max(self.deaths, Relaxed);
        // ORDERING R1 (Dekker with R2): the report, then a look for a holder that attached
        // since we saw the end (it may have come and gone). It may have read
        // `deaths_reported` before our report; its stream must not carry the deaths we
        // tell of now.
        #[cfg(not(shmring_weaken_report_fence))]
        fence(SeqCst);
        if ctl.peers.ever_attached[role_index(self.role)].load(Relaxed) != self.joins {
            line.stream_start.fetch_max(self.deaths, Relaxed);
        }
        Error::PeerDead {
            detail: match self.role {
                Role::Producer => {
                    "a producer of this stream died without closing; everything it published \
                     has been received"
                }
                Role::Consumer => "every consumer has gone and at least one died without closing",
            },
        }
    }
}

/// Whether `role`'s stream has ended, and how: `None` while a holder is present (or none
/// ever attached); otherwise the [`End`], `Closed` if every holder of this stream closed,
/// `PeerDead` if one died.
#[inline]
pub(crate) fn ended(ctl: &ControlBlock, role: Role, words: usize) -> Option<End> {
    let line = line(ctl, role);
    if any(&line.present, words) {
        return None;
    }
    ended_slow(ctl, role, line, words)
}

#[cold]
fn ended_slow(ctl: &ControlBlock, role: Role, line: &RoleLine, words: usize) -> Option<End> {
    // Acquire (pairs with `join`'s Release count): a holder counted here is seen present
    // below, or seen gone with everything it did.
    let joins = ctl.peers.ever_attached[role_index(role)].load(Acquire);
    if joins == 0 {
        return None;
    }
    let deaths = line.deaths.load(Acquire);
    let start = line.stream_start.load(Acquire);
    // A holder that joined meanwhile began a new stream (J1): not ended.
    if any(&line.present, words) {
        return None;
    }
    Some(End {
        role,
        deaths,
        start,
        joins,
    })
}

/// An SPSC ring's record of `role`.
pub(crate) fn spsc_record(ctl: &ControlBlock, role: Role) -> &PeerRecord {
    match role {
        Role::Producer => &ctl.peers.producer,
        Role::Consumer => &ctl.peers.consumer,
    }
}

/// An SPSC role's slot.
pub(crate) const fn spsc_slot(role: Role) -> u32 {
    match role {
        Role::Producer => PRODUCER_SLOT,
        Role::Consumer => CONSUMER_SLOT,
    }
}

/// Takes an SPSC role for a new handle: `AlreadyAttached` while a live handle holds it.
/// A role that was never held, closed, or left by a dead holder is taken; taking it from a
/// dead holder nobody had noticed continues that holder's stream (and counts its death).
/// Returns the holder through which the handle keeps the role.
pub(crate) fn attach_spsc<M: RingMemory>(
    mem: &M,
    role: Role,
    owner: u64,
    pid: u32,
) -> Result<M::Holder> {
    let ctl = mem.control();
    let slot = spsc_slot(role);
    let record = spsc_record(ctl, role);
    let holder = mem.new_holder(owner)?;
    if !take_slot(mem, &holder, slot)? {
        return Err(Error::AlreadyAttached {
            role,
            pid: record.pid.load(Relaxed),
        });
    }
    // We hold the slot: whoever held it before is gone.
    match record.state.load(Acquire) {
        peer_state::FREE | peer_state::CLOSED | peer_state::DEAD => {}
        peer_state::ATTACHED => record_death(ctl, role),
        other => {
            mem.unlock_slot(&holder, slot);
            return Err(Error::corrupted(format!(
                "the {role} record holds state {other}, which shmring never writes"
            )));
        }
    }
    crate::crash::point("attaching");
    clear_sleeper(ctl, slot);
    record.owner.store(owner, Relaxed);
    record.pid.store(pid, Relaxed);
    record.generation.fetch_add(1, Relaxed);
    // ORDERING A1: Release, so a reader of ATTACHED sees the identity above.
    record.state.store(peer_state::ATTACHED, Release);
    join(ctl, role, slot, 1);
    Ok(holder)
}

/// Pauses between tries to take a slot whose lock is held: a peer recovering the slot's
/// dead holder holds it for a few instructions (about 1.6 ms in all before giving up).
const TAKE_SLOT_PAUSES_US: [u64; 5] = [10, 50, 200, 500, 800];

/// Takes `slot`'s lock for a new holder; `false` if a live holder keeps it. A peer that
/// is recovering the slot's dead holder holds the lock briefly: that is waited out rather
/// than reported as the role being taken.
fn take_slot<M: RingMemory>(mem: &M, holder: &M::Holder, slot: u32) -> Result<bool> {
    for pause in TAKE_SLOT_PAUSES_US {
        if mem.lock_slot(holder, slot)? {
            return Ok(true);
        }
        if cfg!(shmring_loom) {
            crate::sync::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(pause));
        }
    }
    mem.lock_slot(holder, slot)
}

/// Gives an SPSC role back: CLOSED, no longer present, lock released. Everything the
/// handle published or released must be stored before.
pub(crate) fn close_spsc<M: RingMemory>(mem: &M, role: Role, holder: &M::Holder) {
    let ctl = mem.control();
    let slot = spsc_slot(role);
    // ORDERING P3 (pairs with C3): Release, after the last publish.
    spsc_record(ctl, role)
        .state
        .store(peer_state::CLOSED, Release);
    crate::crash::point("closing");
    clear_sleeper(ctl, slot);
    leave(ctl, role, slot);
    mem.unlock_slot(holder, slot);
}

/// If the holder of SPSC `role` died without closing, marks its record DEAD, counts the
/// death and clears its bits, under its slot's lock (taken through `holder`, the caller's
/// own). Returns whether it did. A live holder, or one already recovered, is left alone.
pub(crate) fn reap_spsc<M: RingMemory>(mem: &M, role: Role, holder: &M::Holder) -> Result<bool> {
    let ctl = mem.control();
    let slot = spsc_slot(role);
    let record = spsc_record(ctl, role);
    let (word, mask) = bit(slot);
    let state = record.state.load(Acquire);
    let present = line(ctl, role).present[word].load(Acquire) & mask != 0;
    if state != peer_state::ATTACHED && !present {
        return Ok(false);
    }
    if !mem.lock_slot(holder, slot)? {
        return Ok(false);
    }
    // Under the dead holder's lock nobody else changes the record: look again.
    let reaped = if record.state.load(Acquire) == peer_state::ATTACHED {
        record.state.store(peer_state::DEAD, Release);
        record_death(ctl, role);
        true
    } else {
        false
    };
    clear_sleeper(ctl, slot);
    leave(ctl, role, slot);
    mem.unlock_slot(holder, slot);
    Ok(reaped)
}

#[cfg(all(test, not(shmring_loom)))]
mod tests {
    use super::*;
    use crate::memory::HeapMemory;

    fn heap() -> HeapMemory {
        HeapMemory::new(256, 0)
    }

    /// The end of the producers' stream as a consumer would be told it.
    fn told(ctl: &ControlBlock) -> Option<Error> {
        ended(ctl, Role::Producer, 1).map(|end| end.report(ctl))
    }

    #[test]
    fn a_stream_ends_closed_when_every_holder_closed() {
        let mem = heap();
        let ctl = mem.control();
        assert!(told(ctl).is_none(), "never attached: not ended");
        let holder = attach_spsc(&mem, Role::Producer, 7, 7).unwrap();
        assert!(told(ctl).is_none());
        close_spsc(&mem, Role::Producer, &holder);
        assert!(matches!(told(ctl), Some(Error::Closed)));
        // Taken again: a new stream.
        let holder = attach_spsc(&mem, Role::Producer, 8, 8).unwrap();
        assert!(told(ctl).is_none());
        assert_eq!(ctl.peers.producer.generation.load(Relaxed), 2);
        close_spsc(&mem, Role::Producer, &holder);
        assert!(matches!(told(ctl), Some(Error::Closed)));
    }

    #[test]
    fn a_dead_holder_is_reaped_once_and_ends_its_stream_with_peer_dead() {
        let mem = heap();
        let ctl = mem.control();
        let survivor = attach_spsc(&mem, Role::Consumer, 1, 1).unwrap();
        let _dying = attach_spsc(&mem, Role::Producer, 2, 2).unwrap();
        // A live holder is never reaped.
        assert!(!reap_spsc(&mem, Role::Producer, &survivor).unwrap());
        assert!(matches!(
            attach_spsc(&mem, Role::Producer, 3, 3),
            Err(Error::AlreadyAttached { .. })
        ));
        let (word, mask) = bit(PRODUCER_SLOT);
        ctl.producers.sleepers[word].fetch_or(mask, Relaxed);
        mem.mark_dead(2);
        assert!(reap_spsc(&mem, Role::Producer, &survivor).unwrap());
        assert!(
            !reap_spsc(&mem, Role::Producer, &survivor).unwrap(),
            "reaped twice"
        );
        assert_eq!(
            count(&ctl.producers.sleepers, 1),
            0,
            "a dead sleeper still counted"
        );
        assert!(matches!(told(ctl), Some(Error::PeerDead { .. })));
        assert_eq!(ctl.producers.deaths.load(Relaxed), 1);
        // The next holder starts a new stream, which ends cleanly.
        let next = attach_spsc(&mem, Role::Producer, 3, 3).unwrap();
        close_spsc(&mem, Role::Producer, &next);
        assert!(matches!(told(ctl), Some(Error::Closed)));
    }

    #[test]
    fn taking_over_an_unnoticed_dead_holder_continues_its_stream() {
        let mem = heap();
        let ctl = mem.control();
        let _dying = attach_spsc(&mem, Role::Producer, 2, 2).unwrap();
        mem.mark_dead(2);
        let heir = attach_spsc(&mem, Role::Producer, 3, 3).unwrap();
        assert!(told(ctl).is_none());
        close_spsc(&mem, Role::Producer, &heir);
        assert!(matches!(told(ctl), Some(Error::PeerDead { .. })));
    }

    /// A ring whose producer (owner 2) died and was reaped by its consumer (owner 1).
    fn reaped_producer() -> HeapMemory {
        let mem = heap();
        let survivor = attach_spsc(&mem, Role::Consumer, 1, 1).unwrap();
        let _dying = attach_spsc(&mem, Role::Producer, 2, 2).unwrap();
        mem.mark_dead(2);
        assert!(reap_spsc(&mem, Role::Producer, &survivor).unwrap());
        mem
    }

    #[test]
    fn a_reaped_death_nobody_was_told_of_carries_into_the_next_stream() {
        let mem = reaped_producer();
        let ctl = mem.control();
        // Reaped, so the role is empty, but no consumer has been told of the end yet.
        let heir = attach_spsc(&mem, Role::Producer, 3, 3).unwrap();
        close_spsc(&mem, Role::Producer, &heir);
        assert!(matches!(told(ctl), Some(Error::PeerDead { .. })));
        // Told now: the next stream starts clean.
        let next = attach_spsc(&mem, Role::Producer, 4, 4).unwrap();
        close_spsc(&mem, Role::Producer, &next);
        assert!(matches!(told(ctl), Some(Error::Closed)));
    }

    #[test]
    fn an_end_seen_but_not_told_tells_nothing() {
        let mem = reaped_producer();
        let ctl = mem.control();
        // A consumer sees the end, then finds a message after all and drops the end.
        assert!(ended(ctl, Role::Producer, 1).is_some());
        let heir = attach_spsc(&mem, Role::Producer, 3, 3).unwrap();
        close_spsc(&mem, Role::Producer, &heir);
        assert!(matches!(told(ctl), Some(Error::PeerDead { .. })));
    }

    #[test]
    fn a_damaged_state_is_corrupted_and_leaves_the_slot_free() {
        let mem = heap();
        mem.control().peers.producer.state.store(99, Relaxed);
        assert!(matches!(
            attach_spsc(&mem, Role::Producer, 2, 2),
            Err(Error::Corrupted { .. })
        ));
        assert!(!mem.slot_alive(PRODUCER_SLOT));
    }
}
