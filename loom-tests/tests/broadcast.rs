//! loom models of the broadcast protocol (`shmring::algo::broadcast`, run on the shipped
//! handles over heap memory): a reader never delivers bytes the producer overwrote while it
//! read them (B1/B2), and a reader joining at the oldest record is never overrun by a
//! Lossless producer that had not seen it yet (B3).
//!
//! Build and run with `loom-tests/run.sh`.
#![cfg(shmring_loom)]

use loom::thread;
use shmring::broadcast::{Broadcast, JoinAt, Policy};
use shmring::testing::HeapRing;
use shmring::{Config, Error};

/// A 256-byte broadcast ring (records of up to 48 bytes), `policy`.
fn ring(policy: Policy) -> HeapRing<Broadcast> {
    HeapRing::new(
        &Config::new()
            .capacity(256)
            .max_message(48)
            .max_readers(2)
            .overflow(policy),
    )
    .unwrap()
}

/// Message `i`: 40 bytes that say which message they are (a record of 56 bytes: four fit
/// in the ring, the fifth overwrites the first).
fn payload(i: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..40)
        .map(|k| i.wrapping_mul(31).wrapping_add(k))
        .collect();
    bytes[0] = i;
    bytes
}

/// What a reader saw: delivered message numbers and messages reported missed.
fn read_all(rx: &mut shmring::testing::HeapConsumer<Broadcast>) -> (Vec<u8>, u64) {
    let (mut seen, mut missed, mut out) = (Vec::new(), 0, Vec::new());
    loop {
        match rx.try_recv_vec(&mut out) {
            Ok(_) => {
                let i = out[0];
                assert_eq!(
                    out,
                    payload(i),
                    "torn message: it starts like message {i} after {seen:?}, {missed} missed"
                );
                seen.push(i);
            }
            Err(Error::Lagged { missed: m }) => missed += m,
            Err(Error::WouldBlock) => thread::yield_now(),
            Err(Error::Closed) => return (seen, missed),
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// An Overwrite producer laps a reader that reads at the same time: every message the
/// reader delivers is intact and in order, and delivered plus missed equals sent.
#[test]
fn an_overwritten_record_is_never_delivered() {
    loom::model(|| {
        let ring = ring(Policy::Overwrite);
        let mut rx = ring.reader(2, JoinAt::Live, None).unwrap();
        let mut tx = ring.producer(1).unwrap();
        let producer = thread::spawn(move || {
            for i in 0..5 {
                tx.try_send(&payload(i)).unwrap();
            }
            tx.close();
        });
        let (seen, missed) = read_all(&mut rx);
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seen:?}"
        );
        assert_eq!(
            seen.len() as u64 + missed,
            5,
            "seen {seen:?}, missed {missed}"
        );
        producer.join().unwrap();
    });
}

/// A reader joins at the oldest record while a Lossless producer, which has no other
/// reader to wait for, reclaims the first record for a fifth: either the reader sees how
/// far the producer is going and starts beyond it, or the producer sees the reader and
/// waits for it. Never `Lagged`, never a gap.
#[test]
fn a_joining_reader_is_never_overrun() {
    loom::model(|| {
        let ring = ring(Policy::Lossless);
        let mut tx = ring.producer(1).unwrap();
        for i in 0..4 {
            tx.try_send(&payload(i)).unwrap();
        }
        let producer = thread::spawn(move || {
            while let Err(e) = tx.try_send(&payload(4)) {
                assert!(matches!(e, Error::WouldBlock), "send: {e}");
                thread::yield_now();
            }
            tx.close();
        });
        let mut rx = ring.reader(2, JoinAt::Oldest, None).unwrap();
        let (seen, missed) = read_all(&mut rx);
        assert_eq!(missed, 0, "a lossless reader lagged (saw {seen:?})");
        let first = seen[0];
        // The fifth record needs the first two reclaimed (padding to the lap end, then
        // the record): a reader that saw the producer's intent starts at the third.
        assert!(first <= 2, "joined after the oldest: {seen:?}");
        assert_eq!(seen, (first..5).collect::<Vec<u8>>(), "gaps or repeats");
        producer.join().unwrap();
    });
}
