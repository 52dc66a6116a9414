//! A peer killed at each moment of the peer and wait protocols — while attaching, asleep,
//! just woken, notifying, closing — for every ring kind and both roles (crash hooks: the
//! process sends itself SIGKILL at the step). In every cell the survivor's blocking calls
//! keep returning within their bound, a new process takes the dead one's role at once,
//! messages flow again, and the dead one's sleeper bit no longer costs the survivor a wake
//! system call.
// A process-local stop flag, not ring code: the sync facade rule does not apply.
#![allow(clippy::disallowed_types)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::ends::{AnyEnd, AnyRing, Kind, config_lanes};
use common::{KillOnDrop, ShmName, piped, role, wait_bounded};
use shmring::{Error, Role, WaitStrategy};

/// A call of the survivor may not take longer than this (its timeout is 100 ms).
const CALL_BOUND: Duration = Duration::from_secs(5);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Child role `<kind>:<role>`: attaches, then (producer: after filling the ring;
/// consumer: after emptying it of what the paced survivor sent while this process started)
/// makes three blocking calls, then closes. `SHMRING_CRASH_AT` decides where it dies.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    let (kind, role) = role.split_once(':').unwrap();
    let kind: Kind = kind.parse().unwrap();
    let role = if role == "producer" {
        Role::Producer
    } else {
        Role::Consumer
    };
    let mut end = AnyRing::open(kind, &name).attach(role);
    if role == Role::Producer {
        end.fill();
    } else {
        // A slow start (a sanitizer build) lets the survivor fill the ring first; with a
        // backlog no blocking call would ever sleep. Once it is gone, the survivor's pace
        // makes the second call at the latest wait. The pause first lets the producer fill
        // the ring and fall asleep (a broadcast producer only waits once a reader is
        // attached), so draining notifies a sleeper.
        std::thread::sleep(Duration::from_millis(20));
        end.drain();
    }
    for _ in 0..3 {
        end.block_once(Duration::from_secs(60)).unwrap();
    }
    drop(end);
    // Only a step the child never reached brings it here.
    std::process::exit(3);
}

/// The survivor's side: blocking calls of 100 ms, in a loop, until told to stop; `pace`
/// sleeps between them (so the victim has to wait for it, and sleeps). Returns the handle
/// and the longest call.
fn survivor_loop(
    mut end: AnyEnd,
    stop: Arc<std::sync::atomic::AtomicBool>,
    pace: Duration,
) -> std::thread::JoinHandle<(AnyEnd, Duration)> {
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let started = Instant::now();
            match end.block_once(Duration::from_millis(100)) {
                Ok(()) | Err(Error::Timeout | Error::Closed | Error::PeerDead { .. }) => {}
                Err(e) => panic!("survivor: {e}"),
            }
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(pace);
        }
        (end, slowest)
    })
}

fn the_other(role: Role) -> Role {
    match role {
        Role::Producer => Role::Consumer,
        Role::Consumer => Role::Producer,
    }
}

/// One cell: the `victim`-role peer dies at `step`.
fn killed_at(kind: Kind, lanes: u32, victim: Role, step: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let case = format!("{kind:?} ({lanes} lane(s)) {victim} killed at {step}");
    let name = ShmName::new("moment");
    let config = config_lanes(kind, WaitStrategy::Futex, lanes);
    let ring = AnyRing::create(kind, name.as_str(), &config);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // To catch the victim notifying, the survivor must be asleep when the victim makes
    // progress (no pacing); otherwise the survivor paces itself so the victim sleeps.
    let pace = if step == "notifying" {
        Duration::ZERO
    } else {
        Duration::from_millis(5)
    };
    let survivor = survivor_loop(ring.attach(the_other(victim)), stop.clone(), pace);

    let kind_name = kind.as_str();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("SHMRING_CRASH_AT", format!("{step}:1"));
    let (child, _lines) = piped(command, &format!("{kind_name}:{victim}"), name.as_str());
    let mut child = KillOnDrop(child);
    let status = wait_bounded(&mut child.0, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{case}: {status}");

    // Let the survivor run into the death for a while, then look at it.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut survivor, slowest) = survivor.join().expect("the survivor panicked");
    assert!(
        slowest < CALL_BOUND,
        "{case}: a survivor call took {slowest:?}"
    );

    // A new process takes the role at once.
    let mut heir = ring
        .try_attach(victim)
        .unwrap_or_else(|e| panic!("{case}: the role cannot be taken again: {e}"));
    // The dead one's sleeper bit goes once it is found out (the survivor's waits look).
    let deadline = Instant::now() + CALL_BOUND;
    while ring.sleeping(victim) != 0 {
        assert!(
            Instant::now() < deadline,
            "{case}: a dead sleeper still counted"
        );
        let _ = survivor.block_once(Duration::from_millis(20));
    }
    let before = survivor.wake_syscalls();
    for _ in 0..100 {
        match victim {
            Role::Consumer => heir.exchange_with(&mut survivor),
            Role::Producer => survivor.exchange_with(&mut heir),
        }
    }
    assert_eq!(
        survivor.wake_syscalls(),
        before,
        "{case}: wake calls for a sleeper that is gone"
    );
    eprintln!("{case}: survivor's slowest call {slowest:?}; role taken again; 100 exchanges");
}

fn every_moment(kind: Kind, victim: Role) {
    every_moment_lanes(kind, 1, victim);
}

fn every_moment_lanes(kind: Kind, lanes: u32, victim: Role) {
    for step in [
        "attaching",
        "sleep-announced",
        "woken",
        "notifying",
        "closing",
    ] {
        killed_at(kind, lanes, victim, step);
    }
}

#[test]
fn spsc_consumer_killed_at_every_moment() {
    every_moment(Kind::Spsc, Role::Consumer);
}

#[test]
fn spsc_producer_killed_at_every_moment() {
    every_moment(Kind::Spsc, Role::Producer);
}

#[test]
fn mpmc_consumer_killed_at_every_moment() {
    every_moment(Kind::Mpmc, Role::Consumer);
}

#[test]
fn mpmc_producer_killed_at_every_moment() {
    every_moment(Kind::Mpmc, Role::Producer);
}

#[test]
fn mpmc_lanes_consumer_killed_at_every_moment() {
    every_moment_lanes(Kind::Mpmc, 4, Role::Consumer);
}

#[test]
fn mpmc_lanes_producer_killed_at_every_moment() {
    every_moment_lanes(Kind::Mpmc, 4, Role::Producer);
}

#[test]
fn broadcast_reader_killed_at_every_moment() {
    every_moment(Kind::Broadcast, Role::Consumer);
}

#[test]
fn broadcast_producer_killed_at_every_moment() {
    every_moment(Kind::Broadcast, Role::Producer);
}
