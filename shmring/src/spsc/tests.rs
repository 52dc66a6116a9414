//! The SPSC algorithm on heap memory: framing, wrap, padding, batching, end of stream,
//! corruption, and positions that wrap `u64`.

use std::collections::VecDeque;

use proptest::prelude::*;

use crate::Config;
use crate::error::Error;
use crate::layout::record;
use crate::spsc::Spsc;
use crate::testing::{HeapConsumer, HeapProducer, HeapRing};

/// A heap ring of `capacity` bytes (largest messages allowed), positions from `start`.
fn ring(capacity: usize, max_message: usize, start: u64) -> HeapRing<Spsc> {
    let config = Config::new()
        .capacity(capacity)
        .max_message(max_message)
        .initial_position(start);
    HeapRing::new(&config).unwrap()
}

/// Both ends of a heap ring (owners 1 and 2).
fn ends(ring: &HeapRing<Spsc>) -> (HeapProducer<Spsc>, HeapConsumer<Spsc>) {
    (ring.producer(1).unwrap(), ring.consumer(2).unwrap())
}

fn pair(capacity: usize, start: u64) -> (HeapProducer<Spsc>, HeapConsumer<Spsc>) {
    let max = crate::layout::geometry::max_message_limit(capacity as u64) as usize;
    ends(&ring(capacity, max, start))
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

#[test]
fn messages_keep_their_boundaries_and_order() {
    let (mut tx, mut rx) = pair(1024, 0);
    let mut out = Vec::new();
    for len in [0usize, 1, 7, 8, 9, 100] {
        tx.try_send(&payload(len as u64, len)).unwrap();
    }
    for len in [0usize, 1, 7, 8, 9, 100] {
        assert_eq!(rx.try_recv_vec(&mut out).unwrap(), len);
        assert_eq!(out, payload(len as u64, len));
    }
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
}

#[test]
fn full_ring_refuses_and_overwrites_nothing() {
    let (mut tx, mut rx) = pair(256, 0);
    let mut sent = 0u64;
    loop {
        match tx.try_send(&payload(sent, 24)) {
            Ok(()) => sent += 1,
            Err(Error::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // 32-byte records and an 8-byte terminator reserve: (256 - 8) / 32 = 7 records.
    assert_eq!(sent, 7);
    // 32 bytes remain: an empty message (8-byte record + terminator) still fits, a 17-byte
    // one (24-byte record + terminator) does not.
    assert!(matches!(tx.try_send(&[0; 17]), Err(Error::WouldBlock)));
    let mut out = Vec::new();
    for seq in 0..sent {
        rx.try_recv_vec(&mut out).unwrap();
        assert_eq!(out, payload(seq, 24), "message {seq}");
    }
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
    tx.try_send(b"room again").unwrap();
    tx.try_send(b"").unwrap();
}

#[test]
fn too_large_is_refused_and_the_largest_fits_at_every_offset() {
    let capacity = 512;
    let max = crate::layout::geometry::max_message_limit(capacity as u64) as usize;
    assert_eq!(max, 248);
    let mut out = Vec::new();
    // Move an empty ring through every 8-byte offset; a max message must always fit.
    for shift in 0..capacity / 8 {
        let (mut tx, mut rx) = pair(capacity, shift as u64 * 8);
        assert!(matches!(
            tx.try_send(&vec![0; max + 1]),
            Err(Error::MessageTooLarge { len, max: m }) if len == max + 1 && m == max
        ));
        tx.try_send(&payload(shift as u64, max)).unwrap();
        rx.try_recv_vec(&mut out).unwrap();
        assert_eq!(out, payload(shift as u64, max));
    }
}

#[test]
fn records_wrap_with_padding_across_u64_overflow() {
    let capacity = 1024;
    let (mut tx, mut rx) = pair(capacity, u64::MAX - 4096 + 1);
    let mut out = Vec::new();
    // Lengths chosen so records straddle the lap end often; runs past the u64 wrap.
    for seq in 0..20_000u64 {
        let len = ((seq * 37) % 300) as usize;
        tx.try_send(&payload(seq, len)).unwrap();
        rx.try_recv_vec(&mut out).unwrap();
        assert_eq!(out, payload(seq, len), "message {seq}");
    }
}

#[test]
fn batch_is_invisible_until_flushed() {
    let (mut tx, mut rx) = pair(4096, 0);
    let mut out = Vec::new();
    let mut batch = tx.batch();
    for seq in 0..10 {
        batch.try_push(&payload(seq, 100)).unwrap();
    }
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
    assert_eq!(batch.publish(), 10);
    let mut seq = 0;
    let taken = rx
        .try_recv_batch(10, |msg| {
            assert_eq!(msg, payload(seq, 100));
            seq += 1;
        })
        .unwrap();
    assert_eq!(taken, 10);
}

#[test]
fn batch_that_wraps_is_published_by_its_first_header() {
    let (mut tx, mut rx) = pair(256, 192);
    let mut out = Vec::new();
    let mut batch = tx.batch();
    // Starts 64 bytes before the lap end: the second record needs a padding record.
    batch.try_push(&payload(1, 40)).unwrap();
    batch.try_push(&payload(2, 40)).unwrap();
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
    drop(batch);
    for seq in 1..=2 {
        rx.try_recv_vec(&mut out).unwrap();
        assert_eq!(out, payload(seq, 40));
    }
}

#[test]
fn zero_copy_commits_the_written_prefix() {
    let (mut tx, mut rx) = pair(1024, 0);
    let mut out = Vec::new();
    let mut grant = tx.try_reserve(100).unwrap();
    grant[..3].copy_from_slice(b"abc");
    grant.commit_prefix(3).unwrap();
    assert_eq!(rx.try_recv_vec(&mut out).unwrap(), 3);
    assert_eq!(out, b"abc");
}

#[test]
fn producer_close_drains_then_closed() {
    let (mut tx, mut rx) = pair(1024, 0);
    let mut out = Vec::new();
    tx.try_send(b"last words").unwrap();
    tx.close();
    assert_eq!(rx.try_recv_vec(&mut out).unwrap(), 10);
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::Closed)));
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::Closed)));
}

#[test]
fn corrupted_headers_are_reported_not_followed() {
    let capacity = 1024u64;
    let cases: [(&str, u64); 5] = [
        ("uncommitted garbage", 0x1234),
        ("wrong tag", record::message(8, 4)),
        ("length past max", record::message(0, 1000)),
        ("padding at offset 0", record::padding(0, 0)),
        ("padding with a length", record::padding(0, 8)),
    ];
    let max = crate::layout::geometry::max_message_limit(capacity) as usize;
    for (what, word) in cases {
        let damaged = ring(capacity as usize, max, 0);
        let (_tx, mut rx) = ends(&damaged);
        damaged.poke_word(0, word);
        let mut out = Vec::new();
        assert!(
            matches!(rx.try_recv_vec(&mut out), Err(Error::Corrupted { .. })),
            "{what}"
        );
    }
    // A record that would run past the end of the data region.
    let past_end = ring(capacity as usize, max, 1000);
    let (_tx, mut rx) = ends(&past_end);
    past_end.poke_word(1000 % capacity, record::message(1000, 400));
    assert!(matches!(
        rx.try_recv_vec(&mut Vec::new()),
        Err(Error::Corrupted { .. })
    ));
    // Padding followed by nothing.
    let dangling = ring(capacity as usize, max, 1000);
    let (_tx, mut rx) = ends(&dangling);
    dangling.poke_word(1000, record::padding(1000, 0));
    assert!(matches!(
        rx.try_recv_vec(&mut Vec::new()),
        Err(Error::Corrupted { .. })
    ));
}

#[derive(Clone, Debug)]
enum Op {
    Send(usize),
    SendZeroCopy(usize),
    Recv,
    Batch(Vec<usize>),
    RecvBatch(usize),
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..=max).prop_map(Op::Send),
        (0..=max).prop_map(Op::SendZeroCopy),
        Just(Op::Recv),
        prop::collection::vec(0..=max / 4, 1..6).prop_map(Op::Batch),
        (1usize..6).prop_map(Op::RecvBatch),
    ]
}

proptest! {
    /// Against a queue model: FIFO, nothing lost or invented, and an empty ring always
    /// accepts a message up to the maximum.
    #[test]
    fn matches_a_queue_model(
        start in prop_oneof![Just(0u64), Just(u64::MAX - 511), any::<u64>()],
        ops in prop::collection::vec(op(120), 1..200),
    ) {
        let (mut tx, mut rx) = ends(&ring(256, 120, start & !7));
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seq = 0u64;
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Send(len) | Op::SendZeroCopy(len) => {
                    let msg = payload(seq, len);
                    seq += 1;
                    let result = if matches!(op, Op::Send(_)) {
                        tx.try_send(&msg)
                    } else {
                        tx.try_reserve(len).and_then(|mut grant| {
                            grant.copy_from_slice(&msg);
                            grant.commit()
                        })
                    };
                    match result {
                        Ok(()) => model.push_back(msg),
                        Err(Error::WouldBlock) => prop_assert!(!model.is_empty()),
                        Err(e) => prop_assert!(false, "send: {e}"),
                    }
                }
                Op::Batch(lens) => {
                    let mut batch = tx.batch();
                    for len in lens {
                        let msg = payload(seq, len);
                        seq += 1;
                        match batch.try_push(&msg) {
                            Ok(()) => model.push_back(msg),
                            Err(Error::WouldBlock) => break,
                            Err(e) => prop_assert!(false, "batch send: {e}"),
                        }
                    }
                }
                Op::Recv => match rx.try_recv_vec(&mut out) {
                    Ok(_) => prop_assert_eq!(Some(out.clone()), model.pop_front()),
                    Err(Error::WouldBlock) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "recv: {e}"),
                },
                Op::RecvBatch(n) => {
                    let mut got = Vec::new();
                    match rx.try_recv_batch(n, |msg| got.push(msg.to_vec())) {
                        Ok(taken) => prop_assert!(taken == got.len() && taken <= n),
                        Err(Error::WouldBlock) => prop_assert!(model.is_empty()),
                        Err(e) => prop_assert!(false, "recv batch: {e}"),
                    }
                    for msg in got {
                        prop_assert_eq!(Some(msg), model.pop_front());
                    }
                }
            }
        }
        tx.close();
        while let Some(expected) = model.pop_front() {
            rx.try_recv_vec(&mut out).unwrap();
            prop_assert_eq!(out.clone(), expected);
        }
        prop_assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::Closed)));
    }
}

/// Two threads, the real memory orderings, a small ring that wraps constantly.
#[test]
fn threads_stream_without_loss() {
    let (mut tx, mut rx) = pair(512, (u64::MAX - 100_000) & !7);
    const N: u64 = 200_000;
    let producer = std::thread::spawn(move || {
        for seq in 0..N {
            let msg = payload(seq, (seq % 200) as usize);
            loop {
                match tx.try_send(&msg) {
                    Ok(()) => break,
                    Err(Error::WouldBlock) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        tx.close();
    });
    let mut out = Vec::new();
    let mut seq = 0;
    loop {
        match rx.try_recv_vec(&mut out) {
            Ok(_) => {
                assert_eq!(out, payload(seq, (seq % 200) as usize), "message {seq}");
                seq += 1;
            }
            Err(Error::WouldBlock) => std::thread::yield_now(),
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    producer.join().unwrap();
    assert_eq!(seq, N);
}
