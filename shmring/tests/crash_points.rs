//! A peer killed at each exact step of the protocol (crash hooks: the process sends itself
//! SIGKILL the n-th time it reaches the step). Each step has an exact expected outcome:
//! what was published is delivered, what was not is never seen, nothing is torn, and a
//! new process takes over where the dead one stopped.

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{ShmName, length, message, role, wait_bounded};
use shmring::{Config, Error, spsc::Ring};

const MAX: usize = 200;
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
static ONE_PAIR_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A crash step and, given the pass `n` at which the peer dies, the expected count.
type Case = (&'static str, fn(u64) -> u64);

/// Child roles: produce or consume messages 0, 1, 2, … until a crash point kills them.
#[test]
fn child_entry() {
    let Some((role, ring)) = role() else { return };
    let ring = Ring::open(&ring).unwrap();
    let mut msg = Vec::new();
    match role.as_str() {
        "producer" => {
            let mut tx = ring.producer().unwrap();
            for seq in 0..100_000u64 {
                message(seq, length(seq, MAX), &mut msg);
                tx.send_timeout(&msg, CALL_TIMEOUT).unwrap();
            }
        }
        "consumer" => {
            let mut rx = ring.consumer().unwrap();
            let mut buf = vec![0u8; MAX];
            for _ in 0..100_000u64 {
                rx.recv_timeout(&mut buf, CALL_TIMEOUT).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
    panic!("the crash point was never reached");
}

/// Runs a child in `role` that kills itself at the `n`-th `step`.
fn run_until_crash(role: &str, ring: &str, step: &str, n: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(common::ROLE_VAR, role)
        .env(common::RING_VAR, ring)
        .env("SHMRING_CRASH_AT", format!("{step}:{n}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{role} at {step}:{n}: {status}"
    );
}

fn check(seq: u64, got: &[u8]) {
    let mut expected = Vec::new();
    message(seq, length(seq, MAX), &mut expected);
    assert_eq!(got, expected.as_slice(), "message {seq}");
}

#[test]
fn producer_killed_at_each_step() {
    let _pair = ONE_PAIR_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // (step, messages the consumer must receive when the producer dies at its n-th pass)
    let cases: [Case; 3] = [
        ("producer-claimed", |n| n - 1), // n-th message claimed, nothing written
        ("producer-written", |n| n - 1), // n-th message written, not published
        ("producer-published", |n| n),   // n-th message published, `tail` not stored
    ];
    for (step, delivered) in cases {
        for n in [1u64, 2, 37, 400] {
            let name = ShmName::new("crashprod");
            let ring = Ring::create(
                name.as_str(),
                &Config::new().capacity(4096).max_message(MAX),
            )
            .unwrap();
            let mut rx = ring.consumer().unwrap();
            // Small ring: the child blocks when full, so consume concurrently.
            let consumer = std::thread::spawn(move || {
                let mut buf = vec![0u8; MAX];
                let mut seq = 0u64;
                loop {
                    match rx.recv_timeout(&mut buf, CALL_TIMEOUT) {
                        Ok(len) => {
                            check(seq, &buf[..len]);
                            seq += 1;
                        }
                        Err(Error::PeerDead { .. }) => return (seq, rx),
                        Err(e) => panic!("after {seq}: {e}"),
                    }
                }
            });
            run_until_crash("producer", name.as_str(), step, n);
            let (received, mut rx) = consumer.join().unwrap();
            assert_eq!(received, delivered(n), "{step}:{n}");
            // A new producer continues exactly after the last published message.
            let mut tx = ring.producer().unwrap();
            let mut msg = Vec::new();
            message(received, length(received, MAX), &mut msg);
            tx.send(&msg).unwrap();
            let mut buf = vec![0u8; MAX];
            let len = rx.recv_timeout(&mut buf, CALL_TIMEOUT).unwrap();
            check(received, &buf[..len]);
            assert_eq!(
                ring.stats().messages_sent,
                received + 1,
                "{step}:{n} counters"
            );
        }
    }
}

/// The ring of `consumer_killed_at_each_step`, filled before the consumer starts.
const CONSUMER_RING: usize = 1 << 16;
const CONSUMER_MESSAGES: u64 = 200;

/// How many messages the consumer has given back after each of its releases, reading the
/// full ring of `consumer_killed_at_each_step`: one release per `RELEASE_CHUNK` bytes of
/// records (the ring never runs dry before the last message), and one after the last.
fn release_points() -> Vec<u64> {
    let chunk = shmring::spsc::RELEASE_CHUNK.min(CONSUMER_RING / 4) as u64;
    let (mut points, mut held) = (Vec::new(), 0);
    for seq in 0..CONSUMER_MESSAGES {
        held += shmring::layout::record::size(length(seq, MAX) as u64);
        if held >= chunk || seq + 1 == CONSUMER_MESSAGES {
            points.push(seq + 1);
            held = 0;
        }
    }
    points
}

/// The first message a new consumer receives when the old one died at its `n`-th read
/// (messages `0..n - 1` read): the one after the last release before it. What was read
/// and not given back is delivered again — at most `RELEASE_CHUNK` bytes of it.
fn resume_after_read(n: u64) -> u64 {
    let points = release_points();
    points
        .into_iter()
        .take_while(|&p| p < n)
        .last()
        .unwrap_or(0)
}

/// ... and when it died at its `n`-th release: the release's count.
fn resume_after_release(n: u64) -> u64 {
    release_points()[n as usize - 1]
}

#[test]
fn consumer_killed_at_each_step() {
    let _pair = ONE_PAIR_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // The steps the cases land on are different points of the chunked releases.
    assert!(release_points().len() > 5 && release_points()[0] > 3);
    // (step, first message a new consumer receives when the old one died at its n-th pass)
    let cases: [Case; 2] = [
        ("consumer-read", resume_after_read), // read, maybe not released: seen again
        ("consumer-released", resume_after_release), // n-th release: the next one
    ];
    for (step, resume) in cases {
        for n in [1u64, 3, 50, 120] {
            if step == "consumer-released" && n as usize > release_points().len() {
                continue;
            }
            let name = ShmName::new("crashcons");
            let ring = Ring::create(
                name.as_str(),
                &Config::new().capacity(CONSUMER_RING).max_message(MAX),
            )
            .unwrap();
            let mut tx = ring.producer().unwrap();
            let mut msg = Vec::new();
            let total = CONSUMER_MESSAGES;
            for seq in 0..total {
                message(seq, length(seq, MAX), &mut msg);
                tx.send(&msg).unwrap();
            }
            run_until_crash("consumer", name.as_str(), step, n);
            let mut rx = ring.consumer().unwrap();
            let mut buf = vec![0u8; MAX];
            for seq in resume(n)..total {
                let len = rx.try_recv(&mut buf).unwrap();
                check(seq, &buf[..len]);
            }
            assert!(
                matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)),
                "{step}:{n}"
            );
        }
    }
}
