//! A process killed while asleep in a blocking call never hangs its peers: for every wait
//! strategy, every ring kind and both roles, a sleeper is SIGKILLed, a second process goes
//! to sleep in the same role, and every call of the surviving peer returns within its
//! bound (`try_*` at once, timed calls on time); the second sleeper is woken by the
//! survivor's progress; and once the dead sleeper has been found out, the survivor's fast
//! path makes no wake system call again.

mod common;

use std::sync::Mutex;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::ends::{AnyRing, Kind, config_lanes};
use common::{KillOnDrop, ShmName, bounded, expect_line, kill9, role, spawn_piped, wait_bounded};
use shmring::{Error, Role, WaitStrategy};

/// Every wait strategy.
const STRATEGIES: [WaitStrategy; 3] = [
    WaitStrategy::Spin,
    WaitStrategy::SpinYield,
    WaitStrategy::Futex,
];
/// How long a survivor's call may take before it counts as hung (generous: a loaded
/// 2-core machine; the calls themselves are `try_*` or 100 ms timeouts).
const CALL_BOUND: Duration = Duration::from_secs(10);
/// Child processes of one case share the machine's two cores: one case at a time.
static ONE_CASE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Wake-ups the second sleeper needs from the survivor (glibc's condvar hung on the
/// second broadcast after a waiter's death, so one is not enough).
const WAKES: usize = 3;

/// Child roles: `sleep-consumer:<kind>` receives [`WAKES`] messages, sleeping until each
/// comes; `sleep-producer:<kind>` fills the ring and then sends [`WAKES`] more, sleeping
/// until there is room for each. Each prints `attached` before it first blocks and `done`
/// after.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    let (what, kind) = role.split_once(':').unwrap();
    let kind: Kind = kind.parse().unwrap();
    let role = match what {
        "sleep-producer" => Role::Producer,
        _ => Role::Consumer,
    };
    let mut end = AnyRing::open(kind, &name).attach(role);
    if role == Role::Producer {
        end.fill();
    }
    println!("attached");
    for _ in 0..WAKES {
        end.block_once(Duration::from_secs(60)).unwrap();
    }
    println!("done");
}

/// Starts a sleeper of `role` and returns once it is asleep (or, for the polling
/// strategies, polling).
fn start_sleeper(
    ring: &AnyRing,
    name: &str,
    kind: Kind,
    role: Role,
    strategy: WaitStrategy,
) -> (KillOnDrop, Receiver<String>) {
    let what = match role {
        Role::Consumer => "sleep-consumer",
        Role::Producer => "sleep-producer",
    };
    let kind_name = kind.as_str();
    let before = ring.sleeping(role);
    let (child, lines) = spawn_piped("child_entry", &format!("{what}:{kind_name}"), name);
    let child = KillOnDrop(child);
    expect_line(&lines, "attached", Duration::from_secs(20));
    if strategy == WaitStrategy::Futex {
        // Sleeper bits are per slot: an SPSC sleeper (or a broadcast producer) that took
        // over a dead one's role cleared that one's bit when it attached; an MPMC sleeper
        // (or a broadcast reader) has its own record.
        let target = match (kind, role) {
            (Kind::Spsc, _) | (Kind::Broadcast, Role::Producer) => 1,
            _ => before + 1,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ring.sleeping(role) < target {
            assert!(Instant::now() < deadline, "the {what} never went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Well into its wait, whatever the strategy.
    std::thread::sleep(Duration::from_millis(50));
    (child, lines)
}

fn the_other(role: Role) -> Role {
    match role {
        Role::Producer => Role::Consumer,
        Role::Consumer => Role::Producer,
    }
}

/// One cell of the matrix: a `victim`-role sleeper killed in its sleep, a second sleeper
/// of the same role, and the survivor of the other role.
fn killed_sleeper(kind: Kind, lanes: u32, strategy: WaitStrategy, victim: Role) {
    let _one = ONE_CASE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let case = format!("{kind:?} ({lanes} lane(s)) {strategy:?}, {victim} killed asleep");
    let name = ShmName::new("killed-sleeper");
    let ring = AnyRing::create(kind, name.as_str(), &config_lanes(kind, strategy, lanes));
    let mut survivor = ring.attach(the_other(victim));

    let (mut first, _) = start_sleeper(&ring, name.as_str(), kind, victim, strategy);
    kill9(&mut first.0);
    let (mut second, second_lines) = start_sleeper(&ring, name.as_str(), kind, victim, strategy);

    // Every call of the survivor returns within its bound, and its progress wakes the
    // second sleeper, as often as it sleeps.
    let started = Instant::now();
    for wake in 0..WAKES {
        let (returned, outcome) = bounded(CALL_BOUND, move || {
            let outcome = survivor.progress();
            (survivor, outcome)
        })
        .unwrap_or_else(|| panic!("{case}: a non-blocking call of the survivor hung"));
        survivor = returned;
        if let Err(e) = outcome {
            panic!("{case}: wake {wake}: the survivor could not make progress: {e}");
        }
        // Let the second sleeper go back to sleep.
        std::thread::sleep(Duration::from_millis(50));
    }
    expect_line(&second_lines, "done", CALL_BOUND);
    let status = wait_bounded(&mut second.0, CALL_BOUND);
    assert!(
        status.success(),
        "{case}: the second sleeper failed: {status}"
    );
    let (returned, outcomes) = bounded(CALL_BOUND, move || {
        let outcomes = survivor.calls();
        (survivor, outcomes)
    })
    .unwrap_or_else(|| panic!("{case}: a call of the survivor hung"));
    survivor = returned;
    for outcome in &outcomes {
        match outcome {
            // The second sleeper has closed by now: the stream may have ended, and since
            // the first died in it, `PeerDead` is as right as `Closed`.
            Ok(())
            | Err(Error::WouldBlock | Error::Timeout | Error::Closed | Error::PeerDead { .. }) => {}
            Err(e) => panic!("{case}: unexpected {e}"),
        }
    }
    eprintln!(
        "{case}: survivor's calls returned in {:?}",
        started.elapsed()
    );

    // Nobody sleeps any more, and the segment knows it: the dead sleeper no longer
    // counts, so the survivor's next messages cost no wake system call.
    let deadline = Instant::now() + CALL_BOUND;
    while ring.sleeping(victim) != 0 {
        assert!(
            Instant::now() < deadline,
            "{case}: {} sleepers still counted in role {victim}",
            ring.sleeping(victim)
        );
        let (returned, _) = bounded(CALL_BOUND, move || {
            let outcomes = survivor.calls();
            (survivor, outcomes)
        })
        .unwrap_or_else(|| panic!("{case}: a call of the survivor hung"));
        survivor = returned;
    }
    let mut peer = ring.attach(victim);
    let before = survivor.wake_syscalls();
    for _ in 0..1000 {
        // Empty the ring first (the survivor's calls above may have left messages), then
        // one message each way: nobody sleeps, so no wake call is due.
        match victim {
            Role::Consumer => peer.exchange_with(&mut survivor),
            Role::Producer => survivor.exchange_with(&mut peer),
        }
    }
    assert_eq!(
        survivor.wake_syscalls(),
        before,
        "{case}: the survivor still pays wake calls for a dead sleeper"
    );
}

fn every_strategy(kind: Kind, victim: Role) {
    every_strategy_lanes(kind, 1, victim);
}

fn every_strategy_lanes(kind: Kind, lanes: u32, victim: Role) {
    for strategy in STRATEGIES {
        killed_sleeper(kind, lanes, strategy, victim);
    }
}

#[test]
fn spsc_consumer_killed_asleep() {
    every_strategy(Kind::Spsc, Role::Consumer);
}

#[test]
fn spsc_producer_killed_asleep() {
    every_strategy(Kind::Spsc, Role::Producer);
}

#[test]
fn mpmc_consumer_killed_asleep() {
    every_strategy(Kind::Mpmc, Role::Consumer);
}

#[test]
fn mpmc_producer_killed_asleep() {
    every_strategy(Kind::Mpmc, Role::Producer);
}

#[test]
fn mpmc_lanes_consumer_killed_asleep() {
    every_strategy_lanes(Kind::Mpmc, 4, Role::Consumer);
}

#[test]
fn mpmc_lanes_producer_killed_asleep() {
    every_strategy_lanes(Kind::Mpmc, 4, Role::Producer);
}

#[test]
fn broadcast_reader_killed_asleep() {
    every_strategy(Kind::Broadcast, Role::Consumer);
}

#[test]
fn broadcast_producer_killed_asleep() {
    every_strategy(Kind::Broadcast, Role::Producer);
}
