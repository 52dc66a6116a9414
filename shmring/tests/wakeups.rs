//! Sleeping wait strategies across processes: ping-pong with the receiver asleep, a fast
//! path with no system call, and timeouts. (A process killed while asleep:
//! `killed_sleepers.rs`.)

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{ShmName, length, message, role, spawn_role, wait_bounded};
use shmring::{Config, Error, OpenOptions, WaitStrategy, spsc::Ring};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const RUN_LIMIT: Duration = Duration::from_secs(300);
const ROUND_TRIPS: u64 = 100_000;
const MAX: usize = 256;
/// Process pairs share the machine's two cores; run one pair at a time.
static ONE_PAIR_AT_A_TIME: Mutex<()> = Mutex::new(());

fn sleeping(strategy: WaitStrategy) -> Config {
    // No spin window: every wait on an empty ring goes to sleep.
    Config::new()
        .capacity(4096)
        .max_message(MAX)
        .wait_strategy(strategy)
        .spin_before_sleep(Duration::ZERO)
}

fn no_spin() -> OpenOptions {
    OpenOptions::new().spin_before_sleep(Duration::ZERO)
}

/// Entry point of the child processes; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some((role, rings)) = role() else { return };
    let (ping, pong) = rings.split_once(',').unwrap_or((rings.as_str(), ""));
    match role.as_str() {
        "echo" => echo(ping, pong),
        other => panic!("unknown role {other}"),
    }
}

/// Receives every ping (asleep between them) and sends it back.
fn echo(ping: &str, pong: &str) {
    let mut rx = Ring::open_with(ping, &no_spin())
        .unwrap()
        .consumer()
        .unwrap();
    let mut tx = Ring::open_with(pong, &no_spin())
        .unwrap()
        .producer()
        .unwrap();
    let mut buf = vec![0u8; MAX];
    loop {
        match rx.recv_timeout(&mut buf, CALL_TIMEOUT) {
            Ok(n) => tx.send_timeout(&buf[..n], CALL_TIMEOUT).unwrap(),
            Err(Error::Closed) => break,
            Err(e) => panic!("echo: {e}"),
        }
    }
    // The parent sent every ping only once this side had announced it was going to sleep.
    // Almost every receive then sleeps; one that was preempted between announcing and its
    // re-check finds the ping already there and rightly skips the sleep (seen: 2 in
    // 100,000 on a loaded machine). "Most of the time" is therefore a bound, not a count.
    assert!(
        rx.wake_syscalls() >= ROUND_TRIPS * 9 / 10,
        "echo side slept only {} times",
        rx.wake_syscalls()
    );
}

fn ping_pong(strategy: WaitStrategy) {
    let _pair = ONE_PAIR_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (ping_name, pong_name) = (ShmName::new("ping"), ShmName::new("pong"));
    let ping = Ring::create(ping_name.as_str(), &sleeping(strategy)).unwrap();
    let pong = Ring::create(pong_name.as_str(), &sleeping(strategy)).unwrap();
    let mut tx = ping.producer().unwrap();
    let mut rx = pong.consumer().unwrap();
    let rings = format!("{},{}", ping_name.as_str(), pong_name.as_str());
    let mut child = spawn_role("child_entry", "echo", &rings);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (mut msg, mut buf) = (Vec::new(), vec![0u8; MAX]);
        for seq in 0..ROUND_TRIPS {
            message(seq, length(seq, MAX), &mut msg);
            // Send only to a receiver that is asleep (or committed to sleeping): the wake-up
            // path is exercised on every round trip, whatever the scheduling.
            let deadline = Instant::now() + CALL_TIMEOUT;
            while ping.stats().consumers_waiting == 0 {
                assert!(Instant::now() < deadline, "echo side never went to sleep");
                std::thread::yield_now();
            }
            tx.send_timeout(&msg, CALL_TIMEOUT).unwrap();
            let n = rx.recv_timeout(&mut buf, CALL_TIMEOUT).unwrap();
            assert_eq!(&buf[..n], msg.as_slice(), "round trip {seq}");
        }
        // Every ping found the echo side announced, so nearly every send woke it (an echo that
        // saw the ping before sleeping may have withdrawn its announcement first); and a send
        // never makes more than one wake call.
        let wakes = tx.wake_syscalls();
        assert!(wakes >= ROUND_TRIPS * 9 / 10, "only {wakes} wake calls");
        assert!(
            wakes <= ROUND_TRIPS,
            "{wakes} wake calls for {ROUND_TRIPS} sends"
        );
        drop(tx);
    }));
    let status = wait_bounded(&mut child, RUN_LIMIT);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(status.success(), "echo process failed: {status}");
}

#[test]
fn futex_ping_pong_with_the_receiver_asleep() {
    ping_pong(WaitStrategy::Futex);
}

#[test]
fn the_fast_path_makes_no_system_call() {
    for strategy in [WaitStrategy::Futex] {
        let name = ShmName::new("fast");
        let ring = Ring::create(name.as_str(), &sleeping(strategy)).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut buf = [0u8; 64];
        // Nobody ever waits: each blocking send finds room, each blocking receive a message.
        for i in 0..1_000_000u64 {
            tx.send(&i.to_le_bytes()).unwrap();
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(buf[..n], i.to_le_bytes());
        }
        assert_eq!(tx.wake_syscalls(), 0, "{strategy:?} producer");
        assert_eq!(rx.wake_syscalls(), 0, "{strategy:?} consumer");
        // Control: the counter does count. An empty ring with no spin window sleeps.
        assert!(matches!(
            rx.recv_timeout(&mut buf, Duration::from_millis(5)),
            Err(Error::Timeout)
        ));
        assert!(
            rx.wake_syscalls() > 0,
            "{strategy:?}: a sleep was not counted"
        );
    }
}

#[test]
fn timeouts_return_close_to_the_requested_time() {
    for strategy in [
        WaitStrategy::Spin,
        WaitStrategy::SpinYield,
        WaitStrategy::Futex,
    ] {
        let name = ShmName::new("timeout");
        let config = sleeping(strategy).capacity(256).max_message(120);
        let ring = Ring::create(name.as_str(), &config).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let wanted = Duration::from_millis(30);
        let mut buf = [0u8; 256];
        let started = Instant::now();
        assert!(matches!(
            rx.recv_timeout(&mut buf, wanted),
            Err(Error::Timeout)
        ));
        let took = started.elapsed();
        // Never early; late only by scheduling noise (bound generous for a loaded 2-core VM).
        assert!(took >= wanted, "{strategy:?}: returned after {took:?}");
        assert!(
            took < wanted + Duration::from_secs(2),
            "{strategy:?}: took {took:?}"
        );

        while tx.try_send(&[1; 100]).is_ok() {}
        let started = Instant::now();
        assert!(matches!(
            tx.send_timeout(&[1; 100], wanted),
            Err(Error::Timeout)
        ));
        let took = started.elapsed();
        assert!(took >= wanted, "{strategy:?}: send returned after {took:?}");
        assert!(
            took < wanted + Duration::from_secs(2),
            "{strategy:?}: send took {took:?}"
        );
    }
}
