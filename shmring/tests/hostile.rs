//! Shared memory is untrusted input. Random damage to a segment, before open or while both
//! ends run, may only ever produce typed errors: never a panic, a crash, an out-of-bounds
//! access or an endless loop.

// Atomics here coordinate test threads; they are not ring code.
#![allow(clippy::disallowed_types)]

mod common;

use std::fs::OpenOptions as FileOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::ShmName;
use proptest::prelude::*;
use shmring::broadcast::{self, JoinAt, Policy};
use shmring::layout::CONTROL_SIZE;
use shmring::{Config, Error, OpenOptions, WaitStrategy, mpmc, spsc::Ring};

const CAPACITY: u64 = 1024;

fn acceptable(err: &Error) -> bool {
    matches!(
        err,
        Error::Corrupted { .. }
            | Error::Incompatible { .. }
            | Error::Uninitialized { .. }
            | Error::WouldBlock
            | Error::Closed
            | Error::AlreadyAttached { .. }
            | Error::BufferTooSmall { .. }
            | Error::PermissionDenied { .. }
            // MPMC: all records look held, or our own record was overwritten.
            | Error::RegistryFull { .. }
            | Error::PeerDead { .. }
            | Error::Revoked { .. }
            // Broadcast: a reader whose place looks overwritten.
            | Error::Lagged { .. }
            // Sleeping strategies: timed calls on a ring whose words are garbage.
            | Error::Timeout
    )
}

/// An MPMC ring of 16 slots of 48 bytes and 4 peers: 512 + 16 × 64 = 1,536 data bytes.
fn mpmc_config() -> Config {
    Config::new().slots(16).max_message(48).max_peers(4)
}
const MPMC_DATA: u64 = 4 * 128 + 16 * 64;

/// A broadcast ring of 1,024 bytes (messages up to 48 bytes) and 3 readers: 4 × 128 +
/// 1,024 data bytes.
fn broadcast_config(policy: Policy) -> Config {
    Config::new()
        .capacity(1024)
        .max_message(48)
        .max_readers(3)
        .overflow(policy)
}
const BROADCAST_DATA: u64 = 4 * 128 + 1024;

/// Every operation once (on a ring whose messages are at most 48 bytes), each answering
/// with success or a typed error.
fn exercise<K: shmring::Kind>(
    tx: &mut shmring::Producer<K>,
    rx: &mut shmring::Consumer<K>,
    round: u64,
    buf: &mut [u8],
) -> Result<(u64, u64), String> {
    let (mut ok, mut typed) = (0, 0);
    let mut tally = |r: Result<(), Error>, what: &str| match r {
        Ok(()) => {
            ok += 1;
            Ok(())
        }
        Err(e) if acceptable(&e) => {
            typed += 1;
            Ok(())
        }
        Err(e) => Err(format!("{what}: {e:?}")),
    };
    tally(tx.try_send(&round.to_le_bytes()), "send")?;
    tally(
        tx.try_send_batch(&[&b"ab"[..], b"cde"]).map(drop),
        "send batch",
    )?;
    tally(
        tx.try_reserve(8).and_then(|mut g| {
            g.copy_from_slice(&round.to_le_bytes());
            g.commit()
        }),
        "reserve",
    )?;
    tally(rx.try_recv(buf).map(|n| assert!(n <= buf.len())), "recv")?;
    tally(
        rx.try_read().map(|m| {
            assert!(m.len() <= 48);
            m.release().unwrap();
        }),
        "read",
    )?;
    tally(
        rx.try_recv_batch(8, |m| assert!(m.len() <= 48)).map(drop),
        "recv batch",
    )?;
    Ok((ok, typed))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// A valid segment with bytes overwritten (header, attach records, positions, records)
    /// and possibly truncated: open, attach, send and receive answer with typed errors.
    #[test]
    fn damaged_segments_give_typed_errors(
        writes in prop::collection::vec((0..CONTROL_SIZE + CAPACITY, any::<u64>()), 1..12),
        truncate in prop::option::of(0..CONTROL_SIZE + CAPACITY),
    ) {
        let name = ShmName::new("fuzz");
        let ring = Ring::create(name.as_str(), &Config::new().capacity(CAPACITY as usize)).unwrap();
        let mut tx = ring.producer().unwrap();
        for i in 0..20u8 {
            let _ = tx.try_send(&vec![i; usize::from(i) * 7]);
        }
        let file = FileOptions::new().write(true).open(name.path()).unwrap();
        // `tx` stays attached while damaged; the guard closes it after the checks, on every
        // way out (a failed `prop_assert!` returns early).
        let _tx = RestoreThenClose { file: &file, len: CONTROL_SIZE + CAPACITY, tx: Some(Box::new(tx)) };
        for (offset, value) in &writes {
            file.write_all_at(&value.to_le_bytes(), offset & !7).unwrap();
        }
        if let Some(len) = truncate {
            file.set_len(len).unwrap();
        }
        let quick = OpenOptions::new().init_timeout(Duration::from_millis(5));
        match Ring::open_with(name.as_str(), &quick) {
            Err(e) => prop_assert!(acceptable(&e), "open: {e:?}"),
            Ok(ring) => {
                if let Ok(mut rx) = ring.consumer() {
                    let mut buf = vec![0u8; 2048];
                    for _ in 0..40 {
                        match rx.try_recv(&mut buf) {
                            Ok(n) => prop_assert!(n <= 2048),
                            Err(e) => { prop_assert!(acceptable(&e), "recv: {e:?}"); break }
                        }
                    }
                }
                if let Ok(mut tx) = ring.producer() {
                    for _ in 0..40 {
                        if let Err(e) = tx.try_send(&[1; 100]) {
                            prop_assert!(acceptable(&e), "send: {e:?}");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The same for an MPMC segment: header, peer line, registry records, slots.
    #[test]
    fn damaged_mpmc_segments_give_typed_errors(
        writes in prop::collection::vec((0..CONTROL_SIZE + MPMC_DATA, any::<u64>()), 1..12),
        truncate in prop::option::of(0..CONTROL_SIZE + MPMC_DATA),
    ) {
        let name = ShmName::new("fuzz-mpmc");
        let ring = mpmc::Ring::create(name.as_str(), &mpmc_config()).unwrap();
        let mut tx = ring.producer().unwrap();
        for i in 0..12u8 {
            let _ = tx.try_send(&vec![i; usize::from(i) * 4]);
        }
        let file = FileOptions::new().write(true).open(name.path()).unwrap();
        for (offset, value) in &writes {
            file.write_all_at(&value.to_le_bytes(), offset & !7).unwrap();
        }
        if let Some(len) = truncate {
            file.set_len(len).unwrap();
        }
        let _tx = RestoreThenClose { file: &file, len: CONTROL_SIZE + MPMC_DATA, tx: Some(Box::new(tx)) };
        let quick = OpenOptions::new().init_timeout(Duration::from_millis(5));
        match mpmc::Ring::open_with(name.as_str(), &quick) {
            Err(e) => prop_assert!(acceptable(&e), "open: {e:?}"),
            Ok(ring) => {
                let _ = ring.stats();
                let _ = ring.peers();
                if let (Ok(mut tx), Ok(mut rx)) = (ring.producer(), ring.consumer()) {
                    let mut buf = vec![0u8; 48];
                    for round in 0..10 {
                        let outcome = exercise(&mut tx, &mut rx, round, &mut buf);
                        prop_assert!(outcome.is_ok(), "{outcome:?}");
                    }
                }
            }
        }
    }

    /// The same for a broadcast segment (either policy): header, registry records (the
    /// producer's and the readers', with their cursors and names), `oldest`, records.
    #[test]
    fn damaged_broadcast_segments_give_typed_errors(
        writes in prop::collection::vec((0..CONTROL_SIZE + BROADCAST_DATA, any::<u64>()), 1..12),
        truncate in prop::option::of(0..CONTROL_SIZE + BROADCAST_DATA),
        overwrite in any::<bool>(),
    ) {
        let name = ShmName::new("fuzz-broadcast");
        let policy = if overwrite { Policy::Overwrite } else { Policy::Lossless };
        let ring = broadcast::Ring::create(name.as_str(), &broadcast_config(policy)).unwrap();
        let named = ring.reader_named("durable", JoinAt::Oldest).unwrap();
        drop(named);
        let mut tx = ring.producer().unwrap();
        for i in 0..30u8 {
            let _ = tx.try_send(&vec![i; usize::from(i) * 3 % 48]);
        }
        // One producer at a time: the damaged ring's producer takes the role over.
        drop(tx);
        let file = FileOptions::new().write(true).open(name.path()).unwrap();
        for (offset, value) in &writes {
            file.write_all_at(&value.to_le_bytes(), offset & !7).unwrap();
        }
        if let Some(len) = truncate {
            file.set_len(len).unwrap();
        }
        let _restore = RestoreThenClose { file: &file, len: CONTROL_SIZE + BROADCAST_DATA, tx: None };
        let quick = OpenOptions::new().init_timeout(Duration::from_millis(5));
        match broadcast::Ring::open_with(name.as_str(), &quick) {
            Err(e) => prop_assert!(acceptable(&e), "open: {e:?}"),
            Ok(ring) => {
                let _ = ring.stats();
                let _ = ring.peers();
                let _ = ring.readers();
                for join in [JoinAt::Oldest, JoinAt::Live] {
                    let reader = ring.reader_named("durable", join).or_else(|_| ring.reader(join));
                    let (Ok(mut rx), Ok(mut tx)) = (reader, ring.producer()) else { continue };
                    let mut buf = vec![0u8; 48];
                    for round in 0..10 {
                        let outcome = exercise(&mut tx, &mut rx, round, &mut buf);
                        prop_assert!(outcome.is_ok(), "{outcome:?}");
                    }
                }
            }
        }
    }
}

/// Closes a producer of a damaged segment: first gives the segment back its pages (the
/// close writes to it; touching pages past a truncation would be SIGBUS, not a result).
struct RestoreThenClose<'a> {
    file: &'a std::fs::File,
    /// The segment's size before the damage.
    len: u64,
    tx: Option<Box<dyn std::any::Any>>,
}

impl Drop for RestoreThenClose<'_> {
    fn drop(&mut self) {
        self.file.set_len(self.len).unwrap();
        drop(self.tx.take());
    }
}

/// A live peer scribbles random words over the whole segment while a producer and a
/// consumer run: every call returns, with a message or a typed error.
#[test]
fn a_scribbling_peer_cannot_crash_or_hang_the_ends() {
    let name = ShmName::new("scribble");
    let config = Config::new()
        .capacity(CAPACITY as usize)
        .wait_strategy(WaitStrategy::Spin);
    let ring = Ring::create(name.as_str(), &config).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    const WRITES: u64 = 5_000;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let scribbler = {
        let (path, stop, written) = (name.path(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let file = FileOptions::new().write(true).open(path).unwrap();
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            while !stop.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Anywhere in the control block or the data region, 8-aligned.
                let offset = (state % (CONTROL_SIZE + CAPACITY)) & !7;
                let value = state.rotate_left(17);
                file.write_all_at(&value.to_le_bytes(), offset).unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut ok, mut typed, mut rounds) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    // Keep both ends busy until the scribbler has done its damage (bounded in time).
    while written.load(Ordering::Relaxed) < WRITES && Instant::now() < deadline {
        rounds += 1;
        match tx.try_send(&rounds.to_le_bytes()) {
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(acceptable(&e), "send: {e:?}");
                typed += 1;
            }
        }
        match rx.try_recv(&mut buf) {
            Ok(n) => {
                assert!(n <= buf.len());
                ok += 1;
            }
            Err(e) => {
                assert!(acceptable(&e), "recv: {e:?}");
                typed += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
    let writes = written.load(Ordering::Relaxed);
    assert!(writes >= WRITES, "only {writes} hostile writes within 60 s");
    assert_eq!(ok + typed, 2 * rounds);
    println!(
        "{writes} hostile writes over {rounds} rounds: {ok} operations succeeded, {typed} typed errors"
    );
}

/// A live peer scribbles random words over the whole segment — futex words and sleeper
/// bits included — while both ends make timed blocking calls with the sleeping strategy:
/// every call returns within its timeout (plus scheduling slack), with a message or a
/// typed error; none blocks for ever (the condvar strategy of layout 3 did, 1 seed in 5)
/// and none aborts the process (glibc's semaphores did, tried in its place).
#[test]
fn a_scribbling_peer_cannot_hang_sleeping_ends() {
    use shmring::layout::ControlBlock;
    use std::mem::offset_of;
    // The words sleepers and wakers share: both role lines (sleeper and present bits,
    // futex words, death counts), everything from the producers' line to the data.
    let wake_words = offset_of!(ControlBlock, producers) as u64..CONTROL_SIZE;
    let name = ShmName::new("scribble-sleep");
    let config = Config::new()
        .capacity(CAPACITY as usize)
        .wait_strategy(WaitStrategy::Futex)
        .spin_before_sleep(Duration::ZERO);
    let ring = Ring::create(name.as_str(), &config).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let scribbler = {
        let (path, stop, words) = (name.path(), stop.clone(), wake_words.clone());
        std::thread::spawn(move || {
            let file = FileOptions::new().write(true).open(path).unwrap();
            let mut state = 0xD1B5_4A32_D192_ED03u64;
            while !stop.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let offset = (words.start + state % (words.end - words.start)) & !7;
                let value = if state & 1 == 0 { state >> 48 } else { state };
                file.write_all_at(&value.to_le_bytes(), offset).unwrap();
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let timeout = Duration::from_millis(20);
    let slack = Duration::from_secs(3);
    let (mut calls, mut timed_out, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let mut buf = vec![0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        // An empty ring: the receive sleeps (or is woken early by garbage) until its
        // timeout; then one message there and back.
        for call in 0..3 {
            let t = Instant::now();
            let outcome = match call {
                1 => tx.send_timeout(&calls.to_le_bytes(), timeout),
                _ => rx.recv_timeout(&mut buf, timeout).map(drop),
            };
            match outcome {
                Ok(()) => {}
                Err(Error::Timeout) => timed_out += 1,
                Err(e) => assert!(acceptable(&e), "call {call}: {e:?}"),
            }
            slowest = slowest.max(t.elapsed());
            assert!(slowest < timeout + slack, "a call took {slowest:?}");
            calls += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
    assert!(timed_out > 0, "no call ever slept");
    println!(
        "{calls} timed calls while the wake words were scribbled: {timed_out} slept to their timeout, slowest {slowest:?}"
    );
}

/// Found by cargo-fuzz: counters read from the segment near `u64::MAX` made the next
/// send overflow (a panic with overflow checks). Counters are informational and wrap.
#[test]
fn counters_at_their_maximum_wrap_instead_of_panicking() {
    use shmring::layout::{ConsumerLine, ControlBlock, ProducerLine};
    use std::mem::offset_of;
    let name = ShmName::new("counters");
    let ring = Ring::create(name.as_str(), &Config::new().capacity(CAPACITY as usize)).unwrap();
    let file = FileOptions::new().write(true).open(name.path()).unwrap();
    for at in [
        offset_of!(ControlBlock, producer) + offset_of!(ProducerLine, messages),
        offset_of!(ControlBlock, producer) + offset_of!(ProducerLine, bytes),
        offset_of!(ControlBlock, consumer) + offset_of!(ConsumerLine, messages),
        offset_of!(ControlBlock, consumer) + offset_of!(ConsumerLine, bytes),
    ] {
        file.write_all_at(&u64::MAX.to_le_bytes(), at as u64)
            .unwrap();
    }
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_send(&[1; 100]).unwrap();
    let mut buf = [0u8; 128];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 100);
    let stats = ring.stats();
    assert_eq!((stats.messages_sent, stats.bytes_sent), (0, 99));
}

/// A live peer scribbles random words over an MPMC segment (header, registry, slots) while
/// a producer and a consumer use every API: each call returns, with success or a typed
/// error.
#[test]
fn a_scribbling_peer_cannot_crash_or_hang_mpmc_ends() {
    let name = ShmName::new("scribble-mpmc");
    let ring = mpmc::Ring::create(name.as_str(), &mpmc_config()).unwrap();
    let (tx, rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    scribbled_while_running("MPMC", &name, CONTROL_SIZE + MPMC_DATA, tx, rx);
}

/// The same for broadcast rings of both policies.
#[test]
fn a_scribbling_peer_cannot_crash_or_hang_broadcast_ends() {
    for policy in [Policy::Lossless, Policy::Overwrite] {
        let name = ShmName::new("scribble-broadcast");
        let ring = broadcast::Ring::create(name.as_str(), &broadcast_config(policy)).unwrap();
        let (tx, rx) = (
            ring.producer().unwrap(),
            ring.reader(JoinAt::Oldest).unwrap(),
        );
        let what = format!("broadcast {policy}");
        scribbled_while_running(&what, &name, CONTROL_SIZE + BROADCAST_DATA, tx, rx);
    }
}

/// Runs [`exercise`] while another thread writes random words over the segment's `len`
/// bytes, until it has written 5,000: every call returns, with a value or a typed error.
fn scribbled_while_running<K: shmring::Kind>(
    what: &str,
    name: &ShmName,
    len: u64,
    mut tx: shmring::Producer<K>,
    mut rx: shmring::Consumer<K>,
) {
    const WRITES: u64 = 5_000;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let scribbler = {
        let (path, stop, written) = (name.path(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let file = FileOptions::new().write(true).open(path).unwrap();
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            while !stop.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let offset = (state % len) & !7;
                // Small values too, so positions and lengths look plausible sometimes.
                let value = if state & 1 == 0 {
                    state >> 40
                } else {
                    state.rotate_left(17)
                };
                file.write_all_at(&value.to_le_bytes(), offset).unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut ok, mut typed, mut rounds) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 48];
    let deadline = Instant::now() + Duration::from_secs(60);
    while written.load(Ordering::Relaxed) < WRITES && Instant::now() < deadline {
        rounds += 1;
        let (o, t) = exercise(&mut tx, &mut rx, rounds, &mut buf).unwrap();
        ok += o;
        typed += t;
    }
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
    let writes = written.load(Ordering::Relaxed);
    assert!(writes >= WRITES, "only {writes} hostile writes within 60 s");
    assert_eq!(ok + typed, 6 * rounds);
    println!(
        "{what}: {writes} hostile writes over {rounds} rounds: {ok} operations succeeded, {typed} typed errors"
    );
}
