//! Deferred releases and read marks (`Consumer::defer_releases`, `read_mark`, `release_to`)
//! and producer positions (`Producer::position`): what a bridge needs to pass messages on
//! without losing or repeating any across its own crash.

mod common;

use std::time::Duration;

use common::{ShmName, length, message, role, wait_bounded};
use shmring::broadcast::{self, JoinAt};
use shmring::{Config, Consumer, Error, ErrorKind, Kind, Producer, mpmc, spsc};

const MAX: usize = 200;
const TOTAL: u64 = 500;
/// Messages the killed consumer gave back before dying (it had read all `TOTAL`).
const GIVEN_BACK: u64 = 173;
const CALL: Duration = Duration::from_secs(20);

/// Child roles; each ends by killing itself with SIGKILL (no close, no unwinding).
#[test]
fn child_entry() {
    let Some((role, ring)) = role() else { return };
    match role.as_str() {
        "spsc-consumer" => {
            let ring = spsc::Ring::open(&ring).unwrap();
            read_all_give_back_some(&mut ring.consumer().unwrap());
        }
        "broadcast-reader" => {
            let ring = broadcast::Ring::open(&ring).unwrap();
            read_all_give_back_some(&mut ring.reader_named("bridge", JoinAt::Oldest).unwrap());
        }
        "spsc-producer" => {
            // Dies at its crash point: after publishing its 5th message, before storing
            // its tail.
            let ring = spsc::Ring::open(&ring).unwrap();
            send_all(&mut ring.producer().unwrap());
        }
        other => panic!("unknown role {other}"),
    }
    // SAFETY: plain libc call on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Reads every message with releases deferred, gives back the first `GIVEN_BACK`.
fn read_all_give_back_some<K: Kind>(rx: &mut Consumer<K>) {
    rx.defer_releases().unwrap();
    let mut buf = vec![0u8; MAX];
    let mut mark = None;
    for seq in 0..TOTAL {
        let n = rx.recv_timeout(&mut buf, CALL).unwrap();
        check(seq, &buf[..n]);
        if seq + 1 == GIVEN_BACK {
            mark = Some(rx.read_mark().unwrap());
        }
    }
    rx.release_to(mark.unwrap()).unwrap();
}

fn check(seq: u64, got: &[u8]) {
    let mut expected = Vec::new();
    message(seq, length(seq, MAX), &mut expected);
    assert_eq!(got, expected.as_slice(), "message {seq}");
}

fn send_all<K: Kind>(tx: &mut Producer<K>) {
    let mut msg = Vec::new();
    for seq in 0..TOTAL {
        message(seq, length(seq, MAX), &mut msg);
        tx.send_timeout(&msg, CALL).unwrap();
    }
}

/// Runs `role` in a child on `ring` (extra environment `env`) and waits for its SIGKILL.
fn run_child(role: &str, ring: &str, env: Option<(&str, &str)>) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(common::ROLE_VAR, role)
        .env(common::RING_VAR, ring)
        .stdin(std::process::Stdio::null());
    if let Some((key, value)) = env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{role}: {status}");
}

/// After a consumer that read everything and gave back `GIVEN_BACK` messages is killed,
/// the next one reads from message `GIVEN_BACK` on: nothing lost, nothing given back read
/// again.
fn resume_after_the_marks<K: Kind>(rx: &mut Consumer<K>) {
    let mut buf = vec![0u8; MAX];
    for seq in GIVEN_BACK..TOTAL {
        let n = rx.try_recv(&mut buf).unwrap();
        check(seq, &buf[..n]);
    }
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)));
}

#[test]
fn a_killed_spsc_consumer_is_resumed_at_its_last_mark() {
    let name = ShmName::new("defer-spsc");
    let ring = spsc::Ring::create(name.as_str(), &Config::new().capacity(1 << 17)).unwrap();
    let mut tx = ring.producer().unwrap();
    send_all(&mut tx);
    run_child("spsc-consumer", name.as_str(), None);
    // Everything read and not given back still holds its space.
    assert_eq!(ring.stats().messages_in_flight, TOTAL - GIVEN_BACK);
    resume_after_the_marks(&mut ring.consumer().unwrap());
}

#[test]
fn a_killed_durable_reader_is_resumed_at_its_last_mark() {
    let name = ShmName::new("defer-bcast");
    let ring = broadcast::Ring::create(name.as_str(), &Config::new().capacity(1 << 17)).unwrap();
    let mut tx = ring.producer().unwrap();
    // The named reader's record exists before the producer sends (Lossless: kept for it).
    ring.reader_named("bridge", JoinAt::Oldest).unwrap().close();
    send_all(&mut tx);
    run_child("broadcast-reader", name.as_str(), None);
    resume_after_the_marks(&mut ring.reader_named("bridge", JoinAt::Oldest).unwrap());
}

#[test]
fn held_space_back_pressures_the_producer_until_given_back() {
    let name = ShmName::new("defer-full");
    let ring = spsc::Ring::create(name.as_str(), &Config::new().capacity(4096)).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    rx.defer_releases().unwrap();
    let msg = [7u8; 100];
    let mut sent = 0;
    while tx.try_send(&msg).is_ok() {
        sent += 1;
    }
    let mut buf = [0u8; 128];
    let mut marks = Vec::new();
    for _ in 0..sent {
        rx.try_recv(&mut buf).unwrap();
        marks.push(rx.read_mark().unwrap());
    }
    // Everything read, nothing given back: still full for the producer, even after the
    // consumer ran dry (which gives space back at once when releases are not deferred).
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)));
    assert!(matches!(tx.try_send(&msg), Err(Error::WouldBlock)));
    // A producer blocked on it is woken by the release.
    let waiting = std::thread::spawn(move || {
        tx.send_timeout(&msg, CALL).unwrap();
        tx
    });
    std::thread::sleep(Duration::from_millis(50));
    // Three records' room (one may pad to the end of the lap).
    rx.release_to(marks[2]).unwrap();
    let mut tx = waiting.join().unwrap();
    // Marks must lie between the last one given back and the last read.
    let err = rx.release_to(marks[2]).and_then(|()| {
        rx.release_to(marks[3])?;
        rx.release_to(marks[0])
    });
    let Err(Error::InvalidArgument { detail }) = err else {
        panic!("a mark before the last one given back: {err:?}");
    };
    assert!(detail.contains("not between"), "{detail}");
    rx.release_to(*marks.last().unwrap()).unwrap();
    assert!(tx.try_send(&msg).is_ok());
}

#[test]
fn mpmc_consumers_cannot_defer_and_mpmc_producers_have_no_position() {
    let name = ShmName::new("defer-mpmc");
    let ring = mpmc::Ring::create(name.as_str(), &Config::new().slots(8)).unwrap();
    let mut rx = ring.consumer().unwrap();
    let err = rx.defer_releases().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("cannot be deferred"), "{err}");
    assert_eq!(
        ring.producer().unwrap().position().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_new_producer_starts_at_the_last_position_published() {
    let name = ShmName::new("defer-pos");
    let ring = spsc::Ring::create(name.as_str(), &Config::new().capacity(1 << 17)).unwrap();
    let mut rx = ring.consumer().unwrap();
    // Killed after publishing its 5th message and before storing its tail.
    run_child(
        "spsc-producer",
        name.as_str(),
        Some(("SHMRING_CRASH_AT", "producer-published:5")),
    );
    let mut buf = vec![0u8; MAX];
    for seq in 0..5 {
        let n = rx.try_recv(&mut buf).unwrap();
        check(seq, &buf[..n]);
    }
    let after_five = rx.read_mark().unwrap().position();
    let mut tx = ring.producer().unwrap();
    assert_eq!(tx.position().unwrap(), after_five);
    tx.try_send(b"sixth").unwrap();
    assert!(tx.position().unwrap() > after_five);
}
