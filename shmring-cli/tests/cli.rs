//! The built `shmring` binary, run as a user would: listings of live rings of every kind,
//! `write | cat` through shell pipes, `rm --dead`, damaged segments, exit statuses.
//! Every test uses its own ring names and removes them, and bounds its run time.
// A process-local name counter, not ring code: the sync facade rule does not apply.
#![allow(clippy::disallowed_types)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shmring::{Config, any, mpmc, spsc};

const SHMRING: &str = env!("CARGO_BIN_EXE_shmring");
const LIMIT: Duration = Duration::from_secs(60);

/// A unique ring name, removed when dropped.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        static N: AtomicU32 = AtomicU32::new(0);
        Name(format!(
            "/shmring-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }
    fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = any::unlink(&self.0);
    }
}

/// Runs `shmring args…`, bounded in time.
fn shmring(args: &[&str]) -> Output {
    run(Command::new(SHMRING).args(args))
}

/// Runs a bash pipeline (`$SHMRING` is the binary), bounded in time.
fn sh(script: &str) -> Output {
    run(Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("SHMRING", SHMRING))
}

fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("{command:?} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A 4 KiB SPSC ring whose ends sleep in the kernel when blocked.
fn create_small_futex_ring(name: &Name) {
    ok(shmring(&[
        "create",
        &name.0,
        "--capacity",
        "4K",
        "--wait",
        "futex",
    ]));
}

/// The `ls --json` entry of `name`.
fn listed(name: &Name) -> Value {
    let doc: Value = serde_json::from_str(&ok(shmring(&["ls", "--json"]))).unwrap();
    assert_eq!(doc["schema"], "shmring.ls/1");
    doc["rings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.0.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{} not listed", name.0))
}

#[test]
fn ls_and_stat_show_live_rings_of_every_kind() {
    let spsc_name = Name::new("ls-spsc");
    let mpmc_name = Name::new("ls-mpmc");
    let s = spsc::Ring::create(&spsc_name.0, &Config::new().capacity(1 << 16)).unwrap();
    let m = mpmc::Ring::create(&mpmc_name.0, &Config::new().slots(64).max_message(48)).unwrap();
    let mut tx = s.producer().unwrap();
    let _rx = s.consumer().unwrap();
    let mut mtx = m.producer().unwrap();
    let _mrx1 = m.consumer().unwrap();
    let _mrx2 = m.consumer().unwrap();
    for i in 0..3u8 {
        tx.try_send(&[i; 10]).unwrap();
        mtx.try_send(&[i; 20]).unwrap();
    }

    let entry = listed(&spsc_name);
    assert_eq!(entry["health"], "ok");
    assert_eq!(entry["ring"]["kind"], "spsc");
    assert_eq!(entry["ring"]["capacity_bytes"], 65536);
    assert_eq!(entry["ring"]["messages_in_flight"], 3);
    assert_eq!(entry["ring"]["bytes_sent"], 30);
    assert_eq!(entry["ring"]["producers"]["alive"], 1);
    assert_eq!(entry["ring"]["consumers"]["alive"], 1);
    assert_eq!(entry["mode"], "0600");

    let entry = listed(&mpmc_name);
    assert_eq!(entry["ring"]["kind"], "mpmc");
    assert_eq!(entry["ring"]["slots"], 64);
    assert_eq!(entry["ring"]["max_message"], 48);
    assert_eq!(entry["ring"]["messages_in_flight"], 3);
    assert_eq!(entry["ring"]["consumers"]["alive"], 2);

    // The table lists both, and `stat` agrees with `stats()`.
    let table = ok(shmring(&["ls"]));
    assert!(
        table.contains(&spsc_name.0) && table.contains(&mpmc_name.0),
        "{table}"
    );
    let stat: Value =
        serde_json::from_str(&ok(shmring(&["stat", &mpmc_name.0, "--json"]))).unwrap();
    assert_eq!(stat["schema"], "shmring.ring/1");
    assert_eq!(stat["ring"]["messages_sent"], m.stats().messages_sent);
    assert_eq!(stat["ring"]["peers"].as_array().unwrap().len(), 3);
    let text = ok(shmring(&["stat", &spsc_name.0]));
    assert!(text.contains("in flight 3"), "{text}");

    // --watch reports rates between refreshes.
    let watch = std::thread::spawn({
        let name = spsc_name.0.clone();
        move || {
            ok(shmring(&[
                "stat", &name, "--json", "--watch", "0.3", "--count", "2",
            ]))
        }
    });
    for i in 0..1000u32 {
        if tx.try_send(&i.to_le_bytes()).is_err() {
            break;
        }
    }
    let lines = watch.join().unwrap();
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert!(last["rates"]["sent_per_s"].as_f64().is_some(), "{lines}");
    assert!(last["messages_in_flight_high_water"].as_u64().unwrap() >= 3);
}

#[test]
fn write_and_cat_carry_100_000_lines_through_shell_pipes_byte_exact() {
    let name = Name::new("pipe");
    // A ring much smaller than the stream: both ends block on it.
    create_small_futex_ring(&name);
    let dir = std::env::temp_dir().join(format!("shmring-cli-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in");
    let output = dir.join("out");
    {
        let mut f = std::fs::File::create(&input).unwrap();
        for i in 0..100_000u32 {
            // Lines of varied length, an empty one now and then.
            writeln!(f, "{}", "x".repeat((i % 97) as usize) + &i.to_string()).unwrap();
        }
        writeln!(f).unwrap();
    }
    let script = format!(
        "\"$SHMRING\" cat {name} > {out} & reader=$!; \
         cat {inp} | \"$SHMRING\" write {name} && wait $reader",
        name = name.0,
        out = output.display(),
        inp = input.display()
    );
    ok(sh(&script));
    let sent = std::fs::read(&input).unwrap();
    let got = std::fs::read(&output).unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the output differs from the input");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_framing_round_trips_binary_messages() {
    for framing in ["nul", "len32"] {
        let name = Name::new(framing);
        ok(shmring(&[
            "create", &name.0, "--kind", "mpmc", "--slots", "16",
        ]));
        // printf writes three messages, one with a newline inside.
        let script = match framing {
            "nul" => format!(
                "printf 'a\\nb\\0\\0ccc\\0' | \"$SHMRING\" write --framing nul {n} && \
                 \"$SHMRING\" cat --framing nul {n} | od -An -c",
                n = name.0
            ),
            _ => format!(
                "printf '\\002\\000\\000\\000a\\n\\000\\000\\000\\000' | \"$SHMRING\" write \
                 --framing len32 {n} && \"$SHMRING\" cat --framing len32 {n} | od -An -c",
                n = name.0
            ),
        };
        let dump: String = ok(sh(&script)).split_whitespace().collect();
        match framing {
            "nul" => assert_eq!(dump, r"a\nb\0\0ccc\0"),
            _ => assert_eq!(dump, r"002\0\0\0a\n\0\0\0\0"),
        }
    }
}

#[test]
fn cat_ends_quietly_when_its_reader_goes_away() {
    let name = Name::new("head");
    ok(shmring(&["create", &name.0, "--capacity", "64K"]));
    let out = sh(&format!(
        "seq 1 2000 | \"$SHMRING\" write {n} && \"$SHMRING\" cat {n} | head -n 3; \
         echo \"cat status ${{PIPESTATUS[0]}}\"",
        n = name.0
    ));
    let text = ok(out.clone());
    assert_eq!(text, "1\n2\n3\ncat status 0\n");
    assert!(
        out.stderr.is_empty(),
        "cat complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_message_larger_than_the_ring_allows_is_an_error_in_words() {
    let name = Name::new("big");
    ok(shmring(&[
        "create",
        &name.0,
        "--kind",
        "mpmc",
        "--slots",
        "8",
        "--max-message",
        "8",
    ]));
    let out = sh(&format!(
        "printf 'short\\nthis line is too long\\n' | \"$SHMRING\" write {}",
        name.0
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("message 2 has 21 bytes") && err.contains("the 1 before it were sent"),
        "{err}"
    );
}

/// `rm --dead` acts on every ring and doorbell of the machine: the tests that run it take
/// turns, so one never removes what the other is about to check.
static RM_DEAD: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn rm_dead_removes_only_what_dead_processes_left() {
    let _turn = RM_DEAD.lock().unwrap_or_else(|e| e.into_inner());
    let live = Name::new("rm-live");
    let dead = Name::new("rm-dead");
    let clean = Name::new("rm-clean");
    for name in [&live, &dead, &clean] {
        ok(shmring(&["create", &name.0, "--capacity", "4K"]));
    }
    // A live holder: this process.
    let ring = spsc::Ring::open(&live.0).unwrap();
    let _producer = ring.producer().unwrap();
    // A dead one: a writer killed while it holds the producer.
    let mut writer = Command::new(SHMRING)
        .args(["write", &dead.0])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let attached = Instant::now();
    while listed(&dead)["ring"]["producers"]["alive"] != 1 {
        assert!(attached.elapsed() < LIMIT, "the writer never attached");
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(listed(&dead)["health"], "dead-peers");
    // A clean one: written and closed.
    ok(sh(&format!("echo hi | \"$SHMRING\" write {}", clean.0)));

    let dry = ok(shmring(&["rm", "--dead", "--dry-run"]));
    assert!(dry.contains(&format!("would remove {}", dead.0)), "{dry}");
    assert!(std::path::Path::new(&dead.path()).exists());

    let said = ok(shmring(&["rm", "--dead"]));
    assert!(
        said.contains(&format!("removed {}: 1 dead", dead.0)),
        "{said}"
    );
    assert!(!std::path::Path::new(&dead.path()).exists());
    assert!(
        std::path::Path::new(&live.path()).exists(),
        "a live ring was removed"
    );
    assert!(
        std::path::Path::new(&clean.path()).exists(),
        "a clean ring was removed"
    );

    // By name: a live ring is kept unless forced.
    let out = shmring(&["rm", &live.0]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("open in a live process"));
    ok(shmring(&["rm", &clean.0]));
    ok(shmring(&["rm", "--force", &live.0]));
    assert!(!std::path::Path::new(&live.path()).exists());
}

#[test]
fn a_damaged_segment_is_listed_as_such_not_a_crash() {
    let name = Name::new("damaged");
    ok(shmring(&["create", &name.0, "--capacity", "4K"]));
    // Keep the magic, scribble over the rest of the header.
    let mut bytes = std::fs::read(name.path()).unwrap();
    for b in &mut bytes[8..120] {
        *b = 0xA5;
    }
    std::fs::write(name.path(), &bytes).unwrap();
    let entry = listed(&name);
    assert!(
        matches!(entry["health"].as_str(), Some("corrupted" | "incompatible")),
        "{entry}"
    );
    assert!(entry["error"].as_str().is_some_and(|e| !e.is_empty()));
    let stat = ok(shmring(&["stat", &name.0]));
    assert!(stat.contains("health"), "{stat}");
}

#[test]
fn cat_reports_a_producer_that_died_with_status_3() {
    let name = Name::new("died");
    create_small_futex_ring(&name);
    let mut writer = Command::new(SHMRING)
        .args(["write", &name.0])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writer
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"one\ntwo\n")
        .unwrap();
    writer.stdin.as_mut().unwrap().flush().unwrap();
    let attached = Instant::now();
    while listed(&name)["ring"]["messages_sent"] != 2 {
        assert!(attached.elapsed() < LIMIT, "the writer never sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    let out = shmring(&["cat", &name.0]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    assert_eq!(out.status.code(), Some(3), "{:?}", out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("died"));
}

#[test]
fn top_shows_the_busiest_ring_first_and_ls_finds_ring_files_in_other_directories() {
    let quiet = Name::new("top-quiet");
    let busy = Name::new("top-busy");
    let q = spsc::Ring::create(&quiet.0, &Config::new().capacity(4096)).unwrap();
    let b = spsc::Ring::create(&busy.0, &Config::new().capacity(1 << 16)).unwrap();
    let (mut tx, mut rx) = (b.producer().unwrap(), b.consumer().unwrap());
    let top = std::thread::spawn(|| ok(shmring(&["top", "--interval", "0.5", "--count", "1"])));
    // Traffic on one ring while top samples.
    let start = Instant::now();
    let mut buf = [0u8; 16];
    while start.elapsed() < Duration::from_millis(700) {
        tx.try_send(b"tick").unwrap();
        rx.try_recv(&mut buf).unwrap();
    }
    let text = top.join().unwrap();
    let at = |name: &Name| text.find(&name.0).unwrap_or_else(|| panic!("{text}"));
    assert!(
        at(&busy) < at(&quiet),
        "the busy ring is not first:\n{text}"
    );
    assert!(text.starts_with("NAME"), "{text}");
    drop(q);

    // A ring file outside /dev/shm shows up with --dir, by its path.
    let dir = std::env::temp_dir().join(format!("shmring-cli-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ring");
    let _ring = mpmc::Ring::create_at(&path, &Config::new().slots(8)).unwrap();
    std::fs::write(dir.join("not-a-ring"), b"hello").unwrap();
    let doc: Value = serde_json::from_str(&ok(shmring(&[
        "ls",
        "--json",
        "--dir",
        dir.to_str().unwrap(),
    ])))
    .unwrap();
    let names: Vec<&str> = doc["rings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&path.to_str().unwrap()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with("not-a-ring")),
        "{names:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_runs_the_cross_process_benchmark() {
    let out = ok(shmring(&[
        "bench",
        "--quick",
        "--transports",
        "shmring-spsc-spin",
    ]));
    // Its child process is this same command (`shmring bench --child …`): a round-trip
    // row and a stream row mean both processes ran.
    assert!(out.contains("## Round trip"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("| shmring-spsc-spin | busy | 8 B |")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("| shmring-spsc-spin | copy | 64 B |")),
        "{out}"
    );
    let list = ok(shmring(&["bench", "--list"]));
    assert!(list.lines().any(|l| l == "pipe"), "{list}");
}

#[test]
fn stat_shows_what_a_telemetry_ring_recorded() {
    let name = Name::new("telemetry");
    ok(shmring(&[
        "create",
        &name.0,
        "--capacity",
        "64K",
        "--telemetry",
        "1",
    ]));
    ok(sh(&format!(
        "seq 1 500 | \"$SHMRING\" write {n} && \"$SHMRING\" cat {n} --count 500 > /dev/null",
        n = name.0
    )));
    let stat: Value = serde_json::from_str(&ok(shmring(&["stat", &name.0, "--json"]))).unwrap();
    let t = &stat["ring"]["telemetry"];
    assert_eq!(t["stamp_every"], 1);
    assert_eq!(t["timed"], stat["ring"]["messages_received"], "{t}");
    assert_eq!(t["timed"], 500);
    let buckets: u64 = t["latency_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 500);
    assert!(t["latency_p99_ns"].as_u64().unwrap() >= t["latency_p50_ns"].as_u64().unwrap());
    // Payload bytes, stamps not counted: "1".."500" and their newlines are not sent.
    let digits: u64 = (1..=500u64).map(|i| i.to_string().len() as u64).sum();
    assert_eq!(stat["ring"]["bytes_sent"], digits);
    let text = ok(shmring(&["stat", &name.0]));
    assert!(
        text.contains("latency (commit to receive, 1 in 1 stamped, 500 timed)"),
        "{text}"
    );
}

#[test]
fn tail_follows_a_broadcast_ring_without_taking_from_other_readers() {
    let name = Name::new("tail");
    let n = name.0.as_str();
    ok(shmring(&[
        "create",
        n,
        "--kind",
        "broadcast",
        "--capacity",
        "64K",
        "--max-readers",
        "4",
        "--overflow",
        "lossless",
    ]));
    ok(sh(&format!("seq 1 20 | \"$SHMRING\" write {n}")));
    // The last three still in the ring; the stream has ended, so tail ends with status 0.
    assert_eq!(ok(shmring(&["tail", n, "-n", "3"])), "18\n19\n20\n");
    // Everything retained, again: tail takes nothing from other readers.
    let all = ok(shmring(&["tail", n]));
    assert_eq!(all.lines().count(), 20, "{all}");
    // A durable reader stops after 5 and resumes after them next time.
    assert_eq!(
        ok(shmring(&["tail", n, "--as", "audit", "--count", "5"])),
        "1\n2\n3\n4\n5\n"
    );
    assert_eq!(
        ok(shmring(&["tail", n, "--as", "audit", "--count", "2"])),
        "6\n7\n"
    );
    let stat: Value = serde_json::from_str(&ok(shmring(&["stat", n, "--json"]))).unwrap();
    let readers = &stat["ring"]["readers"];
    let audit = readers
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "audit")
        .unwrap_or_else(|| panic!("no audit reader in {readers}"));
    assert_eq!(
        (audit["delivered"].as_u64(), audit["lag_messages"].as_u64()),
        (Some(7), Some(13))
    );
    assert_eq!(stat["ring"]["policy"], "lossless");
    // tail is for broadcast rings; cat takes messages from the others.
    let spsc_name = Name::new("tail-spsc");
    ok(shmring(&["create", &spsc_name.0]));
    let refused = shmring(&["tail", &spsc_name.0]);
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("tail follows broadcast rings"), "{text}");
}

#[test]
fn create_with_lanes_and_stat_shows_each_lane() {
    let name = Name::new("lanes");
    ok(shmring(&[
        "create", &name.0, "--kind", "mpmc", "--lanes", "4", "--slots", "16",
    ]));
    let ring = mpmc::Ring::open(&name.0).unwrap();
    assert_eq!(ring.lanes(), 4);
    let mut tx = ring.producer().unwrap();
    tx.try_send_priority(b"high", 3).unwrap();
    tx.try_send_priority(b"low", 0).unwrap();
    tx.try_send_priority(b"low", 0).unwrap();
    let doc: Value = serde_json::from_str(&ok(shmring(&["stat", &name.0, "--json"]))).unwrap();
    let lanes = doc["ring"]["lanes"]
        .as_array()
        .expect("lanes in stat --json");
    let in_flight: Vec<u64> = lanes
        .iter()
        .map(|l| l["in_flight"].as_u64().unwrap())
        .collect();
    assert_eq!(in_flight, [2, 0, 0, 1]);
    let text = ok(shmring(&["stat", &name.0]));
    assert!(text.contains("16 slots in each of 4 lanes"), "{text}");
    assert!(text.contains("PRIORITY"), "{text}");
    // Too many lanes: a clear error, nothing created.
    let refused = shmring(&[
        "create",
        &format!("{}-x", name.0),
        "--kind",
        "mpmc",
        "--lanes",
        "33",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("lanes 33"));
}

#[test]
fn rm_dead_removes_doorbells_nobody_holds() {
    let _turn = RM_DEAD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = format!("/dev/shm/shmring-bells-clitest-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    let dead = format!("{dir}/c0");
    // Bound, then closed: the socket file stays with nobody behind it (a process killed
    // while armed leaves the same).
    drop(std::os::unix::net::UnixDatagram::bind(&dead).unwrap());
    let live_path = format!("{dir}/c1");
    let live = std::os::unix::net::UnixDatagram::bind(&live_path).unwrap();
    let dry = ok(shmring(&["rm", "--dead", "--dry-run"]));
    assert!(
        dry.contains("would remove") && dry.contains("dead doorbell"),
        "{dry}"
    );
    assert!(std::path::Path::new(&dead).exists());
    let out = ok(shmring(&["rm", "--dead"]));
    assert!(out.contains("dead doorbell"), "{out}");
    assert!(
        !std::path::Path::new(&dead).exists(),
        "the dead doorbell stayed"
    );
    assert!(
        std::path::Path::new(&live_path).exists(),
        "a live doorbell was removed"
    );
    drop(live);
    std::fs::remove_dir_all(&dir).unwrap();
}
