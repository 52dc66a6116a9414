//! Helpers shared by the integration tests: unique names that are unlinked even when a test
//! fails, deterministic message contents, and child processes of the test binary itself.
#![allow(dead_code)]
// A process-local name counter, not ring code: the sync facade rule does not apply.
#![allow(clippy::disallowed_types)]

pub mod ends;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Environment variable naming the role a child test process plays.
pub const ROLE_VAR: &str = "SHMRING_TEST_ROLE";
/// Environment variable carrying the ring name to a child.
pub const RING_VAR: &str = "SHMRING_TEST_RING";

/// A unique shared-memory name, unlinked when dropped (even on panic).
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        ShmName(format!(
            "/shmring-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file behind the name (Linux: /dev/shm).
    pub fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmring::spsc::unlink(&self.0);
    }
}

/// Deterministic contents of message `seq` of `len` bytes: the sequence number first (when
/// it fits), then bytes from a generator seeded by `seq`. A receiver that knows which
/// sequence it expects can check every byte: lost, duplicated, reordered and torn messages
/// all show up as a mismatch.
pub fn message(seq: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    out.extend(seq.to_le_bytes().iter().take(len));
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push(state as u8);
    }
}

/// Length of message `seq` in 1..=max, spread over the whole range.
pub fn length(seq: u64, max: usize) -> usize {
    let mixed = seq.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(29);
    1 + (mixed % max as u64) as usize
}

/// Runs this test binary again, executing only test `entry` with `role` and `ring` in its
/// environment.
pub fn spawn_role(entry: &str, role: &str, ring: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .env(RING_VAR, ring)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn child test process")
}

/// Waits for `child` at most `limit`, killing it if it overruns.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child process overran {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The role this process was started for, if it is a child.
pub fn role() -> Option<(String, String)> {
    Some((std::env::var(ROLE_VAR).ok()?, std::env::var(RING_VAR).ok()?))
}

/// Rounds a kill test runs: `base`, times `SHMRING_SOAK_SCALE` when set (the soak script,
/// `reliability/soak.sh`, runs the same tests longer).
pub fn rounds(base: u64) -> u64 {
    let scale = std::env::var("SHMRING_SOAK_SCALE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    base * scale
}

/// Like [`spawn_role`], with the child's stdout delivered line by line on a channel (the
/// reader thread ends with the child).
pub fn spawn_piped(
    entry: &str,
    role: &str,
    ring: &str,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", entry, "--nocapture", "--test-threads=1"]);
    piped(command, role, ring)
}

/// Starts `command` with `role` and `ring` in its environment (for a child test process it
/// runs) and its stdout delivered line by line on a channel.
pub fn piped(
    mut command: Command,
    role: &str,
    ring: &str,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .env(ROLE_VAR, role)
        .env(RING_VAR, ring)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child process");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (at most `limit`) for a line from a child that contains `word` (the test
/// harness may print its own text before the child's first line); returns it.
pub fn expect_line(
    lines: &std::sync::mpsc::Receiver<String>,
    word: &str,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(word) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {word:?} from the child within {limit:?}: {e}"),
        }
    }
}

/// Runs `call` on a helper thread and returns its result, or `None` if it did not return
/// within `limit` (the thread is left behind: a hung call cannot be cancelled).
pub fn bounded<T: Send + 'static>(
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.recv_timeout(limit).ok()
}

/// Sends SIGKILL to `child` and reaps it.
pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process that is killed (SIGKILL) and reaped when this guard drops, so a failing
/// test never leaves a blocked child behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}
