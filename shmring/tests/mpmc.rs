//! MPMC rings across processes: several producer and consumer processes (this test binary
//! spawned again), every message checked byte for byte, exactly once and in each
//! producer's order; and producers killed between claim and publish (a crash hook) or at
//! random times (SIGKILL from here), after which consumers continue and nothing committed
//! is lost.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{RING_VAR, ROLE_VAR, ShmName, role, rounds, wait_bounded};
use shmring::mpmc::{PeerStatus, Ring};
use shmring::{Config, Error, Role, WaitStrategy};

/// Each blocking call's bound: a stuck peer fails the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A whole run's bound.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// The processes share two cores; one run at a time.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());
/// Bytes before a message's generated body: producer id (u32), sequence (u64).
const HEADER: usize = 12;

/// Message `seq` of producer `id`, `HEADER..=max` bytes, every byte derived from both.
fn message(id: u32, seq: u64, max: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let len = HEADER
        + ((seq.wrapping_mul(0x9E37_79B9) ^ (u64::from(id) * 7)) % (max - HEADER + 1) as u64)
            as usize;
    let mut state = (seq ^ (u64::from(id) << 40)).wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push(state as u8);
    }
}

/// Checks a received message against what its header says it is; returns (id, seq).
fn check(msg: &[u8], max: usize, scratch: &mut Vec<u8>) -> (u32, u64) {
    assert!(msg.len() >= HEADER, "short message: {} bytes", msg.len());
    let id = u32::from_le_bytes(msg[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(msg[4..12].try_into().unwrap());
    message(id, seq, max, scratch);
    assert!(
        msg == &scratch[..],
        "torn or foreign message (producer {id}, seq {seq})"
    );
    (id, seq)
}

/// What a child does, passed through its role string.
#[derive(Clone, Copy, Debug)]
struct Plan {
    id: u32,
    messages: u64,
    max: usize,
}

fn spawn(role: &str, plan: Plan, ring: &str, crash_at: Option<String>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(
            ROLE_VAR,
            format!("{role}:{}:{}:{}", plan.id, plan.messages, plan.max),
        )
        .env(RING_VAR, ring)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(spec) = crash_at {
        cmd.env("SHMRING_CRASH_AT", spec);
    }
    cmd.spawn().expect("spawn child test process")
}

/// Entry point of the child processes; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some((role, ring)) = role() else { return };
    let mut parts = role.split(':');
    let name = parts.next().unwrap().to_string();
    let plan = Plan {
        id: parts.next().unwrap().parse().unwrap(),
        messages: parts.next().unwrap().parse().unwrap(),
        max: parts.next().unwrap().parse().unwrap(),
    };
    let ring = Ring::open(&ring).unwrap();
    match name.as_str() {
        "producer" => produce(&ring, plan),
        "consumer" => consume(&ring, plan),
        other => panic!("unknown role {other}"),
    }
}

/// Sends `plan.messages` messages, rotating through the sending APIs.
fn produce(ring: &Ring, plan: Plan) {
    let mut tx = ring.producer().unwrap();
    let mut msg = Vec::with_capacity(plan.max);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut seq = 0;
    while seq < plan.messages {
        message(plan.id, seq, plan.max, &mut msg);
        match seq % 3 {
            0 => {
                tx.send_timeout(&msg, CALL_TIMEOUT).unwrap();
                seq += 1;
            }
            1 => {
                let mut grant = tx.reserve_timeout(msg.len(), CALL_TIMEOUT).unwrap();
                grant.copy_from_slice(&msg);
                grant.commit().unwrap();
                seq += 1;
            }
            _ => {
                batch.clear();
                for s in seq..(seq + 8).min(plan.messages) {
                    let mut m = Vec::new();
                    message(plan.id, s, plan.max, &mut m);
                    batch.push(m);
                }
                match tx.try_send_batch(&batch) {
                    Ok(sent) => seq += sent as u64,
                    Err(Error::WouldBlock) => std::thread::yield_now(),
                    Err(e) => panic!("batch: {e}"),
                }
            }
        }
    }
}

/// Receives until the stream ends, rotating through the receiving APIs, checking every
/// message and each producer's order; prints what it received (id, seq pairs, binary,
/// hex-free: 12 bytes each) to stdout for the parent.
fn consume(ring: &Ring, plan: Plan) {
    let mut rx = ring.consumer().unwrap();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut got: Vec<u8> = Vec::new();
    let mut scratch = Vec::new();
    let mut buf = vec![0u8; plan.max];
    let mut record = |msg: &[u8], got: &mut Vec<u8>| {
        let (id, seq) = check(msg, plan.max, &mut scratch);
        if let Some(prev) = last.insert(id, seq) {
            assert!(seq > prev, "producer {id}: seq {seq} after {prev}");
        }
        got.extend_from_slice(&id.to_le_bytes());
        got.extend_from_slice(&seq.to_le_bytes());
    };
    let mut turn = 0u64;
    let outcome = loop {
        turn += 1;
        let step = match turn % 3 {
            0 => rx
                .recv_timeout(&mut buf, CALL_TIMEOUT)
                .map(|n| record(&buf[..n], &mut got)),
            1 => rx.read_timeout(CALL_TIMEOUT).map(|m| {
                record(&m, &mut got);
                m.release().unwrap();
            }),
            _ => match rx.try_recv_batch(16, |m| record(m, &mut got)) {
                Err(Error::WouldBlock) => Ok(()),
                other => other.map(|_| ()),
            },
        };
        match step {
            Ok(()) => {}
            Err(e @ (Error::Closed | Error::PeerDead { .. })) => break e,
            Err(e) => panic!("consumer: {e}"),
        }
    };
    let tag: &[u8] = if matches!(outcome, Error::Closed) {
        b"C"
    } else {
        b"D"
    };
    let mut out = std::io::stdout().lock();
    out.write_all(b"RESULT").unwrap();
    out.write_all(tag).unwrap();
    out.write_all(&(got.len() as u64).to_le_bytes()).unwrap();
    out.write_all(&got).unwrap();
    out.flush().unwrap();
}

/// Reads a consumer child's report: (ended with Closed, received pairs).
fn report(child: &mut Child) -> (bool, Vec<(u32, u64)>) {
    let mut bytes = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"RESULT")
        .expect("consumer printed no result");
    let closed = bytes[at + 6] == b'C';
    let len = u64::from_le_bytes(bytes[at + 7..at + 15].try_into().unwrap()) as usize;
    let pairs = bytes[at + 15..at + 15 + len]
        .chunks_exact(12)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().unwrap()),
                u64::from_le_bytes(c[4..].try_into().unwrap()),
            )
        })
        .collect();
    (closed, pairs)
}

/// Every (id, seq) for seq below `sent[id]` exactly once, nothing else.
fn assert_exactly_once(mut all: Vec<(u32, u64)>, sent: &[u64]) {
    all.sort_unstable();
    let total: u64 = sent.iter().sum();
    assert_eq!(all.len() as u64, total, "message count");
    let mut i = 0;
    for (id, &n) in sent.iter().enumerate() {
        for seq in 0..n {
            assert_eq!(all[i], (id as u32, seq), "lost or duplicated message");
            i += 1;
        }
    }
}

/// Waits until `n` producers are attached: a consumer that started earlier could see the
/// end of the stream between one producer's close and a late one's attach (pipe semantics).
fn await_producers(ring: &Ring, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ring.stats().producers < n {
        assert!(Instant::now() < deadline, "producers did not attach");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run(producers: u32, consumers: u32, per_producer: u64, config: &Config) {
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new("mpmc");
    let ring = Ring::create(name.as_str(), config).unwrap();
    let max = ring.max_message();
    let start = Instant::now();
    let mut writers: Vec<Child> = (0..producers)
        .map(|id| {
            let plan = Plan {
                id,
                messages: per_producer,
                max,
            };
            spawn("producer", plan, name.as_str(), None)
        })
        .collect();
    await_producers(&ring, producers);
    let mut readers: Vec<Child> = (0..consumers)
        .map(|id| {
            let plan = Plan {
                id,
                messages: 0,
                max,
            };
            spawn("consumer", plan, name.as_str(), None)
        })
        .collect();
    for w in &mut writers {
        assert!(wait_bounded(w, RUN_LIMIT).success(), "producer failed");
    }
    let mut all = Vec::new();
    for r in &mut readers {
        let (closed, pairs) = report(r);
        assert!(wait_bounded(r, RUN_LIMIT).success(), "consumer failed");
        assert!(closed, "the stream ended with PeerDead, not Closed");
        assert!(!pairs.is_empty(), "a consumer received nothing");
        all.extend(pairs);
    }
    let total = all.len();
    assert_exactly_once(all, &vec![per_producer; producers as usize]);
    let stats = ring.stats();
    assert_eq!(stats.messages_sent, total as u64);
    assert_eq!(stats.messages_received, total as u64);
    assert_eq!((skipped(&stats).0, skipped(&stats).1), (0, 0));
    eprintln!(
        "{producers} producers x {consumers} consumers: {total} messages in {:?}",
        start.elapsed()
    );
}

#[test]
fn three_producers_two_consumers_futex_1_2m_messages() {
    let config = Config::new()
        .slots(256)
        .max_message(120)
        .wait_strategy(WaitStrategy::Futex);
    run(3, 2, 400_000, &config);
}

#[test]
fn four_producers_two_consumers_spin_yield() {
    let config = Config::new().slots(64).max_message(40).max_peers(8);
    run(4, 2, 50_000, &config);
}

/// Messages the victim producer of a fault round would send if it were not killed.
const VICTIM_MESSAGES: u64 = 200_000;

/// How one round of the fault test kills its victim producer.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// The victim SIGKILLs itself the n-th time it has claimed a slot (before writing).
    AtClaim(u64),
    /// The victim SIGKILLs itself the n-th time it is about to publish (after writing).
    BeforePublish(u64),
    /// This process SIGKILLs it after a delay.
    After(Duration),
}

/// One round: a victim producer and a steady producer send to a consumer in this process;
/// the victim is killed. Returns whether it died (a timed kill may come after it
/// finished), the claims skipped, and how long after this process saw the victim's death
/// the skip was seen (both polled once per receive or 5 ms).
fn fault_round(kill: Kill) -> (bool, u64, Option<Duration>) {
    let name = ShmName::new("mpmc-fault");
    let ring = Ring::create(
        name.as_str(),
        &Config::new()
            .slots(32)
            .max_message(64)
            .wait_strategy(WaitStrategy::Futex),
    )
    .unwrap();
    let mut rx = ring.consumer().unwrap();
    // The victim has ten times more to send, so a timed kill usually finds it sending.
    let plan = |id| Plan {
        id,
        messages: if id == 0 { VICTIM_MESSAGES } else { 20_000 },
        max: 64,
    };
    let crash = match kill {
        Kill::AtClaim(n) => Some(format!("mpmc-producer-claimed:{n}")),
        Kill::BeforePublish(n) => Some(format!("mpmc-producer-written:{n}")),
        Kill::After(_) => None,
    };
    let mut victim = spawn("producer", plan(0), name.as_str(), crash);
    let mut steady = spawn("producer", plan(1), name.as_str(), None);
    await_producers(&ring, 2);
    // A timed kill counts from the victim's attach (process start-up takes milliseconds).
    let mut kill_at = None;
    let mut died_at = None;
    let mut skipped_after = None;
    let mut got: BTreeMap<u32, u64> = BTreeMap::new();
    let mut scratch = Vec::new();
    let mut buf = vec![0u8; 64];
    let deadline = Instant::now() + RUN_LIMIT;
    let ended = loop {
        assert!(Instant::now() < deadline, "fault round overran");
        if let (Kill::After(delay), None) = (kill, kill_at) {
            if ring.peers().iter().any(|p| p.pid == victim.id()) {
                kill_at = Some(Instant::now() + delay);
            }
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) && died_at.is_none() {
            let _ = victim.kill();
        }
        if died_at.is_none() && victim.try_wait().unwrap().is_some() {
            died_at = Some(Instant::now());
        }
        if skipped_after.is_none() && skipped(&ring.stats()).0 > 0 {
            skipped_after = died_at.map(|d| d.elapsed());
        }
        match rx.recv_timeout(&mut buf, Duration::from_millis(5)) {
            Ok(n) => {
                let (id, seq) = check(&buf[..n], 64, &mut scratch);
                let next = got.entry(id).or_insert(0);
                assert_eq!(seq, *next, "producer {id}: lost, duplicated or reordered");
                *next += 1;
            }
            Err(Error::Timeout) => {}
            Err(e @ (Error::Closed | Error::PeerDead { .. })) => break e,
            Err(e) => panic!("consumer: {e}"),
        }
    };
    assert!(wait_bounded(&mut steady, RUN_LIMIT).success());
    assert_eq!(
        got.get(&1),
        Some(&20_000),
        "the steady producer lost messages"
    );
    if wait_bounded(&mut victim, RUN_LIMIT).success() {
        // A timed kill can come after the victim finished: then it closed like the other.
        assert!(
            matches!(kill, Kill::After(_)),
            "{kill:?}: the victim was not killed"
        );
        assert!(matches!(ended, Error::Closed), "nobody died: {ended}");
        assert_eq!(got.get(&0), Some(&VICTIM_MESSAGES), "the victim's messages");
        return (false, 0, None);
    }
    assert!(
        matches!(ended, Error::PeerDead { .. }),
        "a producer died: {ended}"
    );
    // What the victim committed: its registry record counts publishes, stored after each
    // message or batch, so a kill in between leaves it short by what that call published
    // (at most 7 of a batch of 8).
    let victim_record = ring
        .peers()
        .into_iter()
        .find(|p| p.role == Some(Role::Producer) && p.status == PeerStatus::Dead)
        .expect("the victim's record is reaped as dead");
    let received = got.get(&0).copied().unwrap_or(0);
    assert!(
        (victim_record.messages..victim_record.messages + 8).contains(&received),
        "victim committed {} but {received} arrived",
        victim_record.messages
    );
    if let Kill::AtClaim(n) | Kill::BeforePublish(n) = kill {
        // Claims happen once per message, or once per batch of up to 8 (one hook call).
        assert!(received < n * 8, "victim sent {received} after {n} claims");
    }
    let stats = ring.stats();
    assert!(skipped(&stats).0 <= 8, "skipped {}", skipped(&stats).0);
    (true, skipped(&stats).0, skipped_after)
}

#[test]
fn producers_killed_mid_send_never_stall_consumers_or_lose_commits() {
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    let mut recoveries = Vec::new();
    let mut outcomes = Vec::new();
    for round in 0..rounds(12) {
        let kill = match round % 3 {
            0 => Kill::AtClaim(1 + next(3000)),
            1 => Kill::BeforePublish(1 + next(3000)),
            _ => Kill::After(Duration::from_millis(2 + next(40))),
        };
        let (died, skipped, took) = fault_round(kill);
        if let Kill::AtClaim(_) | Kill::BeforePublish(_) = kill {
            // The victim died holding a claim: it must have been skipped.
            assert!(skipped >= 1, "{kill:?}: nothing skipped");
        }
        recoveries.extend(took);
        outcomes.push((kill, died, skipped));
    }
    recoveries.sort();
    eprintln!(
        "fault rounds (kill, died, claims skipped): {outcomes:?}; skip seen after death: median {:?}, max {:?} ({} timed)",
        recoveries.get(recoveries.len() / 2),
        recoveries.last(),
        recoveries.len()
    );
    // The bound is the recovery interval plus the futex sleep it may interrupt, with room
    // for a loaded machine.
    assert!(
        recoveries.iter().all(|d| *d < Duration::from_secs(2)),
        "{recoveries:?}"
    );
}

/// An MPMC ring's (claims skipped, messages dropped).
fn skipped(stats: &shmring::Stats) -> (u64, u64) {
    match stats.kind {
        shmring::KindStats::Mpmc {
            claims_skipped,
            messages_dropped,
            ..
        } => (claims_skipped, messages_dropped),
        other => panic!("not an MPMC ring: {other:?}"),
    }
}
