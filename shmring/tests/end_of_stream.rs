//! End of stream, like a FIFO: `Closed` when every producer of the stream closed and
//! everything was received, `PeerDead` when at least one of them died without closing —
//! whatever attached later — and only once everything the dead one published has been
//! delivered. A role given up cleanly can be taken again (a restarted service reattaches).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{KillOnDrop, ShmName, expect_line, role, spawn_piped, wait_bounded};
use shmring::{Config, Error, WaitStrategy, mpmc, spsc};

const CALL: Duration = Duration::from_secs(10);
const STRATEGIES: [WaitStrategy; 3] = [
    WaitStrategy::Spin,
    WaitStrategy::SpinYield,
    WaitStrategy::Futex,
];
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A small ring of `kind` ("spsc" or "mpmc") waiting with `strategy`.
fn config(kind: &str, strategy: WaitStrategy) -> Config {
    let config = Config::new().max_message(32).wait_strategy(strategy);
    match kind {
        "spsc" => config.capacity(1 << 14),
        "mpmc" => config.slots(64).max_peers(3),
        other => panic!("no ring kind {other}"),
    }
}

/// Child role `die-after:<kind>:<n>`: attaches a producer, sends `n` messages (8-byte
/// sequence numbers), prints `sent`, and SIGKILLs itself.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    let parts: Vec<&str> = role.split(':').collect();
    let ["die-after", kind, n] = parts.as_slice() else {
        panic!("unknown role {role}")
    };
    let n: u64 = n.parse().unwrap();
    match *kind {
        "spsc" => {
            let mut tx = spsc::Ring::open(&name).unwrap().producer().unwrap();
            for seq in 0..n {
                tx.send_timeout(&seq.to_le_bytes(), CALL).unwrap();
            }
            println!("sent");
            // SAFETY: plain signal to this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        "mpmc" => {
            let mut tx = mpmc::Ring::open(&name).unwrap().producer().unwrap();
            for seq in 0..n {
                tx.send_timeout(&seq.to_le_bytes(), CALL).unwrap();
            }
            println!("sent");
            // SAFETY: as above.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        other => panic!("unknown kind {other}"),
    }
    unreachable!("SIGKILL returned");
}

/// Runs a child producer that sends `n` messages and dies; returns once it is dead.
fn producer_dies_after(kind: &str, name: &str, n: u64) {
    let (child, lines) = spawn_piped("child_entry", &format!("die-after:{kind}:{n}"), name);
    let mut child = KillOnDrop(child);
    expect_line(&lines, "sent", CALL);
    let status = wait_bounded(&mut child.0, CALL);
    assert!(!status.success(), "the producer was meant to die");
}

/// The bytes of a received message.
fn text(received: Result<usize, Error>, buf: &[u8]) -> Vec<u8> {
    buf[..received.unwrap()].to_vec()
}

fn seq_of(buf: &[u8], n: usize) -> u64 {
    assert_eq!(n, 8);
    u64::from_le_bytes(buf[..8].try_into().unwrap())
}

// ---- A cleanly given-up role can be taken again (both kinds, both roles) ----

/// The same tests for each ring kind (the handles share their method names).
macro_rules! reattach_tests {
    ($module:ident, $kind:ident) => {
        mod $module {
            use super::*;

            #[test]
            fn a_producer_attaches_after_a_clean_close() {
                let name = ShmName::new(concat!("eos-reattach-", stringify!($kind)));
                let config = config(stringify!($kind), WaitStrategy::SpinYield);
                let ring = shmring::$kind::Ring::create(name.as_str(), &config).unwrap();
                let mut rx = ring.consumer().unwrap();
                let mut buf = [0u8; 32];
                let mut first = ring.producer().unwrap();
                first.send(b"first").unwrap();
                first.close();
                assert_eq!(rx.recv(&mut buf).unwrap(), 5);
                assert!(matches!(rx.try_recv(&mut buf), Err(Error::Closed)));
                // A restarted producer reattaches; the consumer that saw end of stream sees
                // its messages, like a FIFO reader after a new writer opened it.
                let mut second = ring.producer().expect("reattach after a clean close");
                assert!(
                    ring.peers().iter().any(|p| p.generation == 2),
                    "{:?}",
                    ring.peers()
                );
                second.send(b"second").unwrap();
                assert_eq!(text(rx.recv(&mut buf), &buf), b"second");
                drop(second);
                assert!(matches!(
                    rx.recv_timeout(&mut buf, CALL),
                    Err(Error::Closed)
                ));
            }

            #[test]
            fn a_consumer_attaches_after_a_clean_close() {
                let name = ShmName::new(concat!("eos-reattach-rx-", stringify!($kind)));
                let config = config(stringify!($kind), WaitStrategy::SpinYield);
                let ring = shmring::$kind::Ring::create(name.as_str(), &config).unwrap();
                let mut tx = ring.producer().unwrap();
                let mut buf = [0u8; 32];
                let mut first = ring.consumer().unwrap();
                tx.send(b"a").unwrap();
                tx.send(b"b").unwrap();
                assert_eq!(text(first.recv(&mut buf), &buf), b"a");
                first.close();
                assert!(matches!(tx.try_send(b"lost"), Err(Error::Closed)));
                let mut second = ring.consumer().expect("reattach after a clean close");
                // What the first consumer left unreceived is still there, and sending works
                // again.
                assert_eq!(text(second.recv(&mut buf), &buf), b"b");
                tx.send(b"c").unwrap();
                assert_eq!(text(second.recv(&mut buf), &buf), b"c");
            }
        }
    };
}

reattach_tests!(spsc_reattach, spsc);
reattach_tests!(mpmc_reattach, mpmc);

// ---- PeerDead: final, after everything the dead producer published ----

/// A producer sends `n` messages and dies: for every strategy, the consumer receives all
/// `n` in order, then `PeerDead`, and `PeerDead` again on every later call.
fn dead_producer_is_reported_after_its_messages(kind: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for strategy in STRATEGIES {
        let name = ShmName::new("eos-dead");
        let n = 40u64;
        let mut buf = [0u8; 32];
        macro_rules! check_kind {
            ($kind:ident) => {{
                let ring = $kind::Ring::create(name.as_str(), &config(kind, strategy)).unwrap();
                let mut rx = ring.consumer().unwrap();
                producer_dies_after(kind, name.as_str(), n);
                for seq in 0..n {
                    let got = rx.recv_timeout(&mut buf, CALL);
                    let len = got.unwrap_or_else(|e| panic!("{strategy:?} message {seq}: {e}"));
                    assert_eq!(seq_of(&buf, len), seq, "{strategy:?}");
                }
                for _ in 0..3 {
                    match rx.recv_timeout(&mut buf, CALL) {
                        Err(Error::PeerDead { .. }) => {}
                        other => panic!("{strategy:?}: after the last message: {other:?}"),
                    }
                    assert!(matches!(rx.try_recv(&mut buf), Err(Error::PeerDead { .. })));
                }
            }};
        }
        match kind {
            "spsc" => check_kind!(spsc),
            _ => check_kind!(mpmc),
        }
    }
}

#[test]
fn spsc_peer_dead_comes_after_every_message_of_the_dead_producer() {
    dead_producer_is_reported_after_its_messages("spsc");
}

#[test]
fn mpmc_peer_dead_comes_after_every_message_of_the_dead_producer() {
    dead_producer_is_reported_after_its_messages("mpmc");
}

// ---- A death is remembered until the stream ends, whoever attaches meanwhile ----

/// MPMC: producers A (dies) and B (lives, closes later). Whether or not a new handle
/// reuses A's registry record before the end, the consumer ends with `PeerDead`.
fn mpmc_death_outlives_record_reuse(reuse: bool) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let name = ShmName::new("eos-reuse");
    // Three records: the consumer, B, and A's (the only one a new handle can take).
    let ring = mpmc::Ring::create(name.as_str(), &config("mpmc", WaitStrategy::Futex)).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut b = ring.producer().unwrap();
    producer_dies_after("mpmc", name.as_str(), 5);
    b.send(&99u64.to_le_bytes()).unwrap();
    let mut buf = [0u8; 32];
    let mut received = 0;
    // Receive what both sent while B is still attached.
    while received < 6 {
        rx.recv_timeout(&mut buf, CALL).unwrap();
        received += 1;
    }
    if reuse {
        // A's record is reused (its generation moves on) by a handle that closes cleanly.
        let late = ring.consumer().expect("reuses the dead producer's record");
        drop(late);
        assert!(
            ring.peers().iter().any(|p| p.generation >= 2),
            "no record was reused: {:?}",
            ring.peers()
        );
    }
    drop(b);
    match rx.recv_timeout(&mut buf, CALL) {
        Err(Error::PeerDead { .. }) => {}
        other => panic!("reuse={reuse}: stream with a dead producer ended with {other:?}"),
    }
}

#[test]
fn mpmc_a_dead_producer_is_reported_after_its_record_is_reused() {
    mpmc_death_outlives_record_reuse(true);
}

#[test]
fn mpmc_a_dead_producer_is_reported_without_record_reuse() {
    mpmc_death_outlives_record_reuse(false);
}

/// SPSC, the same rule: a producer that takes over from a dead one continues the same
/// stream, whose end is `PeerDead`; a producer that attaches after the consumer saw
/// `PeerDead` starts a new stream, whose clean end is `Closed`.
#[test]
fn spsc_a_death_belongs_to_the_stream_it_happened_in() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut buf = [0u8; 32];

    // Taken over before the consumer noticed: one stream, ended by a death.
    let name = ShmName::new("eos-takeover");
    let ring = spsc::Ring::create(name.as_str(), &config("spsc", WaitStrategy::Futex)).unwrap();
    let mut rx = ring.consumer().unwrap();
    producer_dies_after("spsc", name.as_str(), 3);
    let mut heir = ring
        .producer()
        .expect("takes over the dead producer's role");
    heir.send(&3u64.to_le_bytes()).unwrap();
    drop(heir);
    for seq in 0..4 {
        let len = rx.recv_timeout(&mut buf, CALL).unwrap();
        assert_eq!(seq_of(&buf, len), seq);
    }
    assert!(matches!(
        rx.recv_timeout(&mut buf, CALL),
        Err(Error::PeerDead { .. })
    ));

    // Noticed first: that stream ended with PeerDead; the next one is a new stream.
    let name = ShmName::new("eos-new-stream");
    let ring = spsc::Ring::create(name.as_str(), &config("spsc", WaitStrategy::Futex)).unwrap();
    let mut rx = ring.consumer().unwrap();
    producer_dies_after("spsc", name.as_str(), 3);
    for _ in 0..3 {
        rx.recv_timeout(&mut buf, CALL).unwrap();
    }
    assert!(matches!(
        rx.recv_timeout(&mut buf, CALL),
        Err(Error::PeerDead { .. })
    ));
    let mut next = ring.producer().unwrap();
    next.send(b"new stream").unwrap();
    drop(next);
    assert_eq!(text(rx.recv_timeout(&mut buf, CALL), &buf), b"new stream");
    assert!(matches!(
        rx.recv_timeout(&mut buf, CALL),
        Err(Error::Closed)
    ));
}

/// A caller that only ever polls with `try_recv` also reaches the end of a stream whose
/// producer died: every few thousand empty polls look for a dead producer.
#[test]
fn a_try_loop_learns_of_a_dead_producer() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    macro_rules! poll_kind {
        ($kind:ident) => {{
            let name = ShmName::new(concat!("eos-try-", stringify!($kind)));
            let ring = $kind::Ring::create(
                name.as_str(),
                &config(stringify!($kind), WaitStrategy::Spin),
            )
            .unwrap();
            let mut rx = ring.consumer().unwrap();
            producer_dies_after(stringify!($kind), name.as_str(), 5);
            let (mut buf, mut received, mut polls) = ([0u8; 32], 0, 0u64);
            let deadline = std::time::Instant::now() + CALL;
            let end = loop {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no end after {polls} polls"
                );
                polls += 1;
                match rx.try_recv(&mut buf) {
                    Ok(_) => received += 1,
                    Err(Error::WouldBlock) => {}
                    Err(end) => break end,
                }
            };
            assert_eq!(received, 5, stringify!($kind));
            assert!(matches!(end, Error::PeerDead { .. }), "{end:?}");
            eprintln!(
                "{}: PeerDead after {polls} try_recv calls",
                stringify!($kind)
            );
        }};
    }
    poll_kind!(spsc);
    poll_kind!(mpmc);
}
