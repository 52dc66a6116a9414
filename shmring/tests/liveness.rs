//! Liveness that does not depend on process ids meaning anything to the checker: a live
//! peer in a child forked without `exec`, or in another PID namespace (containers sharing
//! `/dev/shm`), is never judged dead; a real death there is still detected.

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{KillOnDrop, ShmName, expect_line, role, spawn_piped, wait_bounded};
use shmring::{Config, Error, PeerStatus, WaitStrategy, mpmc, spsc};

const MESSAGES: u64 = 100;
/// How long a peer stays attached, idle, after its messages: long enough for the other
/// side's blocked call to check its liveness several times.
const LINGER: Duration = Duration::from_millis(400);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const RUN_LIMIT: Duration = Duration::from_secs(60);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The ring of `kind` ("spsc" or "mpmc") these tests use.
fn config(kind: &str) -> Config {
    let config = Config::new()
        .wait_strategy(WaitStrategy::Futex)
        .max_message(64);
    match kind {
        "spsc" => config.capacity(1 << 16),
        _ => config.slots(256),
    }
}

/// Either kind's producer or consumer, driven the same way.
enum End {
    SpscTx(spsc::Producer),
    SpscRx(spsc::Consumer),
    MpmcTx(mpmc::Producer),
    MpmcRx(mpmc::Consumer),
}

impl End {
    fn attach(kind: &str, role: &str, name: &str) -> End {
        match (kind, role) {
            ("spsc", "producer") => {
                End::SpscTx(spsc::Ring::open(name).unwrap().producer().unwrap())
            }
            ("spsc", "consumer") => {
                End::SpscRx(spsc::Ring::open(name).unwrap().consumer().unwrap())
            }
            ("mpmc", "producer") => {
                End::MpmcTx(mpmc::Ring::open(name).unwrap().producer().unwrap())
            }
            ("mpmc", "consumer") => {
                End::MpmcRx(mpmc::Ring::open(name).unwrap().consumer().unwrap())
            }
            other => panic!("unknown end {other:?}"),
        }
    }

    fn send(&mut self, seq: u64) -> Result<(), Error> {
        let msg = seq.to_le_bytes();
        match self {
            End::SpscTx(tx) => tx.send_timeout(&msg, CALL_TIMEOUT),
            End::MpmcTx(tx) => tx.send_timeout(&msg, CALL_TIMEOUT),
            _ => panic!("not a producer"),
        }
    }

    fn recv(&mut self) -> Result<u64, Error> {
        let mut buf = [0u8; 64];
        let n = match self {
            End::SpscRx(rx) => rx.recv_timeout(&mut buf, CALL_TIMEOUT)?,
            End::MpmcRx(rx) => rx.recv_timeout(&mut buf, CALL_TIMEOUT)?,
            _ => panic!("not a consumer"),
        };
        assert_eq!(n, 8);
        Ok(u64::from_le_bytes(buf[..8].try_into().unwrap()))
    }
}

fn create(kind: &str, name: &str) {
    match kind {
        "spsc" => drop(spsc::Ring::create(name, &config(kind)).unwrap()),
        "mpmc" => drop(mpmc::Ring::create(name, &config(kind)).unwrap()),
        other => panic!("unknown kind {other}"),
    }
}

/// Peer statuses of the ring, as seen from this process.
fn statuses(kind: &str, name: &str) -> Vec<PeerStatus> {
    let peers = match kind {
        "spsc" => spsc::Ring::open(name).unwrap().peers(),
        _ => mpmc::Ring::open(name).unwrap().peers(),
    };
    peers.iter().map(|p| p.status).collect()
}

/// Sends `MESSAGES`, lingers, then closes (`end` = "close") or SIGKILLs itself ("die").
fn produce(end: &mut End, finish: &str) {
    for seq in 0..MESSAGES {
        end.send(seq).unwrap();
    }
    println!("sent");
    std::thread::sleep(LINGER);
    if finish == "die" {
        // SAFETY: plain signal to this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Receives `MESSAGES` in order.
fn consume(end: &mut End) {
    for seq in 0..MESSAGES {
        assert_eq!(end.recv().unwrap(), seq);
    }
}

/// Child roles:
/// - `forker:<kind>:<parent role>`: attaches `<parent role>`, forks without exec; the
///   forked child opens the ring itself and plays the other role; both check that neither
///   is judged dead and that the stream ends with `Closed`.
/// - `ns-producer:<kind>:<close|die>` and `ns-consumer:<kind>`: run inside another PID
///   namespace (see `in_pid_namespace`).
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    let parts: Vec<&str> = role.split(':').collect();
    match parts.as_slice() {
        ["forker", kind, parent_role] => forker(kind, parent_role, &name),
        ["ns-producer", kind, finish] => {
            let mut end = End::attach(kind, "producer", &name);
            produce(&mut end, finish);
        }
        ["ns-consumer", kind] => {
            let mut end = End::attach(kind, "consumer", &name);
            println!("attached");
            consume(&mut end);
        }
        other => panic!("unknown role {other:?}"),
    }
}

fn forker(kind: &str, parent_role: &str, name: &str) {
    create(kind, name);
    let mut mine = End::attach(kind, parent_role, name);
    // A server forks later than it starts: process start times (in 10 ms clock ticks)
    // then differ, as they would in production.
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: the forked child runs only this function's code and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let outcome = std::panic::catch_unwind(|| {
            let other_role = if parent_role == "producer" {
                "consumer"
            } else {
                "producer"
            };
            let mut theirs = End::attach(kind, other_role, name);
            if other_role == "producer" {
                produce(&mut theirs, "close");
            } else {
                consume(&mut theirs);
                std::thread::sleep(LINGER);
            }
            drop(theirs);
        });
        // SAFETY: leaves the forked child without running the parent's destructors.
        unsafe { libc::_exit(i32::from(outcome.is_err())) };
    }
    // The forked child is alive for at least LINGER after its messages: every record
    // must look alive meanwhile.
    if parent_role == "consumer" {
        consume(&mut mine);
        let seen = statuses(kind, name);
        assert!(
            seen.iter().all(|s| *s == PeerStatus::Attached),
            "a live process judged dead: {seen:?}"
        );
        match mine.recv() {
            Err(Error::Closed) => {}
            other => panic!("after the forked producer closed: {other:?}"),
        }
    } else {
        for seq in 0..MESSAGES {
            mine.send(seq).unwrap();
        }
        std::thread::sleep(LINGER / 4);
        let seen = statuses(kind, name);
        assert!(
            seen.iter().all(|s| *s == PeerStatus::Attached),
            "a live process judged dead: {seen:?}"
        );
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child failed: status {status:#x}"
    );
    println!("forker ok");
}

fn fork_case(kind: &str, parent_role: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let name = ShmName::new("fork");
    let (child, lines) = spawn_piped(
        "child_entry",
        &format!("forker:{kind}:{parent_role}"),
        name.as_str(),
    );
    let mut child = KillOnDrop(child);
    let status = wait_bounded(&mut child.0, RUN_LIMIT);
    assert!(
        status.success(),
        "{kind} {parent_role} forker failed: {status}"
    );
    expect_line(&lines, "forker ok", Duration::from_secs(1));
}

#[test]
fn spsc_forked_child_producer_is_alive() {
    fork_case("spsc", "consumer");
}

#[test]
fn spsc_forked_child_consumer_is_alive() {
    fork_case("spsc", "producer");
}

#[test]
fn mpmc_forked_child_producer_is_alive() {
    fork_case("mpmc", "consumer");
}

#[test]
fn mpmc_forked_child_consumer_is_alive() {
    fork_case("mpmc", "producer");
}

/// Whether this machine lets us make a PID namespace (root, or user namespaces).
fn pid_namespaces_allowed() -> bool {
    let allowed = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("SKIPPED: `unshare --pid --fork --mount-proc` is not permitted here");
    }
    allowed
}

/// Runs this test binary's `child_entry` with `role` in a new PID namespace (its own
/// /proc), as a container sharing /dev/shm would. `sh` is the namespace's init, so the
/// child is an ordinary process that can die of SIGKILL.
fn in_pid_namespace(role: &str, ring: &str) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let mut command = Command::new("unshare");
    command
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
        ])
        .arg("\"$0\" \"$@\"; exit $?")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"]);
    let (child, lines) = common::piped(command, role, ring);
    (KillOnDrop(child), lines)
}

/// A producer in another PID namespace sends, lingers alive, then closes or dies.
fn producer_in_namespace(kind: &str, finish: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !pid_namespaces_allowed() {
        return;
    }
    let name = ShmName::new("pidns");
    create(kind, name.as_str());
    let mut rx = End::attach(kind, "consumer", name.as_str());
    let (mut child, lines) =
        in_pid_namespace(&format!("ns-producer:{kind}:{finish}"), name.as_str());
    for seq in 0..MESSAGES {
        assert_eq!(rx.recv().unwrap(), seq, "{kind}: message {seq}");
    }
    expect_line(&lines, "sent", CALL_TIMEOUT);
    let started = Instant::now();
    let end = rx.recv();
    let status = wait_bounded(&mut child.0, RUN_LIMIT);
    match (finish, end) {
        ("close", Err(Error::Closed)) => {
            assert!(status.success(), "{kind}: the producer failed: {status}");
            // It closed after lingering: the consumer waited for it all along.
            assert!(started.elapsed() >= LINGER / 2, "{kind}: Closed too early");
        }
        ("die", Err(Error::PeerDead { .. })) => {
            // It lingered LINGER after saying "sent", then killed itself.
            eprintln!(
                "{kind}: death in another PID namespace seen {:?} after \"sent\" \
                 (the producer lived {LINGER:?} of that)",
                started.elapsed()
            );
        }
        (_, other) => panic!("{kind}: producer in another PID namespace, {finish}: got {other:?}"),
    }
}

#[test]
fn spsc_producer_in_another_pid_namespace_is_alive_until_it_closes() {
    producer_in_namespace("spsc", "close");
}

#[test]
fn mpmc_producer_in_another_pid_namespace_is_alive_until_it_closes() {
    producer_in_namespace("mpmc", "close");
}

#[test]
fn spsc_producer_dying_in_another_pid_namespace_is_detected() {
    producer_in_namespace("spsc", "die");
}

#[test]
fn mpmc_producer_dying_in_another_pid_namespace_is_detected() {
    producer_in_namespace("mpmc", "die");
}

/// A consumer in another PID namespace attaches first; a producer here attaches after it
/// (and must not take it for dead) and sends.
fn consumer_in_namespace(kind: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !pid_namespaces_allowed() {
        return;
    }
    let name = ShmName::new("pidns-rx");
    create(kind, name.as_str());
    let (mut child, lines) = in_pid_namespace(&format!("ns-consumer:{kind}"), name.as_str());
    expect_line(&lines, "attached", CALL_TIMEOUT);
    let mut tx = End::attach(kind, "producer", name.as_str());
    let seen = statuses(kind, name.as_str());
    assert!(
        seen.iter().all(|s| *s == PeerStatus::Attached),
        "{kind}: a live consumer in another PID namespace judged dead: {seen:?}"
    );
    for seq in 0..MESSAGES {
        tx.send(seq)
            .unwrap_or_else(|e| panic!("{kind}: send {seq}: {e}"));
    }
    let status = wait_bounded(&mut child.0, RUN_LIMIT);
    assert!(status.success(), "{kind}: the consumer failed: {status}");
}

#[test]
fn spsc_consumer_in_another_pid_namespace_is_alive() {
    consumer_in_namespace("spsc");
}

#[test]
fn mpmc_consumer_in_another_pid_namespace_is_alive() {
    consumer_in_namespace("mpmc");
}
