//! A peer killed with SIGKILL mid-stream: the survivor learns `PeerDead` in bounded time
//! instead of waiting forever, nothing committed is lost, duplicated or torn, and a new
//! process takes the dead one's role and continues.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ShmName, length, message, role, rounds};
use shmring::{Config, Error, PeerStatus, WaitStrategy, spsc::Ring};

const MAX: usize = 200;
/// Kill rounds per strategy (scaled by the soak script).
const ROUNDS: u64 = 8;
/// A survivor must learn of the death within this (the liveness interval is 100 ms).
const DETECTION_BOUND: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
static ONE_PAIR_AT_A_TIME: Mutex<()> = Mutex::new(());

fn config(strategy: WaitStrategy) -> Config {
    Config::new()
        .capacity(4096)
        .max_message(MAX)
        .wait_strategy(strategy)
}

/// Child roles: send or receive forever, reporting progress on stdout, until killed.
#[test]
fn child_entry() {
    let Some((role, ring)) = role() else { return };
    let ring = Ring::open(&ring).unwrap();
    let mut msg = Vec::new();
    match role.as_str() {
        "producer" => {
            let mut tx = ring.producer().unwrap();
            for seq in 0.. {
                message(seq, length(seq, MAX), &mut msg);
                tx.send_timeout(&msg, CALL_TIMEOUT).unwrap();
                // Reported only after the send returned: this sequence is committed.
                println!("committed {seq}");
            }
        }
        "consumer" => {
            let mut rx = ring.consumer().unwrap();
            let mut buf = vec![0u8; MAX];
            for seq in 0.. {
                let n = rx.recv_timeout(&mut buf, CALL_TIMEOUT).unwrap();
                message(seq, length(seq, MAX), &mut msg);
                assert_eq!(&buf[..n], msg.as_slice(), "child consumer, message {seq}");
                println!("released {seq}");
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, ring: &str) -> (Child, mpsc::Receiver<u64>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(common::ROLE_VAR, role)
        .env(common::RING_VAR, ring)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let (report, reports) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(seq) = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                if report.send(seq).is_err() {
                    break;
                }
            }
        }
    });
    (child, reports)
}

/// The highest sequence the child reported, after it is gone.
fn last_report(reports: &mpsc::Receiver<u64>) -> Option<u64> {
    reports.iter().last()
}

fn check(seq: u64, got: &[u8], expected: &mut Vec<u8>) {
    message(seq, length(seq, MAX), expected);
    assert_eq!(
        got,
        expected.as_slice(),
        "message {seq} torn or out of order"
    );
}

fn producer_killed(strategy: WaitStrategy) {
    let _pair = ONE_PAIR_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut detection = Vec::new();
    for round in 0..rounds(ROUNDS) {
        let name = ShmName::new("killprod");
        let ring = Ring::create(name.as_str(), &config(strategy)).unwrap();
        let mut rx = ring.consumer().unwrap();
        let (mut child, reports) = spawn("producer", name.as_str());
        let (mut buf, mut expected) = (vec![0u8; MAX], Vec::new());
        // Kill at a different point each round.
        let kill_after = 300 + round * 977 % 3000;
        let mut seq = 0u64;
        while seq < kill_after {
            let n = rx.recv_timeout(&mut buf, CALL_TIMEOUT).unwrap();
            check(seq, &buf[..n], &mut expected);
            seq += 1;
        }
        child.kill().unwrap();
        let killed = Instant::now();
        child.wait().unwrap();
        // Drain what it published, then PeerDead.
        loop {
            match rx.recv_timeout(&mut buf, CALL_TIMEOUT) {
                Ok(n) => {
                    check(seq, &buf[..n], &mut expected);
                    seq += 1;
                }
                Err(Error::PeerDead { .. }) => break,
                Err(e) => panic!("round {round}: after {seq} messages: {e}"),
            }
        }
        let took = killed.elapsed();
        assert!(
            took < DETECTION_BOUND,
            "round {round}: PeerDead after {took:?}"
        );
        detection.push(took);
        // Every message the producer saw committed was delivered (exactly once, in order:
        // `check` verified the sequence).
        let committed = last_report(&reports).expect("the producer reported progress");
        assert!(
            seq > committed,
            "round {round}: committed {committed}, delivered {seq}"
        );
        // The registry shows the dead holder as such (recovered by the consumer that found
        // it out), then the new holder's generation.
        let producer_record =
            |ring: &Ring| ring.peers().into_iter().find(|p| p.index == 0).unwrap();
        let dead = producer_record(&ring);
        assert_eq!((dead.status, dead.generation), (PeerStatus::Dead, 1));
        assert_eq!(dead.pid, child.id());
        // A new producer takes the dead one's role and continues the stream.
        let mut tx = ring.producer().unwrap();
        let taken = producer_record(&ring);
        assert_eq!((taken.status, taken.generation), (PeerStatus::Attached, 2));
        assert_eq!(taken.pid, std::process::id());
        message(seq, length(seq, MAX), &mut expected);
        tx.send(&expected).unwrap();
        let n = rx.recv_timeout(&mut buf, CALL_TIMEOUT).unwrap();
        check(seq, &buf[..n], &mut expected);
    }
    detection.sort();
    println!(
        "{strategy:?}: {} rounds, PeerDead after kill: median {:?}, max {:?}",
        detection.len(),
        detection[detection.len() / 2],
        detection[detection.len() - 1]
    );
}

#[test]
fn killed_producer_spin_yield() {
    producer_killed(WaitStrategy::SpinYield);
}

#[test]
fn killed_producer_futex() {
    producer_killed(WaitStrategy::Futex);
}

#[test]
fn killed_consumer_is_reported_and_replaced() {
    let _pair = ONE_PAIR_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for strategy in [WaitStrategy::SpinYield, WaitStrategy::Futex] {
        let name = ShmName::new("killcons");
        let ring = Ring::create(name.as_str(), &config(strategy)).unwrap();
        let mut tx = ring.producer().unwrap();
        let (mut child, reports) = spawn("consumer", name.as_str());
        let mut msg = Vec::new();
        let mut sent = 0u64;
        // Send until the child has released a while, then kill it.
        let mut released = 0;
        while released < 2000 {
            message(sent, length(sent, MAX), &mut msg);
            tx.send_timeout(&msg, CALL_TIMEOUT).unwrap();
            sent += 1;
            while let Ok(seq) = reports.try_recv() {
                released = seq;
            }
        }
        child.kill().unwrap();
        let killed = Instant::now();
        child.wait().unwrap();
        let released = last_report(&reports).unwrap_or(released);
        // Nobody consumes now: the ring fills, then the blocked send reports the death.
        loop {
            message(sent, length(sent, MAX), &mut msg);
            match tx.send_timeout(&msg, CALL_TIMEOUT) {
                Ok(()) => sent += 1,
                Err(Error::PeerDead { .. }) => break,
                Err(e) => panic!("{strategy:?}: send {sent}: {e}"),
            }
        }
        assert!(
            killed.elapsed() < DETECTION_BOUND,
            "{strategy:?}: {:?}",
            killed.elapsed()
        );
        // A new consumer resumes at the last released position: nothing is lost (it may
        // see again what the dead one read but had not released: at-least-once).
        let mut rx = ring.consumer().unwrap();
        let mut buf = vec![0u8; MAX];
        let n = rx.try_recv(&mut buf).unwrap();
        // Which message is it? The latest candidate whose contents match exactly (short
        // messages cannot carry their sequence number).
        let mut expected = Vec::new();
        let first = (released.saturating_sub(4096)..=released + 1)
            .rev()
            .find(|&s| {
                message(s, length(s, MAX), &mut expected);
                expected.as_slice() == &buf[..n]
            })
            .unwrap_or_else(|| panic!("{strategy:?}: resumed at an unknown message"));
        assert!(
            first <= released + 1,
            "{strategy:?}: resumed at {first}, released {released}"
        );
        let mut seq = first + 1;
        while seq < sent {
            let n = rx.try_recv(&mut buf).unwrap();
            check(seq, &buf[..n], &mut expected);
            seq += 1;
        }
        assert!(matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)));
    }
}
