//! The MPMC peer registry: who is attached, in which role, and which positions each holder
//! may own. Every record transition is one compare-and-swap, so racing attaches, closes and
//! reaps agree on one outcome; `docs/ordering.md` (registry section) argues each edge.
//!
//! Liveness is asked of the memory ([`RingMemory::owner_alive`]): pid + process start time
//! for shared memory, so a zombie or a reused pid is never mistaken for a live peer, and a
//! stopped process is alive.

use crate::error::{Error, Result};
use crate::layout::registry::{
    self, BYTES, CLAIM, GEN_STATE, MESSAGES, OWNER, RECORD_SIZE, claim, gen_state, role_index,
    split, state,
};
use crate::memory::RingMemory;
use crate::sync::AtomicU32;
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};

use super::ring::MpmcGeometry;
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

pub(crate) fn record<'a, M: RingMemory>(mem: &'a M, geo: &MpmcGeometry, index: u32) -> Record<'a> {
    debug_assert!(index < geo.max_peers);
    let base = u64::from(index) * RECORD_SIZE;
    Record {
        gen_state: mem.word(base + GEN_STATE),
        owner: mem.word(base + OWNER),
        claim: mem.word(base + CLAIM),
        messages: mem.word(base + MESSAGES),
        bytes: mem.word(base + BYTES),
    }
}

fn attached_count<M: RingMemory>(mem: &M, role: u64) -> &AtomicU32 {
    &mem.control().peers.attached[role_index(role)]
}

/// Takes a free record (never held, closed, or left by a dead process) for `role`.
/// `me` is this process's owner word.
pub(crate) fn attach<M: RingMemory>(
    mem: &M,
    geo: &MpmcGeometry,
    role: u64,
    me: u64,
) -> Result<Membership> {
    for _ in 0..ATTACH_ROUNDS {
        for index in 0..geo.max_peers {
            let rec = record(mem, geo, index);
            let (_, _, st) = split(rec.gen_state.load(Acquire));
            let owner = rec.owner.load(Acquire);
            let holder_gone = owner == 0 || !mem.owner_alive(owner);
            let eligible = match st {
                // A live owner of a free or closed record is attaching or closing it.
                state::FREE | state::CLOSED | state::DEAD => holder_gone,
                state::ATTACHED => owner != 0 && !mem.owner_alive(owner),
                _ => false,
            };
            // ORDERING G1: AcqRel, one winner among racing attachers; the winner sees the
            // record as its previous holder left it.
            if !eligible
                || rec
                    .owner
                    .compare_exchange(owner, me, AcqRel, Acquire)
                    .is_err()
            {
                continue;
            }
            // Whatever the dead or closed holder claimed is no longer claimed by a live one.
            rec.claim.store(claim::NONE, Release);
            return take_record(mem, &rec, index, role);
        }
    }
    Err(Error::RegistryFull {
        max_peers: geo.max_peers,
    })
}

/// Second half of attach: we own `rec.owner`; move `gen_state` to a new generation.
fn take_record<M: RingMemory>(
    mem: &M,
    rec: &Record<'_>,
    index: u32,
    role: u64,
) -> Result<Membership> {
    let ctl = mem.control();
    for _ in 0..CAS_ATTEMPTS {
        let word = rec.gen_state.load(Acquire);
        let (generation, old_role, st) = split(word);
        let generation = generation.wrapping_add(1);
        // ORDERING G2: AcqRel against a reaper's CAS of the same word (exactly one of us
        // moves an ATTACHED record, so its count is decremented once).
        if rec
            .gen_state
            .compare_exchange(
                word,
                gen_state(generation, role, state::ATTACHED),
                AcqRel,
                Acquire,
            )
            .is_ok()
        {
            if st == state::ATTACHED {
                // We replaced a dead holder nobody had reaped: its count goes.
                attached_count(mem, old_role).fetch_sub(1, Release);
            }
            if old_role != role {
                retire_counters(mem, rec, old_role);
            }
            attached_count(mem, role).fetch_add(1, Release);
            ctl.peers.ever_attached[role_index(role)].fetch_add(1, Release);
            return Ok(Membership {
                index,
                generation,
                role,
            });
        }
    }
    Err(Error::corrupted(format!(
        "peer record {index} kept changing during {CAS_ATTEMPTS} attempts"
    )))
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
pub(crate) fn totals<M: RingMemory>(mem: &M, geo: &MpmcGeometry, role: u64) -> (u64, u64) {
    let peers = &mem.control().peers;
    let idx = role_index(role);
    let mut messages = peers.retired_messages[idx].load(Relaxed);
    let mut bytes = peers.retired_bytes[idx].load(Relaxed);
    for index in 0..geo.max_peers {
        let rec = record(mem, geo, index);
        let (_, r, _) = split(rec.gen_state.load(Acquire));
        if r == role {
            messages = messages.wrapping_add(rec.messages.load(Relaxed));
            bytes = bytes.wrapping_add(rec.bytes.load(Relaxed));
        }
    }
    (messages, bytes)
}

/// Gives the record back: CLOSED, count decremented, owner cleared. A record that was
/// reaped meanwhile (we were declared dead) is left alone.
pub(crate) fn close<M: RingMemory>(mem: &M, geo: &MpmcGeometry, me: &Membership) {
    let rec = record(mem, geo, me.index);
    rec.claim.store(claim::NONE, Release);
    let closed = gen_state(me.generation, me.role, state::CLOSED);
    if rec
        .gen_state
        .compare_exchange(me.attached_word(), closed, AcqRel, Relaxed)
        .is_ok()
    {
        // ORDERING E1 (pairs with E2): Release, so a consumer that reads the count this
        // decrement leaves also sees every slot this producer published.
        attached_count(mem, me.role).fetch_sub(1, Release);
        rec.owner.store(0, Release);
    }
}

/// Marks every ATTACHED record of `role` whose process has died DEAD (and uncounts it).
/// Returns how many this call reaped.
pub(crate) fn reap<M: RingMemory>(mem: &M, geo: &MpmcGeometry, role: u64) -> u32 {
    let mut reaped = 0;
    for index in 0..geo.max_peers {
        let rec = record(mem, geo, index);
        let word = rec.gen_state.load(Acquire);
        let (generation, r, st) = split(word);
        if st != state::ATTACHED || r != role {
            continue;
        }
        let owner = rec.owner.load(Acquire);
        if owner == 0 || mem.owner_alive(owner) {
            continue;
        }
        // ORDERING G2: one of the reapers and a taking-over attacher moves the record.
        if rec
            .gen_state
            .compare_exchange(word, gen_state(generation, r, state::DEAD), AcqRel, Relaxed)
            .is_ok()
        {
            attached_count(mem, role).fetch_sub(1, Release);
            reaped += 1;
        }
    }
    reaped
}

/// Whether a live holder of `role` may own position `pos` (its claim word covers it). A
/// holder stores its claim before the compare-and-swap that takes a position and clears it
/// after publishing or releasing, so for a position already taken: no live claimer means
/// its taker has finished with it or died.
pub(crate) fn live_claimer<M: RingMemory>(
    mem: &M,
    geo: &MpmcGeometry,
    role: u64,
    pos: u64,
) -> bool {
    (0..geo.max_peers).any(|index| {
        let rec = record(mem, geo, index);
        let (_, r, _) = split(rec.gen_state.load(Acquire));
        // ORDERING K3 (pairs with K1): Acquire, so a claim cleared after publishing means
        // the publication is visible to the re-check that follows.
        let claimed = rec.claim.load(Acquire);
        if r != role || !claim::covers(claimed, pos) {
            return false;
        }
        let owner = rec.owner.load(Acquire);
        owner != 0 && mem.owner_alive(owner)
    })
}

/// Whether some record of `role` belongs to a process that died without closing.
pub(crate) fn any_dead<M: RingMemory>(mem: &M, geo: &MpmcGeometry, role: u64) -> bool {
    (0..geo.max_peers).any(|index| {
        let rec = record(mem, geo, index);
        let (_, r, st) = split(rec.gen_state.load(Acquire));
        r == role
            && (st == state::DEAD
                || (st == state::ATTACHED && !mem.owner_alive(rec.owner.load(Acquire))))
    })
}

/// Every record that has ever been held.
pub(crate) fn list<M: RingMemory>(mem: &M, geo: &MpmcGeometry) -> Vec<PeerInfo> {
    (0..geo.max_peers)
        .filter_map(|index| {
            let rec = record(mem, geo, index);
            let (generation, role, st) = split(rec.gen_state.load(Acquire));
            if st == state::FREE && generation == 0 {
                return None;
            }
            let owner = rec.owner.load(Acquire);
            let status = match st {
                state::ATTACHED if mem.owner_alive(owner) => PeerStatus::Attached,
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
            })
        })
        .collect()
}
