//! Two processes, one ring: the test binary spawns itself as the other end. Every message's
//! contents are derived from its sequence number, so the receiver checks every byte of every
//! message: nothing lost, duplicated, reordered or torn. Small rings wrap constantly.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{ShmName, length, message, role, spawn_role, wait_bounded};
use shmring::{Config, Error, WaitStrategy, spsc::Ring};

/// Each call's own bound: a stuck peer fails the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole exchange's bound.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// Process pairs share the machine's two cores; run one pair at a time.
static ONE_PAIR_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Parameters of one exchange, passed to the child through its role string.
#[derive(Clone, Copy, Debug)]
struct Plan {
    messages: u64,
    max: usize,
}

impl Plan {
    fn encode(&self, role: &str) -> String {
        format!("{role}:{}:{}", self.messages, self.max)
    }

    fn decode(role: &str) -> (String, Plan) {
        let mut parts = role.split(':');
        let name = parts.next().unwrap().to_string();
        let messages = parts.next().unwrap().parse().unwrap();
        let max = parts.next().unwrap().parse().unwrap();
        (name, Plan { messages, max })
    }
}

/// Entry point of the child processes; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some((role, ring)) = role() else { return };
    let (role, plan) = Plan::decode(&role);
    let ring = Ring::open(&ring).unwrap();
    match role.as_str() {
        "producer" => produce(&ring, plan),
        "consumer" => consume(&ring, plan),
        other => panic!("unknown role {other}"),
    }
}

/// Sends `plan.messages` messages, rotating through every sending API.
fn produce(ring: &Ring, plan: Plan) {
    let mut tx = ring.producer().unwrap();
    let mut msg = Vec::with_capacity(plan.max);
    let mut seq = 0;
    while seq < plan.messages {
        let len = length(seq, plan.max);
        message(seq, len, &mut msg);
        match seq % 4 {
            0 => tx.send_timeout(&msg, CALL_TIMEOUT).unwrap(),
            1 => {
                let mut grant = tx.reserve_timeout(len, CALL_TIMEOUT).unwrap();
                grant.copy_from_slice(&msg);
                grant.commit().unwrap();
            }
            2 => {
                // Reserve the maximum, publish only what was written.
                let mut grant = tx.reserve_timeout(plan.max, CALL_TIMEOUT).unwrap();
                grant[..len].copy_from_slice(&msg);
                grant.commit_prefix(len).unwrap();
            }
            _ => {
                let mut batch = tx.batch();
                let mut pushed = 0;
                while pushed < 8 && seq + pushed < plan.messages {
                    let s = seq + pushed;
                    message(s, length(s, plan.max), &mut msg);
                    match batch.try_push(&msg) {
                        Ok(()) => pushed += 1,
                        Err(Error::WouldBlock) => break,
                        Err(e) => panic!("batch push {s}: {e}"),
                    }
                }
                assert_eq!(batch.publish() as u64, pushed);
                if pushed == 0 {
                    std::thread::yield_now();
                    continue;
                }
                seq += pushed;
                continue;
            }
        }
        seq += 1;
    }
    tx.close();
}

/// Receives until `Closed`, rotating through every receiving API, checking each message.
fn consume(ring: &Ring, plan: Plan) {
    let mut rx = ring.consumer().unwrap();
    let mut expected_bytes = Vec::with_capacity(plan.max);
    let mut check = |seq: u64, got: &[u8]| {
        message(seq, length(seq, plan.max), &mut expected_bytes);
        if got != expected_bytes.as_slice() {
            let carried = got
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
            panic!(
                "message {seq}: {} bytes (expected {}), carrying sequence {carried:?}",
                got.len(),
                expected_bytes.len()
            );
        }
    };
    let mut seq = 0u64;
    let mut buf = vec![0u8; plan.max];
    let mut vec = Vec::new();
    loop {
        let outcome = match seq % 4 {
            0 => rx.recv_timeout(&mut buf, CALL_TIMEOUT).map(|n| {
                check(seq, &buf[..n]);
                seq += 1;
            }),
            1 => rx.recv_vec_timeout(&mut vec, CALL_TIMEOUT).map(|_| {
                check(seq, &vec);
                seq += 1;
            }),
            2 => rx.read_timeout(CALL_TIMEOUT).map(|grant| {
                check(seq, &grant);
                grant.release().unwrap();
                seq += 1;
            }),
            _ => match rx.try_recv_batch(16, |m| {
                check(seq, m);
                seq += 1;
            }) {
                Err(Error::WouldBlock) => {
                    std::thread::yield_now();
                    Ok(())
                }
                other => other.map(|_| ()),
            },
        };
        match outcome {
            Ok(()) => {}
            Err(Error::Closed) => break,
            Err(e) => panic!("receive after {seq} messages: {e}"),
        }
    }
    assert_eq!(seq, plan.messages, "messages received before end of stream");
    let stats = rx.stats();
    assert_eq!(stats.messages_received, plan.messages);
    assert_eq!(stats.messages_in_flight, 0);
}

fn exchange(parent_role: &str, config: Config, plan: Plan) {
    let _pair = ONE_PAIR_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = ShmName::new("mp");
    let ring = Ring::create(name.as_str(), &config.max_message(plan.max)).unwrap();
    let child_role = if parent_role == "producer" {
        "consumer"
    } else {
        "producer"
    };
    let mut child = spawn_role("child_entry", &plan.encode(child_role), name.as_str());
    let parent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match parent_role {
        "producer" => produce(&ring, plan),
        _ => consume(&ring, plan),
    }));
    let status = wait_bounded(&mut child, RUN_LIMIT);
    assert!(status.success(), "child {child_role} failed: {status}");
    if let Err(panic) = parent {
        std::panic::resume_unwind(panic);
    }
    let stats = ring.stats();
    assert_eq!(stats.messages_sent, plan.messages);
    assert_eq!(stats.messages_received, plan.messages);
}

#[test]
fn a_million_messages_from_parent_to_child() {
    exchange(
        "producer",
        Config::new()
            .capacity(4096)
            .wait_strategy(WaitStrategy::SpinYield),
        Plan {
            messages: 1_000_000,
            max: 509,
        },
    );
}

#[test]
fn largest_messages_from_child_to_parent_across_u64_wrap() {
    exchange(
        "consumer",
        Config::new()
            .capacity(4096)
            .initial_position(u64::MAX - 8 * 4096 + 1),
        Plan {
            messages: 200_000,
            max: 2040,
        },
    );
}
