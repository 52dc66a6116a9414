//! The bridge against a real `nats-server` (each test starts its own on 127.0.0.1 with a
//! free port and a temporary JetStream directory, and stops it): ring → NATS → ring
//! through two bridge processes, with the server, the exporter and the importer killed
//! mid-run, core mode's gap reports, and a stalled importer.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmring::{Config, Error, WaitStrategy, spsc};

/// A `nats-server` with JetStream, on a port of its own.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn nats_binary() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let candidate = PathBuf::from(dir).join("nats-server");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("nats-server not found: install it (apt-get install nats-server); .ci/run does");
}

impl NatsServer {
    fn start() -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = NatsServer {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store, and waits until it accepts connections.
    fn restart(&mut self) {
        let child = Command::new(nats_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A ring name unique to this test run, unlinked when dropped.
struct RingName(String);

impl RingName {
    fn new(tag: &str) -> RingName {
        static NEXT: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut next = NEXT.lock().unwrap();
            *next += 1;
            *next
        };
        RingName(format!("/shmring-bridge-{tag}-{}-{n}", std::process::id()))
    }
}

impl Drop for RingName {
    fn drop(&mut self) {
        let _ = shmring::any::unlink(&self.0);
    }
}

/// A bridge process whose JSON lines are collected; killed when dropped.
struct Bridge {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Bridge {
    fn start(args: &[&str]) -> Bridge {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmring-bridge"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start shmring-bridge");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Bridge {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Lines holding `needle`.
    fn lines_with(&self, needle: &str) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The last statistics line's counter `key`.
    fn last_stat(&self, key: &str) -> u64 {
        self.lines_with("\"bridge\"")
            .last()
            .and_then(|v| v[key].as_u64())
            .unwrap_or(0)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Record `seq`: its sequence number, then bytes derived from it; 8 to 200 bytes.
fn record(seq: u64, out: &mut Vec<u8>) {
    let len = 8 + (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize * 3 / 2;
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend((8..len).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
}

fn ring(name: &RingName) -> spsc::Ring {
    spsc::Ring::create(
        &name.0,
        &Config::new()
            .capacity(1 << 20)
            .max_message(256)
            .wait_strategy(WaitStrategy::Futex),
    )
    .unwrap()
}

/// Sends records `0..total` into `ring` from a thread.
fn produce(ring: &spsc::Ring, total: u64) -> JoinHandle<()> {
    let mut tx = ring.producer().unwrap();
    std::thread::spawn(move || {
        let mut msg = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        for seq in 0..total {
            record(seq, &mut msg);
            // A killed exporter (the source's consumer) ends the stream until the next one
            // attaches: the message was not sent; send it again.
            loop {
                match tx.send_timeout(&msg, Duration::from_secs(60)) {
                    Ok(()) => break,
                    Err(Error::Closed | Error::PeerDead { .. }) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("send {seq}: {e}"),
                }
            }
        }
    })
}

/// Reads records from `ring` until `total` arrived, checking each is the next one, byte
/// for byte; `during(count)` runs between receives (to kill things mid-run). Bounded.
fn consume_in_order(ring: &spsc::Ring, total: u64, mut during: impl FnMut(u64)) {
    let mut rx = ring.consumer().unwrap();
    let mut buf = vec![0u8; 256];
    let mut expected = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut next = 0u64;
    while next < total {
        assert!(
            Instant::now() < deadline,
            "only {next} of {total} records arrived"
        );
        match rx.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(n) => {
                record(next, &mut expected);
                let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                assert_eq!(
                    seq, next,
                    "record {next}: got record {seq} (lost or duplicated)"
                );
                assert_eq!(&buf[..n], expected.as_slice(), "record {next}'s bytes");
                next += 1;
                during(next);
            }
            Err(Error::Timeout) => during(next),
            // The importer (the target's producer) was stopped; a new one takes over.
            Err(Error::Closed | Error::PeerDead { .. }) => {
                std::thread::sleep(Duration::from_millis(10));
                during(next);
            }
            Err(e) => panic!("after {next}: {e}"),
        }
    }
    // Nothing after the last: no duplicate came late.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)),
        "a record beyond {total}"
    );
}

struct Pair {
    server: NatsServer,
    source: RingName,
    target: RingName,
    state: tempfile::TempDir,
    subject: String,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        Pair {
            server: NatsServer::start(),
            source: RingName::new(&format!("{tag}-src")),
            target: RingName::new(&format!("{tag}-dst")),
            state: tempfile::tempdir().unwrap(),
            subject: format!("shmring.test.{tag}"),
        }
    }

    fn exporter(&self, mode: &str, extra: &[&str]) -> Bridge {
        let url = self.server.url();
        let mut args = vec![
            "export",
            "--server",
            &url,
            "--subject",
            &self.subject,
            "--mode",
            mode,
            "--ring",
            &self.source.0,
            "--node",
            "exporter",
            "--stats-every",
            "0.2",
        ];
        args.extend_from_slice(extra);
        Bridge::start(&args)
    }

    fn importer(&self, mode: &str, extra: &[&str]) -> Bridge {
        let url = self.server.url();
        let state = self.state.path().join("importer.state");
        let mut args = vec![
            "import",
            "--server",
            &url,
            "--subject",
            &self.subject,
            "--mode",
            mode,
            "--ring",
            &self.target.0,
            "--node",
            "importer",
            "--state",
            state.to_str().unwrap(),
            "--stats-every",
            "0.2",
        ];
        args.extend_from_slice(extra);
        Bridge::start(&args)
    }
}

#[test]
fn a_million_records_cross_in_order() {
    const TOTAL: u64 = 1_000_000;
    let pair = Pair::new("million");
    let (source, target) = (ring(&pair.source), ring(&pair.target));
    let _importer = pair.importer("jetstream", &[]);
    let exporter = pair.exporter("jetstream", &[]);
    let started = Instant::now();
    let producer = produce(&source, TOTAL);
    consume_in_order(&target, TOTAL, |_| {});
    let took = started.elapsed();
    producer.join().unwrap();
    eprintln!(
        "{TOTAL} records ring -> JetStream -> ring in {:.2} s ({:.0} records/s)",
        took.as_secs_f64(),
        TOTAL as f64 / took.as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(exporter.last_stat("retried"), 0);
}

#[test]
fn a_killed_exporter_or_importer_loses_and_repeats_nothing() {
    const TOTAL: u64 = 300_000;
    let pair = Pair::new("killbridge");
    let (source, target) = (ring(&pair.source), ring(&pair.target));
    let mut importer = pair.importer("jetstream", &[]);
    let mut exporter = pair.exporter("jetstream", &[]);
    let producer = produce(&source, TOTAL);
    let (mut exporter_killed, mut importer_killed) = (false, false);
    consume_in_order(&target, TOTAL, |got| {
        if got >= TOTAL / 5 && !exporter_killed {
            exporter.kill9();
            exporter = pair.exporter("jetstream", &[]);
            exporter_killed = true;
            eprintln!("exporter killed with kill -9 after {got} records arrived, restarted");
        }
        if got >= TOTAL / 2 && !importer_killed {
            importer.kill9();
            importer = pair.importer("jetstream", &[]);
            importer_killed = true;
            eprintln!("importer killed with kill -9 after {got} records arrived, restarted");
        }
    });
    producer.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "after the restarts: the new importer dropped {} records it had already delivered",
        importer.last_stat("deduplicated")
    );
}

#[test]
fn a_killed_server_loses_and_repeats_nothing() {
    const TOTAL: u64 = 300_000;
    let mut pair = Pair::new("killserver");
    let (source, target) = (ring(&pair.source), ring(&pair.target));
    let importer = pair.importer("jetstream", &[]);
    let exporter = pair.exporter("jetstream", &["--ack-timeout-ms", "1000"]);
    let producer = produce(&source, TOTAL);
    let mut killed = false;
    let server = &mut pair.server;
    consume_in_order(&target, TOTAL, |got| {
        if got >= TOTAL / 3 && !killed {
            killed = true;
            server.kill9();
            eprintln!("nats-server killed with kill -9 after {got} records arrived");
            std::thread::sleep(Duration::from_secs(2));
            server.restart();
            eprintln!("nats-server restarted");
        }
    });
    producer.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "exporter published {} records again; importer dropped {} it had",
        exporter.last_stat("retried"),
        importer.last_stat("deduplicated")
    );
}

#[test]
fn core_mode_names_exactly_what_a_server_restart_lost() {
    // Sent in three parts: before the restart, while the importer is not subscribed (lost
    // in core mode), and after it is back (which shows the importer the gap).
    const PARTS: [u64; 3] = [60_000, 20_000, 60_000];
    const TOTAL: u64 = 140_000;
    let mut pair = Pair::new("coregap");
    let (source, target) = (ring(&pair.source), ring(&pair.target));
    let importer = pair.importer("core", &[]);
    // Give the importer time to subscribe before records flow (core NATS keeps nothing
    // for a subscriber that is not there yet).
    std::thread::sleep(Duration::from_millis(500));
    let exporter = pair.exporter("core", &[]);
    let (go, next_part) = std::sync::mpsc::channel::<()>();
    let mut tx = source.producer().unwrap();
    let producer = std::thread::spawn(move || {
        let mut msg = Vec::new();
        let mut seq = 0;
        for (i, part) in PARTS.into_iter().enumerate() {
            if i > 0 {
                next_part.recv().unwrap();
            }
            for _ in 0..part {
                record(seq, &mut msg);
                tx.send_timeout(&msg, Duration::from_secs(60)).unwrap();
                seq += 1;
            }
        }
    });
    let mut rx = target.consumer().unwrap();
    let mut buf = vec![0u8; 256];
    let mut expected = Vec::new();
    let mut got: Vec<u64> = Vec::new();
    let mut receive_until = |got: &mut Vec<u64>, last: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.last() != Some(&last) {
            assert!(
                Instant::now() < deadline,
                "record {last} never came ({} did); importer said {:?}; exporter said {:?}",
                got.len(),
                importer.lines.lock().unwrap().last(),
                exporter.lines.lock().unwrap().last()
            );
            match rx.recv_timeout(&mut buf, Duration::from_millis(100)) {
                Ok(n) => {
                    let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    record(seq, &mut expected);
                    assert_eq!(&buf[..n], expected.as_slice(), "record {seq}'s bytes");
                    assert!(
                        got.last().is_none_or(|&l| seq > l),
                        "record {seq} out of order"
                    );
                    got.push(seq);
                }
                Err(Error::Timeout) => {}
                Err(e) => panic!("after {} records: {e}", got.len()),
            }
        }
    };
    receive_until(&mut got, PARTS[0] - 1);
    // The importer is held still (SIGSTOP) across a kill -9 and restart of the server;
    // the exporter is back and publishing part two before the importer subscribes again.
    let importer_pid = importer.child.id() as i32;
    // SAFETY: plain libc calls on a child of ours.
    unsafe { libc::kill(importer_pid, libc::SIGSTOP) };
    pair.server.kill9();
    std::thread::sleep(Duration::from_secs(2));
    pair.server.restart();
    std::thread::sleep(Duration::from_secs(1));
    go.send(()).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: as above.
    unsafe { libc::kill(importer_pid, libc::SIGCONT) };
    std::thread::sleep(Duration::from_secs(2));
    go.send(()).unwrap();
    receive_until(&mut got, TOTAL - 1);
    producer.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The gaps the importer reported, in the exporter session's numbering (record k is
    // number k + 1): together with what arrived, every record exactly once.
    let gaps: Vec<(u64, u64)> = importer
        .lines_with("\"gap\"")
        .iter()
        .map(|e| {
            let e = &e["event"];
            let first = e["first_missing"].as_u64().unwrap();
            (first - 1, e["last_missing"].as_u64().unwrap() - 1)
        })
        .collect();
    let mut covered = vec![0u8; TOTAL as usize];
    for &seq in &got {
        covered[seq as usize] += 1;
    }
    for &(first, last) in &gaps {
        for seq in first..=last {
            covered[seq as usize] += 1;
        }
    }
    let wrong: Vec<usize> = (0..TOTAL as usize)
        .filter(|&i| covered[i] != 1)
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "records not exactly once in arrived + gaps: {wrong:?}"
    );
    let missing: u64 = gaps.iter().map(|(a, b)| b - a + 1).sum();
    eprintln!(
        "core mode, server killed and restarted: {} records arrived, {missing} missing in {} \
         reported gap(s) {gaps:?}",
        got.len(),
        gaps.len()
    );
    assert!(
        missing >= PARTS[1],
        "part two was published while nobody listened"
    );
    assert_eq!(importer.last_stat("missing"), missing);
}

/// Resident set size of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_stalled_importer_back_pressures_the_producer_in_bounded_memory() {
    let pair = Pair::new("stall");
    let (source, target) = (ring(&pair.source), ring(&pair.target));
    // A 4 MiB stream that keeps a batch until the importer has it, and no importer yet.
    let limits = ["--stream-max-bytes", "4194304", "--retention", "workqueue"];
    let mut args = limits.to_vec();
    args.extend(["--ack-timeout-ms", "1000"]);
    let exporter = pair.exporter("jetstream", &args);
    let mut tx = source.producer().unwrap();
    let mut msg = Vec::new();
    let mut sent = 0u64;
    let started = Instant::now();
    let mut blocked_since: Option<Instant> = None;
    let mut peak_rss = 0;
    // Until the producer has been held back for two seconds straight.
    while blocked_since.is_none_or(|t| t.elapsed() < Duration::from_secs(2)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the producer was never held back"
        );
        record(sent, &mut msg);
        match tx.try_send(&msg) {
            Ok(()) => {
                sent += 1;
                blocked_since = None;
            }
            Err(Error::WouldBlock) => {
                blocked_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(1));
                peak_rss = peak_rss.max(rss_kib(exporter.child.id()));
            }
            Err(e) => panic!(
                "send {sent}: {e}; exporter said {:?}",
                exporter.lines.lock().unwrap()
            ),
        }
    }
    let in_ring = source.stats().messages_in_flight;
    eprintln!(
        "stalled importer: producer held back after {sent} records ({in_ring} of them still \
         in the ring, the rest in the 4 MiB stream); exporter RSS at most {peak_rss} KiB"
    );
    assert!(in_ring > 0 && in_ring <= sent);
    assert!(peak_rss < 64 * 1024, "exporter RSS {peak_rss} KiB");
    // The importer comes: everything arrives, in order, once; the producer goes on.
    let _importer = pair.importer("jetstream", &limits);
    let total = sent + 1000;
    let producer = std::thread::spawn(move || {
        let mut msg = Vec::new();
        for seq in sent..total {
            record(seq, &mut msg);
            tx.send_timeout(&msg, Duration::from_secs(60)).unwrap();
        }
    });
    consume_in_order(&target, total, |_| {});
    producer.join().unwrap();
}

#[test]
fn an_importer_skips_what_its_own_node_exported() {
    const TOTAL: u64 = 5_000;
    let pair = Pair::new("loop");
    let (source, target) = (ring(&pair.source), ring(&pair.target));
    // Both directions of one host share the subject and the node id "exporter": its own
    // importer (into a ring of its own host) must not bring its exports back.
    let own_target = RingName::new("loop-own");
    let _own_ring = ring(&own_target);
    let (url, state) = (pair.server.url(), pair.state.path().join("own.state"));
    let own = Bridge::start(&[
        "import",
        "--server",
        &url,
        "--subject",
        &pair.subject,
        "--ring",
        &own_target.0,
        "--node",
        "exporter",
        "--durable",
        "own",
        "--state",
        state.to_str().unwrap(),
        "--stats-every",
        "0.2",
    ]);
    let _other = pair.importer("jetstream", &[]);
    let _exporter = pair.exporter("jetstream", &[]);
    let producer = produce(&source, TOTAL);
    consume_in_order(&target, TOTAL, |_| {});
    producer.join().unwrap();
    // The other host's importer delivered everything once (checked above); the own one
    // skipped every batch and delivered nothing (its ring would be the source itself).
    let deadline = Instant::now() + Duration::from_secs(10);
    while own.last_stat("own_skipped") == 0 {
        assert!(
            Instant::now() < deadline,
            "the own-node importer skipped nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(own.last_stat("delivered"), 0);
}
