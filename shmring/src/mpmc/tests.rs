//! Unit tests of the MPMC ring on heap memory (owners are numbers) and on real segments.

use std::collections::HashMap;
use std::sync::Arc;

use crate::mpmc::Mpmc;
use crate::testing::{HeapConsumer, HeapProducer, HeapRing, Maintain};
use crate::{Config, Error, KindStats, mpmc};

/// An MPMC ring on the heap.
fn heap_mpmc(
    slots: usize,
    max_message: usize,
    max_peers: u32,
    start: u64,
) -> crate::Result<HeapRing<Mpmc>> {
    HeapRing::new(
        &Config::new()
            .slots(slots)
            .max_message(max_message)
            .max_peers(max_peers)
            .initial_position(start),
    )
}

/// (claims of dead producers skipped, messages dropped with dead consumers).
fn recovered(ring: &HeapRing<Mpmc>) -> (u64, u64) {
    match ring.stats().kind {
        KindStats::Mpmc {
            claims_skipped,
            messages_dropped,
            ..
        } => (claims_skipped, messages_dropped),
        other => panic!("an MPMC ring reported {other:?}"),
    }
}

/// Claims a slot and stops, as a process killed between claim and publish would: no code
/// of the producer runs again.
fn claim_and_die(mut producer: HeapProducer<Mpmc>) -> crate::Result<()> {
    std::mem::forget(producer.try_reserve(1)?);
    producer.abandon();
    Ok(())
}

/// Takes a message and stops before releasing it, as a killed process would.
fn take_and_die(mut consumer: HeapConsumer<Mpmc>) -> crate::Result<()> {
    std::mem::forget(consumer.try_read()?);
    consumer.abandon();
    Ok(())
}

fn msg(producer: u8, seq: u32) -> Vec<u8> {
    let mut m = vec![producer];
    m.extend_from_slice(&seq.to_le_bytes());
    m.resize(5 + (seq % 40) as usize, producer ^ seq as u8);
    m
}

#[test]
fn fifo_across_many_laps_and_the_end_of_position_space() {
    for start in [0, u64::MAX - 100] {
        let ring = heap_mpmc(8, 48, 4, start).unwrap();
        let mut tx = ring.producer(1).unwrap();
        let mut rx = ring.consumer(2).unwrap();
        let mut out = Vec::new();
        for seq in 0..1000 {
            tx.try_send(&msg(1, seq)).unwrap();
            if seq % 3 == 2 {
                while rx.try_recv_vec(&mut out).is_ok() {}
            }
        }
        while rx.try_recv_vec(&mut out).is_ok() {}
        let mut tx2 = ring.producer(3).unwrap();
        for seq in 0..8 {
            tx2.try_send(&msg(2, seq)).unwrap();
        }
        assert!(matches!(tx2.try_send(b"x"), Err(Error::WouldBlock)));
        for seq in 0..8 {
            rx.try_recv_vec(&mut out).unwrap();
            assert_eq!(out, msg(2, seq));
        }
        assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
    }
}

#[test]
fn batches_take_what_fits_and_deliver_in_order() {
    let ring = heap_mpmc(4, 16, 4, 0).unwrap();
    let mut tx = ring.producer(1).unwrap();
    let mut rx = ring.consumer(2).unwrap();
    let msgs: Vec<&[u8]> = vec![b"a", b"bb", b"ccc", b"dddd", b"eeeee"];
    assert_eq!(tx.try_send_batch(&msgs).unwrap(), 4);
    assert!(matches!(tx.try_send_batch(&msgs), Err(Error::WouldBlock)));
    let mut out = Vec::new();
    assert_eq!(rx.try_recv_batch(3, |m| out.push(m.to_vec())).unwrap(), 3);
    assert_eq!(rx.try_recv_batch(10, |m| out.push(m.to_vec())).unwrap(), 1);
    assert_eq!(
        out,
        msgs[..4].iter().map(|m| m.to_vec()).collect::<Vec<_>>()
    );
    let too_big = [&[0u8; 17][..]];
    assert!(matches!(
        tx.try_send_batch(&too_big),
        Err(Error::MessageTooLarge { len: 17, max: 16 })
    ));
}

#[test]
fn a_dead_producers_claim_is_skipped_and_a_live_ones_never() {
    let ring = heap_mpmc(8, 16, 4, 0).unwrap();
    let slow = ring.producer(1).unwrap();
    let mut live = ring.producer(2).unwrap();
    let mut rx = ring.consumer(3).unwrap();
    claim_and_die(slow).unwrap();
    live.try_send(b"after").unwrap();
    let mut out = Vec::new();
    // Owner 1 still "runs" (a stopped or slow process): its claim is waited for.
    for _ in 0..3 {
        rx.maintain();
        assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
    }
    assert_eq!(recovered(&ring).0, 0);
    ring.mark_dead(1);
    rx.maintain();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"after");
    assert_eq!(recovered(&ring).0, 1);
    // The dead producer's record was reaped: one producer left.
    assert_eq!(ring.attached(), (1, 1));
}

#[test]
fn a_dead_consumers_message_frees_its_slot() {
    let ring = heap_mpmc(2, 16, 4, 0).unwrap();
    let mut tx = ring.producer(1).unwrap();
    let dying = ring.consumer(2).unwrap();
    let mut rx = ring.consumer(3).unwrap();
    tx.try_send(b"one").unwrap();
    tx.try_send(b"two").unwrap();
    take_and_die(dying).unwrap();
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(out, b"two");
    // Position 2 needs the slot of "one", held by consumer 2, alive: full.
    tx.maintain();
    assert!(matches!(tx.try_send(b"three"), Err(Error::WouldBlock)));
    ring.mark_dead(2);
    tx.maintain();
    tx.try_send(b"three").unwrap();
    tx.try_send(b"four").unwrap();
    assert_eq!(recovered(&ring).1, 1);
    for want in [&b"three"[..], b"four"] {
        rx.try_recv_vec(&mut out).unwrap();
        assert_eq!(out, want);
    }
}

#[test]
fn the_stream_ends_when_every_producer_leaves() {
    let ring = heap_mpmc(8, 16, 4, 0).unwrap();
    let mut rx = ring.consumer(1).unwrap();
    let mut out = Vec::new();
    // No producer yet: waiting, not the end.
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
    let mut a = ring.producer(2).unwrap();
    let b = ring.producer(3).unwrap();
    a.try_send(b"last").unwrap();
    a.close();
    assert!(matches!(rx.try_recv_vec(&mut out), Ok(4)));
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::WouldBlock)));
    b.close();
    assert!(matches!(rx.try_recv_vec(&mut out), Err(Error::Closed)));
    // A producer that dies with a claim: skipped, then PeerDead (not Closed).
    let c = ring.producer(4).unwrap();
    claim_and_die(c).unwrap();
    ring.mark_dead(4);
    rx.maintain();
    assert!(matches!(
        rx.try_recv_vec(&mut out),
        Err(Error::PeerDead { .. })
    ));
    assert_eq!(recovered(&ring).0, 1);
}

#[test]
fn registry_fills_and_records_are_reused() {
    let ring = heap_mpmc(8, 16, 2, 0).unwrap();
    let a = ring.producer(1).unwrap();
    let b = ring.consumer(2).unwrap();
    assert!(matches!(
        ring.producer(3),
        Err(Error::RegistryFull { max_peers: 2 })
    ));
    a.close();
    let c = ring.producer(3).unwrap();
    assert_eq!(ring.attached(), (1, 1));
    // A dead holder's record is taken over directly (and uncounted once).
    ring.mark_dead(2);
    drop(take_and_die(b));
    let _d = ring.producer(4).unwrap();
    assert_eq!(ring.attached(), (2, 0));
    drop(c);
}

#[test]
fn two_by_two_threads_deliver_exactly_once_in_producer_order() {
    const PER_PRODUCER: u32 = 100_000;
    let ring = Arc::new(heap_mpmc(64, 48, 8, u64::MAX - 5000).unwrap());
    let producers: Vec<_> = (0..2u8)
        .map(|p| {
            let mut tx = ring.producer(10 + u64::from(p)).unwrap();
            std::thread::spawn(move || {
                let mut seq = 0;
                while seq < PER_PRODUCER {
                    match tx.try_send(&msg(p, seq)) {
                        Ok(()) => seq += 1,
                        Err(Error::WouldBlock) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                tx.close();
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|c| {
            let mut rx = ring.consumer(20 + c).unwrap();
            std::thread::spawn(move || {
                let mut last: HashMap<u8, u32> = HashMap::new();
                let mut got = Vec::new();
                let mut out = Vec::new();
                loop {
                    match rx.try_recv_vec(&mut out) {
                        Ok(_) => {
                            let p = out[0];
                            let seq = u32::from_le_bytes(out[1..5].try_into().unwrap());
                            assert_eq!(out, msg(p, seq), "torn message");
                            if let Some(prev) = last.insert(p, seq) {
                                assert!(seq > prev, "producer {p}: {seq} after {prev}");
                            }
                            got.push((p, seq));
                        }
                        Err(Error::WouldBlock) => std::thread::yield_now(),
                        Err(Error::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<(u8, u32)> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    let want: Vec<(u8, u32)> = (0..2u8)
        .flat_map(|p| (0..PER_PRODUCER).map(move |s| (p, s)))
        .collect();
    assert_eq!(all.len(), want.len());
    assert!(all == want, "lost or duplicated messages");
}

fn name(tag: &str) -> String {
    format!("/shmring-unit-mpmc-{tag}-{}", std::process::id())
}

#[test]
fn kinds_do_not_mix_and_parameters_are_checked() {
    let n = name("kinds");
    let ring = mpmc::Ring::create(&n, &Config::new().slots(16).max_message(100)).unwrap();
    assert!(matches!(
        crate::spsc::Ring::open(&n),
        Err(Error::Incompatible { .. })
    ));
    assert_eq!((ring.slots(), ring.max_message()), (16, 100));
    assert!(matches!(
        mpmc::Ring::create_or_open(&n, &Config::new().slots(32).max_message(100)),
        Err(Error::Incompatible { .. })
    ));
    ring.unlink().unwrap();
    let s = name("kinds-spsc");
    let spsc = crate::spsc::Ring::create(&s, &Config::new().capacity(4096)).unwrap();
    assert!(matches!(
        mpmc::Ring::open(&s),
        Err(Error::Incompatible { .. })
    ));
    spsc.unlink().unwrap();
    for bad in [
        Config::new().slots(3),
        Config::new().slots(1),
        Config::new().max_message(0),
        Config::new().max_peers(1),
        Config::new().max_peers(5000),
    ] {
        assert!(matches!(
            mpmc::Ring::create(&name("bad"), &bad),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn segments_deliver_with_every_api_and_keep_short_buffer_messages() {
    let n = name("apis");
    let ring = mpmc::Ring::create(&n, &Config::new().slots(8).max_message(64)).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = mpmc::Ring::open(&n).unwrap().consumer().unwrap();
    tx.try_send(b"0123456789").unwrap();
    let mut small = [0u8; 4];
    assert!(matches!(
        rx.try_recv(&mut small),
        Err(Error::BufferTooSmall { needed: 10 })
    ));
    let mut buf = [0u8; 64];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 10);
    assert_eq!(&buf[..10], b"0123456789");

    let mut grant = tx.try_reserve(3).unwrap();
    grant.copy_from_slice(b"abc");
    grant.commit().unwrap();
    drop(tx.try_reserve(5).unwrap()); // cancelled: consumers skip it
    tx.send_timeout(b"after", std::time::Duration::from_millis(10))
        .unwrap();
    let grant = rx.try_read().unwrap();
    assert_eq!(&*grant, b"abc");
    grant.release().unwrap();
    let mut v = Vec::new();
    rx.recv_vec_timeout(&mut v, std::time::Duration::from_millis(10))
        .unwrap();
    assert_eq!(v, b"after");
    assert!(matches!(
        rx.recv_timeout(&mut buf, std::time::Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    let stats = ring.stats();
    assert_eq!((stats.messages_sent, stats.messages_received), (3, 3));
    assert_eq!((stats.producers, stats.consumers), (1, 1));
    let peers = ring.peers();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.status == mpmc::PeerStatus::Attached));
    assert!(peers.iter().all(|p| p.pid == std::process::id()));
    drop(tx);
    assert!(matches!(rx.recv(&mut buf), Err(Error::Closed)));
    ring.unlink().unwrap();
}
