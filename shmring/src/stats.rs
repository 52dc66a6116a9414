//! Occupancy and counters, read from a segment's control block.

use crate::error::Role;
use crate::layout::geometry::SpscGeometry as Geometry;
use crate::layout::{ControlBlock, PeerRecord, peer_state};
use crate::sync::Ordering::{Acquire, Relaxed};

/// What a role's attach record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerState {
    /// Nobody has attached in this role.
    Free,
    /// A handle holds the role.
    Attached {
        /// The holder's process id.
        pid: u32,
    },
    /// The holder closed its handle.
    Closed {
        /// The last holder's process id.
        pid: u32,
    },
    /// The holder died without closing, and another process found out.
    Dead {
        /// The dead holder's process id.
        pid: u32,
    },
    /// A value this build never writes (a damaged segment).
    Unknown(u32),
}

/// A snapshot of a ring, like `mq_getattr` / `IPC_STAT`. Values are read one by one while
/// both ends may be running, so they are each exact but not mutually atomic.
///
/// ```
/// use shmring::{Config, spsc::Ring};
/// let name = format!("/doc-stats-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
/// let mut tx = ring.producer()?;
/// tx.try_send(b"12345")?;
/// let stats = ring.stats();
/// assert_eq!((stats.messages_sent, stats.messages_in_flight, stats.used_bytes), (1, 1, 16));
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes in the data region.
    pub capacity: u64,
    /// Largest message payload.
    pub max_message: u64,
    /// Bytes of published, unreleased records (headers and padding included).
    pub used_bytes: u64,
    /// Messages published and not yet released.
    pub messages_in_flight: u64,
    /// Messages published since creation.
    pub messages_sent: u64,
    /// Payload bytes published since creation.
    pub bytes_sent: u64,
    /// Messages released by the consumer since creation.
    pub messages_received: u64,
    /// Payload bytes released since creation.
    pub bytes_received: u64,
    /// Consumers asleep (or about to sleep) waiting for data (futex strategy).
    pub consumers_waiting: u32,
    /// Producers asleep (or about to sleep) waiting for space (futex strategy).
    pub producers_waiting: u32,
    /// Producers that died without closing, since creation (counted when found out).
    pub producers_died: u64,
    /// Consumers that died without closing, since creation.
    pub consumers_died: u64,
    /// The producer role.
    pub producer: PeerState,
    /// The consumer role.
    pub consumer: PeerState,
}

fn peer(record: &PeerRecord) -> PeerState {
    let pid = record.pid.load(Relaxed);
    match record.state.load(Relaxed) {
        peer_state::FREE => PeerState::Free,
        peer_state::ATTACHED => PeerState::Attached { pid },
        peer_state::CLOSED => PeerState::Closed { pid },
        peer_state::DEAD => PeerState::Dead { pid },
        other => PeerState::Unknown(other),
    }
}

/// The two role records of an SPSC ring as [`PeerInfo`]s (never-held roles left out);
/// `alive(slot)` says whether a slot's holder lives.
pub(crate) fn spsc_peers(ctl: &ControlBlock, alive: impl Fn(u32) -> bool) -> Vec<PeerInfo> {
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
            })
        })
        .collect()
}

pub(crate) fn stats_of(ctl: &ControlBlock, geometry: Geometry) -> Stats {
    // Consumer first: what it released was sent, so the differences below never go negative
    // for an honest pair (wrapping arithmetic keeps a dishonest one from panicking).
    let received = ctl.consumer.messages.load(Acquire);
    let bytes_received = ctl.consumer.bytes.load(Relaxed);
    let head = ctl.consumer.head.load(Acquire);
    let tail = ctl.producer.tail.load(Acquire);
    let sent = ctl.producer.messages.load(Relaxed);
    let bytes_sent = ctl.producer.bytes.load(Relaxed);
    Stats {
        capacity: geometry.capacity,
        max_message: geometry.max_message,
        used_bytes: tail.wrapping_sub(head).min(geometry.capacity),
        messages_in_flight: sent.saturating_sub(received),
        messages_sent: sent,
        bytes_sent,
        messages_received: received,
        bytes_received,
        consumers_waiting: crate::peers::count(&ctl.consumers.sleepers, 1),
        producers_waiting: crate::peers::count(&ctl.producers.sleepers, 1),
        producers_died: ctl.producers.deaths.load(Relaxed),
        consumers_died: ctl.consumers.deaths.load(Relaxed),
        producer: peer(&ctl.peers.producer),
        consumer: peer(&ctl.peers.consumer),
    }
}

/// What one peer record says: an MPMC registry record, or one of an SPSC ring's two
/// role records (index 0 producer, 1 consumer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Record index.
    pub index: u32,
    /// Which end (`None`: a role byte this build never writes).
    pub role: Option<crate::Role>,
    /// The record's state.
    pub status: PeerStatus,
    /// Process id of the (last) holder.
    pub pid: u32,
    /// Bumped on every attach to this record.
    pub generation: u32,
    /// Messages published (producer) or released (consumer) by this record's holders.
    pub messages: u64,
    /// Payload bytes likewise.
    pub bytes: u64,
}

/// A peer record's state, as `peers()` of either ring kind reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStatus {
    /// Attached, and its process runs.
    Attached,
    /// Attached in the record, but its process has died (not yet reaped).
    AttachedDead,
    /// Closed by its holder.
    Closed,
    /// Its process died without closing; reaped.
    Dead,
    /// A state byte this build never writes.
    Unknown(u8),
}
