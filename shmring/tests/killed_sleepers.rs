//! A process killed while asleep in a blocking call never hangs its peers: for every wait
//! strategy, both ring kinds and both roles, a sleeper is SIGKILLed, a second process goes
//! to sleep in the same role, and every call of the surviving peer returns within its
//! bound (`try_*` at once, timed calls on time); the second sleeper is woken by the
//! survivor's progress; and once the dead sleeper has been found out, the survivor's fast
//! path makes no wake system call again.

mod common;

use std::sync::Mutex;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{KillOnDrop, ShmName, bounded, expect_line, kill9, role, spawn_piped, wait_bounded};
use shmring::{Config, Error, OpenOptions, Role, WaitStrategy, mpmc, spsc};

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
const MAX: u64 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spsc,
    Mpmc,
}

fn config(kind: Kind, strategy: WaitStrategy) -> Config {
    let config = Config::new()
        .wait_strategy(strategy)
        .spin_before_sleep(Duration::ZERO)
        .max_message(MAX);
    match kind {
        Kind::Spsc => config.capacity(256),
        Kind::Mpmc => config.slots(2).max_peers(4),
    }
}

fn open_options() -> OpenOptions {
    OpenOptions::new().spin_before_sleep(Duration::ZERO)
}

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
    let kind = match kind {
        "spsc" => Kind::Spsc,
        _ => Kind::Mpmc,
    };
    let role = match what {
        "sleep-producer" => Role::Producer,
        _ => Role::Consumer,
    };
    let mut end = Ring::open(kind, &name).attach(role);
    if role == Role::Producer {
        end.fill();
    }
    println!("attached");
    for _ in 0..WAKES {
        end.block_once(Duration::from_secs(60)).unwrap();
    }
    println!("done");
}

/// A handle of either kind and role (the survivor's, and the sleepers').
enum Survivor {
    SpscProducer(spsc::Producer),
    SpscConsumer(spsc::Consumer),
    MpmcProducer(mpmc::Producer),
    MpmcConsumer(mpmc::Consumer),
}

impl Survivor {
    /// Sends until the ring is full (a producer).
    fn fill(&mut self) {
        match self {
            Survivor::SpscProducer(tx) => while tx.try_send(b"filler").is_ok() {},
            Survivor::MpmcProducer(tx) => while tx.try_send(b"filler").is_ok() {},
            _ => panic!("not a producer"),
        }
    }

    /// One blocking call: a send that waits for room, or a receive that waits for data.
    fn block_once(&mut self, timeout: Duration) -> Result<(), Error> {
        let mut buf = [0u8; MAX as usize];
        match self {
            Survivor::SpscProducer(tx) => tx.send_timeout(b"last", timeout),
            Survivor::MpmcProducer(tx) => tx.send_timeout(b"last", timeout),
            Survivor::SpscConsumer(rx) => rx.recv_timeout(&mut buf, timeout).map(drop),
            Survivor::MpmcConsumer(rx) => rx.recv_timeout(&mut buf, timeout).map(drop),
        }
    }

    /// One non-blocking call: it must make progress (room for a message, or a message).
    fn progress(&mut self) -> Result<(), Error> {
        let mut buf = [0u8; MAX as usize];
        match self {
            Survivor::SpscProducer(tx) => tx.try_send(b"x"),
            Survivor::MpmcProducer(tx) => tx.try_send(b"x"),
            Survivor::SpscConsumer(rx) => rx.try_recv(&mut buf).map(drop),
            Survivor::MpmcConsumer(rx) => rx.try_recv(&mut buf).map(drop),
        }
    }

    /// One non-blocking call and one timed call; each outcome must be a value or a typed
    /// error (which ones depends on the moment), never a hang.
    fn calls(&mut self) -> Vec<Result<(), Error>> {
        let short = Duration::from_millis(100);
        let mut buf = [0u8; MAX as usize];
        match self {
            Survivor::SpscProducer(tx) => vec![tx.try_send(b"x"), tx.send_timeout(b"y", short)],
            Survivor::MpmcProducer(tx) => vec![tx.try_send(b"x"), tx.send_timeout(b"y", short)],
            Survivor::SpscConsumer(rx) => vec![
                rx.try_recv(&mut buf).map(drop),
                rx.recv_timeout(&mut buf, short).map(drop),
            ],
            Survivor::MpmcConsumer(rx) => vec![
                rx.try_recv(&mut buf).map(drop),
                rx.recv_timeout(&mut buf, short).map(drop),
            ],
        }
    }

    fn wake_syscalls(&self) -> u64 {
        match self {
            Survivor::SpscProducer(h) => h.wake_syscalls(),
            Survivor::SpscConsumer(h) => h.wake_syscalls(),
            Survivor::MpmcProducer(h) => h.wake_syscalls(),
            Survivor::MpmcConsumer(h) => h.wake_syscalls(),
        }
    }
}

/// The ring of a case, of either kind.
enum Ring {
    Spsc(spsc::Ring),
    Mpmc(mpmc::Ring),
}

impl Ring {
    fn open(kind: Kind, name: &str) -> Ring {
        match kind {
            Kind::Spsc => Ring::Spsc(spsc::Ring::open_with(name, &open_options()).unwrap()),
            Kind::Mpmc => Ring::Mpmc(mpmc::Ring::open_with(name, &open_options()).unwrap()),
        }
    }

    fn create(kind: Kind, name: &str, config: &Config) -> Ring {
        match kind {
            Kind::Spsc => Ring::Spsc(spsc::Ring::create(name, config).unwrap()),
            Kind::Mpmc => Ring::Mpmc(mpmc::Ring::create(name, config).unwrap()),
        }
    }

    fn attach(&self, role: Role) -> Survivor {
        match (self, role) {
            (Ring::Spsc(r), Role::Producer) => Survivor::SpscProducer(r.producer().unwrap()),
            (Ring::Spsc(r), Role::Consumer) => Survivor::SpscConsumer(r.consumer().unwrap()),
            (Ring::Mpmc(r), Role::Producer) => Survivor::MpmcProducer(r.producer().unwrap()),
            (Ring::Mpmc(r), Role::Consumer) => Survivor::MpmcConsumer(r.consumer().unwrap()),
        }
    }

    /// Processes asleep in `role` as the segment counts them.
    fn sleeping(&self, role: Role) -> u32 {
        match (self, role) {
            (Ring::Spsc(r), Role::Consumer) => r.stats().consumers_waiting,
            (Ring::Spsc(r), Role::Producer) => r.stats().producers_waiting,
            (Ring::Mpmc(r), Role::Consumer) => r.stats().consumers_waiting,
            (Ring::Mpmc(r), Role::Producer) => r.stats().producers_waiting,
        }
    }
}

/// Starts a sleeper of `role` and returns once it is asleep (or, for the polling
/// strategies, polling).
fn start_sleeper(
    ring: &Ring,
    name: &str,
    kind: Kind,
    role: Role,
    strategy: WaitStrategy,
) -> (KillOnDrop, Receiver<String>) {
    let what = match role {
        Role::Consumer => "sleep-consumer",
        Role::Producer => "sleep-producer",
    };
    let kind_name = match kind {
        Kind::Spsc => "spsc",
        Kind::Mpmc => "mpmc",
    };
    let before = ring.sleeping(role);
    let (child, lines) = spawn_piped("child_entry", &format!("{what}:{kind_name}"), name);
    let child = KillOnDrop(child);
    expect_line(&lines, "attached", Duration::from_secs(20));
    if strategy == WaitStrategy::Futex {
        // Sleeper bits are per slot: an SPSC sleeper that took over a dead one's role
        // cleared that one's bit when it attached; an MPMC sleeper has its own record.
        let target = match kind {
            Kind::Spsc => 1,
            Kind::Mpmc => before + 1,
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
fn killed_sleeper(kind: Kind, strategy: WaitStrategy, victim: Role) {
    let _one = ONE_CASE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let case = format!("{kind:?} {strategy:?}, {victim} killed asleep");
    let name = ShmName::new("killed-sleeper");
    let ring = Ring::create(kind, name.as_str(), &config(kind, strategy));
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
    let mut buf = [0u8; MAX as usize];
    for _ in 0..1000 {
        // Empty the ring first (the survivor's calls above may have left messages), then
        // one message each way: nobody sleeps, so no wake call is due.
        match (&mut survivor, &mut peer) {
            (Survivor::SpscProducer(tx), Survivor::SpscConsumer(rx)) => {
                while rx.try_recv(&mut buf).is_ok() {}
                tx.send_timeout(b"m", CALL_BOUND).unwrap();
                rx.recv_timeout(&mut buf, CALL_BOUND).unwrap();
            }
            (Survivor::SpscConsumer(rx), Survivor::SpscProducer(tx)) => {
                while rx.try_recv(&mut buf).is_ok() {}
                tx.send_timeout(b"m", CALL_BOUND).unwrap();
                rx.recv_timeout(&mut buf, CALL_BOUND).unwrap();
            }
            (Survivor::MpmcProducer(tx), Survivor::MpmcConsumer(rx)) => {
                while rx.try_recv(&mut buf).is_ok() {}
                tx.send_timeout(b"m", CALL_BOUND).unwrap();
                rx.recv_timeout(&mut buf, CALL_BOUND).unwrap();
            }
            (Survivor::MpmcConsumer(rx), Survivor::MpmcProducer(tx)) => {
                while rx.try_recv(&mut buf).is_ok() {}
                tx.send_timeout(b"m", CALL_BOUND).unwrap();
                rx.recv_timeout(&mut buf, CALL_BOUND).unwrap();
            }
            _ => unreachable!("the peer plays the victim's role"),
        }
    }
    assert_eq!(
        survivor.wake_syscalls(),
        before,
        "{case}: the survivor still pays wake calls for a dead sleeper"
    );
}

fn every_strategy(kind: Kind, victim: Role) {
    for strategy in STRATEGIES {
        killed_sleeper(kind, strategy, victim);
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
