//! Readiness descriptors (`Consumer::readiness` + `Consumer::arm`): a consumer waiting in
//! `poll` is woken by every publish after it armed, across processes; hostile datagrams
//! and dead waiters cost spurious wake-ups at most and never block a producer; an armed,
//! idle consumer uses no CPU; doorbells are removed with their handles and the ring.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{KillOnDrop, ShmName, expect_line, length, message, role, spawn_piped};
use shmring::{Config, Error, WaitStrategy, any, mpmc, spsc};

const CALL: Duration = Duration::from_secs(20);
/// Messages the cross-process test moves.
const MILLION: u64 = 1_000_000;

fn futex() -> Config {
    Config::new().wait_strategy(WaitStrategy::Futex)
}

/// `poll(2)` on one descriptor for readability; whether it became readable in `timeout`.
fn readable(fd: RawFd, timeout: Duration) -> bool {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

/// SIGKILLs process `pid` from another thread 5 ms from now (once the caller is waiting);
/// the thread returns when it sent the signal.
fn kill_soon(pid: i32) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        let at = Instant::now();
        // SAFETY: kill(2) on a child of this process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        at
    })
}

/// CPU time this thread has used (user + system).
fn thread_cpu() -> Duration {
    // SAFETY: a zeroed rusage is valid to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer; RUSAGE_THREAD measures the calling thread only.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// The doorbell directory of the ring file `path` (named by its device and inode).
fn bells_dir(path: &str) -> String {
    let meta = std::fs::metadata(path).unwrap();
    format!("/dev/shm/shmring-bells-{:x}-{:x}", meta.dev(), meta.ino())
}

/// Child roles: `burst:<kind>` sends MILLION checksummed messages in bursts with pauses;
/// `send:<kind>` sends until killed; `armed:mpmc` attaches a consumer, arms it and waits
/// to be killed.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    let ring = any::Ring::open(&name, &shmring::OpenOptions::new()).unwrap();
    match role.as_str() {
        "burst" => {
            let mut tx = ring.producer().unwrap();
            println!("attached");
            let mut msg = Vec::new();
            let mut seq = 0;
            while seq < MILLION {
                // Bursts of 1..=4096 messages; after each, a pause long enough (sometimes)
                // for the receiver to drain, arm and fall asleep in poll.
                let burst = 1 + (seq.wrapping_mul(0x9E37_79B9) >> 7) % 4096;
                for _ in 0..burst.min(MILLION - seq) {
                    message(seq, length(seq, 48), &mut msg);
                    tx.send(&msg, Some(CALL)).unwrap();
                    seq += 1;
                }
                if seq % 3 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                // Now and then a pause longer than tokio's timer tick (1 ms), so a waiting
                // receiver's timeout fires (the cancellation test counts on it).
                if (seq / 4096) % 16 == 15 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            println!("wake syscalls {}", tx.wake_syscalls());
        }
        "send" => {
            let mut tx = ring.producer().unwrap();
            println!("attached");
            loop {
                match tx.try_send(b"tick") {
                    Ok(()) | Err(Error::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        "armed" => {
            let shmring::any::Consumer::Mpmc(mut rx) = ring.consumer().unwrap() else {
                panic!("an MPMC ring")
            };
            let _ready = rx.readiness().unwrap();
            assert!(rx.arm().unwrap());
            println!("armed");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn an_armed_consumer_is_woken_by_a_publish_and_told_when_something_is_there() {
    let name = ShmName::new("ready-basic");
    let ring = spsc::Ring::create(name.as_str(), &futex().capacity(4096)).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let ready = rx.readiness().unwrap();
    assert!(rx.arm().unwrap(), "empty: armed");
    assert!(!readable(ready.as_raw_fd(), Duration::ZERO), "nothing yet");
    tx.try_send(b"one").unwrap();
    assert!(readable(ready.as_raw_fd(), CALL), "the publish rang");
    let mut buf = [0u8; 16];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 3);
    // A message already there: arm says so, and the next receive returns it first.
    tx.try_send(b"two").unwrap();
    assert!(!rx.arm().unwrap());
    assert!(
        !readable(ready.as_raw_fd(), Duration::ZERO),
        "arm emptied the socket"
    );
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"two");
    // One ring per arming: a second publish makes no second system call.
    assert!(rx.arm().unwrap());
    let before = tx.wake_syscalls();
    tx.try_send(b"3").unwrap();
    tx.try_send(b"4").unwrap();
    assert_eq!(
        tx.wake_syscalls() - before,
        1,
        "one doorbell ring for two publishes"
    );
    // The end of the stream makes it readable too.
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 1);
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 1);
    assert!(rx.arm().unwrap());
    drop(tx);
    assert!(readable(ready.as_raw_fd(), CALL), "close rang");
    assert!(
        !rx.arm().unwrap(),
        "the end of the stream is there to receive"
    );
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Closed)));
}

#[test]
fn rings_that_do_not_sleep_refuse_to_arm() {
    let name = ShmName::new("ready-spin");
    let ring = spsc::Ring::create(
        name.as_str(),
        &Config::new().wait_strategy(WaitStrategy::Spin),
    )
    .unwrap();
    let mut rx = ring.consumer().unwrap();
    let err = rx.arm().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("Futex"), "{err}");
}

/// A million messages from another process, the receiver asleep in `poll` between bursts:
/// every message arrives, in order and intact, and no wake-up is lost (a lost one leaves
/// the receiver asleep with messages waiting: the 20 s poll limit fails the test).
#[test]
fn a_million_messages_across_processes_with_the_receiver_in_poll() {
    for kind in [any::KindName::Spsc, any::KindName::Mpmc] {
        let name = ShmName::new("ready-million");
        let config = match kind {
            any::KindName::Spsc => futex().capacity(1 << 16),
            _ => futex().slots(1024).max_message(48),
        };
        let ring = any::Ring::create(kind, name.as_str(), &config).unwrap();
        let (child, lines) = spawn_piped("child_entry", "burst", name.as_str());
        let mut child = KillOnDrop(child);
        expect_line(&lines, "attached", CALL);
        let (mut polls, mut armed, mut spurious) = (0u64, 0u64, 0u64);
        let (mut want, mut buf) = (Vec::new(), vec![0u8; 64]);
        let started = Instant::now();
        macro_rules! drain {
            ($rx:ident) => {{
                let ready = $rx.readiness().unwrap();
                let mut seq = 0;
                while seq < MILLION {
                    match $rx.try_recv(&mut buf) {
                        Ok(n) => {
                            message(seq, length(seq, 48), &mut want);
                            assert_eq!(&buf[..n], &want[..], "{kind}: message {seq}");
                            seq += 1;
                            continue;
                        }
                        Err(Error::WouldBlock) => {}
                        Err(e) => panic!("{kind}: receive {seq}: {e}"),
                    }
                    if $rx.arm().unwrap() {
                        armed += 1;
                        polls += 1;
                        assert!(
                            readable(ready.as_raw_fd(), CALL),
                            "{kind}: asleep in poll for {CALL:?} with message {seq} due: a lost wake-up"
                        );
                        if $rx.arm().unwrap() {
                            spurious += 1; // woken, yet nothing there
                        }
                    }
                }
                $rx.stats()
            }};
        }
        let stats = match ring.consumer().unwrap() {
            any::Consumer::Spsc(mut rx) => drain!(rx),
            any::Consumer::Mpmc(mut rx) => drain!(rx),
            any::Consumer::Broadcast(mut rx) => drain!(rx),
        };
        let producer_calls: u64 = expect_line(&lines, "wake syscalls", CALL)
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("the producer's count");
        assert!(common::wait_bounded(&mut child.0, CALL).success());
        assert_eq!(stats.messages_received, MILLION);
        assert!(
            armed > 100,
            "{kind}: the receiver slept {armed} times: not a test of sleeping"
        );
        println!(
            "{kind}: {MILLION} messages in {:?}; receiver armed and polled {polls} times \
             ({:.4} polls per message), {spurious} spurious wake-ups; the producer made \
             {producer_calls} wake and sleep system calls ({:.4} per message; it sleeps \
             when the ring is full)",
            started.elapsed(),
            polls as f64 / MILLION as f64,
            producer_calls as f64 / MILLION as f64
        );
    }
}

/// Another process floods the doorbell with datagrams (as fast as it can, until its buffer
/// is full, for the whole test): the consumer sees spurious readiness only, and the
/// producer's sends never wait on the doorbell.
#[test]
fn a_flooded_doorbell_causes_spurious_wake_ups_only_and_never_blocks_the_producer() {
    let name = ShmName::new("ready-flood");
    let ring = spsc::Ring::create(name.as_str(), &futex().capacity(1 << 16)).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let ready = rx.readiness().unwrap();
    let bell = format!("{}/c1", bells_dir(&name.path()));
    assert!(std::path::Path::new(&bell).exists(), "{bell}");
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let flooder = {
        std::thread::spawn(move || {
            let socket = std::os::unix::net::UnixDatagram::unbound().unwrap();
            socket.set_nonblocking(true).unwrap();
            let mut sent = 0u64;
            while stopped.try_recv().is_err() {
                if socket.send_to(&[0xAA; 512], &bell).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    let consumer = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let mut got = 0u64;
        while got < 100_000 {
            match rx.try_recv(&mut buf) {
                Ok(_) => {
                    assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), got);
                    got += 1;
                }
                Err(Error::WouldBlock) => {
                    if rx.arm().unwrap() {
                        assert!(readable(ready.as_raw_fd(), CALL), "lost wake-up");
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        got
    });
    let mut slowest = Duration::ZERO;
    for seq in 0..100_000u64 {
        let t = Instant::now();
        tx.send_timeout(&seq.to_le_bytes(), CALL).unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert_eq!(consumer.join().unwrap(), 100_000);
    stop.send(()).unwrap();
    let flooded = flooder.join().unwrap();
    assert!(flooded > 0, "the flood reached the doorbell");
    println!("{flooded} hostile datagrams; slowest send {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "a send waited {slowest:?}"
    );
}

/// A consumer killed while armed leaves its armed bit and its doorbell file behind: the
/// producer rings the dead doorbell once (refused by the kernel, not waited on) and goes on.
#[test]
fn a_dead_armed_consumer_never_blocks_the_producer() {
    let name = ShmName::new("ready-dead");
    let ring = mpmc::Ring::create(name.as_str(), &futex().slots(64).max_message(8)).unwrap();
    let (child, lines) = spawn_piped("child_entry", "armed", name.as_str());
    let mut child = KillOnDrop(child);
    expect_line(&lines, "armed", CALL);
    assert_eq!(ring.stats().consumers_waiting, 1);
    common::kill9(&mut child.0);
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 8];
    for seq in 0..10_000u64 {
        tx.try_send(&seq.to_le_bytes()).unwrap();
        assert_eq!(rx.try_recv(&mut buf).unwrap(), 8);
    }
    let took = t.elapsed();
    assert!(
        tx.wake_syscalls() <= 1,
        "rang the dead doorbell at most once"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Its doorbell file stays until the slot is taken again or the ring is removed.
    let dir = bells_dir(&name.path());
    assert!(std::fs::read_dir(&dir).unwrap().count() >= 1);
    drop((tx, rx));
    ring.unlink().unwrap();
    assert!(
        !std::path::Path::new(&dir).exists(),
        "unlink pruned the dead doorbell"
    );
}

#[test]
fn an_armed_idle_consumer_uses_no_cpu() {
    let name = ShmName::new("ready-idle");
    let ring = spsc::Ring::create(name.as_str(), &futex()).unwrap();
    let mut rx = ring.consumer().unwrap();
    let ready = rx.readiness().unwrap();
    assert!(rx.arm().unwrap());
    // The event loop of an idle consumer for 3 s: poll, and re-arm when woken (by the
    // descriptor's one-second tick only: nothing is sent).
    let before = thread_cpu();
    let start = Instant::now();
    let mut wakes = 0;
    while start.elapsed() < Duration::from_secs(3) {
        if readable(ready.as_raw_fd(), Duration::from_secs(3) - start.elapsed()) {
            wakes += 1;
            assert!(rx.arm().unwrap(), "nothing was sent");
        }
    }
    let used = thread_cpu() - before;
    assert!(wakes <= 4, "{wakes} wake-ups in 3 s");
    println!(
        "CPU used by an armed consumer idle in its event loop for 3 s: {used:?} ({wakes} ticks)"
    );
    assert!(used < Duration::from_millis(30), "{used:?}");
}

#[test]
fn doorbells_go_with_their_handles() {
    let name = ShmName::new("ready-clean");
    let ring = spsc::Ring::create(name.as_str(), &futex()).unwrap();
    let dir = bells_dir(&name.path());
    let mut rx = ring.consumer().unwrap();
    let ready = rx.readiness().unwrap();
    let meta = std::fs::metadata(format!("{dir}/c1")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the ring's mode");
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    drop((rx, ready));
    assert!(
        !std::path::Path::new(&dir).exists(),
        "closing removed the doorbell"
    );
    // A second consumer in the same slot binds afresh.
    let mut rx = ring.consumer().unwrap();
    let _ready = rx.readiness().unwrap();
    assert!(std::path::Path::new(&format!("{dir}/c1")).exists());
}

/// A producer killed (SIGKILL) while the consumer sleeps in `poll` on its readiness
/// descriptor: the descriptor becomes readable (the producer's pidfd is in its set), and
/// `arm` + `try_recv` report `PeerDead`. Detection time from the kill, over 50 rounds.
#[test]
fn a_killed_producer_wakes_a_consumer_asleep_in_poll() {
    let mut times = Vec::new();
    for _ in 0..50 {
        let name = ShmName::new("ready-kill");
        let ring = spsc::Ring::create(name.as_str(), &futex().capacity(4096)).unwrap();
        let mut rx = ring.consumer().unwrap();
        let ready = rx.readiness().unwrap();
        let (child, lines) = spawn_piped("child_entry", "send", name.as_str());
        let mut child = KillOnDrop(child);
        expect_line(&lines, "attached", CALL);
        let mut buf = [0u8; 8];
        // Drain what it sent, then sleep in poll until it is killed.
        loop {
            match rx.try_recv(&mut buf) {
                Ok(_) => continue,
                Err(Error::WouldBlock) if rx.arm().unwrap() => break,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let killed = Instant::now();
        child.0.kill().unwrap();
        assert!(
            readable(ready.as_raw_fd(), CALL),
            "no readiness after the kill"
        );
        let found = loop {
            match rx.try_recv(&mut buf) {
                Ok(_) => continue,
                Err(Error::PeerDead { .. }) => break killed.elapsed(),
                Err(Error::WouldBlock) => {
                    if rx.arm().unwrap() {
                        assert!(readable(ready.as_raw_fd(), CALL), "no readiness");
                    }
                }
                Err(e) => panic!("{e}"),
            }
        };
        let _ = child.0.wait();
        times.push(found);
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p99 = times[(times.len() * 99).div_ceil(100) - 1];
    println!(
        "PeerDead through the readiness descriptor after kill -9, 50 rounds: p50 {p50:?}, p99 {p99:?}, max {:?}",
        times[times.len() - 1]
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
}

/// tokio (`recv_async`): a million messages from another process, the receiving future
/// cancelled (by a timeout) over and over while it waits; nothing is lost or duplicated.
#[test]
fn a_tokio_receiver_cancelled_mid_wait_loses_nothing() {
    let name = ShmName::new("ready-tokio");
    let ring = spsc::Ring::create(name.as_str(), &futex().capacity(1 << 16)).unwrap();
    let mut rx = ring.consumer().unwrap();
    let (child, lines) = spawn_piped("child_entry", "burst", name.as_str());
    let mut child = KillOnDrop(child);
    expect_line(&lines, "attached", CALL);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cancelled, took) = runtime.block_on(async {
        let (mut buf, mut want) = (vec![0u8; 64], Vec::new());
        let (mut seq, mut cancelled) = (0u64, 0u64);
        let started = Instant::now();
        while seq < MILLION {
            match tokio::time::timeout(Duration::from_micros(100), rx.recv_async(&mut buf)).await {
                Ok(Ok(n)) => {
                    message(seq, length(seq, 48), &mut want);
                    assert_eq!(&buf[..n], &want[..], "message {seq}");
                    seq += 1;
                }
                Ok(Err(e)) => panic!("receive {seq}: {e}"),
                Err(_) => cancelled += 1,
            }
        }
        (cancelled, started.elapsed())
    });
    assert!(common::wait_bounded(&mut child.0, CALL).success());
    let mut buf = [0u8; 8];
    let end = runtime.block_on(rx.recv_async(&mut buf));
    assert!(matches!(end, Err(Error::Closed)), "{end:?}");
    println!("tokio: {MILLION} messages in {took:?}, {cancelled} receives cancelled mid-wait");
    assert!(
        cancelled > 0,
        "no receive was cancelled: not a test of cancellation"
    );
}

#[test]
fn an_idle_tokio_receiver_uses_no_cpu() {
    let name = ShmName::new("ready-tokio-idle");
    let ring = spsc::Ring::create(name.as_str(), &futex()).unwrap();
    let mut rx = ring.consumer().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = thread_cpu();
    let mut buf = [0u8; 8];
    let waited = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(2), rx.recv_async(&mut buf)).await
    });
    assert!(waited.is_err(), "nothing was sent");
    let used = thread_cpu() - before;
    println!("CPU used by a tokio receiver awaiting for 2 s: {used:?}");
    assert!(used < Duration::from_millis(30), "{used:?}");
}

/// A producer killed (SIGKILL) while the consumer is blocked in `recv`: `PeerDead` within
/// milliseconds for every wait strategy (futex: the sleeper is woken by the producer's
/// pidfd; spin and spin-then-yield: they look every millisecond). 50 rounds each.
#[test]
fn a_killed_producer_ends_a_blocked_receive_within_milliseconds() {
    for strategy in [
        WaitStrategy::Futex,
        WaitStrategy::SpinYield,
        WaitStrategy::Spin,
    ] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let name = ShmName::new("ready-blocked-kill");
            let config = Config::new().wait_strategy(strategy).capacity(4096);
            let ring = spsc::Ring::create(name.as_str(), &config).unwrap();
            let mut rx = ring.consumer().unwrap();
            let (child, lines) = spawn_piped("child_entry", "send", name.as_str());
            let mut child = KillOnDrop(child);
            expect_line(&lines, "attached", CALL);
            let mut buf = [0u8; 8];
            while rx.try_recv(&mut buf).is_ok() {}
            // Kill it from another thread once this one is blocked in recv.
            let killer = kill_soon(child.0.id() as i32);
            let found = loop {
                match rx.recv_timeout(&mut buf, CALL) {
                    Ok(_) => continue,
                    Err(Error::PeerDead { .. }) => break Instant::now(),
                    Err(e) => panic!("{strategy}: {e}"),
                }
            };
            let killed = killer.join().unwrap();
            let _ = child.0.wait();
            times.push(found.saturating_duration_since(killed));
        }
        times.sort();
        let p50 = times[times.len() / 2];
        let p99 = times[(times.len() * 99).div_ceil(100) - 1];
        println!(
            "{strategy}: PeerDead in a blocked recv after kill -9, 50 rounds: p50 {p50:?}, p99 {p99:?}"
        );
        assert!(p99 < Duration::from_millis(50), "{strategy}: p99 {p99:?}");
    }
}

/// Producers have readiness too: a full ring arms the producer, a release makes its
/// descriptor readable, and the send then goes through.
#[test]
fn a_full_ring_arms_the_producer_and_a_release_wakes_it() {
    let name = ShmName::new("ready-space");
    let ring = spsc::Ring::create(name.as_str(), &futex().capacity(256)).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let ready = tx.readiness().unwrap();
    let msg = [7u8; 100];
    assert!(tx.try_send_or_arm(&msg).unwrap());
    assert!(tx.try_send_or_arm(&msg).unwrap());
    assert!(!tx.try_send_or_arm(&msg).unwrap(), "full: armed");
    assert!(!readable(ready.as_raw_fd(), Duration::ZERO));
    let mut buf = [0u8; 128];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 100);
    assert!(readable(ready.as_raw_fd(), CALL), "the release rang");
    // (One 112-byte record freed is not room for the next: it would wrap, after padding.)
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 100);
    assert!(tx.try_send_or_arm(&msg).unwrap(), "room now");
    // The consumers' end makes it readable too, and the next call says why.
    assert!(!tx.try_send_or_arm(&msg).unwrap());
    drop(rx);
    assert!(readable(ready.as_raw_fd(), CALL), "close rang");
    assert!(matches!(tx.try_send_or_arm(&msg), Err(Error::Closed)));
}

/// tokio `send_async` on a small ring drained slowly by another thread, each send
/// cancelled by a short timeout over and over: every message arrives once, in order (a
/// cancelled send sent nothing).
#[test]
fn a_tokio_sender_cancelled_mid_wait_sends_each_message_once() {
    const COUNT: u64 = 20_000;
    let name = ShmName::new("ready-tokio-send");
    let ring = spsc::Ring::create(name.as_str(), &futex().capacity(1024)).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        for seq in 0..COUNT {
            if seq % 500 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
            rx.recv_timeout(&mut buf, CALL).unwrap();
            assert_eq!(u64::from_le_bytes(buf), seq, "message {seq}");
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cancelled = runtime.block_on(async {
        let mut cancelled = 0u64;
        let mut seq = 0u64;
        while seq < COUNT {
            let msg = seq.to_le_bytes();
            match tokio::time::timeout(Duration::from_micros(100), tx.send_async(&msg)).await {
                Ok(Ok(())) => seq += 1,
                Ok(Err(e)) => panic!("send {seq}: {e}"),
                Err(_) => cancelled += 1,
            }
        }
        cancelled
    });
    drain.join().unwrap();
    println!("tokio send_async: {COUNT} messages, {cancelled} sends cancelled mid-wait");
    assert!(
        cancelled > 0,
        "no send was cancelled: not a test of cancellation"
    );
}

/// A producer killed while a tokio task awaits `recv_async`: the descriptor's pidfd makes
/// the future resolve with `PeerDead`. Detection time from the kill, 50 rounds.
#[test]
fn a_killed_producer_ends_an_awaited_receive() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..50 {
        let name = ShmName::new("ready-tokio-kill");
        let ring = spsc::Ring::create(name.as_str(), &futex().capacity(4096)).unwrap();
        let mut rx = ring.consumer().unwrap();
        let (child, lines) = spawn_piped("child_entry", "send", name.as_str());
        let mut child = KillOnDrop(child);
        expect_line(&lines, "attached", CALL);
        let killer = kill_soon(child.0.id() as i32);
        let found = runtime.block_on(async {
            let mut buf = [0u8; 8];
            loop {
                match tokio::time::timeout(CALL, rx.recv_async(&mut buf)).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(Error::PeerDead { .. })) => break Instant::now(),
                    Ok(Err(e)) => panic!("{e}"),
                    Err(_) => panic!("no PeerDead within {CALL:?}"),
                }
            }
        });
        let killed = killer.join().unwrap();
        let _ = child.0.wait();
        times.push(found.saturating_duration_since(killed));
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p99 = times[(times.len() * 99).div_ceil(100) - 1];
    println!("tokio: PeerDead in recv_async after kill -9, 50 rounds: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
}

/// `Consumer::messages` (a `futures::Stream`): a million checksummed messages from another
/// process, then the end of the stream; and a killed producer's end as one `PeerDead` item.
#[test]
fn the_messages_stream_yields_everything_then_ends() {
    use futures_core::Stream;
    use std::pin::Pin;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = ShmName::new("ready-stream");
    let ring = spsc::Ring::create(name.as_str(), &futex().capacity(1 << 16)).unwrap();
    let mut rx = ring.consumer().unwrap();
    let (child, lines) = spawn_piped("child_entry", "burst", name.as_str());
    let mut child = KillOnDrop(child);
    expect_line(&lines, "attached", CALL);
    let count = runtime.block_on(async {
        let mut messages = rx.messages().unwrap();
        let (mut seq, mut want) = (0u64, Vec::new());
        while let Some(item) =
            std::future::poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)).await
        {
            let got = item.unwrap();
            message(seq, length(seq, 48), &mut want);
            assert_eq!(got, want, "message {seq}");
            seq += 1;
        }
        seq
    });
    assert_eq!(count, MILLION);
    assert!(common::wait_bounded(&mut child.0, CALL).success());

    let name = ShmName::new("ready-stream-dead");
    let ring = spsc::Ring::create(name.as_str(), &futex().capacity(4096)).unwrap();
    let mut rx = ring.consumer().unwrap();
    let (child, lines) = spawn_piped("child_entry", "send", name.as_str());
    let child = KillOnDrop(child);
    expect_line(&lines, "attached", CALL);
    let killer = kill_soon(child.0.id() as i32);
    let items = runtime.block_on(async {
        let mut messages = rx.messages().unwrap();
        let mut items = Vec::new();
        while let Some(item) =
            std::future::poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)).await
        {
            items.push(item.map(|_| ()));
        }
        items
    });
    killer.join().unwrap();
    let last = items.last().expect("at least the end");
    assert!(matches!(last, Err(Error::PeerDead { .. })), "{last:?}");
    assert!(items[..items.len() - 1].iter().all(|i| i.is_ok()));
}
