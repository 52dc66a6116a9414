//! loom models of the SPSC record protocol, run on the shipped `ProducerCore` /
//! `ConsumerCore` (through `shmring::testing`) with heap memory.
//!
//! Build and run with `loom-tests/run.sh`, or:
//! `RUSTFLAGS="--cfg shmring_loom" CARGO_TARGET_DIR=target/loom cargo test --release -p loom-tests`
#![cfg(shmring_loom)]

use loom::thread;
use shmring::Error;
use shmring::testing::heap_pair;

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
        let (mut tx, mut rx) = heap_pair(256, 120, start).unwrap();
        let producer = thread::spawn(move || {
            let mut i = 0;
            while i < lens.len() {
                let batch = batch_first_two && i == 0;
                if batch {
                    tx.begin_batch();
                }
                let upto = if batch { 2 } else { i + 1 };
                while i < upto {
                    match tx.try_send(&payload(i as u8, lens[i])) {
                        Ok(()) => i += 1,
                        Err(Error::WouldBlock) => {
                            tx.flush();
                            thread::yield_now();
                        }
                        Err(e) => panic!("send {i}: {e}"),
                    }
                }
                tx.flush();
            }
            tx.close();
        });
        let mut out = Vec::new();
        let mut next = 0;
        loop {
            match rx.try_recv(&mut out) {
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
        let (mut tx, mut rx) = heap_pair(256, 120, 0).unwrap();
        let producer = thread::spawn(move || {
            // Two 108-byte records fit; the third waits for space.
            for i in 0..3u8 {
                tx.send(&payload(i, 100)).unwrap();
            }
            tx.close_and_notify();
        });
        let mut out = Vec::new();
        let mut next = 0u8;
        loop {
            match rx.recv(&mut out) {
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
