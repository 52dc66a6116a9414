//! The MPMC peer registry: who is attached, in which role, and which positions each holder
//! may own. Every record transition is one compare-and-swap, so racing attaches, closes and
//! reaps agree on one outcome; `docs/ordering.md` (registry section) argues each edge.
//!
//! Liveness is the record's slot lock ([`RingMemory::slot_alive`], see `crate::peers`): a
//! record is held by a live process exactly while its lock is, whatever PID namespace that
//! process runs in; a stopped process is alive. Taking a record, reaping it and clearing its
//! bits happen under its lock, so they never race a new holder.

use crate::error::Role;
use crate::error::{Error, Result};
use crate::layout::registry::{
    self, BYTES, CLAIM, GEN_STATE, MESSAGES, OWNER, RECORD_SIZE, claim, gen_state, role_index,
    split, state,
};
use crate::memory::RingMemory;
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crate::layout::geometry::MpmcGeometry;

/// A registry's size: how many records it has (its first `records()` records of the data
/// region). MPMC: `max_peers`; broadcast: the producer's record and one per reader.
pub(crate) trait Table {
    /// Records in the registry.
    fn records(&self) -> u32;
}

impl Table for MpmcGeometry {
    fn records(&self) -> u32 {
        self.max_peers
    }
}
use crate::stats::{PeerInfo, PeerStatus};

/// Passes over the registry before attach gives up on records that keep changing.
const ATTACH_ROUNDS: u32 = 4;
/// Compare-and-swap attempts on one record's `gen_state` before it counts as damaged.
const CAS_ATTEMPTS: u32 = 64;

/// A record this handle holds: its index and the generation it attached with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Membership {
    pub index: u32,
    pub generation: u32,
    pub role: u64,
}

impl Membership {
    /// The `gen_state` word of this record while we hold it.
    pub(crate) fn attached_word(&self) -> u64 {
        gen_state(self.generation, self.role, state::ATTACHED)
    }
}

/// The words of one record.
pub(crate) struct Record<'a> {
    pub gen_state: &'a crate::sync::AtomicU64,
    pub owner: &'a crate::sync::AtomicU64,
    pub claim: &'a crate::sync::AtomicU64,
    pub messages: &'a crate::sync::AtomicU64,
    pub bytes: &'a crate::sync::AtomicU64,
}

pub(crate) fn record<'a, M: RingMemory>(mem: &'a M, geo: &impl Table, index: u32) -> Record<'a> {
    debug_assert!(index < geo.records());
    let base = u64::from(index) * RECORD_SIZE;
    Record {
        gen_state: mem.word(base + GEN_STATE),
        owner: mem.word(base + OWNER),
        claim: mem.word(base + CLAIM),
        messages: mem.word(base + MESSAGES),
        bytes: mem.word(base + BYTES),
    }
}

/// The role a record's role byte names (`None`: a byte shmring never writes).
fn role_of(role: u64) -> Option<Role> {
    match role {
        registry::ROLE_PRODUCER => Some(Role::Producer),
        registry::ROLE_CONSUMER => Some(Role::Consumer),
        _ => None,
    }
}

/// Takes a free record (never held, closed, or left by a dead process) for `role`, locking
/// it through `holder`; `owner` is this process's owner word (for display). Free-looking
/// records are tried before attached ones (whose holders are likely alive).
pub(crate) fn attach<M: RingMemory>(
    mem: &M,
    geo: &impl Table,
    role: u64,
    holder: &M::Holder,
    owner: u64,
) -> Result<Membership> {
    attach_where(mem, geo, role, holder, owner, |_| true)
}

/// [`attach`] limited to the records `usable` accepts (by index).
pub(crate) fn attach_where<M: RingMemory>(
    mem: &M,
    geo: &impl Table,
    role: u64,
    holder: &M::Holder,
    owner: u64,
    usable: impl Fn(u32) -> bool,
) -> Result<Membership> {
    let mut damaged = 0;
    for _ in 0..ATTACH_ROUNDS {
        damaged = 0;
        for attached_first in [false, true] {
            for index in (0..geo.records()).filter(|&index| usable(index)) {
                let rec = record(mem, geo, index);
                let (_, _, st) = split(rec.gen_state.load(Acquire));
                if !matches!(
                    st,
                    state::FREE | state::CLOSED | state::DEAD | state::ATTACHED
                ) {
                    damaged += 1;
                    continue;
                }
                if (st == state::ATTACHED) != attached_first || !mem.lock_slot(holder, index)? {
                    continue;
                }
                // We hold the record's lock: whoever held it before is gone.
                match take_record(mem, geo, &rec, index, role, owner) {
                    Ok(Some(me)) => return Ok(me),
                    Ok(None) => mem.unlock_slot(holder, index),
                    Err(e) => {
                        mem.unlock_slot(holder, index);
                        return Err(e);
                    }
                }
            }
        }
    }
    if damaged > 0 {
        return Err(Error::corrupted(format!(
            "{damaged} of the {} peer registry records hold states shmring never writes, \
             and no other record is free",
            geo.records()
        )));
    }
    Err(Error::RegistryFull {
        max_peers: geo.records(),
    })
}

/// Takes record `index` for `role` if no live holder has it: `Ok(None)` while one does
/// (or the record holds a state shmring never writes).
pub(crate) fn attach_at<M: RingMemory>(
    mem: &M,
    geo: &impl Table,
    index: u32,
    role: u64,
    holder: &M::Holder,
    owner: u64,
) -> Result<Option<Membership>> {
    if index >= geo.records() || !mem.lock_slot(holder, index)? {
        return Ok(None);
    }
    let rec = record(mem, geo, index);
    let taken = take_record(mem, geo, &rec, index, role, owner);
    if !matches!(taken, Ok(Some(_))) {
        mem.unlock_slot(holder, index);
    }
    taken
}

/// Second half of attach: we hold the record's lock; move `gen_state` to a new
/// generation of `role`. `None` if the record turned out unusable (damaged meanwhile).
fn take_record<M: RingMemory>(
    mem: &M,
    geo: &impl Table,
    rec: &Record<'_>,
    index: u32,
    role: u64,
    owner: u64,
) -> Result<Option<Membership>> {
    let ctl = mem.control();
    let words = crate::peers::slot_words(geo.records());
    let Some(new_role) = role_of(role) else {
        return Err(Error::invalid_argument(format!("role byte {role}")));
    };
    for _ in 0..CAS_ATTEMPTS {
        let word = rec.gen_state.load(Acquire);
        let (generation, old_role, st) = split(word);
        if !matches!(
            st,
            state::FREE | state::CLOSED | state::DEAD | state::ATTACHED
        ) {
            return Ok(None);
        }
        let generation = generation.wrapping_add(1);
        // ORDERING G2: AcqRel against a writer of the same word (a damaged segment; honest
        // processes change it only under the record's lock, which we hold).
        if rec
            .gen_state
            .compare_exchange(
                word,
                gen_state(generation, role, state::ATTACHED),
                AcqRel,
                Acquire,
            )
            .is_err()
        {
            continue;
        }
        crate::crash::point("attaching");
        // Whatever the previous holder claimed is no longer claimed by a live one.
        rec.claim.store(claim::NONE, Release);
        rec.owner.store(owner, Release);
        if let Some(old) = role_of(old_role) {
            if st == state::ATTACHED {
                // A dead holder nobody had reaped: its death belongs to its stream.
                crate::peers::record_death(ctl, old);
            }
            if old_role != role || st != state::ATTACHED {
                crate::peers::leave(ctl, old, index);
            }
            // (Taking over a dead holder of our own role keeps its present bit: its stream
            // goes on, with the death in it.)
            if old_role != role {
                retire_counters(mem, rec, old_role);
            }
        }
        crate::peers::clear_sleeper(ctl, index);
        crate::peers::join(ctl, new_role, index, words);
        return Ok(Some(Membership {
            index,
            generation,
            role,
        }));
    }
    Err(Error::corrupted(format!(
        "peer record {index} kept changing during {CAS_ATTEMPTS} attempts"
    )))
}

/// Moves record `index`'s counters into `role`'s retired totals: the record's next holder
/// starts from zero (a broadcast reader that is not resuming a durable name). Its caller
/// holds the record.
pub(crate) fn retire<M: RingMemory>(mem: &M, geo: &impl Table, index: u32, role: u64) {
    retire_counters(mem, &record(mem, geo, index), role);
}

/// Moves a record's counters into its old role's retired totals (we are its only writer
/// now), so the record starts from zero in its new role.
fn retire_counters<M: RingMemory>(mem: &M, rec: &Record<'_>, old_role: u64) {
    let peers = &mem.control().peers;
    let messages = rec.messages.swap(0, Relaxed);
    let bytes = rec.bytes.swap(0, Relaxed);
    let idx = role_index(old_role);
    peers.retired_messages[idx].fetch_add(messages, Relaxed);
    peers.retired_bytes[idx].fetch_add(bytes, Relaxed);
}

/// Total messages and bytes counted by every record of `role`, past and present.
pub(crate) fn totals<M: RingMemory>(mem: &M, geo: &impl Table, role: u64) -> (u64, u64) {
    let peers = &mem.control().peers;
    let idx = role_index(role);
    let mut messages = peers.retired_messages[idx].load(Relaxed);
    let mut bytes = peers.retired_bytes[idx].load(Relaxed);
    for index in 0..geo.records() {
        let rec = record(mem, geo, index);
        let (_, r, _) = split(rec.gen_state.load(Acquire));
        if r == role {
            messages = messages.wrapping_add(rec.messages.load(Relaxed));
            bytes = bytes.wrapping_add(rec.bytes.load(Relaxed));
        }
    }
    (messages, bytes)
}

/// Gives the record back: CLOSED, no longer present, owner cleared, lock released. A
/// record that was reaped meanwhile (we were declared dead) is left alone.
pub(crate) fn close<M: RingMemory>(mem: &M, geo: &impl Table, me: &Membership, holder: &M::Holder) {
    let rec = record(mem, geo, me.index);
    rec.claim.store(claim::NONE, Release);
    let closed = gen_state(me.generation, me.role, state::CLOSED);
    if rec
        .gen_state
        .compare_exchange(me.attached_word(), closed, AcqRel, Relaxed)
        .is_ok()
    {
        let ctl = mem.control();
        crate::crash::point("closing");
        crate::peers::clear_sleeper(ctl, me.index);
        if let Some(role) = role_of(me.role) {
            // ORDERING E1 (pairs with E2): inside `leave`, Release, so a consumer that
            // finds no producer present also sees every slot this producer published.
            crate::peers::leave(ctl, role, me.index);
        }
        rec.owner.store(0, Release);
    }
    mem.unlock_slot(holder, me.index);
}

/// Recovers every record of `role` whose holder died (its lock is free while the record
/// says ATTACHED, or still shows it present): marks it DEAD, counts the death, clears its
/// bits, all under its lock (taken through `holder`). Skips `mine`, the caller's own
/// record. Returns how many deaths this call recorded.
pub(crate) fn reap<M: RingMemory>(
    mem: &M,
    geo: &impl Table,
    role: u64,
    holder: &M::Holder,
    mine: u32,
) -> u32 {
    let Some(role_name) = role_of(role) else {
        return 0;
    };
    let ctl = mem.control();
    let line = crate::peers::line(ctl, role_name);
    let mut reaped = 0;
    for index in 0..geo.records() {
        if index == mine {
            continue;
        }
        let rec = record(mem, geo, index);
        let (_, r, st) = split(rec.gen_state.load(Acquire));
        let (word, mask) = crate::peers::bit(index);
        let present = line.present[word].load(Acquire) & mask != 0;
        if !((st == state::ATTACHED && r == role) || present) {
            continue;
        }
        // A live holder keeps its lock: the attempt fails and we move on.
        if !matches!(mem.lock_slot(holder, index), Ok(true)) {
            continue;
        }
        let word = rec.gen_state.load(Acquire);
        let (generation, r, st) = split(word);
        // ORDERING G2: one of the reapers and a taking-over attacher moves the record
        // (they also exclude each other through its lock).
        if st == state::ATTACHED
            && r == role
            && rec
                .gen_state
                .compare_exchange(word, gen_state(generation, r, state::DEAD), AcqRel, Relaxed)
                .is_ok()
        {
            // ORDERING D1 (pairs with E2): the death is counted before the present bit
            // clears, so whoever finds the role empty also finds the death. (Only the loom
            // negative control, `--cfg shmring_weaken_death_order`, swaps the two.)
            #[cfg(not(shmring_weaken_death_order))]
            crate::peers::record_death(ctl, role_name);
            crate::peers::leave(ctl, role_name, index);
            #[cfg(shmring_weaken_death_order)]
            crate::peers::record_death(ctl, role_name);
            reaped += 1;
        }
        crate::peers::clear_sleeper(ctl, index);
        crate::peers::leave(ctl, role_name, index);
        mem.unlock_slot(holder, index);
    }
    reaped
}

/// Whether a live holder of `role` may own position `pos` of lane `lane` (its claim word
/// covers it). A
/// holder stores its claim before the compare-and-swap that takes a position and clears it
/// after publishing or releasing, so for a position already taken: no live claimer means
/// its taker has finished with it or died.
pub(crate) fn live_claimer<M: RingMemory>(
    mem: &M,
    geo: &impl Table,
    role: u64,
    lane: u32,
    pos: u64,
) -> bool {
    (0..geo.records()).any(|index| {
        let rec = record(mem, geo, index);
        let (_, r, _) = split(rec.gen_state.load(Acquire));
        // ORDERING K3 (pairs with K1): Acquire, so a claim cleared after publishing means
        // the publication is visible to the re-check that follows.
        let claimed = rec.claim.load(Acquire);
        if r != role || !claim::covers(claimed, lane, pos) {
            return false;
        }
        mem.slot_alive(index)
    })
}

/// Every record that has ever been held.
pub(crate) fn list<M: RingMemory>(mem: &M, geo: &impl Table) -> Vec<PeerInfo> {
    (0..geo.records())
        .filter_map(|index| {
            let rec = record(mem, geo, index);
            let (generation, role, st) = split(rec.gen_state.load(Acquire));
            if st == state::FREE && generation == 0 {
                return None;
            }
            let owner = rec.owner.load(Acquire);
            let status = match st {
                state::ATTACHED if mem.slot_alive(index) => PeerStatus::Attached,
                state::ATTACHED => PeerStatus::AttachedDead,
                state::CLOSED => PeerStatus::Closed,
                state::DEAD => PeerStatus::Dead,
                other => PeerStatus::Unknown(other as u8),
            };
            let role = match role {
                registry::ROLE_PRODUCER => Some(crate::Role::Producer),
                registry::ROLE_CONSUMER => Some(crate::Role::Consumer),
                _ => None,
            };
            Some(PeerInfo {
                index,
                role,
                status,
                pid: (owner >> 32) as u32,
                generation,
                messages: rec.messages.load(Relaxed),
                bytes: rec.bytes.load(Relaxed),
                name: None,
            })
        })
        .collect()
}
