//! What the bridge costs on one host: latency added by ring → NATS → ring against raw NATS
//! publish/subscribe at the same pace, and records per second with and without batching,
//! core and JetStream. Starts its own `nats-server` (Debian's; on PATH or in /usr/sbin) on
//! a free port with a temporary JetStream directory, and runs both bridge directions as
//! threads of this process, through the library calls the binary makes.
//!
//! ```sh
//! cargo run --release -p shmring-bridge --example bench -- 20000 200000
//! ```
//!
//! Arguments: records for each latency row (sent one every 200 µs), records for each
//! throughput row.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shmring::{Config, Error, WaitStrategy, spsc};
use shmring_bridge::{Common, ExportOptions, ImportOptions, Mode};

const PACE: Duration = Duration::from_micros(200);
const SIZE: usize = 64;

struct Server {
    child: Child,
    url: String,
    _dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn start_server() -> Result<Server, Box<dyn std::error::Error>> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("shmring-bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let binary = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin"])
        .map(|d| std::path::Path::new(d).join("nats-server"))
        .find(|p| p.exists())
        .ok_or("nats-server not found (apt-get install nats-server)")?;
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("nats-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _dir: dir,
    })
}

/// A ring for one row, unlinked when dropped.
struct Ring(spsc::Ring, String);

impl Ring {
    fn new(tag: &str) -> Result<Ring, Error> {
        let name = format!("/shmring-bridge-bench-{tag}-{}", std::process::id());
        let _ = spsc::unlink(&name);
        let config = Config::new()
            .capacity(1 << 22)
            .max_message(256)
            .wait_strategy(WaitStrategy::Futex);
        Ok(Ring(spsc::Ring::create(&name, &config)?, name))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = self.0.unlink();
    }
}

/// Nanoseconds since `origin`, in the first 8 bytes of a 64-byte record.
fn stamped(origin: Instant) -> [u8; SIZE] {
    let mut msg = [0x5a_u8; SIZE];
    msg[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
    msg
}

fn percentiles(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "–".into();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    format!("p50 {:>8.1} µs   p99 {:>8.1} µs", at(0.5), at(0.99))
}

/// One bridged row: source ring → exporter → NATS → importer → target ring, both bridge
/// directions as threads. `paced`: one record per `PACE` and latencies; else as fast as
/// possible and records per second. Returns (latencies in ns, records delivered, seconds).
fn bridged(
    server: &str,
    tag: &str,
    mode: Mode,
    batch: usize,
    records: u64,
    paced: bool,
) -> Result<(Vec<u64>, u64, f64), Box<dyn std::error::Error>> {
    let (source, target) = (
        Ring::new(&format!("{tag}-src"))?,
        Ring::new(&format!("{tag}-dst"))?,
    );
    let mut common = Common::new(server, &format!("bench.{tag}"), mode);
    common.stats_every = Duration::from_secs(3600);
    // Two hosts' worth of bridges in one process: distinct node ids, or the importer
    // would skip the exporter's batches as its own (loop prevention).
    let mut export = ExportOptions::new(common.clone(), &source.1);
    export.common.node = "bench-export".into();
    export.batch = batch;
    export.until_closed = true;
    let mut import = ImportOptions::new(common, &target.1);
    import.common.node = "bench-import".into();
    import.durable = format!("bench-{tag}");
    import.state = std::env::temp_dir().join(format!("shmring-bridge-bench-{tag}.state"));
    let _ = std::fs::remove_file(&import.state);
    let state = import.state.clone();
    // Detached: in core mode a lost record keeps the importer waiting for ever.
    std::thread::spawn(move || {
        if let Err(e) = shmring_bridge::import(&import) {
            eprintln!("importer: {e}");
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let exporter = std::thread::spawn(move || shmring_bridge::export(&export));
    let mut rx = target.0.consumer()?;
    let mut tx = source.0.producer()?;
    let origin = Instant::now();
    let producer = std::thread::spawn(move || -> Result<(), Error> {
        let mut next = Instant::now();
        for _ in 0..records {
            if paced {
                next += PACE;
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
            }
            tx.send_timeout(&stamped(origin), Duration::from_secs(30))?;
        }
        Ok(())
    });
    let mut latencies = Vec::new();
    let mut got = 0;
    let mut buf = [0u8; 256];
    let mut first = None;
    let mut last = Instant::now();
    // Until everything came, or nothing did for a second (core mode may lose some).
    while got < records && last.elapsed() < Duration::from_secs(1) {
        match rx.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(_) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                got += 1;
                let sent = u64::from_le_bytes(buf[..8].try_into()?);
                latencies.push((origin.elapsed().as_nanos() as u64).saturating_sub(sent));
            }
            Err(Error::Timeout | Error::Closed | Error::PeerDead { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    producer.join().map_err(|_| "producer panicked")??;
    drop(source);
    let _ = exporter;
    let _ = std::fs::remove_file(state);
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok((latencies, got, secs))
}

/// Raw NATS publish/subscribe at the same pace, 64-byte messages: the baseline.
fn raw_nats(server: &str, records: u64) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = async_nats::connect(server).await?;
        let mut sub = client.subscribe("bench.raw").await?;
        client.flush().await?;
        let origin = Instant::now();
        let publisher = client.clone();
        tokio::spawn(async move {
            let mut next = Instant::now();
            for _ in 0..records {
                next += PACE;
                while Instant::now() < next {
                    tokio::task::yield_now().await;
                }
                let msg = bytes::Bytes::copy_from_slice(&stamped(origin));
                let _ = publisher.publish("bench.raw", msg).await;
            }
        });
        let mut latencies = Vec::new();
        while (latencies.len() as u64) < records {
            let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await
            else {
                break;
            };
            let sent = u64::from_le_bytes(msg.payload[..8].try_into()?);
            latencies.push((origin.elapsed().as_nanos() as u64).saturating_sub(sent));
        }
        Ok::<_, Box<dyn std::error::Error>>(latencies)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (paced, burst) = (
        args.first().copied().unwrap_or(20_000),
        args.get(1).copied().unwrap_or(200_000),
    );
    let server = start_server()?;
    println!("latency, {paced} records of {SIZE} B, one every {PACE:?}, same host:");
    let raw = raw_nats(&server.url, paced)?;
    println!(
        "  {:<34} {}  ({} of {paced})",
        "raw NATS publish/subscribe",
        percentiles(raw.clone()),
        raw.len()
    );
    for (label, mode, batch) in [
        ("bridge core, batch 1", Mode::Core, 1),
        ("bridge jetstream, batch 1", Mode::JetStream, 1),
        ("bridge jetstream, batch 64 / 200 µs", Mode::JetStream, 64),
    ] {
        let tag = format!(
            "lat-{}",
            label.replace([' ', ',', '/'], "").replace('µ', "u")
        );
        let (lat, got, _) = bridged(&server.url, &tag, mode, batch, paced, true)?;
        println!("  {label:<34} {}  ({got} of {paced})", percentiles(lat));
    }
    println!("throughput, {burst} records of {SIZE} B as fast as the source takes them:");
    for (label, mode, batch) in [
        ("bridge core, batch 1", Mode::Core, 1),
        ("bridge core, batch 64", Mode::Core, 64),
        ("bridge jetstream, batch 1", Mode::JetStream, 1),
        ("bridge jetstream, batch 64", Mode::JetStream, 64),
    ] {
        let tag = format!("tput-{}", label.replace([' ', ','], ""));
        let (_, got, secs) = bridged(&server.url, &tag, mode, batch, burst, false)?;
        println!(
            "  {label:<34} {:>10.0} records/s  ({got} of {burst} delivered)",
            got as f64 / secs.max(1e-9)
        );
    }
    drop(server);
    // The importer threads of core rows that lost records still wait: leave.
    std::process::exit(0);
}
