//! Building a segment's header (creator) and checking it (opener).
//!
//! The creator sizes the segment, writes its own identity, then every parameter, then
//! `init_state = READY` with Release. An opener Acquires `init_state`; until it reads READY it
//! waits (bounded), and if the recorded creator is dead it says so instead of waiting.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, OpenOptions};
use crate::error::{Error, Result};
use crate::layout::geometry::{HeaderParams, Shape};
use crate::layout::{
    CONTROL_SIZE, FINGERPRINT, LAYOUT_VERSION, MAGIC, RingKind, header_flags, init_state,
};
use crate::os;
use crate::shm::segment::{Location, Segment, TrustPolicy};
use crate::shm::{ShmMemory, control_of};
use crate::sync::Ordering::{Acquire, Relaxed, Release};
use crate::wait::WaitStrategy;

/// A mapped segment whose header has been checked.
pub(crate) struct Attached<G: Shape> {
    pub segment: Arc<Segment>,
    pub geometry: G,
    pub wait: WaitStrategy,
    /// Whether messages carry telemetry stamps.
    pub telemetry: bool,
    /// Whether this call created the segment.
    pub created: bool,
}

/// How often an opener re-checks a segment that is still being initialised.
const INIT_POLL: Duration = Duration::from_millis(1);
/// How many times `create_or_open` retries when the name vanishes between its create and
/// its open (someone unlinked it in between).
const CREATE_OR_OPEN_ATTEMPTS: u32 = 16;

/// Creates a new segment at `location` holding an empty ring of geometry `geometry`;
/// `init` writes the kind's initial data-region words before the header is published.
pub(crate) fn create<G: Shape>(
    location: &Location,
    config: &Config,
    geometry: G,
    init: impl FnOnce(&ShmMemory),
) -> Result<Attached<G>> {
    let params = geometry.header();
    let capacity = geometry.data_len();
    let size = CONTROL_SIZE + capacity;
    let segment = Segment::create(
        location,
        size,
        config.mode(),
        config.populate,
        config.lock_memory,
    )?;
    let segment = Arc::new(segment);
    let ctl = control_of(&segment);
    let me = os::current_process();
    let h = &ctl.header;
    // Identity first: an opener that finds the header unfinished can tell a dead creator.
    h.creator_pid.store(me.pid, Relaxed);
    h.creator_start_time.store(me.start_time, Relaxed);
    h.magic.store(MAGIC, Relaxed);
    h.layout_version.store(LAYOUT_VERSION, Relaxed);
    h.ring_kind.store(G::KIND as u32, Relaxed);
    h.fingerprint.store(FINGERPRINT, Relaxed);
    h.wait_strategy.store(config.wait as u32, Relaxed);
    h.capacity.store(capacity, Relaxed);
    h.max_message.store(params.max_message, Relaxed);
    h.slot_count.store(params.slot_count, Relaxed);
    h.max_peers.store(params.max_peers, Relaxed);
    h.policy.store(params.policy, Relaxed);
    h.lag_limit.store(params.lag_limit, Relaxed);
    h.lanes.store(params.lanes, Relaxed);
    h.segment_size.store(size, Relaxed);
    h.data_offset.store(CONTROL_SIZE, Relaxed);
    let mut flags = if config.group_access {
        header_flags::GROUP_ACCESS
    } else {
        0
    };
    if config.telemetry > 0 {
        flags |= header_flags::TELEMETRY;
        crate::telemetry::set_up(&ctl.telemetry, config.telemetry);
    }
    h.flags.store(flags, Relaxed);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    h.created_unix_ns.store(now_ns, Relaxed);
    h.initial_position.store(config.initial_position, Relaxed);
    ctl.producer.tail.store(config.initial_position, Relaxed);
    ctl.consumer.head.store(config.initial_position, Relaxed);
    init(&ShmMemory::new(segment.clone(), capacity));
    // ORDERING H1 (pairs with H2): Release publishes every field above to an opener that
    // Acquires READY.
    h.init_state.store(init_state::READY, Release);
    segment.release_creator();
    Ok(Attached {
        segment,
        geometry,
        wait: config.wait,
        telemetry: config.telemetry > 0,
        created: true,
    })
}

/// Opens the existing segment at `location` and checks it holds a ring of geometry `G`.
pub(crate) fn open<G: Shape>(location: &Location, options: &OpenOptions) -> Result<Attached<G>> {
    if let Location::Shm(name) = location {
        crate::shm::segment::validate_name(name)?;
    }
    let fd = Segment::open_fd(location)?;
    open_fd(fd, location, options)
}

/// Opens the segment behind `fd` (found at `location`) and checks it holds a ring of
/// geometry `G`.
pub(crate) fn open_fd<G: Shape>(
    fd: OwnedFd,
    location: &Location,
    options: &OpenOptions,
) -> Result<Attached<G>> {
    attached(open_ready(fd, location, options)?, options)
}

/// Maps the segment behind `fd` once its creator has finished it (waiting at most the
/// options' init timeout); nothing about its kind is checked yet.
pub(crate) fn open_ready(
    fd: OwnedFd,
    location: &Location,
    options: &OpenOptions,
) -> Result<Segment> {
    let trust = TrustPolicy {
        any_owner: options.any_owner,
        writable_by_others: options.writable_by_others,
    };
    let deadline = Instant::now() + options.init_timeout;
    // The creator sizes the segment in one ftruncate; until then it is empty.
    let size = loop {
        let info = Segment::check_file(&fd, location, trust)?;
        if info.size >= CONTROL_SIZE {
            break info.size;
        }
        if info.size > 0 {
            return Err(Error::incompatible(format!(
                "{} is not a shmring segment ({} bytes, less than a ring's {CONTROL_SIZE}-byte \
                 header)",
                location.display(),
                info.size
            )));
        }
        // Empty. A creator holds its lock from before it sizes the file; an empty file
        // whose creator is gone and that has not changed for the whole timeout will never
        // become a ring.
        let stale = info
            .changed
            .elapsed()
            .is_ok_and(|age| age >= options.init_timeout);
        let creator = *location == Location::Anonymous || Segment::creator_busy(&fd);
        if (stale && !creator) || Instant::now() >= deadline {
            return Err(Error::Uninitialized {
                creator_pid: None,
                creator_alive: creator,
            });
        }
        thread::sleep(INIT_POLL);
    };
    Segment::hold(&fd, location, deadline)?;
    let segment = Segment::map(fd, location, size, options.populate, options.lock_memory)?;
    let h = &control_of(&segment).header;
    loop {
        // ORDERING H2 (pairs with H1): Acquire, so the fields read below are the creator's.
        let state = h.init_state.load(Acquire);
        if state == init_state::READY {
            break;
        }
        let magic = h.magic.load(Relaxed);
        if state != init_state::CREATING || (magic != 0 && magic != MAGIC) {
            // Not something a creator is half-way through: not ours at all, or damaged.
            not_a_ring(&segment, magic)?;
            return Err(Error::corrupted(format!("unknown init state {state}")));
        }
        let pid = h.creator_pid.load(Relaxed);
        // The creator holds its lock until READY: free means it died (in whatever PID
        // namespace it ran) — or that it finished since we looked, for it gives the lock
        // back right after storing READY: look again before calling it dead.
        let alive = Segment::creator_busy(segment.fd());
        if !alive && h.init_state.load(Acquire) == init_state::READY {
            break;
        }
        if !alive || Instant::now() >= deadline {
            return Err(Error::Uninitialized {
                creator_pid: (pid != 0).then_some(pid),
                creator_alive: alive,
            });
        }
        thread::sleep(INIT_POLL);
    }
    Ok(segment)
}

/// Checks that a ready segment holds a ring of geometry `G` (and the options' wait
/// strategy, if they insist on one).
pub(crate) fn attached<G: Shape>(segment: Segment, options: &OpenOptions) -> Result<Attached<G>> {
    let (geometry, wait, telemetry) = validate::<G>(&segment, options)?;
    Ok(Attached {
        segment: Arc::new(segment),
        geometry,
        wait,
        telemetry,
        created: false,
    })
}

/// The kind of ring a ready segment holds, after checking it is a shmring segment of this
/// layout (the rest is checked when it is attached as that kind).
pub(crate) fn kind_of(segment: &Segment) -> Result<RingKind> {
    let h = &control_of(segment).header;
    same_layout(segment)?;
    let raw = h.ring_kind.load(Relaxed);
    RingKind::from_u32(raw).ok_or_else(|| Error::incompatible(format!("unknown ring kind {raw}")))
}

/// `Incompatible` unless the segment is a shmring segment of this build's layout.
fn same_layout(segment: &Segment) -> Result<()> {
    let h = &control_of(segment).header;
    not_a_ring(segment, h.magic.load(Relaxed))?;
    let version = h.layout_version.load(Relaxed);
    if version != LAYOUT_VERSION {
        return Err(Error::incompatible(format!(
            "layout version {version}, this build reads version {LAYOUT_VERSION}"
        )));
    }
    let fingerprint = h.fingerprint.load(Relaxed);
    if fingerprint != FINGERPRINT {
        return Err(Error::incompatible(format!(
            "layout fingerprint {fingerprint:#018x}, this build has {FINGERPRINT:#018x} \
             (built for another architecture or layout)"
        )));
    }
    Ok(())
}

/// `Incompatible` unless `magic` is shmring's.
fn not_a_ring(segment: &Segment, magic: u64) -> Result<()> {
    if magic == MAGIC {
        return Ok(());
    }
    if magic.swap_bytes() == MAGIC {
        return Err(Error::incompatible(
            "the ring was made on a machine of the other byte order",
        ));
    }
    Err(Error::incompatible(format!(
        "{} is not a shmring segment (it does not start with shmring's magic number; \
         found {magic:#018x})",
        segment.location().display()
    )))
}

/// Every header field read once into a local and checked.
fn validate<G: Shape>(segment: &Segment, options: &OpenOptions) -> Result<(G, WaitStrategy, bool)> {
    let kind = G::KIND;
    let h = &control_of(segment).header;
    same_layout(segment)?;
    let raw_kind = h.ring_kind.load(Relaxed);
    match RingKind::from_u32(raw_kind) {
        Some(found) if found == kind => {}
        Some(found) => {
            return Err(Error::incompatible(format!(
                "the segment holds a {found:?} ring, not a {kind:?} ring"
            )));
        }
        None => return Err(Error::incompatible(format!("unknown ring kind {raw_kind}"))),
    }
    let raw_wait = h.wait_strategy.load(Relaxed);
    let wait = WaitStrategy::from_u32(raw_wait)
        .ok_or_else(|| Error::incompatible(format!("unknown wait strategy {raw_wait}")))?;
    if let Some(expected) = options.expect_wait {
        if expected != wait {
            return Err(Error::incompatible(format!(
                "{} waits with the {wait} strategy, and this call asked for {expected} \
                 (create_or_open needs the creator's wait strategy; Ring::open accepts any)",
                segment.location().display()
            )));
        }
    }
    let params = HeaderParams {
        capacity: h.capacity.load(Relaxed),
        max_message: h.max_message.load(Relaxed),
        slot_count: h.slot_count.load(Relaxed),
        max_peers: h.max_peers.load(Relaxed),
        policy: h.policy.load(Relaxed),
        lag_limit: h.lag_limit.load(Relaxed),
        lanes: h.lanes.load(Relaxed),
    };
    let capacity = params.capacity;
    let geometry =
        G::from_header(&params).map_err(|e| Error::corrupted(format!("header parameters: {e}")))?;
    if geometry.data_len() != capacity {
        return Err(Error::corrupted(format!(
            "data region of {capacity} bytes does not match its slots and peers"
        )));
    }
    let data_offset = h.data_offset.load(Relaxed);
    if data_offset != CONTROL_SIZE {
        return Err(Error::corrupted(format!("data offset {data_offset}")));
    }
    let size = h.segment_size.load(Relaxed);
    if size != CONTROL_SIZE + capacity {
        return Err(Error::corrupted(format!(
            "segment size {size} does not match capacity {capacity}"
        )));
    }
    if segment.len() < size {
        return Err(Error::corrupted(format!(
            "the segment is {} bytes but its header describes {size}",
            segment.len()
        )));
    }
    let telemetry = h.flags.load(Relaxed) & header_flags::TELEMETRY != 0;
    if telemetry && geometry.max_message() < crate::telemetry::STAMP_BYTES as u64 {
        return Err(Error::corrupted(format!(
            "telemetry is on, and messages of at most {} bytes have no room for its stamp",
            geometry.max_message()
        )));
    }
    Ok((geometry, wait, telemetry))
}

/// Creates the ring, or opens it if it exists; exactly one racing caller creates it.
/// An existing ring must have geometry `wanted` and `config`'s wait strategy.
pub(crate) fn create_or_open<G: Shape>(
    location: &Location,
    config: &Config,
    wanted: G,
    init: impl Fn(&ShmMemory),
) -> Result<Attached<G>> {
    let mut last = None;
    for _ in 0..CREATE_OR_OPEN_ATTEMPTS {
        match create(location, config, wanted, &init) {
            Err(Error::AlreadyExists { .. }) => {}
            done => return done,
        }
        let options = config.open.clone().expect_wait_strategy(config.wait);
        match open::<G>(location, &options) {
            Ok(found) => {
                if found.telemetry != (config.telemetry > 0) {
                    let (has, asked) = if found.telemetry {
                        ("on", "off")
                    } else {
                        ("off", "on")
                    };
                    return Err(Error::incompatible(format!(
                        "{} exists with telemetry {has}, and this call asked for it {asked}",
                        location.display()
                    )));
                }
                if found.geometry != wanted {
                    return Err(Error::incompatible(format!(
                        "{} exists with {}, and this call asked for {wanted}: use the \
                         same parameters, or Ring::open to take it as it is",
                        location.display(),
                        found.geometry
                    )));
                }
                return Ok(found);
            }
            // Unlinked between our create and our open: try again.
            Err(err @ Error::NotFound { .. }) => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or(Error::Timeout))
}
