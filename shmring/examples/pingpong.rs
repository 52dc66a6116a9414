//! Two-process demo: round-trip latency and one-way throughput through shmring.
//!
//! ```text
//! cargo run --release -p shmring --example pingpong [-- ROUND_TRIPS MESSAGES]
//! ```
//!
//! The process creates two rings (ping and pong), starts itself again as the echo side,
//! pins both processes to different CPUs when it can, and prints what it measured. The
//! cross-process benchmark against pipes, sockets and message queues is `benches/`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmring::{Config, Error, WaitStrategy, spsc::Ring};

const TIMEOUT: Duration = Duration::from_secs(30);
const SIZES: [usize; 3] = [8, 64, 1024];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--echo") {
        return echo(&args[2], &args[3], args[4].parse()?);
    }
    let round_trips: u64 = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let messages: u64 = args.get(2).map_or(Ok(2_000_000), |s| s.parse())?;

    let tag = std::process::id();
    let (ping_name, pong_name) = (
        format!("/pingpong-{tag}-ping"),
        format!("/pingpong-{tag}-pong"),
    );
    let config = Config::new()
        .capacity(1 << 20)
        .wait_strategy(WaitStrategy::Spin);
    let ping = Ring::create(&ping_name, &config)?;
    let pong = Ring::create(&pong_name, &config)?;
    // Names are only needed until the child has opened them; unlink on every path out.
    let _cleanup = Unlink(vec![ping_name.clone(), pong_name.clone()]);
    let mut tx = ping.producer()?;
    let mut rx = pong.consumer()?;

    // Spawn before pinning: a child inherits its parent's CPU mask.
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--echo", &ping_name, &pong_name, &round_trips.to_string()])
        .stdin(Stdio::null())
        .spawn()?;
    let cpus = pin_to_cpu(0);

    println!("shmring two-process demo: SPSC ring, 1 MiB, busy-spin waits, {cpus}");
    println!();
    println!("| message | round trips | p50 RTT | p99 RTT | p99.9 RTT | max RTT |");
    println!("|--------:|------------:|--------:|--------:|----------:|--------:|");
    let mut buf = vec![0u8; 1 << 16];
    for size in SIZES {
        let msg = vec![0xA5u8; size];
        let mut hist = Histogram::<u64>::new(3)?;
        for i in 0..round_trips + round_trips / 10 {
            let started = Instant::now();
            tx.send_timeout(&msg, TIMEOUT)?;
            let n = rx.recv_timeout(&mut buf, TIMEOUT)?;
            let elapsed = started.elapsed().as_nanos() as u64;
            assert_eq!(n, size, "echo returned another length");
            // The first tenth warms caches and branch predictors.
            if i >= round_trips / 10 {
                hist.record(elapsed)?;
            }
        }
        println!(
            "| {size:>5} B | {round_trips:>11} | {:>5} ns | {:>5} ns | {:>7} ns | {:>5} ns |",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max()
        );
    }

    println!();
    println!("| message | messages | M msgs/s | MB/s |");
    println!("|--------:|---------:|---------:|-----:|");
    for size in [8usize, 64, 1024, 16384] {
        let count = if size >= 16384 {
            messages / 20
        } else {
            messages
        };
        let msg = vec![0x5Au8; size];
        // Tell the echo side how many to count: one message holding the count.
        tx.send_timeout(&count.to_le_bytes(), TIMEOUT)?;
        let started = Instant::now();
        for _ in 0..count {
            tx.send_timeout(&msg, TIMEOUT)?;
        }
        // The echo side answers once it has received (and summed) every message.
        let n = rx.recv_timeout(&mut buf, TIMEOUT)?;
        let elapsed = started.elapsed().as_secs_f64();
        let bytes = u64::from_le_bytes(buf[..n].try_into()?);
        assert_eq!(bytes, count * size as u64, "echo side counted other bytes");
        println!(
            "| {size:>5} B | {count:>8} | {:>8.2} | {:>6.0} |",
            count as f64 / elapsed / 1e6,
            bytes as f64 / elapsed / 1e6
        );
    }

    drop(tx); // end of stream: the echo side exits
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("echo process failed: {status}").into());
    }
    Ok(())
}

/// The second process: echoes round trips, then counts streamed messages.
fn echo(
    ping_name: &str,
    pong_name: &str,
    round_trips: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    pin_to_cpu(1);
    let mut rx = Ring::open(ping_name)?.consumer()?;
    let mut tx = Ring::open(pong_name)?.producer()?;
    let mut buf = vec![0u8; 1 << 16];
    // Round trips (with the parent's warm-up tenth), for each size: echo every message.
    let expected = (round_trips + round_trips / 10) * SIZES.len() as u64;
    for _ in 0..expected {
        let n = rx.recv_timeout(&mut buf, TIMEOUT)?;
        tx.send_timeout(&buf[..n], TIMEOUT)?;
    }
    // Streams: a count, then that many messages; answer with the bytes received.
    loop {
        let n = match rx.recv_timeout(&mut buf, TIMEOUT) {
            Ok(n) => n,
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let count = u64::from_le_bytes(buf[..n].try_into()?);
        let mut bytes = 0u64;
        for _ in 0..count {
            bytes += rx.recv_timeout(&mut buf, TIMEOUT)? as u64;
        }
        tx.send_timeout(&bytes.to_le_bytes(), TIMEOUT)?;
    }
}

/// Pins this process to `cpu` if the machine has more than one; says what it did.
fn pin_to_cpu(cpu: usize) -> String {
    // Online CPUs, not `available_parallelism`, which reflects an inherited affinity mask.
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    if cpus < 2 {
        return "1 CPU, not pinned".into();
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < number of CPUs <= CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 means this process.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        format!("{cpus} CPUs, processes pinned to CPU 0 and 1")
    } else {
        format!("{cpus} CPUs, pinning failed")
    }
}

/// Unlinks ring names when dropped.
struct Unlink(Vec<String>);

impl Drop for Unlink {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = shmring::spsc::unlink(name);
        }
    }
}
