//! Producers × consumers: one-way throughput of an MPMC ring with 1 × 1, 2 producers × 1
//! consumer and 1 × 2, beside an SPSC ring (1 × 1), each end its own process, in the same
//! run, for each wait strategy.
//!
//! ```sh
//! cargo run --release -p shmring-benches --example shapes -- 64 2000000 3
//! ```
//!
//! Arguments: message size in bytes, messages per run (split evenly between producers),
//! runs per cell. Prints, per strategy and shape, the median (worst) messages per second
//! from the moment every producer is told to start until every consumer has seen the end
//! of the stream, and checks that the consumers together received every message once.
//! Three processes on a 2-core machine are oversubscribed: one of them is always waiting
//! for a core, which the spinning strategies pay for most.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shmring::{Config, Error, OpenOptions, WaitStrategy, any};

/// Producers and consumers of one cell, and the ring kind.
#[derive(Clone, Copy)]
struct Shape {
    kind: &'static str,
    producers: usize,
    consumers: usize,
}

const SHAPES: [Shape; 4] = [
    Shape {
        kind: "spsc",
        producers: 1,
        consumers: 1,
    },
    Shape {
        kind: "mpmc",
        producers: 1,
        consumers: 1,
    },
    Shape {
        kind: "mpmc",
        producers: 2,
        consumers: 1,
    },
    Shape {
        kind: "mpmc",
        producers: 1,
        consumers: 2,
    },
];

fn strategy(name: &str) -> WaitStrategy {
    match name {
        "spin" => WaitStrategy::Spin,
        "spin-yield" => WaitStrategy::SpinYield,
        _ => WaitStrategy::Futex,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("producer") => return producer(&args[1], args[2].parse()?, args[3].parse()?),
        Some("consumer") => return consumer(&args[1], &args[2]),
        _ => {}
    }
    let [size, messages, runs] = args.as_slice() else {
        return Err("usage: shapes SIZE MESSAGES RUNS".into());
    };
    let (size, messages, runs): (usize, u64, usize) =
        (size.parse()?, messages.parse()?, runs.parse()?);
    println!("{messages} messages of {size} B per run; median (worst) of {runs} runs");
    println!(
        "{:<11} {:<5} {:>11} {:>14} {:>14}",
        "strategy", "kind", "prod × cons", "msgs/s", "worst"
    );
    for wait in ["spin", "spin-yield", "futex"] {
        for shape in SHAPES {
            let mut rates: Vec<f64> = (0..runs)
                .map(|run| one_run(shape, wait, messages, size, run))
                .collect::<Result<_, _>>()?;
            rates.sort_by(f64::total_cmp);
            println!(
                "{wait:<11} {:<5} {:>11} {:>12.2} M {:>12.2} M",
                shape.kind,
                format!("{} × {}", shape.producers, shape.consumers),
                rates[rates.len() / 2] / 1e6,
                rates[0] / 1e6
            );
        }
    }
    Ok(())
}

/// One run: the ring created, every end started and attached, then the clock runs from
/// "go" until every consumer has reported the end of the stream. Messages per second.
fn one_run(
    shape: Shape,
    wait: &str,
    messages: u64,
    size: usize,
    run: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let name = format!("/shmring-shapes-{}-{run}", std::process::id());
    let _cleanup = Unlink(name.clone());
    let config = Config::new()
        .max_message(size.max(8))
        .wait_strategy(strategy(wait));
    let config = match shape.kind {
        "spsc" => config.capacity(1 << 20),
        _ => config.slots(8192).max_peers(8),
    };
    let _ring = any::Ring::create(shape.kind.parse()?, &name, &config)?;
    let per_producer = messages / shape.producers as u64;
    let mut consumers: Vec<End> = (0..shape.consumers)
        .map(|_| End::spawn(&["consumer", &name, shape.kind]))
        .collect::<Result<_, _>>()?;
    let mut producers: Vec<End> = (0..shape.producers)
        .map(|_| {
            End::spawn(&[
                "producer",
                &name,
                &per_producer.to_string(),
                &size.to_string(),
            ])
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for p in &mut producers {
        p.say("go")?;
    }
    let mut received = 0u64;
    for c in &mut consumers {
        let line = c.hear()?;
        received += line.strip_prefix("got ").unwrap_or("0").parse::<u64>()?;
    }
    let elapsed = started.elapsed();
    for end in producers.iter_mut().chain(consumers.iter_mut()) {
        if !end.child.wait()?.success() {
            return Err("an end failed".into());
        }
    }
    let sent = per_producer * shape.producers as u64;
    if received != sent {
        return Err(format!("consumers received {received} of {sent}").into());
    }
    Ok(sent as f64 / elapsed.as_secs_f64())
}

/// A child process with its pipes.
struct End {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl End {
    /// Starts a child role and waits until it is attached.
    fn spawn(args: &[&str]) -> Result<End, Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let to = child.stdin.take().ok_or("no stdin")?;
        let from = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut end = End { child, to, from };
        let said = end.hear()?;
        if said != "attached" {
            return Err(format!("child said {said:?}").into());
        }
        Ok(end)
    }

    fn say(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.to, "{line}")?;
        self.to.flush()
    }

    fn hear(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.from.read_line(&mut line)?;
        Ok(line.trim().to_owned())
    }
}

/// A producer process: attaches, waits for "go", sends `count` messages, closes.
fn producer(name: &str, count: u64, size: usize) -> Result<(), Box<dyn std::error::Error>> {
    let ring = any::Ring::open(name, &OpenOptions::new())?;
    let mut tx = ring.producer()?;
    println!("attached");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    let msg = vec![0x5au8; size];
    for _ in 0..count {
        tx.send(&msg, Some(Duration::from_secs(30)))?;
    }
    Ok(())
}

/// A consumer process: counts messages until the stream ends (every producer closed).
fn consumer(name: &str, kind: &str) -> Result<(), Box<dyn std::error::Error>> {
    let ring = any::Ring::open(name, &OpenOptions::new())?;
    let mut rx = ring.consumer()?;
    println!("attached");
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        match rx.recv(&mut buf, Some(Duration::from_secs(30))) {
            Ok(_) => got += 1,
            Err(Error::Closed) => break,
            Err(e) => return Err(format!("{kind} consumer after {got}: {e}").into()),
        }
    }
    println!("got {got}");
    Ok(())
}

/// Unlinks the run's ring on every way out.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = any::unlink(&self.0);
    }
}
