//! Request/reply round trips and priority-lane overhead, in one run.
//!
//! ```sh
//! cargo run --release -p shmring-benches --example rpc -- 64 100000 3
//! ```
//!
//! Arguments: request and reply size in bytes, calls (and lane messages ×20) per run, runs.
//!
//! 1. Round trip of one call (request of SIZE bytes, reply of SIZE bytes), client and
//!    server in separate processes: `shmring::rpc` (both ends poll 50 µs before sleeping,
//!    the default), a Unix stream socket pair, and a pipe pair (one pipe each way). Median
//!    and p99 over every call of the median run, from HDR histograms.
//! 2. Lane overhead: one-way messages per second through an MPMC ring from a producer
//!    process to a consumer process, SIZE-byte messages, the same ring geometry with 1 lane
//!    (priority 0) and with 8 lanes (priorities round-robin over 0..8), spin waits; the
//!    ratio 8 lanes / 1 lane of the medians.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmring::rpc::{Client, Server, ServerConfig};
use shmring::{Config, WaitStrategy};

fn args() -> (usize, u64, usize) {
    let a: Vec<String> = std::env::args().collect();
    let size = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let calls = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let runs = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    (size, calls, runs)
}

fn child(role: &str, name: &str) -> Child {
    let (size, calls, _) = args();
    Command::new(std::env::current_exe().unwrap())
        .args([size.to_string(), calls.to_string(), "1".into()])
        .env("RPC_BENCH_ROLE", role)
        .env("RPC_BENCH_NAME", name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the child prints its first line ("ready").
fn ready(child: &mut Child) {
    let mut byte = [0u8; 1];
    let out = child.stdout.as_mut().unwrap();
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {}
}

fn percentiles(h: &Histogram<u64>) -> (f64, f64) {
    (
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

/// One client run against a server that is already serving: a histogram of round trips.
fn rpc_client(name: &str, size: usize, calls: u64) -> Histogram<u64> {
    let mut client = Client::connect(name).unwrap();
    let request = vec![7u8; size];
    let mut reply = Vec::with_capacity(size);
    let mut h = Histogram::<u64>::new(3).unwrap();
    for _ in 0..calls / 10 {
        client.call(&request, &mut reply).unwrap();
    }
    for _ in 0..calls {
        let start = Instant::now();
        client.call(&request, &mut reply).unwrap();
        h.record(start.elapsed().as_nanos() as u64).unwrap();
        assert_eq!(reply.len(), size);
    }
    h
}

fn rpc_server(name: &str, size: usize) {
    let mut server = Server::bind(name, &ServerConfig::new()).unwrap();
    println!("ready");
    let reply = vec![9u8; size];
    let mut served = 0u64;
    loop {
        let timed_out = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(request) => {
                request.reply(&reply).unwrap();
                served += 1;
                false
            }
            Err(shmring::Error::Timeout) => true,
            Err(e) => panic!("{e}"),
        };
        // The client has come and gone.
        if timed_out && served > 0 && server.clients() == 0 {
            return;
        }
    }
}

/// Request/reply over a byte stream (socket or pipes): a histogram of round trips.
fn stream_client(
    tx: &mut impl Write,
    rx: &mut impl Read,
    size: usize,
    calls: u64,
) -> Histogram<u64> {
    let request = vec![7u8; size];
    let mut reply = vec![0u8; size];
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..calls + calls / 10 {
        let start = Instant::now();
        tx.write_all(&request).unwrap();
        rx.read_exact(&mut reply).unwrap();
        if i >= calls / 10 {
            h.record(start.elapsed().as_nanos() as u64).unwrap();
        }
    }
    h
}

fn stream_server(tx: &mut impl Write, rx: &mut impl Read, size: usize) {
    let mut request = vec![0u8; size];
    let reply = vec![9u8; size];
    while rx.read_exact(&mut request).is_ok() {
        if tx.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Pipes: two pipes, the server a forked child.
fn pipe_run(size: usize, calls: u64) -> Histogram<u64> {
    let mut up = [0i32; 2];
    let mut down = [0i32; 2];
    // SAFETY: pipe(2) into arrays of two descriptors.
    unsafe {
        assert_eq!(libc::pipe(up.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(down.as_mut_ptr()), 0);
    }
    use std::os::fd::FromRawFd;
    // SAFETY: fork(2) in a single-threaded benchmark; the child only does I/O and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: descriptors from pipe(2) above, owned by this process now.
        let (mut rx, mut tx) = unsafe {
            libc::close(up[1]);
            libc::close(down[0]);
            (
                std::fs::File::from_raw_fd(up[0]),
                std::fs::File::from_raw_fd(down[1]),
            )
        };
        stream_server(&mut tx, &mut rx, size);
        // SAFETY: leaves the forked child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: as above, the parent's ends.
    let (mut tx, mut rx) = unsafe {
        libc::close(up[0]);
        libc::close(down[1]);
        (
            std::fs::File::from_raw_fd(up[1]),
            std::fs::File::from_raw_fd(down[0]),
        )
    };
    let h = stream_client(&mut tx, &mut rx, size, calls);
    drop(tx);
    drop(rx);
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    h
}

/// A Unix stream socket pair, the server a forked child.
fn socket_run(size: usize, calls: u64) -> Histogram<u64> {
    let (mut client, mut server) = UnixStream::pair().unwrap();
    // SAFETY: fork(2) in a single-threaded benchmark; the child only does I/O and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(client);
        let mut rx = server.try_clone().unwrap();
        stream_server(&mut server, &mut rx, size);
        // SAFETY: leaves the forked child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(server);
    let mut rx = client.try_clone().unwrap();
    let h = stream_client(&mut client, &mut rx, size, calls);
    drop(client);
    drop(rx);
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    h
}

/// Which priorities a lane run sends: round-robin over every lane, all the lowest, or all
/// the highest.
fn priority_of(mode: &str, i: u64, lanes: u32) -> u32 {
    match mode {
        "rr" => (i % u64::from(lanes)) as u32,
        "low" => 0,
        _ => lanes - 1,
    }
}

fn lanes_producer(name: &str, lanes: u32, messages: u64, mode: &str, size: usize) {
    let ring = shmring::mpmc::Ring::open(name).unwrap();
    let mut tx = ring.producer().unwrap();
    println!("ready");
    let msg = vec![1u8; size];
    for i in 0..messages {
        tx.send_priority(&msg, priority_of(mode, i, lanes)).unwrap();
    }
}

/// Messages per second from a producer process to this process's consumer.
fn lanes_run(lanes: u32, mode: &str, size: usize, messages: u64) -> f64 {
    let name = format!("/rpc-bench-lanes-{}-{lanes}", std::process::id());
    let config = Config::new()
        .lanes(lanes)
        .slots(1024)
        .max_message(size.max(8))
        .wait_strategy(WaitStrategy::Spin);
    let ring = shmring::mpmc::Ring::create(&name, &config).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut producer = child(&format!("lanes:{lanes}:{messages}:{mode}"), &name);
    ready(&mut producer);
    let mut buf = vec![0u8; size.max(8)];
    let start = Instant::now();
    let mut got = 0u64;
    loop {
        match rx.recv(&mut buf) {
            Ok(_) => got += 1,
            Err(shmring::Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    assert_eq!(got, messages);
    producer.wait().unwrap();
    ring.unlink().unwrap();
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (size, calls, runs) = args();
    if let Ok(role) = std::env::var("RPC_BENCH_ROLE") {
        let name = std::env::var("RPC_BENCH_NAME").unwrap();
        let parts: Vec<&str> = role.split(':').collect();
        match parts[..] {
            ["server"] => rpc_server(&name, size),
            ["lanes", lanes, messages, mode] => lanes_producer(
                &name,
                lanes.parse().unwrap(),
                messages.parse().unwrap(),
                mode,
                size,
            ),
            _ => panic!("unknown role {role}"),
        }
        return;
    }
    println!(
        "request/reply round trip, {size} B each way, {calls} calls per run, {runs} runs (median run shown)"
    );
    println!("{:<28} {:>10} {:>10}", "transport", "p50 µs", "p99 µs");
    let mut rows: Vec<(&str, Vec<(f64, f64)>)> = vec![
        ("shmring rpc", vec![]),
        ("unix socket pair", vec![]),
        ("pipe pair", vec![]),
    ];
    for run in 0..runs {
        let name = format!("rpc-bench-{}-{run}", std::process::id());
        let mut server = child("server", &name);
        ready(&mut server);
        rows[0].1.push(percentiles(&rpc_client(&name, size, calls)));
        server.wait().unwrap();
        rows[1].1.push(percentiles(&socket_run(size, calls)));
        rows[2].1.push(percentiles(&pipe_run(size, calls)));
    }
    for (label, results) in &rows {
        let mut sorted = results.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (p50, p99) = sorted[sorted.len() / 2];
        println!("{label:<28} {p50:>10.2} {p99:>10.2}");
    }
    let messages = calls * 20;
    println!();
    println!(
        "priority lanes: MPMC one-way, {size} B, {messages} messages per run, spin waits, {runs} runs"
    );
    let cells: [(&str, u32, &str); 4] = [
        ("1 lane", 1, "low"),
        ("8 lanes, all priority 7", 8, "top"),
        ("8 lanes, all priority 0", 8, "low"),
        ("8 lanes, round-robin", 8, "rr"),
    ];
    let mut rates = vec![Vec::new(); cells.len()];
    for _ in 0..runs {
        for (cell, (_, lanes, mode)) in cells.iter().enumerate() {
            rates[cell].push(lanes_run(*lanes, mode, size, messages));
        }
    }
    let base = median(rates[0].clone());
    for (cell, (label, _, _)) in cells.iter().enumerate() {
        let rate = median(rates[cell].clone());
        println!(
            "{label:<28} {:>10.2} M msgs/s  {:>5.2} x 1 lane",
            rate / 1e6,
            rate / base
        );
    }
}
