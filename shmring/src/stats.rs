//! What statistics and peer listings report, for every ring kind. Each kind's algorithm
//! module fills them in from its control block (`algo::spsc::stats`, `algo::mpmc::stats`).

use crate::layout::ControlBlock;
use crate::sync::Ordering::Relaxed;

/// A snapshot of a ring of any kind, like `mq_getattr` / `IPC_STAT`. Values are read one
/// by one while the ends may be running, so they are each exact but not mutually atomic.
///
/// ```
/// use shmring::{Config, KindStats, spsc::Ring};
/// let name = format!("/doc-stats-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
/// let mut tx = ring.producer()?;
/// tx.try_send(b"12345")?;
/// let stats = ring.stats();
/// assert_eq!((stats.messages_sent, stats.messages_in_flight, stats.producers), (1, 1, 1));
/// assert!(matches!(stats.kind, KindStats::Spsc { used_bytes: 16, .. }));
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Largest message payload.
    pub max_message: u64,
    /// Messages published (MPMC: positions taken by producers) and not yet released.
    pub messages_in_flight: u64,
    /// Messages published since creation.
    pub messages_sent: u64,
    /// Payload bytes published since creation.
    pub bytes_sent: u64,
    /// Messages released by consumers since creation.
    pub messages_received: u64,
    /// Payload bytes released since creation.
    pub bytes_received: u64,
    /// Producers attached now (including dead ones not yet found out).
    pub producers: u32,
    /// Consumers attached now (likewise).
    pub consumers: u32,
    /// Producers asleep (or about to sleep) waiting for space (futex strategy).
    pub producers_waiting: u32,
    /// Consumers asleep (or about to sleep) waiting for data (futex strategy).
    pub consumers_waiting: u32,
    /// Producers that died without closing, since creation (counted when found out).
    pub producers_died: u64,
    /// Consumers that died without closing, since creation.
    pub consumers_died: u64,
    /// What only this kind of ring has.
    pub kind: KindStats,
    /// What the ring's telemetry recorded, if it keeps any ([`Config::telemetry`]).
    ///
    /// [`Config::telemetry`]: crate::Config::telemetry
    pub telemetry: Option<crate::Telemetry>,
}

/// The part of [`Stats`] that depends on the ring's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KindStats {
    /// An SPSC ring: one byte ring of records.
    Spsc {
        /// Bytes in the data region.
        capacity: u64,
        /// Bytes of published, unreleased records (headers and padding included).
        used_bytes: u64,
    },
    /// An MPMC ring: sequence-numbered slots and a peer registry.
    Mpmc {
        /// Number of slots (of each lane).
        slots: u64,
        /// Peer registry records.
        max_peers: u32,
        /// Priority lanes (1: none); per-lane figures from `Ring::lane_stats`.
        lanes: u32,
        /// Claims of dead producers that consumers skipped (nothing was published there).
        claims_skipped: u64,
        /// Messages that dead consumers had taken and not released.
        messages_dropped: u64,
    },
    /// A broadcast ring: one byte ring, each reader at its own position.
    Broadcast {
        /// Bytes of the byte ring.
        capacity: u64,
        /// What the producer does when the slowest reader is a ring behind.
        policy: crate::layout::geometry::Policy,
        /// Most readers at once.
        max_readers: u32,
        /// `Lossless`: bytes a reader may fall behind and still hold the producer back
        /// (`capacity` when there is no limit).
        lag_limit: u64,
        /// Bytes of the records still in the ring (from the oldest retained to the newest).
        retained_bytes: u64,
        /// Messages lost to overwrites, summed over every reader record.
        messages_missed: u64,
    },
}

/// The role lines' part of the statistics (the rest zero), for a ring whose slot bits
/// take `words` words.
pub(crate) fn roles(ctl: &ControlBlock, words: usize) -> Stats {
    use crate::peers::count;
    Stats {
        max_message: 0,
        messages_in_flight: 0,
        messages_sent: 0,
        bytes_sent: 0,
        messages_received: 0,
        bytes_received: 0,
        producers: count(&ctl.producers.present, words),
        consumers: count(&ctl.consumers.present, words),
        producers_waiting: count(&ctl.producers.sleepers, words),
        consumers_waiting: count(&ctl.consumers.sleepers, words),
        producers_died: ctl.producers.deaths.load(Relaxed),
        consumers_died: ctl.consumers.deaths.load(Relaxed),
        kind: KindStats::Spsc {
            capacity: 0,
            used_bytes: 0,
        },
        telemetry: None,
    }
}

impl Stats {
    /// These statistics with the kind's part set.
    pub(crate) fn with_kind(mut self, kind: KindStats) -> Stats {
        self.kind = kind;
        self
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
    /// A broadcast reader's durable name (`None`: anonymous, or another kind of ring).
    pub name: Option<PeerName>,
}

/// A durable broadcast reader's name: 1 to 32 of `[A-Za-z0-9._-]`, kept in the segment.
///
/// ```
/// use shmring::PeerName;
/// let name = PeerName::new("risk-engine")?;
/// assert_eq!(name.as_str(), "risk-engine");
/// assert!(PeerName::new("no spaces").is_err());
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerName {
    bytes: [u8; crate::layout::broadcast::NAME_LEN],
}

impl PeerName {
    /// Checks `name`: `InvalidArgument` unless it is 1 to 32 of `[A-Za-z0-9._-]`.
    pub fn new(name: &str) -> crate::Result<PeerName> {
        let ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
        if name.is_empty()
            || name.len() > crate::layout::broadcast::NAME_LEN
            || !name.bytes().all(ok)
        {
            return Err(crate::Error::InvalidArgument {
                detail: format!(
                    "reader name {name:?} must be 1 to {} of [A-Za-z0-9._-]",
                    crate::layout::broadcast::NAME_LEN
                ),
            });
        }
        let mut bytes = [0u8; crate::layout::broadcast::NAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(PeerName { bytes })
    }

    /// A name as stored (zero-padded); `None` for all zeros or bytes `new` would refuse.
    pub(crate) fn from_bytes(bytes: [u8; crate::layout::broadcast::NAME_LEN]) -> Option<PeerName> {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        if bytes[len..].iter().any(|&b| b != 0) {
            return None;
        }
        let text = std::str::from_utf8(&bytes[..len]).ok()?;
        PeerName::new(text).ok()
    }

    pub(crate) fn as_bytes_padded(&self) -> &[u8; crate::layout::broadcast::NAME_LEN] {
        &self.bytes
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        let len = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.bytes.len());
        // `new` admits ASCII only.
        std::str::from_utf8(&self.bytes[..len]).unwrap_or("")
    }
}

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
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

impl PeerStatus {
    /// The state in one word: `attached`, `attached-dead`, `closed`, `dead` or `unknown`.
    ///
    /// ```
    /// assert_eq!(shmring::PeerStatus::AttachedDead.as_str(), "attached-dead");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Attached => "attached",
            PeerStatus::AttachedDead => "attached-dead",
            PeerStatus::Closed => "closed",
            PeerStatus::Dead => "dead",
            PeerStatus::Unknown(_) => "unknown",
        }
    }
}

/// What one priority lane of an MPMC ring holds and has carried
/// ([`Ring::lane_stats`](crate::mpmc::Ring::lane_stats)). Counts are positions: a message sent,
/// a grant given back unused, or a claim of a producer that died each take one.
///
/// ```
/// use shmring::{Config, mpmc::Ring};
/// let name = format!("/doc-lane-stats-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().lanes(4).slots(16))?;
/// let mut tx = ring.producer()?;
/// tx.try_send_priority(b"urgent", 3)?;
/// let lanes = ring.lane_stats();
/// assert_eq!((lanes[3].priority, lanes[3].in_flight, lanes[3].sent), (3, 1, 1));
/// assert_eq!(lanes[0].sent, 0);
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneStats {
    /// The lane's priority (its index).
    pub priority: u32,
    /// Slots of the lane.
    pub slots: u64,
    /// Positions taken by producers and not yet released by consumers.
    pub in_flight: u64,
    /// Positions producers have taken in this lane since the ring was created.
    pub sent: u64,
    /// Positions consumers have taken (or skipped) in this lane.
    pub received: u64,
}
