//! Fan-out: one producer process, N reader processes, every reader gets every message.
//! A broadcast ring (the producer writes each message once) against N SPSC rings (the
//! producer writes each message N times), in the same run, futex waits.
//!
//! ```sh
//! cargo run --release -p shmring-benches --example fanout -- 64 200000 5
//! ```
//!
//! Arguments: message size in bytes, messages per run, runs per cell. Prints, per reader
//! count and way, the median and worst time for every reader to have every message, and
//! the messages per second the producer moved (each to all N readers).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmring::broadcast::{self, JoinAt};
use shmring::{Config, Error, OpenOptions, WaitStrategy, spsc};

fn config() -> Config {
    Config::new()
        .capacity(1 << 20)
        .wait_strategy(WaitStrategy::Futex)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("reader") {
        return reader(&args[1], &args[2]);
    }
    let [size, messages, runs] = args.as_slice() else {
        return Err("usage: fanout SIZE MESSAGES RUNS".into());
    };
    let (size, messages, runs): (usize, u64, usize) =
        (size.parse()?, messages.parse()?, runs.parse()?);
    println!("{messages} messages of {size} B; median (worst) of {runs} runs");
    println!(
        "{:>7}  {:<22} {:>16} {:>14}",
        "readers", "way", "all delivered", "msgs/s"
    );
    for readers in [1usize, 2, 4] {
        for way in ["broadcast", "spsc-copies"] {
            let mut times: Vec<Duration> = (0..runs)
                .map(|run| one_run(way, readers, messages, size, run))
                .collect::<Result<_, _>>()?;
            times.sort();
            let median = times[times.len() / 2];
            println!(
                "{readers:>7}  {way:<22} {:>9.1} ms ({:>5.1}) {:>14.0}",
                median.as_secs_f64() * 1e3,
                times[times.len() - 1].as_secs_f64() * 1e3,
                messages as f64 / median.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// One run: rings created, readers started and attached, then the clock runs from the
/// first send until every reader has counted every message.
fn one_run(
    way: &str,
    readers: usize,
    messages: u64,
    size: usize,
    run: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let base = format!("/shmring-fanout-{}-{run}", std::process::id());
    let names: Vec<String> = match way {
        "broadcast" => vec![base.clone()],
        _ => (0..readers).map(|i| format!("{base}-{i}")).collect(),
    };
    let _cleanup = Unlink(names.clone());
    let msg = vec![0x5au8; size];
    let mut children: Vec<(Child, BufReader<std::process::ChildStdout>)> = Vec::new();
    let started;
    match way {
        "broadcast" => {
            let ring = broadcast::Ring::create(&names[0], &config().max_readers(readers as u32))?;
            let mut tx = ring.producer()?;
            for _ in 0..readers {
                children.push(spawn("broadcast", &names[0])?);
            }
            started = Instant::now();
            for _ in 0..messages {
                tx.send(&msg)?;
            }
        }
        _ => {
            let rings: Vec<spsc::Ring> = names
                .iter()
                .map(|n| spsc::Ring::create(n, &config()))
                .collect::<Result<_, _>>()?;
            let mut txs: Vec<spsc::Producer> = rings
                .iter()
                .map(|r| r.producer())
                .collect::<Result<_, _>>()?;
            for name in &names {
                children.push(spawn("spsc", name)?);
            }
            started = Instant::now();
            for _ in 0..messages {
                for tx in &mut txs {
                    tx.send(&msg)?;
                }
            }
        }
    }
    // The producers close as this scope ends (above): the readers see `Closed`.
    for (mut child, mut out) in children {
        let mut line = String::new();
        out.read_line(&mut line)?;
        let got: u64 = line.trim().strip_prefix("got ").unwrap_or("0").parse()?;
        if got != messages || !child.wait()?.success() {
            return Err(format!("a reader got {got} of {messages}").into());
        }
    }
    Ok(started.elapsed())
}

/// Starts a reader process and waits until it is attached.
fn spawn(
    way: &str,
    name: &str,
) -> Result<(Child, BufReader<std::process::ChildStdout>), Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["reader", way, name])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "attached" {
        return Err(format!("reader said {line:?}").into());
    }
    Ok((child, out))
}

/// A reader process: counts messages until the stream closes.
fn reader(way: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let options = OpenOptions::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut count = |recv: &mut dyn FnMut(&mut [u8]) -> shmring::Result<usize>| loop {
        match recv(&mut buf) {
            Ok(_) => got += 1,
            Err(Error::Closed) => return Ok::<_, Error>(got),
            Err(e) => return Err(e),
        }
    };
    let got = match way {
        "broadcast" => {
            let ring = broadcast::Ring::open_with(name, &options)?;
            let mut rx = ring.reader(JoinAt::Oldest)?;
            println!("attached");
            count(&mut |b| rx.recv(b))?
        }
        _ => {
            let ring = spsc::Ring::open_with(name, &options)?;
            let mut rx = ring.consumer()?;
            println!("attached");
            count(&mut |b| rx.recv(b))?
        }
    };
    println!("got {got}");
    Ok(())
}

/// Unlinks the run's names on every way out.
struct Unlink(Vec<String>);

impl Drop for Unlink {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = shmring::any::unlink(name);
        }
    }
}
