//! What the listing commands show of a ring, read without attaching to it: the same
//! structure is printed as a table row, as `stat` text, and as JSON (schema
//! `shmring.ring/1`, documented in `docs/cli.md`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use shmring::any::{self, KindName};
use shmring::{Error, ErrorKind, KindStats, OpenOptions, PeerInfo, PeerStatus, Role};

/// Where POSIX shared-memory names live on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// The JSON schema version of [`RingView`]; bumped on any incompatible change.
pub const RING_SCHEMA: &str = "shmring.ring/1";

/// One ring as the tool shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RingView {
    /// `/name` for a ring in /dev/shm, the path otherwise.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// `ok`, `dead-peers`, `unfinished`, `corrupted`, `incompatible`, `no-access`, `error`.
    pub health: &'static str,
    /// Why the ring could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The file's owner.
    pub owner_uid: u32,
    /// Permission bits, octal.
    pub mode: String,
    /// Bytes of the file.
    pub size_bytes: u64,
    /// What the segment holds (absent when it could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring: Option<RingState>,
}

/// The contents of a readable ring.
#[derive(Clone, Debug, Serialize)]
pub struct RingState {
    /// `spsc`, `mpmc` or `broadcast`.
    pub kind: &'static str,
    /// `spin`, `spin-then-yield` or `futex`.
    pub wait_strategy: String,
    /// SPSC: bytes of the data region; broadcast: of the byte ring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// MPMC: slots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<u64>,
    /// MPMC: most handles attached at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_peers: Option<u32>,
    /// MPMC with priority lanes (more than one): each lane, lowest priority first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanes: Option<Vec<LaneView>>,
    /// Largest payload.
    pub max_message: u64,
    /// Messages published and not yet released.
    pub messages_in_flight: u64,
    /// SPSC: bytes of published, unreleased records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in_flight: Option<u64>,
    /// Since creation.
    pub messages_sent: u64,
    /// Since creation.
    pub bytes_sent: u64,
    /// Since creation.
    pub messages_received: u64,
    /// Since creation.
    pub bytes_received: u64,
    /// Producer side.
    pub producers: RoleView,
    /// Consumer side.
    pub consumers: RoleView,
    /// MPMC: claims of dead producers skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_skipped: Option<u64>,
    /// MPMC: messages lost with dead consumers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_dropped: Option<u64>,
    /// Broadcast: `lossless` or `overwrite`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Broadcast: most readers at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_readers: Option<u32>,
    /// Broadcast: bytes of the records still in the ring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<u64>,
    /// Broadcast: messages readers lost to overwrites, summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_missed: Option<u64>,
    /// Broadcast: every reader record, with its position and lag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readers: Option<Vec<ReaderView>>,
    /// What the ring's telemetry recorded (absent when it keeps none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryView>,
    /// Every peer record that has been held.
    pub peers: Vec<PeerView>,
}

/// One priority lane of an MPMC ring.
#[derive(Clone, Debug, Serialize)]
pub struct LaneView {
    /// The lane's priority.
    pub priority: u32,
    /// Positions taken and not released.
    pub in_flight: u64,
    /// Positions producers took since creation.
    pub sent: u64,
    /// Positions consumers took since creation.
    pub received: u64,
}

/// One broadcast reader record.
#[derive(Clone, Debug, Serialize)]
pub struct ReaderView {
    /// Registry record (its `peers` index).
    pub index: u32,
    /// A durable reader's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `attached`, `attached-dead`, `closed`, `dead`, `unknown`.
    pub status: &'static str,
    /// The (last) holder's process id.
    pub pid: u32,
    /// Bytes published that it has not released.
    pub lag_bytes: u64,
    /// Messages published that it has not released.
    pub lag_messages: u64,
    /// Messages released by this record's holders.
    pub delivered: u64,
    /// Messages this record's holders lost to overwrites.
    pub missed: u64,
}

/// A telemetry ring's recordings.
#[derive(Clone, Debug, Serialize)]
pub struct TelemetryView {
    /// Producers stamp one message in this many.
    pub stamp_every: u32,
    /// Messages stamped.
    pub stamped: u64,
    /// Stamped messages received (the histogram's total).
    pub timed: u64,
    /// Commit-to-receive latency: upper edges of the buckets holding the 50th, 99th and
    /// 100th percentiles, in nanoseconds.
    pub latency_p50_ns: Option<u64>,
    /// See `latency_p50_ns`.
    pub latency_p99_ns: Option<u64>,
    /// See `latency_p50_ns`.
    pub latency_max_ns: Option<u64>,
    /// Bucket `b` counts latencies of `[2^b, 2^(b+1))` ns.
    pub latency_buckets: Vec<u64>,
    /// Most messages in flight a producer saw when stamping.
    pub in_flight_high_water: u64,
    /// Seconds since either side was last active.
    pub idle_seconds: Option<f64>,
}

/// One role's ends.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RoleView {
    /// Attached and running.
    pub alive: u32,
    /// Attached in the segment, but their process has died.
    pub dead: u32,
    /// Asleep waiting (futex strategy).
    pub waiting: u32,
    /// Died without closing, since creation.
    pub died_since_creation: u64,
}

/// One peer record.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// Record index.
    pub index: u32,
    /// `producer`, `consumer` or `unknown`.
    pub role: &'static str,
    /// `attached`, `attached-dead`, `closed`, `dead`, `unknown`.
    pub status: &'static str,
    /// The (last) holder's process id, in its own PID namespace.
    pub pid: u32,
    /// Attaches to this record.
    pub generation: u32,
    /// Messages published or released through it.
    pub messages: u64,
    /// Payload bytes likewise.
    pub bytes: u64,
}

/// How the tool opens rings: it only looks, so any owner and mode are accepted, pages are
/// not faulted in, and an unfinished ring is reported at once.
pub fn look_only() -> OpenOptions {
    OpenOptions::new()
        .any_owner(true)
        .writable_by_others(true)
        .populate(false)
        .init_timeout(Duration::from_millis(50))
}

/// `/name` for a name given with or without its leading slash.
pub fn shm_name(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    }
}

/// Every ring file in `dir` (sorted by name); other files are skipped.
pub fn ring_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_file() && any::is_ring_file(entry.path()) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The name a ring file in /dev/shm is opened by; other paths are their own name.
pub fn name_of(path: &Path) -> String {
    match path.strip_prefix(SHM_DIR) {
        Ok(rest) if rest.components().count() == 1 => format!("/{}", rest.display()),
        _ => path.display().to_string(),
    }
}

/// Reads the ring at `path` (a `/dev/shm` file is opened by its name), never failing: what
/// could not be read is in `health` and `error`.
pub fn inspect(path: &Path) -> RingView {
    let name = name_of(path);
    let meta = std::fs::metadata(path).ok();
    let opened = if name.starts_with('/') && !name[1..].contains('/') {
        any::Ring::open(&name, &look_only())
    } else {
        any::Ring::open_at(path, &look_only())
    };
    let (health, error, ring) = match opened {
        Ok(ring) => {
            let state = state_of(&ring);
            let health = if state.producers.dead + state.consumers.dead > 0 {
                "dead-peers"
            } else {
                "ok"
            };
            (health, None, Some(state))
        }
        Err(e) => (health_of(&e), Some(e.to_string()), None),
    };
    RingView {
        name,
        path: path.to_path_buf(),
        health,
        error,
        owner_uid: meta.as_ref().map_or(0, |m| m.uid()),
        mode: meta
            .as_ref()
            .map_or_else(|| "?".into(), |m| format!("{:04o}", m.mode() & 0o7777)),
        size_bytes: meta.map_or(0, |m| m.len()),
        ring,
    }
}

fn health_of(err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Uninitialized => "unfinished",
        ErrorKind::Corrupted => "corrupted",
        ErrorKind::Incompatible => "incompatible",
        ErrorKind::PermissionDenied => "no-access",
        _ => "error",
    }
}

fn state_of(ring: &any::Ring) -> RingState {
    let stats = ring.stats();
    let peers = ring.peers();
    let mut producers = RoleView {
        waiting: stats.producers_waiting,
        died_since_creation: stats.producers_died,
        ..RoleView::default()
    };
    let mut consumers = RoleView {
        waiting: stats.consumers_waiting,
        died_since_creation: stats.consumers_died,
        ..RoleView::default()
    };
    for peer in &peers {
        let side = match peer.role {
            Some(Role::Producer) => &mut producers,
            Some(Role::Consumer) => &mut consumers,
            _ => continue,
        };
        match peer.status {
            PeerStatus::Attached => side.alive += 1,
            PeerStatus::AttachedDead => side.dead += 1,
            _ => {}
        }
    }
    let mut state = RingState {
        kind: ring.kind().as_str(),
        wait_strategy: ring.wait_strategy().to_string(),
        capacity_bytes: None,
        slots: None,
        max_peers: None,
        lanes: None,
        max_message: stats.max_message,
        messages_in_flight: stats.messages_in_flight,
        bytes_in_flight: None,
        messages_sent: stats.messages_sent,
        bytes_sent: stats.bytes_sent,
        messages_received: stats.messages_received,
        bytes_received: stats.bytes_received,
        producers,
        consumers,
        claims_skipped: None,
        messages_dropped: None,
        policy: None,
        max_readers: None,
        retained_bytes: None,
        messages_missed: None,
        readers: None,
        telemetry: stats.telemetry.map(|t| {
            let ns = |q: f64| t.latency_quantile(q).map(|d| d.as_nanos() as u64);
            TelemetryView {
                stamp_every: t.stamp_every,
                stamped: t.stamped,
                timed: t.timed(),
                latency_p50_ns: ns(0.5),
                latency_p99_ns: ns(0.99),
                latency_max_ns: ns(1.0),
                latency_buckets: t.latency_buckets.to_vec(),
                in_flight_high_water: t.in_flight_high_water,
                idle_seconds: t.since_last_activity().map(|d| d.as_secs_f64()),
            }
        }),
        peers: peers.iter().map(peer_view).collect(),
    };
    match stats.kind {
        KindStats::Spsc {
            capacity,
            used_bytes,
        } => {
            state.capacity_bytes = Some(capacity);
            state.bytes_in_flight = Some(used_bytes);
        }
        KindStats::Mpmc {
            slots,
            max_peers,
            claims_skipped,
            messages_dropped,
            ..
        } => {
            state.slots = Some(slots);
            state.max_peers = Some(max_peers);
            state.claims_skipped = Some(claims_skipped);
            state.messages_dropped = Some(messages_dropped);
        }
        KindStats::Broadcast {
            capacity,
            policy,
            max_readers,
            retained_bytes,
            messages_missed,
            ..
        } => {
            state.capacity_bytes = Some(capacity);
            state.policy = Some(policy.to_string());
            state.max_readers = Some(max_readers);
            state.retained_bytes = Some(retained_bytes);
            state.messages_missed = Some(messages_missed);
        }
        _ => {}
    }
    if let any::Ring::Mpmc(ring) = ring {
        if ring.lanes() > 1 {
            state.lanes = Some(
                ring.lane_stats()
                    .iter()
                    .map(|lane| LaneView {
                        priority: lane.priority,
                        in_flight: lane.in_flight,
                        sent: lane.sent,
                        received: lane.received,
                    })
                    .collect(),
            );
        }
    }
    if let any::Ring::Broadcast(ring) = ring {
        state.readers = Some(
            ring.readers()
                .iter()
                .map(|r| ReaderView {
                    index: r.index,
                    name: r.name.map(|n| n.to_string()),
                    status: r.status.as_str(),
                    pid: r.pid,
                    lag_bytes: r.lag_bytes,
                    lag_messages: r.lag_messages,
                    delivered: r.delivered,
                    missed: r.missed,
                })
                .collect(),
        );
    }
    debug_assert!(KindName::ALL.iter().any(|k| k.as_str() == state.kind));
    state
}

fn peer_view(peer: &PeerInfo) -> PeerView {
    PeerView {
        index: peer.index,
        role: match peer.role {
            Some(Role::Producer) => "producer",
            Some(Role::Consumer) => "consumer",
            None => "unknown",
        },
        status: peer.status.as_str(),
        pid: peer.pid,
        generation: peer.generation,
        messages: peer.messages,
        bytes: peer.bytes,
    }
}

/// A duration for people: `850 ns`, `12.3 µs`, `4.1 ms`, `2.0 s`.
pub fn nanos(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.1} s", ns as f64 / 1e9),
    }
}

/// A byte count for people: `512 B`, `64 KiB`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(65536), "64 KiB");
        assert_eq!(bytes(1536 * 1024), "1.5 MiB");
    }

    #[test]
    fn names_keep_one_leading_slash() {
        assert_eq!(shm_name("feed"), "/feed");
        assert_eq!(shm_name("/feed"), "/feed");
        assert_eq!(name_of(Path::new("/dev/shm/feed")), "/feed");
        assert_eq!(name_of(Path::new("/tmp/rings/feed")), "/tmp/rings/feed");
    }
}
