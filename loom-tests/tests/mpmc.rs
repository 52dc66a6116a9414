//! loom models of the MPMC slot protocol, the dead-claim skip and the registry, run on the
//! shipped handles (`Producer<Mpmc, _>`, `Consumer<Mpmc, _>` over heap memory, from
//! `shmring::testing`). Owners are numbers standing for processes; a test declares one dead
//! with `mark_dead`.
//!
//! Build and run with `loom-tests/run.sh`, or:
//! `RUSTFLAGS="--cfg shmring_loom" CARGO_TARGET_DIR=target/loom cargo test --release -p loom-tests --test mpmc`
#![cfg(shmring_loom)]

use std::sync::Arc;

use loom::thread;
use shmring::mpmc::Mpmc;
use shmring::testing::{Abandon, HeapConsumer, HeapRing, Maintain};
use shmring::{Config, Error, KindStats};

/// A ring of two 8-byte slots with `max_peers` registry records, positions from `start`.
fn ring(max_peers: u32, start: u64) -> Arc<HeapRing<Mpmc>> {
    let config = Config::new()
        .slots(2)
        .max_message(8)
        .max_peers(max_peers)
        .initial_position(start);
    Arc::new(HeapRing::new(&config).unwrap())
}

/// Claims of dead producers skipped so far.
fn claims_skipped(ring: &HeapRing<Mpmc>) -> u64 {
    match ring.stats().kind {
        KindStats::Mpmc { claims_skipped, .. } => claims_skipped,
        other => panic!("an MPMC ring reported {other:?}"),
    }
}

/// Message `seq` of producer `p`: its bytes say whose it is.
fn message(p: u8, seq: u8) -> Vec<u8> {
    vec![p, seq, p ^ seq, p.wrapping_add(seq)]
}

/// Checks a received message and returns (producer, seq).
fn check(out: &[u8]) -> (u8, u8) {
    assert!(
        out.len() == 4 && out == message(out[0], out[1]),
        "torn message {out:?}"
    );
    (out[0], out[1])
}

/// Two producers each send a message into two slots whose positions cross the end of the
/// `u64` position space while two consumers each try one receive, concurrently (no thread
/// spins, so loom covers every interleaving within its bounds). Afterwards the main thread
/// takes what is left, then `Closed`: every message exactly once, none torn (P1/C1).
#[test]
fn two_producers_two_consumers() {
    loom::model(|| {
        let ring = ring(5, u64::MAX);
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let mut tx = ring.producer(10 + u64::from(p)).unwrap();
                thread::spawn(move || tx.try_send(&message(p, 0)).unwrap())
            })
            .collect();
        let consumers: Vec<_> = (0..2u64)
            .map(|c| {
                let mut rx = ring.consumer(20 + c).unwrap();
                thread::spawn(move || {
                    let mut out = Vec::new();
                    let got = match rx.try_recv_vec(&mut out) {
                        Ok(_) => Some(check(&out)),
                        Err(Error::WouldBlock) => None,
                        Err(e) => panic!("recv: {e}"),
                    };
                    // Handed back, so no producer finds every consumer gone.
                    (got, rx)
                })
            })
            .collect();
        let mut all: Vec<(u8, u8)> = Vec::new();
        let mut attached = Vec::new();
        for c in consumers {
            let (got, rx) = c.join().unwrap();
            all.extend(got);
            attached.push(rx);
        }
        for p in producers {
            p.join().unwrap();
        }
        let mut rx = ring.consumer(30).unwrap();
        let mut out = Vec::new();
        loop {
            match rx.try_recv_vec(&mut out) {
                Ok(_) => all.push(check(&out)),
                // Both producers closed (their handles dropped): the end of the stream.
                Err(Error::Closed) => break,
                Err(e) => panic!("drain: {e}"),
            }
        }
        all.sort_unstable();
        assert_eq!(all, [(0, 0), (1, 0)], "exactly once");
    });
}

/// A producer sends two messages through two slots and closes while a consumer polls: the
/// consumer sees `Closed` only after receiving both (E1/E2), and the slot reused for the
/// second lap is never read before its release (R1/P0).
#[test]
fn closed_comes_after_every_message() {
    loom::model(|| {
        let ring = ring(4, u64::MAX);
        let mut tx = ring.producer(1).unwrap();
        let mut rx = ring.consumer(2).unwrap();
        let producer = thread::spawn(move || {
            let mut seq = 0;
            while seq < 3 {
                match tx.try_send(&message(1, seq)) {
                    Ok(()) => seq += 1,
                    Err(Error::WouldBlock) => thread::yield_now(),
                    Err(e) => panic!("send: {e}"),
                }
            }
            tx.close();
        });
        let mut got = Vec::new();
        let mut out = Vec::new();
        loop {
            match rx.try_recv_vec(&mut out) {
                Ok(_) => got.push(check(&out)),
                Err(Error::WouldBlock) => thread::yield_now(),
                Err(Error::Closed) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(
            got,
            [(1, 0), (1, 1), (1, 2)],
            "all, in order, before Closed"
        );
        producer.join().unwrap();
    });
}

/// One producer claims a slot and dies before publishing; another publishes a message.
/// The consumer, looking for dead holders whenever it finds nothing, receives the live
/// producer's message and never reads the unpublished slot. The skip happens only after
/// the death is declared, and at most once.
#[test]
fn a_dead_producers_claim_is_skipped() {
    loom::model(|| {
        let ring = ring(4, 0);
        let dying = ring.producer(1).unwrap();
        let mut live = ring.producer(2).unwrap();
        let mut rx = ring.consumer(3).unwrap();
        let ring2 = ring.clone();
        let killer = thread::spawn(move || {
            // Claims a slot and dies before publishing: no code runs after the claim.
            let mut dying = dying;
            std::mem::forget(dying.try_reserve(1).unwrap());
            dying.abandon();
            ring2.mark_dead(1);
        });
        let sender = thread::spawn(move || {
            live.try_send(&message(2, 0)).unwrap();
            live.close();
        });
        let mut out = Vec::new();
        loop {
            match rx.try_recv_vec(&mut out) {
                Ok(_) => break,
                Err(Error::WouldBlock) => {
                    rx.maintain();
                    thread::yield_now();
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(out, message(2, 0));
        killer.join().unwrap();
        sender.join().unwrap();
        // Every producer is gone and one died: after its claim is skipped (now, if the
        // live message came first), the stream ends with PeerDead.
        loop {
            match rx.try_recv_vec(&mut out) {
                Err(Error::PeerDead { .. }) => break,
                Err(Error::WouldBlock) => {
                    rx.maintain();
                    thread::yield_now();
                }
                other => panic!("after the last message: {other:?}"),
            }
        }
        assert_eq!(claims_skipped(&ring), 1);
    });
}

/// A slow producer (alive, never declared dead) sends while a consumer keeps looking for
/// dead holders: its claim is never skipped (K1/K3: a consumer that sees the position
/// taken also sees the claim), and its message arrives.
#[test]
fn a_slow_producer_is_never_skipped() {
    loom::model(|| {
        let ring = ring(4, 0);
        let mut slow = ring.producer(1).unwrap();
        let mut rx = ring.consumer(2).unwrap();
        let sender = thread::spawn(move || {
            slow.try_send(&message(1, 7)).unwrap();
        });
        let mut out = Vec::new();
        loop {
            rx.maintain();
            match rx.try_recv_vec(&mut out) {
                Ok(_) => break,
                Err(Error::WouldBlock) => thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(out, message(1, 7));
        assert_eq!(claims_skipped(&ring), 0);
        sender.join().unwrap();
    });
}

/// Two producers race for the one free registry record (the consumer holds the other):
/// one waits for the other to close and reuses its record. The consumer sees the end of
/// the stream only once no producer is attached, and counts stay exact.
#[test]
fn attach_and_close_race_for_a_reused_record() {
    loom::model(|| {
        let ring = ring(2, 0);
        let mut rx = ring.consumer(3).unwrap();
        let threads: Vec<_> = (1..=2u64)
            .map(|owner| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut tx = loop {
                        match ring.producer(owner) {
                            Ok(tx) => break tx,
                            Err(Error::RegistryFull { .. }) => thread::yield_now(),
                            Err(e) => panic!("attach: {e}"),
                        }
                    };
                    if owner == 1 {
                        tx.try_send(&message(1, 0)).unwrap();
                    }
                    tx.close();
                })
            })
            .collect();
        let mut got = 0;
        let mut out = Vec::new();
        for t in threads {
            t.join().unwrap();
        }
        loop {
            match rx.try_recv_vec(&mut out) {
                Ok(_) => got += 1,
                Err(Error::Closed) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(got, 1);
        assert_eq!(ring.attached(), (0, 1));
    });
}

/// A producer dies; two consumers race to find it out (each reaps dead producers when it
/// finds nothing). Whichever order they run in, each sees the end of the stream as
/// `PeerDead`, never `Closed`: the death is counted before the dead holder's present bit
/// clears (D1), and a consumer reads the count after finding no producer present (E2).
#[test]
fn a_death_is_seen_by_every_consumer_at_the_end() {
    loom::model(|| {
        let ring = ring(3, 0);
        let dying = ring.producer(1).unwrap();
        let mut first = ring.consumer(2).unwrap();
        let mut second = ring.consumer(3).unwrap();
        // Gone without closing: dead, as far as the ring can tell.
        dying.abandon();
        ring.mark_dead(1);
        let other = thread::spawn(move || end_of_stream(&mut second));
        let mine = end_of_stream(&mut first);
        let theirs = other.join().unwrap();
        for end in [mine, theirs] {
            assert!(
                matches!(end, Error::PeerDead { .. }),
                "stream ended with {end:?}"
            );
        }
    });
}

/// Receives until the stream ends (nothing is sent), looking for dead producers whenever
/// it finds nothing; returns how it ended.
fn end_of_stream(rx: &mut HeapConsumer<Mpmc>) -> Error {
    let mut out = Vec::new();
    loop {
        match rx.try_recv_vec(&mut out) {
            Err(Error::WouldBlock) => {
                rx.maintain();
                thread::yield_now();
            }
            Err(end) => return end,
            Ok(_) => panic!("nothing was sent"),
        }
    }
}

/// Readiness with two consumers armed at once: the producer sends one message and closes
/// while two consumers each try to receive and, finding nothing, arm. No thread waits (a
/// waiting loop would be unbounded for loom); instead, once all have finished, every
/// consumer whose `arm` said "armed" must have had its doorbell (a counter on a heap ring)
/// rung since: the publish or the close after its arming rang it. One swap takes the
/// `armed` bits of both slots, so both are rung.
#[test]
fn two_armed_consumers_are_both_rung() {
    loom::model(|| {
        let ring = ring(4, 0);
        let mut tx = ring.producer(10).unwrap();
        let consumers: Vec<_> = (0..2u64)
            .map(|c| {
                let mut rx = ring.consumer(20 + c).unwrap();
                let ring = ring.clone();
                thread::spawn(move || {
                    let slot = rx.peer_index();
                    let mut out = Vec::new();
                    let got = match rx.try_recv_vec(&mut out) {
                        Ok(_) => Some(check(&out)),
                        Err(Error::WouldBlock | Error::Closed) => None,
                        Err(e) => panic!("consumer {c}: {e}"),
                    };
                    let before = ring.doorbell_rings(shmring::Role::Consumer, slot);
                    let armed = got.is_none() && rx.arm().unwrap();
                    (rx, slot, armed, before, got)
                })
            })
            .collect();
        tx.try_send(&message(0, 0)).unwrap();
        tx.close();
        let mut delivered = 0;
        for c in consumers {
            let (mut rx, slot, armed, before, got) = c.join().unwrap();
            if armed {
                assert!(
                    ring.doorbell_rings(shmring::Role::Consumer, slot) > before,
                    "consumer in slot {slot} armed and was never rung"
                );
            }
            delivered += usize::from(got.is_some());
            let mut out = Vec::new();
            loop {
                match rx.try_recv_vec(&mut out) {
                    Ok(_) => delivered += 1,
                    Err(Error::Closed) => break,
                    Err(e) => panic!("after the producer closed: {e}"),
                }
            }
        }
        assert_eq!(delivered, 1, "the message reached exactly one consumer");
    });
}

/// A ring of two lanes of two 8-byte slots each.
fn lanes_ring() -> Arc<HeapRing<Mpmc>> {
    let config = Config::new().lanes(2).slots(2).max_message(8).max_peers(4);
    Arc::new(HeapRing::new(&config).unwrap())
}

/// Priority lanes, the ordering guarantee (`docs/lanes.md`): a producer sends a message of
/// priority 0, then one of priority 1, then says so through a flag (Release). A consumer
/// that saw the flag (Acquire) before its receive began must get priority 1 first: a
/// receive never returns a lower priority while a higher one was committed before it
/// began. Afterwards both arrive exactly once. The negative control
/// (`--cfg shmring_lanes_low_first`: lanes looked at lowest first) must fail.
#[test]
fn a_higher_priority_committed_first_is_received_first() {
    loom::model(|| {
        use loom::sync::atomic::{AtomicBool, Ordering};
        let ring = lanes_ring();
        let mut tx = ring.producer(1).unwrap();
        let mut rx = ring.consumer(2).unwrap();
        let committed_high = Arc::new(AtomicBool::new(false));
        let flag = committed_high.clone();
        let producer = thread::spawn(move || {
            tx.try_send_priority(&message(1, 0), 0).unwrap();
            tx.try_send_priority(&message(1, 1), 1).unwrap();
            flag.store(true, Ordering::Release);
            tx
        });
        let mut got = Vec::new();
        let mut out = [0u8; 8];
        let high_was_committed = committed_high.load(Ordering::Acquire);
        match rx.try_recv_priority(&mut out) {
            Ok((len, priority)) => {
                let (_, seq) = check(&out[..len]);
                assert_eq!(u32::from(seq), priority, "message and priority disagree");
                if high_was_committed {
                    assert_eq!(
                        priority, 1,
                        "received priority {priority} while priority 1 was committed before \
                         the receive began"
                    );
                }
                got.push(priority);
            }
            Err(Error::WouldBlock) => assert!(!high_was_committed, "missed a committed message"),
            Err(e) => panic!("recv: {e}"),
        }
        let tx = producer.join().unwrap();
        drop(tx);
        loop {
            match rx.try_recv_priority(&mut out) {
                Ok((_, priority)) => got.push(priority),
                Err(Error::Closed) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1], "each message exactly once");
    });
}

/// A producer claims a slot in the high lane and dies before publishing; a live one sends
/// in the low lane. The consumer receives the live message, the dead claim is skipped in
/// its own lane (claim words name their lane: a claim in lane 1 never covers lane 0's
/// position of the same number), and the stream ends with `PeerDead`.
#[test]
fn a_dead_claim_in_a_high_lane_is_skipped() {
    loom::model(|| {
        let ring = lanes_ring();
        let dying = ring.producer(1).unwrap();
        let mut live = ring.producer(2).unwrap();
        let mut rx = ring.consumer(3).unwrap();
        let ring2 = ring.clone();
        let killer = thread::spawn(move || {
            let mut dying = dying;
            std::mem::forget(dying.try_reserve_priority(1, 1).unwrap());
            dying.abandon();
            ring2.mark_dead(1);
        });
        let sender = thread::spawn(move || {
            live.try_send_priority(&message(2, 0), 0).unwrap();
            live.close();
        });
        let mut out = [0u8; 8];
        let (len, priority) = loop {
            match rx.try_recv_priority(&mut out) {
                Ok(got) => break got,
                Err(Error::WouldBlock) => {
                    rx.maintain();
                    thread::yield_now();
                }
                Err(e) => panic!("recv: {e}"),
            }
        };
        assert_eq!((&out[..len], priority), (&message(2, 0)[..], 0));
        killer.join().unwrap();
        sender.join().unwrap();
        loop {
            match rx.try_recv_priority(&mut out) {
                Err(Error::PeerDead { .. }) => break,
                Err(Error::WouldBlock) => {
                    rx.maintain();
                    thread::yield_now();
                }
                other => panic!("after the last message: {other:?}"),
            }
        }
        assert_eq!(claims_skipped(&ring), 1);
    });
}
