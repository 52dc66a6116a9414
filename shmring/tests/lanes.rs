//! Priority lanes across processes: producer processes send checksummed messages with
//! random priorities into an MPMC ring with 8 lanes while one consumer checks, for every
//! receive, the ordering guarantee of `docs/lanes.md` against what the producers announced
//! in a shared side table; then a selective receive sees only its lanes.

// The side table is test bookkeeping in a plain mapping, not ring code: the sync facade
// rule does not apply.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use common::{ShmName, role, rounds, spawn_role, wait_bounded};
use shmring::mpmc::Ring;
use shmring::{Config, Error, WaitStrategy};

const LANES: u32 = 8;
const PRODUCERS: u32 = 3;
const MAX_MESSAGE: usize = 64;
/// Bytes before a message's body: producer, priority, sequence within (producer,
/// priority), checksum of the rest.
const HEADER: usize = 4 + 4 + 8 + 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const RUN_LIMIT: Duration = Duration::from_secs(240);
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Words of the side table: per lane, messages committed (a producer adds one after its
/// send returned) and sends in progress (one added before the send, taken away after the
/// commit is counted).
const SIDE_WORDS: usize = 2 * LANES as usize;

/// The side table, mapped from a file in /dev/shm that every process opens.
struct Side {
    map: memmap2::MmapMut,
}

impl Side {
    fn create(path: &str) -> Side {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        file.set_len((SIDE_WORDS * 8) as u64).unwrap();
        Side::map(file)
    }

    fn open(path: &str) -> Side {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Side::map(file)
    }

    fn map(file: std::fs::File) -> Side {
        // SAFETY: a file of SIDE_WORDS words that only this test's processes use, through
        // atomics.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
        Side { map }
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < SIDE_WORDS);
        // SAFETY: page-aligned mapping of SIDE_WORDS * 8 bytes, accessed only atomically.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>().add(index) }
    }

    fn committed(&self, lane: u32) -> &AtomicU64 {
        self.word(lane as usize)
    }

    fn in_progress(&self, lane: u32) -> &AtomicU64 {
        self.word((LANES + lane) as usize)
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Message `seq` of `producer` in lane `priority`: header, then bytes derived from all
/// three, `HEADER..=MAX_MESSAGE` long.
fn message(producer: u32, priority: u32, seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&producer.to_le_bytes());
    out.extend_from_slice(&priority.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let seed = mix(seq ^ u64::from(producer) << 40 ^ u64::from(priority) << 50);
    let len = HEADER + (seed % (MAX_MESSAGE - HEADER + 1) as u64) as usize;
    let mut state = seed | 1;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push(state as u8);
    }
    let sum = crc32fast::hash(&out[HEADER..]);
    out[16..20].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a message's checksum; returns (producer, priority, seq).
fn check(msg: &[u8]) -> (u32, u32, u64) {
    assert!(msg.len() >= HEADER, "short message: {} bytes", msg.len());
    let producer = u32::from_le_bytes(msg[..4].try_into().unwrap());
    let priority = u32::from_le_bytes(msg[4..8].try_into().unwrap());
    let seq = u64::from_le_bytes(msg[8..16].try_into().unwrap());
    let sum = u32::from_le_bytes(msg[16..20].try_into().unwrap());
    assert_eq!(
        crc32fast::hash(&msg[HEADER..]),
        sum,
        "torn message (producer {producer}, priority {priority}, seq {seq})"
    );
    (producer, priority, seq)
}

/// A producer child: `count` messages with pseudo-random priorities, each announced in the
/// side table around its send.
fn produce(ring_name: &str, side_path: &str, producer: u32, count: u64) {
    let ring = Ring::open(ring_name).unwrap();
    let side = Side::open(side_path);
    let mut tx = ring.producer().unwrap();
    let mut seqs = [0u64; LANES as usize];
    let mut msg = Vec::new();
    for i in 0..count {
        let priority = (mix(i ^ u64::from(producer) << 32) % u64::from(LANES)) as u32;
        let seq = seqs[priority as usize];
        seqs[priority as usize] += 1;
        message(producer, priority, seq, &mut msg);
        side.in_progress(priority).fetch_add(1, SeqCst);
        tx.send_priority_timeout(&msg, priority, CALL_TIMEOUT)
            .unwrap();
        side.committed(priority).fetch_add(1, SeqCst);
        side.in_progress(priority).fetch_sub(1, SeqCst);
    }
}

/// Children of this binary run this test with their role in the environment.
#[test]
fn lanes_child() {
    let Some((role, ring)) = role() else { return };
    let parts: Vec<&str> = role.split(':').collect();
    match parts[..] {
        ["produce", side, producer, count] => produce(
            &ring,
            side,
            producer.parse().unwrap(),
            count.parse().unwrap(),
        ),
        ["fill", count] => {
            // One message of each (priority, seq) for the selective-receive test.
            let ring = Ring::open(&ring).unwrap();
            let mut tx = ring.producer().unwrap();
            let mut msg = Vec::new();
            for seq in 0..count.parse::<u64>().unwrap() {
                for priority in 0..LANES {
                    message(0, priority, seq, &mut msg);
                    tx.try_send_priority(&msg, priority).unwrap();
                }
            }
        }
        _ => panic!("unknown role {role}"),
    }
}

#[test]
fn highest_priority_first_across_processes() {
    if role().is_some() {
        return;
    }
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new("lanes");
    let side_name = ShmName::new("lanes-side");
    let side = Side::create(&side_name.path());
    // Few slots per lane: producers outrun the consumer and lanes fill, so most receives
    // choose among several non-empty lanes.
    let config = Config::new()
        .lanes(LANES)
        .slots(64)
        .max_message(MAX_MESSAGE)
        .wait_strategy(WaitStrategy::Futex);
    let ring = Ring::create(name.as_str(), &config).unwrap();
    let mut rx = ring.consumer().unwrap();
    let per_producer = rounds(40_000);
    let mut children: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            spawn_role(
                "lanes_child",
                &format!("produce:{}:{p}:{per_producer}", side_name.path()),
                name.as_str(),
            )
        })
        .collect();

    let mut expected = vec![[0u64; LANES as usize]; PRODUCERS as usize];
    let mut received = [0u64; LANES as usize];
    let (mut checks, mut lower_waiting) = (0u64, 0u64);
    let mut buf = [0u8; MAX_MESSAGE];
    let total = per_producer * u64::from(PRODUCERS);
    for n in 0..total {
        // Before the receive: per lane, messages committed, then sends in progress. With
        // none in progress, every committed message of the lane is in it and reachable.
        let snapshot: Vec<(u64, u64)> = (0..LANES)
            .map(|q| {
                let committed = side.committed(q).load(SeqCst);
                (committed, side.in_progress(q).load(SeqCst))
            })
            .collect();
        let (len, priority) = rx.recv_priority_timeout(&mut buf, CALL_TIMEOUT).unwrap();
        let (producer, said, seq) = check(&buf[..len]);
        assert_eq!(priority, said, "message {n} came with the wrong priority");
        let next = &mut expected[producer as usize][priority as usize];
        assert_eq!(
            seq, *next,
            "producer {producer}'s priority-{priority} messages out of order"
        );
        *next += 1;
        for q in priority + 1..LANES {
            let (committed, in_progress) = snapshot[q as usize];
            if in_progress != 0 {
                continue;
            }
            checks += 1;
            assert!(
                committed <= received[q as usize],
                "receive {n} returned priority {priority} while {} message(s) of priority \
                 {q} had been committed before it began",
                committed - received[q as usize]
            );
        }
        if (0..priority).any(|q| snapshot[q as usize].0 > received[q as usize]) {
            lower_waiting += 1;
        }
        received[priority as usize] += 1;
    }
    for child in &mut children {
        assert!(wait_bounded(child, RUN_LIMIT).success());
    }
    assert!(matches!(
        rx.recv_timeout(&mut buf, CALL_TIMEOUT),
        Err(Error::Closed)
    ));
    let lanes = ring.lane_stats();
    for q in 0..LANES {
        assert_eq!(lanes[q as usize].sent, received[q as usize]);
        assert_eq!(lanes[q as usize].received, received[q as usize]);
        assert_eq!(side.committed(q).load(SeqCst), received[q as usize]);
    }
    println!(
        "{total} messages over {LANES} lanes, per lane {received:?}; ordering checked \
         {checks} times (lane had nothing in progress); {lower_waiting} receives chose \
         a higher priority over committed lower ones"
    );
    // The check above ran, and lanes really competed (not one message at a time).
    assert!(
        checks > total,
        "only {checks} ordering checks for {total} receives"
    );
    assert!(
        lower_waiting > total / 10,
        "lanes hardly competed: {lower_waiting} of {total} receives had a lower lane waiting"
    );
    ring.unlink().unwrap();
}

#[test]
fn selective_receive_sees_only_its_lanes() {
    if role().is_some() {
        return;
    }
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = ShmName::new("lanes-select");
    let config = Config::new()
        .lanes(LANES)
        .slots(64)
        .max_message(MAX_MESSAGE);
    let ring = Ring::create(name.as_str(), &config).unwrap();
    let mut rx = ring.consumer().unwrap();
    const EACH: u64 = 50;
    let mut child = spawn_role("lanes_child", &format!("fill:{EACH}"), name.as_str());
    assert!(wait_bounded(&mut child, RUN_LIMIT).success());

    let mut buf = [0u8; MAX_MESSAGE];
    let mut drain = |rx: &mut shmring::mpmc::Consumer, lanes: std::ops::RangeInclusive<u32>| {
        rx.select_priorities(lanes.clone()).unwrap();
        let mut got = Vec::new();
        loop {
            match rx.try_recv_priority(&mut buf) {
                Ok((len, priority)) => {
                    let (_, said, seq) = check(&buf[..len]);
                    assert_eq!(said, priority);
                    assert!(lanes.contains(&priority), "{priority} outside {lanes:?}");
                    got.push((priority, seq));
                }
                // The producer is gone; the selected lanes are drained.
                Err(Error::Closed) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    };
    // Only lane 5, like msgrcv with a positive type.
    let five = drain(&mut rx, 5..=5);
    assert_eq!(five, (0..EACH).map(|s| (5, s)).collect::<Vec<_>>());
    // Priorities up to 3, highest first, FIFO within each.
    let low = drain(&mut rx, 0..=3);
    let want: Vec<_> = (0..=3)
        .rev()
        .flat_map(|p| (0..EACH).map(move |s| (p, s)))
        .collect();
    assert_eq!(low, want);
    // The rest.
    let rest = drain(&mut rx, 0..=7);
    let want: Vec<_> = [7, 6, 4]
        .into_iter()
        .flat_map(|p| (0..EACH).map(move |s| (p, s)))
        .collect();
    assert_eq!(rest, want);
    assert!(rx.select_priorities(0..=8).is_err());
    ring.unlink().unwrap();
}

#[test]
fn a_full_lane_leaves_the_others_their_space() {
    if role().is_some() {
        return;
    }
    let name = ShmName::new("lanes-full");
    let ring = Ring::create(name.as_str(), &Config::new().lanes(4).slots(4)).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    for i in 0..4u8 {
        tx.try_send_priority(&[i], 3).unwrap();
    }
    // Lane 3 is full: its sends wait, every other lane keeps all of its slots.
    assert!(matches!(
        tx.try_send_priority(b"x", 3),
        Err(Error::WouldBlock)
    ));
    assert!(matches!(
        tx.send_priority_timeout(b"x", 3, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    for p in 0..3 {
        for i in 0..4u8 {
            tx.try_send_priority(&[i], p).unwrap();
        }
    }
    let lanes = ring.lane_stats();
    assert!(lanes.iter().all(|l| l.in_flight == 4 && l.slots == 4));
    assert_eq!(ring.stats().messages_in_flight, 16);
    // A reservation carries its priority; priorities beyond the lanes are refused.
    let mut buf = [0u8; 8];
    assert_eq!(rx.try_recv_priority(&mut buf).unwrap(), (1, 3));
    let mut grant = tx.try_reserve_priority(1, 3).unwrap();
    grant[0] = 9;
    grant.commit().unwrap();
    let err = tx.try_send_priority(b"x", 4).unwrap_err();
    assert!(err.to_string().contains("priority 4"), "{err}");
    let got: Vec<(u8, u32)> = std::iter::from_fn(|| {
        let grant = rx.try_read().ok()?;
        let item = (grant[0], grant.priority());
        grant.release().unwrap();
        Some(item)
    })
    .collect();
    let want: Vec<(u8, u32)> = [(1, 3), (2, 3), (3, 3), (9, 3)]
        .into_iter()
        .chain((0..3).rev().flat_map(|p| (0..4).map(move |i| (i, p))))
        .collect();
    assert_eq!(got, want);
    ring.unlink().unwrap();
}

#[test]
fn rings_without_lanes_take_priority_zero_only() {
    if role().is_some() {
        return;
    }
    let name = ShmName::new("lanes-spsc");
    let ring = shmring::spsc::Ring::create(name.as_str(), &Config::new()).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    tx.try_send_priority(b"a", 0).unwrap();
    let err = tx.try_send_priority(b"b", 1).unwrap_err();
    assert!(err.to_string().contains("one lane"), "{err}");
    let mut buf = [0u8; 8];
    assert_eq!(rx.try_recv_priority(&mut buf).unwrap(), (1, 0));
    assert!(rx.select_priorities(0..=1).is_err());
    let refused = shmring::spsc::Ring::create("/shmring-never-lanes", &Config::new().lanes(2));
    assert!(refused.unwrap_err().to_string().contains("MPMC"));
    ring.unlink().unwrap();
}
