//! Occupancy and counters, read from a segment's control block.

use crate::layout::{ControlBlock, PeerRecord, peer_state};
use crate::spsc::ring::Geometry;
use crate::sync::Ordering::{Acquire, Relaxed};

/// What a role's attach record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Consumers asleep (or about to sleep) waiting for data (futex / condvar strategies).
    pub consumers_waiting: u32,
    /// Producers asleep (or about to sleep) waiting for space (futex / condvar strategies).
    pub producers_waiting: u32,
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
        other => PeerState::Unknown(other),
    }
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
        consumers_waiting: ctl.data_wake.waiters.load(Relaxed),
        producers_waiting: ctl.space_wake.waiters.load(Relaxed),
        producer: peer(&ctl.peers.producer),
        consumer: peer(&ctl.peers.consumer),
    }
}
