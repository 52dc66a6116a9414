//! loom models of the SPSC record protocol and role takeover, run on the shipped handles
//! (`Producer<Spsc, _>`, `Consumer<Spsc, _>` over heap memory, from `shmring::testing`).
//!
//! Build and run with `loom-tests/run.sh`, or:
//! `RUSTFLAGS="--cfg shmring_loom" CARGO_TARGET_DIR=target/loom cargo test --release -p loom-tests`
#![cfg(shmring_loom)]

use std::sync::Arc;

use loom::thread;
use shmring::spsc::Spsc;
use shmring::testing::{Abandon, HeapConsumer, HeapProducer, HeapRing, Maintain};
use shmring::{Config, Error};

/// Both ends of a 256-byte ring (messages up to 120 bytes) whose positions start at
/// `start`: the producer is owner 1, the consumer owner 2.
fn pair(start: u64) -> (HeapProducer<Spsc>, HeapConsumer<Spsc>) {
    let config = Config::new()
        .capacity(256)
        .max_message(120)
        .initial_position(start);
    let ring = HeapRing::<Spsc>::new(&config).unwrap();
    (ring.producer(1).unwrap(), ring.consumer(2).unwrap())
}

/// Payload of message `i`: its bytes say which message it is.
fn payload(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| i.wrapping_mul(17).wrapping_add(k as u8))
        .collect()
}

/// Producer sends `lens` and closes; the consumer (main thread) receives until `Closed` and
/// checks every byte. Covers: publication (P1/C1), release and reuse of space (C2/P2) when
/// the ring fills, padding at the lap end, terminators, end of stream (P3/C3).
fn stream(start: u64, lens: &'static [usize], batch_first_two: bool) {
    loom::model(move || {
        let (mut tx, mut rx) = pair(start);
        let producer = thread::spawn(move || {
            let mut i = 0;
            while i < lens.len() {
                let sent = if batch_first_two && i < 2 {
                    // Both in one batch, published by one store when it drops (or, if the
                    // ring fills, what was pushed so far; the rest goes in a new batch).
                    let mut batch = tx.batch();
                    let mut pushed = Ok(());
                    while i < 2 && pushed.is_ok() {
                        pushed = batch.try_push(&payload(i as u8, lens[i]));
                        if pushed.is_ok() {
                            i += 1;
                        }
                    }
                    pushed
                } else {
                    let sent = tx.try_send(&payload(i as u8, lens[i]));
                    if sent.is_ok() {
                        i += 1;
                    }
                    sent
                };
                match sent {
                    Ok(()) => {}
                    Err(Error::WouldBlock) => thread::yield_now(),
                    Err(e) => panic!("send {i}: {e}"),
                }
            }
            tx.close();
        });
        let mut out = Vec::new();
        let mut next = 0;
        loop {
            match rx.try_recv_vec(&mut out) {
                Ok(_) => {
                    assert_eq!(out, payload(next as u8, lens[next]), "message {next}");
                    next += 1;
                }
                Err(Error::WouldBlock) => thread::yield_now(),
                Err(Error::Closed) => break,
                Err(e) => panic!("recv after {next}: {e}"),
            }
        }
        assert_eq!(next, lens.len(), "every message delivered once");
        producer.join().unwrap();
    });
}

/// Three 40-byte messages starting 64 bytes before the lap end: the second needs a padding
/// record, the third lands after it.
#[test]
fn wrap_with_padding_then_close() {
    stream(192, &[40, 40, 40], false);
}

/// Four 100-byte messages in a 256-byte ring: the producer must wait for the consumer's
/// release (C2/P2) twice, and records wrap.
#[test]
fn full_ring_reuses_released_space() {
    stream(0, &[100, 100, 100, 100], false);
}

/// A batch of two published by one store, the second record wrapping after padding.
#[test]
fn batch_published_by_its_first_header() {
    stream(192, &[40, 40, 8], true);
}

/// Six messages of mixed sizes (one empty) from mid-lap: several fills, two wraps.
#[test]
fn mixed_sizes_over_two_laps() {
    stream(136, &[100, 0, 100, 56, 100, 8], false);
}

/// The futex wait protocol: both ends block (consumer on empty, producer on full), every
/// wake-up goes through the futex mock, and the producer closes at the end. A lost wake-up
/// leaves a thread asleep forever, which loom reports as a deadlock.
#[test]
fn futex_wakeups_are_never_lost() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(0);
        let producer = thread::spawn(move || {
            // Two 108-byte records fit; the third waits for space.
            for i in 0..3u8 {
                tx.send(&payload(i, 100)).unwrap();
            }
            // Closing wakes a sleeping consumer so it sees the end of the stream.
            tx.close();
        });
        let mut out = Vec::new();
        let mut next = 0u8;
        loop {
            match rx.recv_vec(&mut out) {
                Ok(_) => {
                    assert_eq!(out, payload(next, 100), "message {next}");
                    next += 1;
                }
                Err(Error::Closed) => break,
                Err(e) => panic!("recv after {next}: {e}"),
            }
        }
        assert_eq!(next, 3);
        producer.join().unwrap();
    });
}

/// Space released in chunks (R3): a consumer holds back the head until it has consumed a
/// quarter of the ring (64 bytes here), takes the last record published, or sees the
/// producer asleep. Positions start at 96: the 48-byte message A (a 56-byte record) is
/// consumed, and the 104-byte B must pad to the lap end, so it needs A's space. The
/// consumer drains A and waits for more; the producer waits for space. A is the last
/// record published, so its release gives the space back and looks for sleepers; a
/// held-back release that nobody publishes leaves both asleep, which loom reports as a
/// deadlock (the negative control).
#[test]
fn chunked_releases_never_strand_a_waiting_producer() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(96);
        let lens = [48, 104];
        let producer = thread::spawn(move || {
            for (i, len) in lens.into_iter().enumerate() {
                tx.send(&payload(i as u8, len)).unwrap();
            }
            tx.close();
        });
        let mut out = Vec::new();
        let mut next = 0;
        loop {
            match rx.recv_vec(&mut out) {
                Ok(_) => {
                    assert_eq!(out, payload(next as u8, lens[next]), "message {next}");
                    next += 1;
                }
                Err(Error::Closed) => break,
                Err(e) => panic!("recv after {next}: {e}"),
            }
        }
        assert_eq!(next, lens.len());
        producer.join().unwrap();
    });
}

/// The readiness protocol (arm → re-check → wait for the doorbell → drain): the consumer
/// receives until `WouldBlock`, arms, and if `arm` says so waits for its doorbell (a
/// counter on a heap ring) to move; the producer sends two messages and closes. A publish
/// that neither the consumer's re-check sees nor the doorbell tells about leaves the
/// consumer waiting for ever (loom stops the model and reports it).
#[test]
fn armed_consumers_are_always_rung() {
    loom::model(|| {
        let config = Config::new().capacity(256).max_message(120);
        let ring = Arc::new(HeapRing::<Spsc>::new(&config).unwrap());
        let (mut tx, mut rx) = (ring.producer(1).unwrap(), ring.consumer(2).unwrap());
        let producer = thread::spawn(move || {
            for i in 0..2u8 {
                tx.try_send(&payload(i, 8)).unwrap();
            }
            tx.close();
        });
        let mut buf = [0u8; 16];
        let mut next = 0u8;
        let mut rung = 0;
        loop {
            match rx.try_recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(&buf[..n], &payload(next, 8)[..], "message {next}");
                    next += 1;
                    continue;
                }
                Err(Error::Closed) => break,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("recv after {next}: {e}"),
            }
            if rx.arm().unwrap() {
                // Asleep until the doorbell rings (the consumer's slot is 1).
                while ring.doorbell_rings(shmring::Role::Consumer, 1) == rung {
                    thread::yield_now();
                }
                rung = ring.doorbell_rings(shmring::Role::Consumer, 1);
            }
        }
        assert_eq!(next, 2);
        producer.join().unwrap();
    });
}

/// SPSC role takeover: producer A (owner 1) sends a message and dies; producer B (owner 3)
/// takes the role once A is dead, sends a message and closes. Meanwhile the consumer
/// receives, looking for a dead producer whenever it finds nothing. Whichever of B's
/// attach and the consumer's reaping of A comes first, the death is counted once, both
/// messages arrive once and in order, and the consumer learns of the death: either the
/// stream ends with `PeerDead` after A's message (no producer was attached when the
/// consumer looked) and B's message starts a new stream that ends with `Closed`, or B
/// continues A's stream, which ends with `PeerDead`.
#[test]
fn a_producer_takes_over_from_a_dead_one() {
    #[derive(Debug, PartialEq)]
    enum Seen {
        Message(u8),
        PeerDead,
        Closed,
    }
    loom::model(|| {
        let ring = Arc::new(HeapRing::<Spsc>::new(&Config::new().capacity(256)).unwrap());
        let mut rx = ring.consumer(2).unwrap();
        let mut dying = ring.producer(1).unwrap();
        let successor = {
            let ring = ring.clone();
            thread::spawn(move || {
                dying.try_send(&payload(0, 40)).unwrap();
                // Dies: no close, no code runs; its slot lock goes with its "process".
                dying.abandon();
                ring.mark_dead(1);
                let mut tx = ring.producer(3).expect("taking over from a dead producer");
                tx.try_send(&payload(1, 40)).unwrap();
                tx.close();
            })
        };
        let mut out = Vec::new();
        let mut seen = Vec::new();
        loop {
            match rx.try_recv_vec(&mut out) {
                Ok(_) => {
                    let next = seen
                        .iter()
                        .filter(|s| matches!(s, Seen::Message(_)))
                        .count();
                    assert_eq!(out, payload(next as u8, 40), "message {next}");
                    seen.push(Seen::Message(next as u8));
                }
                Err(Error::WouldBlock) => {
                    rx.maintain();
                    thread::yield_now();
                }
                Err(end) => {
                    let end = match end {
                        Error::PeerDead { .. } => Seen::PeerDead,
                        Error::Closed => Seen::Closed,
                        other => panic!("receive: {other}"),
                    };
                    if seen.last() != Some(&end) {
                        seen.push(end);
                    }
                    if seen.contains(&Seen::Message(1)) {
                        break;
                    }
                    // The end of A's stream: B has not attached yet.
                    thread::yield_now();
                }
            }
        }
        successor.join().unwrap();
        use Seen::*;
        assert!(
            seen == [Message(0), Message(1), PeerDead]
                || seen == [Message(0), PeerDead, Message(1), Closed],
            "the consumer saw {seen:?}; {:?}",
            ring.stats()
        );
        assert_eq!(ring.stats().producers_died, 1, "the death counted once");
    });
}
