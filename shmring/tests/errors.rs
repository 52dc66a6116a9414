//! One test per failure a user can meet, each on a real segment: the right error variant,
//! and nothing lost or changed by the failed call.

mod common;

use std::fs::{File, OpenOptions as FileOptions};
use std::mem::offset_of;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::ShmName;
use shmring::layout::{CONTROL_SIZE, ControlBlock, SegmentHeader, record};
use shmring::raw::{RawConsumer, RawProducer};
use shmring::{Config, Error, KindStats, OpenOptions, PeerStatus, Role, WaitStrategy, spsc::Ring};

fn small() -> Config {
    Config::new().capacity(4096)
}

/// Writes `bytes` at `offset` of the segment's file, as a damaged or hostile peer would.
fn scribble(name: &ShmName, offset: u64, bytes: &[u8]) {
    let file = FileOptions::new().write(true).open(name.path()).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn header_offset(field: usize) -> u64 {
    (offset_of!(ControlBlock, header) + field) as u64
}

#[test]
fn open_of_a_missing_name_is_not_found() {
    let name = ShmName::new("missing");
    assert!(matches!(
        Ring::open(name.as_str()),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        shmring::spsc::unlink(name.as_str()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn create_of_an_existing_name_is_refused_and_the_ring_is_untouched() {
    let name = ShmName::new("exists");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_send(b"kept").unwrap();
    assert!(matches!(
        Ring::create(name.as_str(), &small()),
        Err(Error::AlreadyExists { .. })
    ));
    let mut rx = Ring::open(name.as_str()).unwrap().consumer().unwrap();
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"kept");
}

#[test]
fn bad_names_are_invalid_name_everywhere() {
    for bad in ["noslash", "/", "/a/b", "/..", "/has space", "/ü"] {
        assert!(
            matches!(Ring::create(bad, &small()), Err(Error::InvalidName { .. })),
            "{bad}"
        );
        assert!(matches!(Ring::open(bad), Err(Error::InvalidName { .. })));
        assert!(matches!(
            Ring::create_or_open(bad, &small()),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            shmring::spsc::unlink(bad),
            Err(Error::InvalidName { .. })
        ));
    }
}

#[test]
fn bad_parameters_are_invalid_argument_and_create_nothing() {
    let name = ShmName::new("params");
    for config in [
        Config::new().capacity(1000),
        Config::new().capacity(128),
        Config::new().capacity(1 << 41),
        Config::new().capacity(4096).max_message(0),
        Config::new().capacity(4096).max_message(2041),
    ] {
        assert!(
            matches!(
                Ring::create(name.as_str(), &config),
                Err(Error::InvalidArgument { .. })
            ),
            "{config:?}"
        );
        assert!(matches!(
            Ring::open(name.as_str()),
            Err(Error::NotFound { .. })
        ));
    }
}

#[test]
fn header_mismatches_are_incompatible() {
    let cases: [(&str, usize, Vec<u8>); 5] = [
        (
            "ring kind",
            offset_of!(SegmentHeader, ring_kind),
            2u32.to_le_bytes().to_vec(),
        ),
        (
            "layout version",
            offset_of!(SegmentHeader, layout_version),
            99u32.to_le_bytes().to_vec(),
        ),
        (
            "fingerprint",
            offset_of!(SegmentHeader, fingerprint),
            7u64.to_le_bytes().to_vec(),
        ),
        (
            "magic",
            offset_of!(SegmentHeader, magic),
            b"NOTARING".to_vec(),
        ),
        ("byte order", offset_of!(SegmentHeader, magic), {
            let mut m = *b"SHMRING1";
            m.reverse();
            m.to_vec()
        }),
    ];
    for (what, field, bytes) in cases {
        let name = ShmName::new("incompat");
        drop(Ring::create(name.as_str(), &small()).unwrap());
        scribble(&name, header_offset(field), &bytes);
        match Ring::open(name.as_str()) {
            Err(Error::Incompatible { detail }) => {
                if what == "byte order" {
                    assert!(detail.contains("byte order"), "{detail}");
                }
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn a_different_wait_strategy_or_geometry_is_incompatible() {
    let name = ShmName::new("strategy");
    let _ring = Ring::create(name.as_str(), &small().wait_strategy(WaitStrategy::Spin)).unwrap();
    let insist = OpenOptions::new().expect_wait_strategy(WaitStrategy::SpinYield);
    assert!(matches!(
        Ring::open_with(name.as_str(), &insist),
        Err(Error::Incompatible { .. })
    ));
    assert!(matches!(
        Ring::create_or_open(
            name.as_str(),
            &small().wait_strategy(WaitStrategy::SpinYield)
        ),
        Err(Error::Incompatible { .. })
    ));
    assert!(matches!(
        Ring::create_or_open(
            name.as_str(),
            &Config::new()
                .capacity(8192)
                .wait_strategy(WaitStrategy::Spin)
        ),
        Err(Error::Incompatible { .. })
    ));
    let same =
        Ring::create_or_open(name.as_str(), &small().wait_strategy(WaitStrategy::Spin)).unwrap();
    assert!(!same.was_created());
}

#[test]
fn damaged_header_parameters_are_corrupted() {
    let cases: [(&str, usize, u64); 4] = [
        (
            "capacity not a power of two",
            offset_of!(SegmentHeader, capacity),
            3000,
        ),
        (
            "max message past half the ring",
            offset_of!(SegmentHeader, max_message),
            4000,
        ),
        ("data offset", offset_of!(SegmentHeader, data_offset), 4096),
        (
            "segment size",
            offset_of!(SegmentHeader, segment_size),
            1 << 30,
        ),
    ];
    for (what, field, value) in cases {
        let name = ShmName::new("damaged");
        drop(Ring::create(name.as_str(), &small()).unwrap());
        scribble(&name, header_offset(field), &value.to_le_bytes());
        assert!(
            matches!(Ring::open(name.as_str()), Err(Error::Corrupted { .. })),
            "{what}"
        );
    }
    // A file shorter than its header claims (e.g. truncated by someone): refused before use.
    let name = ShmName::new("short");
    drop(Ring::create(name.as_str(), &small()).unwrap());
    File::options()
        .write(true)
        .open(name.path())
        .unwrap()
        .set_len(CONTROL_SIZE + 100)
        .unwrap();
    assert!(matches!(
        Ring::open(name.as_str()),
        Err(Error::Corrupted { .. })
    ));
}

#[test]
fn a_corrupted_record_is_reported_and_never_read() {
    let name = ShmName::new("record");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_send(b"fine").unwrap();
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    // The next record claims 3000 bytes: more than the ring's maximum and than the bytes
    // left before the end of the data region.
    scribble(
        &name,
        CONTROL_SIZE + 16,
        &record::message(16, 3000).to_le_bytes(),
    );
    assert!(matches!(
        rx.try_recv_vec(&mut out),
        Err(Error::Corrupted { .. })
    ));
    // A committed header whose tag names another position.
    scribble(
        &name,
        CONTROL_SIZE + 16,
        &record::message(4096 + 16, 4).to_le_bytes(),
    );
    assert!(matches!(rx.try_read(), Err(Error::Corrupted { .. })));
    // A consumer head beyond the producer's tail makes the producer refuse, not overwrite.
    let head = (offset_of!(ControlBlock, consumer)) as u64;
    scribble(&name, head, &(1u64 << 40).to_le_bytes());
    let big = vec![0u8; 2000];
    let mut sent = 0;
    let err = loop {
        match tx.try_send(&big) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::Corrupted { .. }),
        "after {sent}: {err:?}"
    );
}

#[test]
fn too_large_a_message_is_refused_and_loses_nothing() {
    let name = ShmName::new("large");
    let ring = Ring::create(name.as_str(), &small().max_message(100)).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_send(b"before").unwrap();
    assert!(matches!(
        tx.try_send(&[0; 101]),
        Err(Error::MessageTooLarge { len: 101, max: 100 })
    ));
    assert!(matches!(
        tx.try_reserve(101),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(matches!(
        tx.send_timeout(&[0; 101], Duration::from_secs(5)),
        Err(Error::MessageTooLarge { .. })
    ));
    tx.try_send(b"after").unwrap();
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"before");
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"after");
}

#[test]
fn empty_and_full_are_would_block_then_timeout() {
    let name = ShmName::new("block");
    let ring = Ring::create(name.as_str(), &Config::new().capacity(256)).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut buf = [0u8; 256];
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)));
    assert!(matches!(rx.try_read(), Err(Error::WouldBlock)));
    let started = Instant::now();
    assert!(matches!(
        rx.recv_timeout(&mut buf, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(started.elapsed() >= Duration::from_millis(20));
    while tx.try_send(&[7; 100]).is_ok() {}
    assert!(matches!(tx.try_send(&[7; 100]), Err(Error::WouldBlock)));
    assert!(matches!(
        tx.send_timeout(&[7; 100], Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        tx.reserve_timeout(100, Duration::from_millis(1)),
        Err(Error::Timeout)
    ));
    // Nothing was overwritten by the refused sends.
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 100);
    assert_eq!(buf[..100], [7; 100]);
}

#[test]
fn a_short_buffer_is_buffer_too_small_and_the_message_stays() {
    let name = ShmName::new("short-buf");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_send(b"twelve bytes").unwrap();
    let mut tiny = [0u8; 4];
    assert!(matches!(
        rx.try_recv(&mut tiny),
        Err(Error::BufferTooSmall { needed: 12 })
    ));
    let mut buf = [0u8; 12];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 12);
    assert_eq!(&buf, b"twelve bytes");
}

#[test]
fn end_of_stream_both_ways() {
    let name = ShmName::new("eof");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_send(b"one").unwrap();
    tx.try_send(b"two").unwrap();
    tx.close();
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"one");
    rx.recv_vec_timeout(&mut out, Duration::from_secs(5))
        .unwrap();
    assert_eq!(out, b"two");
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::Closed)));
    assert!(matches!(rx.read(), Err(Error::Closed)));
    assert_eq!(ring.peers()[0].status, PeerStatus::Closed);
    // Taken again, like a FIFO reopened by a writer (tests/end_of_stream.rs has more).
    assert!(ring.producer().is_ok());

    let name = ShmName::new("epipe");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let mut tx = ring.producer().unwrap();
    drop(ring.consumer().unwrap());
    assert!(matches!(tx.try_send(b"x"), Err(Error::Closed)));
    assert!(matches!(tx.send(b"x"), Err(Error::Closed)));
    assert!(matches!(tx.try_reserve(1), Err(Error::Closed)));
}

#[test]
fn a_second_producer_or_consumer_is_already_attached() {
    let name = ShmName::new("attached");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let _tx = ring.producer().unwrap();
    let _rx = ring.consumer().unwrap();
    let other = Ring::open(name.as_str()).unwrap();
    let me = std::process::id();
    assert!(matches!(
        other.producer(),
        Err(Error::AlreadyAttached { role: Role::Producer, pid }) if pid == me
    ));
    assert!(matches!(
        other.consumer(),
        Err(Error::AlreadyAttached { role: Role::Consumer, pid }) if pid == me
    ));
    let peers = other.peers();
    assert!(
        peers
            .iter()
            .all(|p| p.status == PeerStatus::Attached && p.pid == me)
    );
    assert_eq!(peers.len(), 2);
}

#[test]
fn untrusted_files_are_permission_denied() {
    // World-writable: anyone could have written it.
    let name = ShmName::new("mode");
    drop(Ring::create(name.as_str(), &small()).unwrap());
    std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(matches!(
        Ring::open(name.as_str()),
        Err(Error::PermissionDenied { .. })
    ));
    let trusting = OpenOptions::new().writable_by_others(true);
    Ring::open_with(name.as_str(), &trusting).unwrap();

    // A symbolic link is never followed, by open or by create; its target is untouched.
    let dir = std::env::temp_dir().join(format!("shmring-canary-{}", std::process::id()));
    std::fs::write(&dir, b"canary").unwrap();
    let link = ShmName::new("link");
    std::os::unix::fs::symlink(&dir, link.path()).unwrap();
    assert!(matches!(
        Ring::open(link.as_str()),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        Ring::create(link.as_str(), &small()),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(&dir).unwrap(), b"canary");
    std::fs::remove_file(&dir).unwrap();

    // Not a regular file.
    let dir_name = ShmName::new("dir");
    std::fs::create_dir(dir_name.path()).unwrap();
    let opened = Ring::open(dir_name.as_str());
    std::fs::remove_dir(dir_name.path()).unwrap();
    assert!(
        matches!(opened, Err(Error::PermissionDenied { .. })),
        "{opened:?}"
    );
}

/// umask is process-wide: tests that change it run one at a time.
static UMASK: Mutex<()> = Mutex::new(());

#[test]
fn new_segments_are_exactly_0600_or_0660_whatever_the_umask() {
    let _umask = UMASK.lock().unwrap();
    for (umask, group, want) in [
        (0o000, false, 0o600),
        (0o077, false, 0o600),
        (0o000, true, 0o660),
        (0o077, true, 0o660),
    ] {
        // SAFETY: umask has no memory-safety preconditions.
        let old = unsafe { libc::umask(umask) };
        let name = ShmName::new("umask");
        let created = Ring::create(name.as_str(), &small().group_access(group));
        // SAFETY: as above; restores the previous mask.
        unsafe { libc::umask(old) };
        created.unwrap();
        let mode = std::fs::metadata(name.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "umask {umask:03o}, group {group}");
    }
}

#[test]
fn an_unfinished_segment_is_uninitialized() {
    let quick = OpenOptions::new().init_timeout(Duration::from_millis(50));
    // Created but never sized: no creator recorded.
    let name = ShmName::new("empty");
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(name.path())
        .unwrap();
    std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        Ring::open_with(name.as_str(), &quick),
        Err(Error::Uninitialized {
            creator_pid: None,
            ..
        })
    ));

    // Sized, creator recorded, init never finished, creator still alive (this process
    // holds the creator lock, as a creator does until READY): it waits the timeout, then
    // says the creator is still at it.
    file.set_len(CONTROL_SIZE + 4096).unwrap();
    let pid_at = header_offset(offset_of!(SegmentHeader, creator_pid));
    let me = std::process::id();
    file.write_all_at(&me.to_le_bytes(), pid_at).unwrap();
    let creator = File::options()
        .read(true)
        .write(true)
        .open(name.path())
        .unwrap();
    assert!(lock_byte(&creator, shmring::layout::locks::CREATOR));
    let started = Instant::now();
    assert!(matches!(
        Ring::open_with(name.as_str(), &quick),
        Err(Error::Uninitialized { creator_pid: Some(p), creator_alive: true }) if p == me
    ));
    assert!(started.elapsed() >= Duration::from_millis(50));

    // The creator is gone (its lock with it, whatever its pid means here): said at once,
    // without waiting for the timeout.
    drop(creator);
    let patient = OpenOptions::new().init_timeout(Duration::from_secs(30));
    let started = Instant::now();
    assert!(matches!(
        Ring::open_with(name.as_str(), &patient),
        Err(Error::Uninitialized { creator_pid: Some(p), creator_alive: false }) if p == me
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Takes the write lock on byte `offset` of `file` (an open-file-description lock, as
/// shmring's creators and peers hold them). Whether it was taken.
fn lock_byte(file: &File, offset: u64) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero flock is valid; fcntl reads it for the call's duration.
    unsafe {
        let mut lock: libc::flock = std::mem::zeroed();
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = offset as i64;
        lock.l_len = 1;
        libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) == 0
    }
}

fn process_start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    rest.split_whitespace()
        .nth(19)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[test]
fn racing_create_or_open_makes_exactly_one_creator() {
    for _round in 0..20 {
        let name = Arc::new(ShmName::new("race"));
        let barrier = Arc::new(Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (name, barrier) = (name.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let ring = Ring::create_or_open(name.as_str(), &small()).unwrap();
                    assert_eq!(ring.capacity(), 4096);
                    ring.was_created()
                })
            })
            .collect();
        let created = racers
            .into_iter()
            .map(|r| r.join().unwrap())
            .filter(|&c| c)
            .count();
        assert_eq!(created, 1);
    }
}

#[test]
fn file_backed_rings_work_like_named_ones() {
    let dir = std::env::temp_dir().join(format!("shmring-file-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let ring = Ring::create_at(&dir, &small()).unwrap();
    assert!(matches!(
        Ring::create_at(&dir, &small()),
        Err(Error::AlreadyExists { .. })
    ));
    let mut tx = ring.producer().unwrap();
    let mut rx = Ring::open_at(&dir, &OpenOptions::new())
        .unwrap()
        .consumer()
        .unwrap();
    tx.try_send(b"persisted").unwrap();
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"persisted");
    shmring::spsc::unlink_at(&dir).unwrap();
    assert!(matches!(
        Ring::open_at(&dir, &OpenOptions::new()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn stats_count_what_moved() {
    let name = ShmName::new("stats");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for len in [1usize, 10, 100] {
        tx.try_send(&vec![1; len]).unwrap();
    }
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    // The consumer gives space back in chunks (`spsc::RELEASE_CHUNK`): the message it took
    // with two still queued counts once it is given back.
    let s = ring.stats();
    assert_eq!((s.messages_sent, s.bytes_sent), (3, 111));
    assert_eq!((s.messages_received, s.bytes_received), (0, 0));
    assert_eq!(s.messages_in_flight, 3);
    assert_eq!(
        s.kind,
        KindStats::Spsc {
            capacity: 4096,
            used_bytes: 16 + 24 + 112
        }
    );
    // Taking the last one published gives everything back.
    rx.try_recv_vec(&mut out).unwrap();
    rx.try_recv_vec(&mut out).unwrap();
    tx.try_send(&[2; 7]).unwrap();
    let s = ring.stats();
    assert_eq!((s.messages_sent, s.bytes_sent), (4, 118));
    assert_eq!((s.messages_received, s.bytes_received), (3, 111));
    assert_eq!(s.messages_in_flight, 1);
    assert_eq!((ring.len(), tx.len(), rx.len()), (1, 1, 1));
    assert!(!ring.is_empty());
    assert_eq!(
        s.kind,
        KindStats::Spsc {
            capacity: 4096,
            used_bytes: 16
        }
    );
    assert_eq!(s.max_message, 2040);
}

#[test]
fn detached_reservations_and_reads_block_everything_else_until_finished() {
    let name = ShmName::new("detached");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let now = Some(Duration::ZERO);
    let ptr = tx.reserve_detached(8, now).unwrap();
    // SAFETY: 8 reserved bytes, untouched by anyone else until commit.
    unsafe {
        ptr.as_ptr()
            .copy_from_nonoverlapping(b"detached".as_ptr(), 8)
    };
    assert!(matches!(
        tx.try_send(b"x"),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        tx.try_reserve(1),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        tx.commit_detached(9),
        Err(Error::InvalidArgument { .. })
    ));
    tx.commit_detached(8).unwrap();
    assert!(matches!(
        tx.commit_detached(8),
        Err(Error::InvalidArgument { .. })
    ));
    tx.cancel_detached();
    let _ = tx.reserve_detached(4, now).unwrap();
    tx.cancel_detached(); // publishes nothing
    tx.try_send(b"after").unwrap();

    let (ptr, len) = rx.read_detached(now).unwrap();
    // SAFETY: the message stays in place until released.
    let read = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
    assert_eq!(read, b"detached");
    // Reading again before release returns the same message; other reads are refused.
    assert_eq!(rx.read_detached(now).unwrap(), (ptr, len));
    assert!(matches!(
        rx.try_recv_vec(&mut Vec::new()),
        Err(Error::InvalidArgument { .. })
    ));
    rx.release_detached().unwrap();
    assert!(matches!(
        rx.release_detached(),
        Err(Error::InvalidArgument { .. })
    ));
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"after");
}

#[test]
fn a_holder_that_died_while_attaching_is_replaced() {
    use shmring::layout::{PeerLine, PeerRecord};
    let name = ShmName::new("midattach");
    let ring = Ring::create(name.as_str(), &small()).unwrap();
    // A process that claimed the producer role (owner word written) and died before
    // marking it attached.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let start = process_start_time(pid);
    child.wait().unwrap();
    let owner = (u64::from(pid) << 32) | (start & 0xFFFF_FFFF);
    let at = (offset_of!(ControlBlock, peers)
        + offset_of!(PeerLine, producer)
        + offset_of!(PeerRecord, owner)) as u64;
    scribble(&name, at, &owner.to_le_bytes());
    // Never attached (and nobody holds the slot's lock): not listed.
    assert!(ring.peers().is_empty());
    let mut tx = ring
        .producer()
        .expect("the dead claimant's role is taken over");
    let held = ring.peers()[0];
    assert_eq!(
        (held.status, held.pid),
        (PeerStatus::Attached, std::process::id())
    );
    tx.try_send(b"alive").unwrap();
    // While we hold it, nobody else can take it.
    assert!(matches!(
        ring.producer(),
        Err(Error::AlreadyAttached { .. })
    ));
}
