//! Unit tests of the broadcast ring on real segments (threads and handles in this process;
//! the multi-process tests are in `tests/broadcast.rs`).

use super::{JoinAt, Policy, Ring};
use crate::{Config, Error, KindStats, PeerStatus};

/// A ring with a unique name, unlinked when dropped.
struct Named(Ring);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.0.unlink();
    }
}

impl std::ops::Deref for Named {
    type Target = Ring;
    fn deref(&self) -> &Ring {
        &self.0
    }
}

fn ring(tag: &str, config: &Config) -> Named {
    // Each test uses its own tag.
    let name = format!("/shmring-bc-unit-{tag}-{}", std::process::id());
    Named(Ring::create(&name, config).expect("create"))
}

/// A message carrying its sequence number, `len` bytes in all (at least 8).
fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut m = vec![(seq % 251) as u8; len.max(8)];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

fn seq_of(m: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert!(
        m[8..].iter().all(|&b| b == (seq % 251) as u8),
        "torn message {seq}"
    );
    seq
}

#[test]
fn every_reader_gets_every_message_in_order_across_laps() {
    let ring = ring("fanout", &Config::new().capacity(4096).max_readers(3));
    let mut tx = ring.producer().unwrap();
    let mut readers: Vec<_> = (0..3).map(|_| ring.reader(JoinAt::Live).unwrap()).collect();
    let mut next = [0u64; 3];
    let mut out = Vec::new();
    for seq in 0..5_000u64 {
        let msg = message(seq, 8 + (seq as usize * 7) % 200);
        loop {
            match tx.try_send(&msg) {
                Ok(()) => break,
                Err(Error::WouldBlock) => {
                    // Lossless: the producer waits for the slowest; drain everyone.
                    for (i, r) in readers.iter_mut().enumerate() {
                        while r.try_recv_vec(&mut out).is_ok() {
                            assert_eq!(seq_of(&out), next[i]);
                            next[i] += 1;
                        }
                    }
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }
    drop(tx);
    for (i, r) in readers.iter_mut().enumerate() {
        loop {
            match r.try_recv_vec(&mut out) {
                Ok(_) => {
                    assert_eq!(seq_of(&out), next[i]);
                    next[i] += 1;
                }
                Err(Error::Closed) => break,
                Err(e) => panic!("reader {i}: {e}"),
            }
        }
    }
    assert_eq!(next, [5_000; 3]);
    assert_eq!(ring.stats().messages_received, 15_000);
}

#[test]
fn a_lossless_producer_waits_for_the_slowest_reader_only() {
    let ring = ring("slowest", &Config::new().capacity(1024).max_readers(2));
    let mut tx = ring.producer().unwrap();
    let mut fast = ring.reader(JoinAt::Live).unwrap();
    let mut slow = ring.reader(JoinAt::Live).unwrap();
    let mut buf = [0u8; 64];
    let mut sent = 0u64;
    while tx.try_send(&message(sent, 48)).is_ok() {
        sent += 1;
        let n = fast.try_recv(&mut buf).unwrap();
        assert_eq!(seq_of(&buf[..n]), sent - 1);
    }
    assert!(sent > 5, "only {sent} fit");
    assert_eq!(
        fast.try_recv(&mut buf).unwrap_err().kind(),
        crate::ErrorKind::WouldBlock
    );
    // The slow one releases one message: room again.
    let n = slow.try_recv(&mut buf).unwrap();
    assert_eq!(seq_of(&buf[..n]), 0);
    while slow.try_recv(&mut buf).is_ok() {}
    tx.try_send(&message(sent, 48)).unwrap();
}

#[test]
fn a_lapped_overwrite_reader_learns_exactly_what_it_missed() {
    let config = Config::new().capacity(4096).overflow(Policy::Overwrite);
    let ring = ring("lapped", &config);
    let mut tx = ring.producer().unwrap();
    let mut slow = ring.reader(JoinAt::Live).unwrap();
    let mut out = Vec::new();
    let sent = 2_000u64;
    let (mut delivered, mut missed, mut expect) = (0u64, 0u64, 0u64);
    for seq in 0..sent {
        // The producer never waits.
        tx.try_send(&message(seq, 8 + (seq as usize * 13) % 100))
            .unwrap();
        if seq % 97 == 0 {
            // Now and then the slow reader reads a few.
            for _ in 0..3 {
                match slow.try_recv_vec(&mut out) {
                    Ok(_) => {
                        let got = seq_of(&out);
                        assert_eq!(got, expect, "after {missed} missed");
                        expect += 1;
                        delivered += 1;
                    }
                    Err(Error::Lagged { missed: m }) => {
                        assert!(m > 0);
                        missed += m;
                        expect += m;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    drop(tx);
    loop {
        match slow.try_recv_vec(&mut out) {
            Ok(_) => {
                assert_eq!(seq_of(&out), expect);
                expect += 1;
                delivered += 1;
            }
            Err(Error::Lagged { missed: m }) => {
                missed += m;
                expect += m;
            }
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(missed > 0, "the reader was never lapped");
    assert_eq!(delivered + missed, sent);
    let stats = ring.stats();
    assert!(
        matches!(stats.kind, KindStats::Broadcast { messages_missed, .. } if messages_missed == missed)
    );
}

#[test]
fn a_zero_copy_read_overwritten_while_held_fails_its_release() {
    let config = Config::new().capacity(1024).overflow(Policy::Overwrite);
    let ring = ring("held", &config);
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.reader(JoinAt::Live).unwrap();
    tx.try_send(&message(0, 100)).unwrap();
    let grant = rx.try_read().unwrap();
    assert_eq!(seq_of(&grant), 0);
    // Two laps while the grant is held (the producer runs in another thread, as another
    // process would).
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 1..40 {
                tx.try_send(&message(seq, 100)).unwrap();
            }
        });
    });
    let err = grant.release().unwrap_err();
    let Error::Lagged { missed } = err else {
        panic!("release said {err}");
    };
    // What is left starts right after what was missed.
    let mut out = Vec::new();
    rx.try_recv_vec(&mut out).unwrap();
    assert_eq!(seq_of(&out), missed);
}

#[test]
fn a_reader_joins_live_or_with_the_history() {
    let ring = ring("join", &Config::new().capacity(4096).max_readers(3));
    let mut tx = ring.producer().unwrap();
    for seq in 0..5 {
        tx.try_send(&message(seq, 16)).unwrap();
    }
    let mut live = ring.reader(JoinAt::Live).unwrap();
    let mut history = ring.reader(JoinAt::Oldest).unwrap();
    tx.try_send(&message(5, 16)).unwrap();
    let mut out = Vec::new();
    live.try_recv_vec(&mut out).unwrap();
    assert_eq!(seq_of(&out), 5);
    let all: Vec<u64> = history.try_iter().map(|m| seq_of(&m.unwrap())).collect();
    assert_eq!(all, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_named_reader_resumes_after_its_last_release() {
    let ring = ring("named", &Config::new().capacity(4096).max_readers(2));
    let mut tx = ring.producer().unwrap();
    let mut out = Vec::new();
    {
        let mut risk = ring.reader_named("risk", JoinAt::Live).unwrap();
        let second = ring.reader_named("risk", JoinAt::Live).unwrap_err();
        assert!(matches!(second, Error::AlreadyAttached { .. }), "{second}");
        for seq in 0..10 {
            tx.try_send(&message(seq, 16)).unwrap();
        }
        for expect in 0..4 {
            risk.try_recv_vec(&mut out).unwrap();
            assert_eq!(seq_of(&out), expect);
        }
        // Found and not released: read again by the name's next holder.
        let held = risk.try_read().unwrap();
        assert_eq!(seq_of(&held), 4);
        drop(held);
    }
    let readers = ring.readers();
    assert_eq!(readers.len(), 1);
    assert_eq!(
        readers[0].name.map(|n| n.to_string()).as_deref(),
        Some("risk")
    );
    assert_eq!(
        (
            readers[0].status,
            readers[0].delivered,
            readers[0].lag_messages
        ),
        (PeerStatus::Closed, 4, 6)
    );
    let mut risk = ring.reader_named("risk", JoinAt::Live).unwrap();
    let rest: Vec<u64> = risk.try_iter().map(|m| seq_of(&m.unwrap())).collect();
    assert_eq!(rest, [4, 5, 6, 7, 8, 9]);
    drop(risk);
    assert!(ring.forget_reader("risk").unwrap());
    assert!(!ring.forget_reader("risk").unwrap());
    assert!(ring.reader_named("no spaces", JoinAt::Live).is_err());
}

#[test]
fn names_keep_their_records_and_the_registry_says_when_full() {
    let ring = ring("full", &Config::new().capacity(4096).max_readers(2));
    drop(ring.reader_named("a", JoinAt::Live).unwrap());
    drop(ring.reader_named("b", JoinAt::Live).unwrap());
    let err = ring.reader(JoinAt::Live).unwrap_err();
    assert!(matches!(err, Error::RegistryFull { .. }), "{err}");
    ring.forget_reader("a").unwrap();
    ring.reader(JoinAt::Live).unwrap();
}

#[test]
fn a_dead_reader_stops_holding_a_lossless_producer_back() {
    let ring = ring("dead", &Config::new().capacity(1024).max_readers(2));
    let mut tx = ring.producer().unwrap();
    let doomed = ring.reader(JoinAt::Live).unwrap();
    let mut n = 0;
    while tx.try_send(&message(n, 40)).is_ok() {
        n += 1;
    }
    // As if its process were killed: no close, its slot lock gone.
    doomed.abandon();
    // The next look for dead peers (a blocked send makes one every slice) frees the ring.
    tx.send_timeout(&message(n, 40), std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(ring.stats().consumers_died, 1);
}

#[test]
fn a_lag_limit_lets_a_stalled_reader_fall_behind() {
    let config = Config::new().capacity(4096).max_readers(2).lag_limit(1024);
    let ring = ring("limit", &config);
    let mut tx = ring.producer().unwrap();
    let mut stalled = ring.reader(JoinAt::Live).unwrap();
    let mut live = ring.reader(JoinAt::Live).unwrap();
    let mut out = Vec::new();
    for seq in 0..500 {
        tx.try_send(&message(seq, 40)).unwrap();
        live.try_recv_vec(&mut out).unwrap();
        assert_eq!(seq_of(&out), seq);
    }
    let err = stalled.try_recv_vec(&mut out).unwrap_err();
    assert!(
        matches!(err, Error::Lagged { missed } if missed > 0),
        "{err}"
    );
}

#[test]
fn other_kinds_refuse_broadcast_settings_and_back() {
    let name = format!("/shmring-bc-unit-refuse-{}", std::process::id());
    let err = crate::spsc::Ring::create(&name, &Config::new().max_readers(2)).unwrap_err();
    assert!(err.to_string().contains("max_readers"), "{err}");
    let err = Ring::create(&name, &Config::new().slots(8)).unwrap_err();
    assert!(err.to_string().contains("slots"), "{err}");
    let err = Ring::create(
        &name,
        &Config::new().overflow(Policy::Overwrite).lag_limit(4096),
    )
    .unwrap_err();
    assert!(err.to_string().contains("lag_limit"), "{err}");
}
