//! Broadcast rings across processes (this test binary spawned again as readers): every
//! message checked byte for byte; lossless fan-out to four reader processes; an
//! overwriting producer that never waits for a slow reader, which counts exactly what it
//! missed and never sees a torn message; a reader killed with SIGKILL while it holds the
//! producer back; a durable reader killed and restarted under its name.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{KillOnDrop, ShmName, expect_line, kill9, length, message, role, spawn_piped};
use shmring::broadcast::{JoinAt, Policy, Ring};
use shmring::{Config, Error, OpenOptions, WaitStrategy};

/// Each blocking call's bound: a stuck peer fails the test instead of hanging it.
const CALL: Duration = Duration::from_secs(60);
/// A whole run's bound.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// Largest message in these tests (the first 8 bytes are its sequence number).
const MAX: usize = 200;
/// The processes share two cores; one run at a time.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn futex() -> Config {
    Config::new()
        .wait_strategy(WaitStrategy::Futex)
        .spin_before_sleep(Duration::from_micros(20))
}

/// Sends message `seq` (its contents derived from `seq`), waiting for room.
fn send(tx: &mut shmring::broadcast::Producer, seq: u64, scratch: &mut Vec<u8>) {
    message(seq, length(seq, MAX).max(8), scratch);
    tx.send_timeout(scratch, CALL)
        .unwrap_or_else(|e| panic!("send {seq}: {e}"));
}

/// Checks that `msg` is message `seq` of the stream, byte for byte.
fn check(msg: &[u8], scratch: &mut Vec<u8>) -> u64 {
    assert!(msg.len() >= 8, "short message: {} bytes", msg.len());
    let seq = u64::from_le_bytes(msg[..8].try_into().unwrap());
    message(seq, length(seq, MAX).max(8), scratch);
    assert!(msg == &scratch[..], "torn or foreign message {seq}");
    seq
}

/// What a reader child does: `api` (copy, zero-copy, batch), how it paces itself, its
/// durable name (`-` for none), where it joins, and when to stall for good (`-`: never).
struct Plan {
    api: String,
    pace: String,
    name: Option<String>,
    join: JoinAt,
    stall_after: Option<u64>,
}

impl Plan {
    fn parse(role: &str) -> Plan {
        let f: Vec<&str> = role.split(':').collect();
        Plan {
            api: f[1].into(),
            pace: f[2].into(),
            name: (f[3] != "-").then(|| f[3].to_string()),
            join: if f[4] == "oldest" {
                JoinAt::Oldest
            } else {
                JoinAt::Live
            },
            stall_after: f[5].parse().ok(),
        }
    }
}

/// Child processes: a reader that checks every message and prints what it saw.
#[test]
fn child_entry() {
    let Some((role, ring)) = role() else {
        return;
    };
    let plan = Plan::parse(&role);
    let ring = Ring::open_with(&ring, &OpenOptions::new()).unwrap();
    let mut rx = match &plan.name {
        Some(name) => ring.reader_named(name, plan.join).unwrap(),
        None => ring.reader(plan.join).unwrap(),
    };
    println!("attached");
    let (mut delivered, mut missed, mut lags) = (0u64, 0u64, 0u64);
    let mut expect: Option<u64> = None;
    let mut first: Option<u64> = None;
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let mut seen = |seq: u64, expect: &mut Option<u64>, delivered: &mut u64| {
        if let Some(want) = *expect {
            assert_eq!(seq, want, "out of order after {delivered} messages");
        }
        first.get_or_insert(seq);
        *expect = Some(seq + 1);
        *delivered += 1;
    };
    for attempt in 0u64.. {
        if plan.stall_after == Some(delivered) {
            println!("stalled after {delivered} next {}", expect.unwrap_or(0));
            std::thread::sleep(Duration::from_secs(600));
        }
        if plan.pace == "slow" && attempt % 64 == 63 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = match plan.api.as_str() {
            "copy" => rx
                .recv_vec_timeout(&mut out, CALL)
                .map(|_| vec![check(&out, &mut scratch)]),
            "zerocopy" => match rx.read_timeout(CALL) {
                Ok(grant) => {
                    // Checked only once the release says the bytes stayed put.
                    let bytes = grant.to_vec();
                    grant.release().map(|()| vec![check(&bytes, &mut scratch)])
                }
                Err(e) => Err(e),
            },
            _ => {
                let mut seqs = Vec::new();
                match rx.try_recv_batch(32, |m| seqs.push(check(m, &mut scratch))) {
                    Ok(_) => Ok(seqs),
                    Err(Error::WouldBlock) => {
                        std::thread::sleep(Duration::from_micros(50));
                        Ok(seqs)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match got {
            Ok(seqs) => {
                for seq in seqs {
                    seen(seq, &mut expect, &mut delivered);
                }
            }
            Err(Error::Lagged { missed: m }) => {
                assert!(m > 0, "a gap of nothing");
                missed += m;
                lags += 1;
                expect = expect.map(|e| e + m);
            }
            Err(Error::Closed) => break,
            Err(e) => panic!("reader: {e}"),
        }
    }
    println!(
        "result delivered={delivered} missed={missed} lags={lags} first={}",
        first.unwrap_or(u64::MAX)
    );
}

/// The numbers of a reader's `result` line.
fn result_of(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn reader(ring: &ShmName, role: &str) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let (child, lines) = spawn_piped("child_entry", &format!("reader:{role}"), ring.as_str());
    let child = KillOnDrop(child);
    expect_line(&lines, "attached", CALL);
    (child, lines)
}

#[test]
fn lossless_four_reader_processes_see_every_message_in_order() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new("bc-lossless");
    let ring = Ring::create(name.as_str(), &futex().capacity(1 << 16).max_readers(4)).unwrap();
    let apis = ["copy", "zerocopy", "batch", "copy"];
    let readers: Vec<_> = apis
        .iter()
        .map(|api| reader(&name, &format!("{api}:fast:-:live:-")))
        .collect();
    let sent = common::rounds(1_000_000);
    let started = Instant::now();
    let mut tx = ring.producer().unwrap();
    let mut scratch = Vec::new();
    for seq in 0..sent {
        send(&mut tx, seq, &mut scratch);
    }
    let syscalls = tx.wake_syscalls();
    drop(tx);
    for (api, (mut child, lines)) in apis.iter().zip(readers) {
        let result = result_of(&expect_line(&lines, "result", RUN_LIMIT));
        assert!(common::wait_bounded(&mut child.0, CALL).success());
        assert_eq!(
            (result["delivered"], result["missed"], result["first"]),
            (sent, 0, 0),
            "{api} reader"
        );
    }
    println!(
        "{sent} messages to 4 reader processes in {:?}; the producer made {syscalls} \
         wake and sleep system calls",
        started.elapsed(),
    );
    assert_eq!(ring.stats().messages_received, 4 * sent);
}

#[test]
fn an_overwriting_producer_never_waits_and_a_slow_reader_counts_what_it_missed() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for slow_api in ["copy", "zerocopy", "batch"] {
        let name = ShmName::new("bc-overwrite");
        let ring = Ring::create(
            name.as_str(),
            &futex()
                .capacity(1 << 14)
                .max_readers(3)
                .overflow(Policy::Overwrite),
        )
        .unwrap();
        let fast: Vec<_> = (0..2)
            .map(|i| reader(&name, &format!("copy:fast:fast{i}:live:-")))
            .collect();
        let (mut slow, slow_lines) = reader(&name, &format!("{slow_api}:slow:-:live:-"));
        let sent = common::rounds(200_000);
        let mut tx = ring.producer().unwrap();
        let mut scratch = Vec::new();
        let mut paced = 0u64;
        for seq in 0..sent {
            // Never blocked by the ring: `send` returns at once in Overwrite mode. The
            // test paces the producer by the two fast readers only (they must see
            // everything), never by the slow one.
            if seq % 16 == 0 {
                while ring
                    .readers()
                    .iter()
                    .filter(|r| r.name.is_some())
                    .any(|r| r.lag_bytes > (1 << 13))
                {
                    paced += 1;
                    std::thread::yield_now();
                }
            }
            message(seq, length(seq, MAX).max(8), &mut scratch);
            tx.try_send(&scratch)
                .unwrap_or_else(|e| panic!("an Overwrite send failed: {e}"));
        }
        drop(tx);
        for (mut child, lines) in fast {
            let r = result_of(&expect_line(&lines, "result", RUN_LIMIT));
            assert!(common::wait_bounded(&mut child.0, CALL).success());
            assert_eq!((r["delivered"], r["missed"]), (sent, 0), "fast reader");
        }
        let r = result_of(&expect_line(&slow_lines, "result", RUN_LIMIT));
        assert!(common::wait_bounded(&mut slow.0, CALL).success());
        assert!(
            r["lags"] > 0,
            "{slow_api}: the slow reader was never lapped: {r:?}"
        );
        // Exact: every message was delivered once or counted as missed.
        assert_eq!(r["delivered"] + r["missed"], sent, "{slow_api}: {r:?}");
        println!(
            "{slow_api} slow reader: {} delivered, {} missed in {} gaps; producer paced {paced} times",
            r["delivered"], r["missed"], r["lags"]
        );
    }
}

#[test]
fn a_killed_reader_stops_holding_the_producer_and_a_named_one_resumes() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new("bc-killed");
    let ring = Ring::create(name.as_str(), &futex().capacity(1 << 14).max_readers(3)).unwrap();
    let mut scratch = Vec::new();
    // 1. An anonymous reader stalls: the ring fills and the producer blocks on it.
    let (mut stalled, lines) = reader(&name, "copy:fast:-:live:100");
    let mut tx = ring.producer().unwrap();
    let mut seq = 0;
    let mut fill = |tx: &mut shmring::broadcast::Producer, seq: &mut u64| loop {
        message(*seq, length(*seq, MAX).max(8), &mut scratch);
        match tx.try_send(&scratch) {
            Ok(()) => *seq += 1,
            Err(Error::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
    };
    fill(&mut tx, &mut seq);
    expect_line(&lines, "stalled", CALL);
    // It read some before stalling: full again, for good this time.
    fill(&mut tx, &mut seq);
    let producer = std::thread::spawn(move || {
        let mut scratch = Vec::new();
        message(seq, length(seq, MAX).max(8), &mut scratch);
        let blocked = Instant::now();
        tx.send_timeout(&scratch, CALL).unwrap();
        (tx, seq + 1, blocked)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !producer.is_finished(),
        "the producer did not wait for the live reader"
    );
    let killed = Instant::now();
    kill9(&mut stalled.0);
    let (mut tx, mut seq, _) = producer.join().unwrap();
    let unblocked = killed.elapsed();
    println!("producer unblocked {unblocked:?} after the reader's SIGKILL");
    assert!(unblocked < Duration::from_secs(5), "{unblocked:?}");
    assert_eq!(ring.stats().consumers_died, 1);

    // 2. A durable reader reads some, then is killed while the stream goes on; its name,
    // restarted, resumes right after what it released: nothing lost.
    let (mut risk, lines) = reader(&name, "copy:fast:risk:live:50");
    let start = seq;
    for _ in 0..80 {
        send(&mut tx, seq, &mut scratch);
        seq += 1;
    }
    let line = expect_line(&lines, "stalled", CALL);
    let next: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(next, start + 50);
    kill9(&mut risk.0);
    for _ in 0..20 {
        send(&mut tx, seq, &mut scratch);
        seq += 1;
    }
    let (mut again, lines) = reader(&name, "copy:fast:risk:live:-");
    drop(tx);
    let r = result_of(&expect_line(&lines, "result", RUN_LIMIT));
    assert!(common::wait_bounded(&mut again.0, CALL).success());
    // Copy receives release each message before the next: it resumes exactly after the
    // last one (a zero-copy or batch reader would see at most its unreleased ones again).
    assert_eq!((r["first"], r["missed"]), (next, 0), "{r:?}");
    assert_eq!(r["delivered"], seq - next);
    let risk = ring
        .readers()
        .into_iter()
        .find(|r| r.name.map(|n| n.to_string()).as_deref() == Some("risk"))
        .unwrap();
    assert_eq!(risk.status, shmring::PeerStatus::Closed);
}
