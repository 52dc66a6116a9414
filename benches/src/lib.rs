//! `shmring-bench` (also `shmring bench`): cross-process latency and throughput of shmring
//! against every kernel IPC mechanism and the hardware floor, in one run, as ratios.
//! Method: `docs/benchmarks.md`.
//!
//! ```text
//! cargo run --release -p shmring-benches -- --quick
//! cargo run --release -p shmring-benches -- --json results.json --plot results.svg
//! ```

mod floor;
mod plot;
mod report;
mod transport;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use transport::{Api, DATA, END, Endpoint};

/// Benchmark shmring against pipes, sockets, message queues and the cache-line floor.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short run (under 30 s): fewer round trips, shorter streams, one repetition.
    #[arg(long)]
    quick: bool,
    /// Comma-separated transports to run (default: all). Names: see --list.
    #[arg(long, value_delimiter = ',')]
    transports: Option<Vec<String>>,
    /// List transport names and exit.
    #[arg(long)]
    list: bool,
    /// Repetitions, interleaved (default 3, or 1 with --quick).
    #[arg(long)]
    reps: Option<u32>,
    /// Write every figure as JSON records here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write an SVG plot (latency CDF, throughput by size) here.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Internal: run as the child process of a measurement.
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// Sizes for round trips and for streams.
const RTT_SIZES: [usize; 3] = [8, 64, 1024];
const TPUT_SIZES: [usize; 4] = [8, 64, 1024, 65536];

/// What one measurement runs.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) transport: String,
    pub(crate) size: usize,
    pub(crate) api: Api,
    /// Sleeping strategies: poll this long before sleeping (0: the receiver really sleeps).
    pub(crate) spin: Duration,
    pub(crate) kind: Kind,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Ping-pong: this many measured round trips (plus a tenth to warm up).
    RoundTrips(u64),
    /// One-way stream for about this long.
    Stream(Duration),
}

impl Plan {
    /// How the receiver waits: "kernel" (blocks in a system call), "busy" (polls), or for
    /// the sleeping strategies "spin 20µs" (polls, then sleeps) / "asleep" (no spin window).
    pub(crate) fn mode(&self) -> &'static str {
        match self.transport.as_str() {
            t if transport::sleeps(t) && self.spin.is_zero() => "asleep",
            "ringfire-futex" => "spin 32 polls",
            t if transport::sleeps(t) => "spin 20µs",
            t if t.starts_with("shmring") || t.ends_with("-spin") => "busy",
            _ => "kernel",
        }
    }

    fn encode(&self, extra: &str) -> String {
        let kind = match self.kind {
            Kind::RoundTrips(n) => format!("rtt:{n}"),
            Kind::Stream(_) => "stream:0".into(),
        };
        format!(
            "{};{};{};{};{};{}",
            self.transport,
            self.size,
            self.api.name(),
            self.spin.as_nanos(),
            kind,
            extra
        )
    }

    fn decode(spec: &str) -> (Plan, String) {
        let parts: Vec<&str> = spec.splitn(6, ';').collect();
        let kind = match parts[4].split_once(':') {
            Some(("rtt", n)) => Kind::RoundTrips(n.parse().unwrap()),
            _ => Kind::Stream(Duration::ZERO),
        };
        (
            Plan {
                transport: parts[0].into(),
                size: parts[1].parse().unwrap(),
                api: Api::parse(parts[2]),
                spin: Duration::from_nanos(parts[3].parse().unwrap()),
                kind,
            },
            parts[5].to_string(),
        )
    }
}

/// What one measurement found.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    pub(crate) rtt: Option<Histogram<u64>>,
    pub(crate) msgs_per_s: Option<f64>,
    pub(crate) bytes_per_s: Option<f64>,
    /// Messages streamed.
    pub(crate) messages: u64,
    /// Sleep/wake system calls both ends made while streaming (shmring's counters).
    pub(crate) wake_syscalls: u64,
    /// Whether `wake_syscalls` means anything (shmring sleeping strategies only).
    pub(crate) counts_syscalls: bool,
}

/// Arguments that come before `--child SPEC` when a measurement starts its child process
/// from this same executable (`["bench"]` when the executable is the `shmring` command).
static CHILD_PREFIX: OnceLock<Vec<String>> = OnceLock::new();

/// Runs the benchmark with command-line `args` (the first is the program's name).
/// `child_prefix`: the arguments this executable needs before `--child` to come back here
/// in the child process of a measurement (none for `shmring-bench`).
pub fn run(args: impl IntoIterator<Item = OsString>, child_prefix: &[&str]) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let _ = CHILD_PREFIX.set(child_prefix.iter().map(|s| s.to_string()).collect());
    if let Some(spec) = &args.child {
        if let Err(e) = run_child(spec) {
            eprintln!("shmring-bench child: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if args.list {
        for name in transport::ALL {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = run_parent(&args) {
        eprintln!("shmring-bench: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run_parent(args: &Args) -> Res<()> {
    let selected: Vec<String> = match &args.transports {
        Some(list) => {
            for name in list {
                if !transport::ALL.contains(&name.as_str()) {
                    return Err(format!("unknown transport {name}; see --list").into());
                }
            }
            list.clone()
        }
        None => transport::ALL.iter().map(|s| s.to_string()).collect(),
    };
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    let (round_trips, stream) = if args.quick {
        (3_000, Duration::from_millis(60))
    } else {
        (40_000, Duration::from_millis(300))
    };
    let limits = report::raise_kernel_limits();
    let pinned = pin_to_cpu(0);
    let plans = plans(&selected, round_trips, stream, &limits);
    let bar = ProgressBar::new(plans.len() as u64 * u64::from(reps));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results: BTreeMap<(String, String, usize, String), Vec<Sample>> = BTreeMap::new();
    // Interleaved: every plan once per repetition, so drift hits all transports alike.
    for rep in 0..reps {
        for plan in &plans {
            bar.set_message(format!(
                "rep {} {} {} B",
                rep + 1,
                plan.transport,
                plan.size
            ));
            let sample =
                measure(plan).map_err(|e| format!("{} {} B: {e}", plan.transport, plan.size))?;
            let key = (
                plan.transport.clone(),
                plan.mode().to_string(),
                plan.size,
                plan.api.name().to_string(),
            );
            results.entry(key).or_default().push(sample);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let figures = report::Figures::from_samples(results);
    let machine = report::machine(&pinned, reps, round_trips, stream, &limits);
    print!("{}", report::markdown(&figures, &machine));
    if let Some(path) = &args.json {
        std::fs::write(path, report::json(&figures, &machine))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot::svg(&figures, path)?;
        eprintln!("wrote {}", path.display());
    }
    drop(limits);
    Ok(())
}

/// Every measurement of a run, in order.
fn plans(
    selected: &[String],
    round_trips: u64,
    stream: Duration,
    limits: &report::Limits,
) -> Vec<Plan> {
    let default_spin = Duration::from_micros(20);
    let mut plans = Vec::new();
    for transport in selected {
        if transport == "memcpy" {
            continue;
        }
        let sizes: &[usize] = if transport == "floor-spin" {
            &[8]
        } else {
            &RTT_SIZES
        };
        for &size in sizes {
            let mut plan = Plan {
                transport: transport.clone(),
                size,
                api: Api::Copy,
                spin: default_spin,
                kind: Kind::RoundTrips(round_trips),
            };
            if !limits.allows(transport, size) {
                continue;
            }
            plans.push(plan.clone());
            if transport::sleeps(transport) {
                plan.spin = Duration::ZERO;
                plans.push(plan);
            }
        }
    }
    for transport in selected {
        if transport == "floor-spin" {
            continue;
        }
        for &size in &TPUT_SIZES {
            if !limits.allows(transport, size) {
                continue;
            }
            let apis: &[Api] = if transport == "shmring-spsc-spin" {
                &[Api::Copy, Api::ZeroCopy, Api::Batch32]
            } else {
                &[Api::Copy]
            };
            for &api in apis {
                plans.push(Plan {
                    transport: transport.clone(),
                    size,
                    api,
                    spin: default_spin,
                    kind: Kind::Stream(stream),
                });
            }
        }
    }
    plans
}

/// Unique names for one measurement: measurements run one at a time, so the pid and the
/// wall clock in nanoseconds tell them apart.
fn names(tag: &str) -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{}-{nanos}", std::process::id());
    (
        format!("/shmring-bench-{tag}-{id}-a"),
        format!("/shmring-bench-{tag}-{id}-b"),
    )
}

/// Runs one measurement: sets the transport up, starts the child, drives the parent side.
fn measure(plan: &Plan) -> Res<Sample> {
    if plan.transport == "memcpy" {
        return Ok(floor::memcpy(plan));
    }
    let mut cleanup = Cleanup(Vec::new());
    let mut close_after_spawn: Vec<RawFd> = Vec::new();
    let size = plan.size;
    // Parent endpoint, and what the child needs to build its own.
    let (mut endpoint, extra, listener): (
        Box<dyn Endpoint>,
        String,
        Option<std::net::TcpListener>,
    ) = match plan.transport.as_str() {
        t if t.starts_with("shmring-mpmc") => {
            let (ep, extra) = shmring_parent::<shmring::mpmc::Mpmc>(t, plan, &mut cleanup)?;
            (ep, extra, None)
        }
        t if t.starts_with("shmring-broadcast") => {
            let (ep, extra) =
                shmring_parent::<shmring::broadcast::Broadcast>(t, plan, &mut cleanup)?;
            (ep, extra, None)
        }
        t if t.starts_with("shmring") => {
            let (ep, extra) = shmring_parent::<shmring::spsc::Spsc>(t, plan, &mut cleanup)?;
            (ep, extra, None)
        }
        #[cfg(feature = "peers")]
        t @ ("iceoryx2-spin" | "iceoryx2-event") => {
            let (a, b) = names("iox2");
            let ep = transport::Iceoryx2::new(&a[1..], &b[1..], size, t == "iceoryx2-event")?;
            (Box::new(ep), format!("{},{}", &a[1..], &b[1..]), None)
        }
        #[cfg(feature = "peers")]
        t @ ("ringfire-spin" | "ringfire-futex") => {
            let dir = "/dev/shm";
            let (a, b) = names("ringfire");
            let (pa, pb) = (format!("{dir}{a}"), format!("{dir}{b}"));
            let (ca, cb) = (pa.clone(), pb.clone());
            cleanup.0.push(Box::new(move || {
                let _ = std::fs::remove_file(ca);
                let _ = std::fs::remove_file(cb);
            }));
            let ep = transport::ringfire(size, &pa, &pb, t == "ringfire-futex", plan.spin)?;
            (ep, format!("{pa},{pb}"), None)
        }
        "pipe" | "uds-stream" => {
            let ((prd, pwr), (crd, cwr)) = transport::fd_pairs(&plan.transport)?;
            close_after_spawn.extend(if crd == cwr {
                vec![crd]
            } else {
                vec![crd, cwr]
            });
            // SAFETY: fresh descriptors owned by this process; for a socket the write
            // side is a duplicate, so each File closes its own descriptor.
            let (rd, wr) = unsafe {
                let rd = transport::inherited(prd);
                let wr = if prd == pwr {
                    rd.try_clone()?
                } else {
                    transport::inherited(pwr)
                };
                (rd, wr)
            };
            (
                Box::new(transport::Stream::new(rd, wr, size)),
                format!("{crd},{cwr}"),
                None,
            )
        }
        "tokio-uds" => {
            let ((pfd, _), (cfd, _)) = transport::fd_pairs("uds-stream")?;
            close_after_spawn.push(cfd);
            // SAFETY: a fresh socket owned by this process from now on.
            let ep = unsafe { transport::TokioStream::from_fd(pfd, size)? };
            (Box::new(ep), cfd.to_string(), None)
        }
        "uds-seqpacket" => {
            let ((pfd, _), (cfd, _)) = transport::fd_pairs("uds-seqpacket")?;
            close_after_spawn.push(cfd);
            cleanup.0.push(Box::new(move || {
                // SAFETY: our descriptor, closed once.
                drop(unsafe { OwnedFd::from_raw_fd(pfd) });
            }));
            (
                Box::new(transport::Packet::new(pfd)),
                format!("{cfd}"),
                None,
            )
        }
        "fifo" => {
            let dir = std::env::temp_dir();
            let (a, b) = names("fifo");
            let (pa, pb) = (dir.join(&a[1..]), dir.join(&b[1..]));
            for p in [&pa, &pb] {
                let c = std::ffi::CString::new(p.to_str().unwrap())?;
                // SAFETY: NUL-terminated path.
                if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
            }
            let (ca, cb) = (pa.clone(), pb.clone());
            cleanup.0.push(Box::new(move || {
                let _ = std::fs::remove_file(ca);
                let _ = std::fs::remove_file(cb);
            }));
            // Opened after the child starts (a FIFO open blocks until both ends exist).
            (
                Box::new(floor::Pending),
                format!("{},{}", pa.display(), pb.display()),
                None,
            )
        }
        "posix-mq" => {
            let (a, b) = names("mq");
            let (ca, cb) = (a.clone(), b.clone());
            // Registered first: a queue outlives its creator until unlinked.
            cleanup.0.push(Box::new(move || {
                transport::PosixMq::unlink(&ca);
                transport::PosixMq::unlink(&cb);
            }));
            let ep = transport::PosixMq::open(&a, &b, size, true)?;
            (Box::new(ep), format!("{a},{b}"), None)
        }
        "sysv-mq" => {
            let id = transport::SysvMq::create()?;
            cleanup
                .0
                .push(Box::new(move || transport::SysvMq::remove(id)));
            (
                Box::new(transport::SysvMq::new(id, true, size)),
                format!("{id}"),
                None,
            )
        }
        "tcp-loopback" => {
            let listener = transport::tcp_pair_parent()?;
            let port = listener.local_addr()?.port();
            (Box::new(floor::Pending), format!("{port}"), Some(listener))
        }
        "floor-spin" => {
            let (a, _) = names("floor");
            let ep = floor::Floor::create(&a)?;
            let ca = a.clone();
            cleanup.0.push(Box::new(move || {
                let _ = std::fs::remove_file(format!("/dev/shm{ca}"));
            }));
            (Box::new(ep), a, None)
        }
        other => return Err(format!("unknown transport {other}").into()),
    };
    let mut child = Command::new(std::env::current_exe()?)
        .args(CHILD_PREFIX.get().into_iter().flatten())
        .args(["--child", &plan.encode(&extra)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    for fd in close_after_spawn {
        // SAFETY: the child's end, which this process owns and no longer needs.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    if plan.transport == "fifo" {
        let (a, b) = extra.split_once(',').unwrap();
        let wr = std::fs::OpenOptions::new().write(true).open(a)?;
        let rd = std::fs::File::open(b)?;
        endpoint = Box::new(transport::Stream::new(rd, wr, size));
    }
    if let Some(listener) = listener {
        let (stream, _) = listener.accept()?;
        endpoint = Box::new(transport::tcp_stream(stream, size)?);
    }
    let outcome = drive(plan, endpoint.as_mut());
    drop(endpoint);
    let mut child_out = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut child_out);
    }
    let status = child.wait()?;
    drop(cleanup);
    let mut sample = outcome?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    let child_calls: u64 = child_out
        .lines()
        .find_map(|l| l.strip_prefix("wake-syscalls "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    sample.wake_syscalls += child_calls;
    sample.counts_syscalls =
        transport::sleeps(&plan.transport) && plan.transport.starts_with("shmring");
    Ok(sample)
}

/// Removes a measurement's names, queues and files on every way out of it.
struct Cleanup(Vec<Box<dyn FnOnce()>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for f in self.0.drain(..) {
            f();
        }
    }
}

/// The parent's side of a measurement.
fn drive(plan: &Plan, ep: &mut dyn Endpoint) -> Res<Sample> {
    let size = plan.size;
    let mut msg = vec![DATA; size];
    let mut buf = vec![0u8; size.max(16)];
    // Handshake: the child is up and attached before any clock starts.
    ep.send(&msg)?;
    ep.recv(&mut buf)?;
    match plan.kind {
        Kind::RoundTrips(n) => {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
            for i in 0..n + n / 10 {
                let start = Instant::now();
                ep.send(&msg)?;
                ep.recv(&mut buf)?;
                let ns = start.elapsed().as_nanos() as u64;
                if i >= n / 10 {
                    hist.record(ns.max(1))?;
                }
            }
            Ok(Sample {
                rtt: Some(hist),
                ..Sample::default()
            })
        }
        Kind::Stream(budget) => {
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < budget {
                ep.send_burst(&msg, 256)?;
                sent += 256;
            }
            msg[0] = END;
            ep.send(&msg)?;
            let n = ep.recv(&mut buf)?;
            let secs = start.elapsed().as_secs_f64();
            let counted = u64::from_le_bytes(buf[..8].try_into()?);
            if n < 8 || counted != sent {
                return Err(format!("child counted {counted} messages, {sent} were sent").into());
            }
            Ok(Sample {
                rtt: None,
                msgs_per_s: Some(sent as f64 / secs),
                bytes_per_s: Some((sent * size as u64) as f64 / secs),
                messages: sent,
                wake_syscalls: ep.wake_syscalls(),
                counts_syscalls: false,
            })
        }
    }
}

/// Both rings of a shmring transport of kind `K`, created by the parent (and removed on
/// every way out of the measurement); what the child needs to open them.
fn shmring_parent<K: transport::BenchKind>(
    transport_name: &str,
    plan: &Plan,
    cleanup: &mut Cleanup,
) -> Res<(Box<dyn Endpoint>, String)> {
    let (a, b) = names(transport_name);
    let (ca, cb) = (a.clone(), b.clone());
    cleanup.0.push(Box::new(move || {
        let _ = shmring::any::unlink(&ca);
        let _ = shmring::any::unlink(&cb);
    }));
    let ep = transport::Shmring::<K>::create(
        (&a, &b),
        transport::strategy(transport_name),
        plan.spin,
        transport::telemetry(transport_name),
        plan.size,
        plan.api,
    )?
    .waiting_as(transport_name)?;
    Ok((Box::new(ep), format!("{a},{b}")))
}

/// The child's end of a shmring transport of kind `K` (`extra`: the two ring names).
fn shmring_child<K: transport::BenchKind>(
    transport_name: &str,
    plan: &Plan,
    extra: &str,
) -> Res<Box<dyn Endpoint>> {
    let (a, b) = extra.split_once(',').ok_or("ring names")?;
    Ok(Box::new(
        transport::Shmring::<K>::open((a, b), plan.spin, plan.api)?.waiting_as(transport_name)?,
    ))
}

/// The child's side of a measurement.
fn run_child(spec: &str) -> Res<()> {
    let (plan, extra) = Plan::decode(spec);
    pin_to_cpu(1);
    let size = plan.size;
    let mut ep: Box<dyn Endpoint> = match plan.transport.as_str() {
        t if t.starts_with("shmring-mpmc") => {
            shmring_child::<shmring::mpmc::Mpmc>(t, &plan, &extra)?
        }
        t if t.starts_with("shmring-broadcast") => {
            shmring_child::<shmring::broadcast::Broadcast>(t, &plan, &extra)?
        }
        t if t.starts_with("shmring") => shmring_child::<shmring::spsc::Spsc>(t, &plan, &extra)?,
        #[cfg(feature = "peers")]
        t @ ("iceoryx2-spin" | "iceoryx2-event") => {
            let (a, b) = extra.split_once(',').ok_or("service names")?;
            Box::new(transport::Iceoryx2::new(b, a, size, t == "iceoryx2-event")?)
        }
        #[cfg(feature = "peers")]
        t @ ("ringfire-spin" | "ringfire-futex") => {
            let (a, b) = extra.split_once(',').ok_or("ring paths")?;
            // Crossed over: the child writes the ring the parent reads.
            transport::ringfire(size, b, a, t == "ringfire-futex", plan.spin)?
        }
        "pipe" | "uds-stream" => {
            let (rd, wr) = extra.split_once(',').ok_or("fds")?;
            let (rd, wr): (RawFd, RawFd) = (rd.parse()?, wr.parse()?);
            // SAFETY: inherited descriptors, owned by this process from now on.
            let (rd, wr) = unsafe {
                let r = transport::inherited(rd);
                let w = if rd == wr {
                    r.try_clone()?
                } else {
                    transport::inherited(wr)
                };
                (r, w)
            };
            Box::new(transport::Stream::new(rd, wr, size))
        }
        "uds-seqpacket" => Box::new(transport::Packet::new(extra.parse()?)),
        // SAFETY: the inherited socket, owned by this process from now on.
        "tokio-uds" => Box::new(unsafe { transport::TokioStream::from_fd(extra.parse()?, size)? }),
        "fifo" => {
            let (a, b) = extra.split_once(',').ok_or("fifo paths")?;
            let rd = std::fs::File::open(a)?;
            let wr = std::fs::OpenOptions::new().write(true).open(b)?;
            Box::new(transport::Stream::new(rd, wr, size))
        }
        "posix-mq" => {
            let (a, b) = extra.split_once(',').ok_or("queue names")?;
            Box::new(transport::PosixMq::open(b, a, size, false)?)
        }
        "sysv-mq" => Box::new(transport::SysvMq::new(extra.parse()?, false, size)),
        "tcp-loopback" => {
            let stream = std::net::TcpStream::connect(("127.0.0.1", extra.parse::<u16>()?))?;
            Box::new(transport::tcp_stream(stream, size)?)
        }
        "floor-spin" => Box::new(floor::Floor::open(&extra)?),
        other => return Err(format!("unknown transport {other}").into()),
    };
    let mut buf = vec![0u8; size.max(16)];
    // Handshake.
    let n = ep.recv(&mut buf)?;
    ep.send(&buf[..n])?;
    match plan.kind {
        Kind::RoundTrips(n) => {
            for _ in 0..n + n / 10 {
                let got = ep.recv(&mut buf)?;
                ep.send(&buf[..got])?;
            }
        }
        Kind::Stream(_) => {
            let count = ep.recv_until_end(&mut buf)?;
            let mut ack = vec![DATA; size];
            ack[..8].copy_from_slice(&count.to_le_bytes());
            ep.send(&ack)?;
        }
    }
    println!("wake-syscalls {}", ep.wake_syscalls());
    // Let the parent read the ack before our end of the transport goes away.
    drop(ep);
    Ok(())
}

/// Pins this process to `cpu` when the machine has it; says what happened.
pub(crate) fn pin_to_cpu(cpu: usize) -> String {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    if cpu >= cpus {
        return format!("{cpus} CPU(s), not pinned");
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: valid set of the given size; pid 0 is this process.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        format!("{cpus} CPUs, parent pinned to CPU 0, child to CPU 1")
    } else {
        format!("{cpus} CPUs, pinning failed")
    }
}
