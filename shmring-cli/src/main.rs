//! `shmring`: see, feed, drain and clean shared-memory rings from a shell.
//!
//! ```text
//! shmring ls                      every ring in /dev/shm: kind, size, traffic, peers, health
//! shmring stat /feed --watch 1    one ring in detail, with rates
//! shmring top                     all rings, busiest first, refreshed
//! shmring create /feed --kind spsc --capacity 1MiB
//! producer | shmring write /feed  stdin → messages (end of input closes the stream)
//! shmring cat /feed | consumer    messages → stdout (ends when the stream closes)
//! shmring tail /ticks -n 10        a broadcast ring's history, then new messages
//! shmring rm --dead               remove what crashed programs left behind
//! ```
//!
//! Uses only shmring's public API. Exit status: 0 done, 1 error, 2 bad usage, 3 the other
//! end died without closing (`cat` / `write`).

mod framing;
mod stream;
mod view;
mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use shmring::any::{self, KindName, Removal};
use shmring::broadcast::Policy;
use shmring::{Config, WaitStrategy};

use framing::Framing;
use view::{RING_SCHEMA, RingView, SHM_DIR};

/// See, feed, drain and clean shmring rings.
#[derive(Parser, Debug)]
#[command(name = "shmring", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every ring: kind, size, traffic, peers (alive / dead), owner, health.
    /// Reads without attaching and changes nothing; files that are not rings are skipped.
    Ls {
        /// Print JSON (schema shmring.ls/1) instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list ring files in this directory (rings made with `create_at`).
        #[arg(long = "dir", value_name = "PATH")]
        dirs: Vec<PathBuf>,
    },
    /// Everything one ring's statistics and peer records say; with --watch, refreshed with
    /// rates.
    Stat {
        /// The ring's name (`/feed` or `feed`) or the path of its file.
        name: String,
        /// Print JSON (schema shmring.ring/1; one object per line with --watch).
        #[arg(long)]
        json: bool,
        /// Refresh every SECS seconds (default 1) and show rates.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<f64>,
        /// With --watch: stop after N refreshes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// All rings, busiest first, refreshed every interval (plain text when stdout is not a
    /// terminal).
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after N refreshes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Remove rings. A ring some live process has open is kept unless --force.
    Rm {
        /// Names to remove.
        names: Vec<String>,
        /// Remove every ring in /dev/shm left by processes that died: a holder died attached
        /// and no live process has it open. Rings whose ends all closed cleanly are kept.
        #[arg(long, conflicts_with = "names")]
        dead: bool,
        /// With --dead: say what would be removed, remove nothing.
        #[arg(long, requires = "dead")]
        dry_run: bool,
        /// Remove the names even if live processes hold them (they keep working; new opens
        /// fail).
        #[arg(long, conflicts_with = "dead")]
        force: bool,
    },
    /// Create a ring.
    Create {
        /// The name (`/feed` or `feed`).
        name: String,
        /// The ring's kind.
        #[arg(long, value_enum, default_value_t = KindArg::Spsc)]
        kind: KindArg,
        /// SPSC: bytes of the data region; broadcast: of the byte ring. A power of two
        /// (suffixes K, M, G; KiB, MiB, GiB).
        #[arg(long, value_parser = parse_size)]
        capacity: Option<usize>,
        /// MPMC: slots, a power of two (of each lane).
        #[arg(long)]
        slots: Option<usize>,
        /// MPMC: priority lanes, 1 to 32 (priorities 0..lanes).
        #[arg(long)]
        lanes: Option<u32>,
        /// Largest message in bytes (suffixes as for --capacity).
        #[arg(long, value_parser = parse_size)]
        max_message: Option<usize>,
        /// MPMC: most handles attached at once.
        #[arg(long)]
        max_peers: Option<u32>,
        /// Broadcast: most readers attached at once (durable names keep theirs).
        #[arg(long)]
        max_readers: Option<u32>,
        /// Broadcast: when the slowest reader is a ring behind, wait for it (lossless) or
        /// overwrite (it learns how many messages it missed).
        #[arg(long, value_enum)]
        overflow: Option<OverflowArg>,
        /// Broadcast, lossless: bytes a reader may fall behind before it stops holding the
        /// producer back (suffixes as for --capacity).
        #[arg(long, value_parser = parse_size)]
        lag_limit: Option<usize>,
        /// How blocked ends wait.
        #[arg(long, value_enum, default_value_t = WaitArg::SpinYield)]
        wait: WaitArg,
        /// Mode 0660 instead of 0600: the owner's group may use the ring.
        #[arg(long)]
        group_access: bool,
        /// Succeed if a ring with the same parameters already exists.
        #[arg(long)]
        exist_ok: bool,
        /// Keep telemetry in the ring, stamping one message in N (1: every message): `stat`
        /// then shows commit-to-receive latencies and last activity.
        #[arg(long, value_name = "N")]
        telemetry: Option<u32>,
    },
    /// Send standard input to a ring as messages; the end of the input closes the stream
    /// (a `cat` on the other side then ends with status 0).
    Write {
        /// The ring.
        name: String,
        /// How the input marks message boundaries.
        #[arg(long, value_enum, default_value_t = Framing::Lines)]
        framing: Framing,
        /// Open a ring owned by another user (or writable by others).
        #[arg(long)]
        trust_any_owner: bool,
    },
    /// The cross-process benchmark (`shmring-bench`): shmring against pipes, sockets,
    /// message queues and the hardware floor, in one run. `shmring bench --help` lists its
    /// options.
    #[command(disable_help_flag = true)]
    Bench {
        /// Options of the benchmark (`--quick`, `--transports`, `--json`, …).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Follow a broadcast ring as one more reader, taking nothing from the others: the
    /// messages still in the ring (or the last N), then new ones as they come, until the
    /// stream closes. Messages lost to overwrites are reported on standard error.
    Tail {
        /// The ring.
        name: String,
        /// Start with the last N messages still in the ring instead of all of them.
        #[arg(short = 'n', long = "lines", value_name = "N")]
        last: Option<u64>,
        /// Only new messages: start at the live end.
        #[arg(long, conflicts_with = "last")]
        live: bool,
        /// Read as the durable reader NAME: resume where it stopped last time.
        #[arg(long = "as", value_name = "NAME")]
        reader: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Receive messages from a ring to standard output until the stream closes.
    Cat {
        /// The ring.
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// How `cat` and `tail` write and when they stop.
#[derive(clap::Args, Debug)]
struct OutputArgs {
    /// How messages are marked in the output.
    #[arg(long, value_enum, default_value_t = Framing::Lines)]
    framing: Framing,
    /// Stop after N messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop (status 0) when no message arrives for SECS seconds.
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<f64>,
    /// Open a ring owned by another user (or writable by others).
    #[arg(long)]
    trust_any_owner: bool,
}

/// A ring kind on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    Spsc,
    Mpmc,
    Broadcast,
}

/// A broadcast overflow policy on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum OverflowArg {
    Lossless,
    Overwrite,
}

/// A wait strategy on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum WaitArg {
    Spin,
    SpinYield,
    Futex,
}

/// A failure the tool reports: its message, and the exit status.
pub struct Failure {
    message: String,
    status: u8,
}

impl Failure {
    /// An error (status 1).
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            status: 1,
        }
    }

    /// The other end died without closing (status 3).
    pub fn peer_died(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            status: 3,
        }
    }
}

impl From<shmring::Error> for Failure {
    fn from(e: shmring::Error) -> Failure {
        Failure::new(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Bench { args } = cli.command {
        // The benchmark starts its child processes as `shmring bench --child …`.
        let argv = std::iter::once("shmring bench".into()).chain(args);
        return shmring_benches::run(argv, &["bench"]);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("shmring: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Ls { json, dirs } => ls(json, &dirs),
        Command::Stat {
            name,
            json,
            watch,
            count,
        } => watch::stat(&ring_path(&name), json, watch, count),
        Command::Top { interval, count } => watch::top(interval, count),
        Command::Rm {
            names,
            dead,
            dry_run,
            force,
        } => {
            if dead {
                rm_dead(dry_run)
            } else if names.is_empty() {
                Err(Failure::new("rm: name the rings to remove, or use --dead"))
            } else {
                rm(&names, force)
            }
        }
        Command::Create {
            name,
            kind,
            capacity,
            slots,
            lanes,
            max_message,
            max_peers,
            max_readers,
            overflow,
            lag_limit,
            wait,
            group_access,
            exist_ok,
            telemetry,
        } => {
            let mut config = Config::new()
                .telemetry(telemetry.unwrap_or(0))
                .group_access(group_access)
                .wait_strategy(match wait {
                    WaitArg::Spin => WaitStrategy::Spin,
                    WaitArg::SpinYield => WaitStrategy::SpinYield,
                    WaitArg::Futex => WaitStrategy::Futex,
                });
            if let Some(bytes) = capacity {
                config = config.capacity(bytes);
            }
            if let Some(n) = slots {
                config = config.slots(n);
            }
            if let Some(n) = lanes {
                config = config.lanes(n);
            }
            if let Some(bytes) = max_message {
                config = config.max_message(bytes);
            }
            if let Some(n) = max_peers {
                config = config.max_peers(n);
            }
            if let Some(n) = max_readers {
                config = config.max_readers(n);
            }
            if let Some(policy) = overflow {
                config = config.overflow(match policy {
                    OverflowArg::Lossless => Policy::Lossless,
                    OverflowArg::Overwrite => Policy::Overwrite,
                });
            }
            if let Some(bytes) = lag_limit {
                config = config.lag_limit(bytes as u64);
            }
            let kind = match kind {
                KindArg::Spsc => KindName::Spsc,
                KindArg::Mpmc => KindName::Mpmc,
                KindArg::Broadcast => KindName::Broadcast,
            };
            let name = view::shm_name(&name);
            let ring = if exist_ok {
                any::Ring::create_or_open(kind, &name, &config)?
            } else {
                any::Ring::create(kind, &name, &config)?
            };
            let how = if ring.was_created() {
                "created"
            } else {
                "exists"
            };
            println!("{how} {name}: {kind}, max message {} B", ring.max_message());
            Ok(())
        }
        Command::Write {
            name,
            framing,
            trust_any_owner,
        } => stream::write(&view::shm_name(&name), framing, trust_any_owner),
        Command::Bench { .. } => unreachable!("handled in main"),
        Command::Cat { name, output } => stream::cat(
            &view::shm_name(&name),
            stream::Reading::Take,
            output.framing,
            output.count,
            output.idle_timeout,
            output.trust_any_owner,
        ),
        Command::Tail {
            name,
            last,
            live,
            reader,
            output,
        } => stream::cat(
            &view::shm_name(&name),
            stream::Reading::Follow {
                last: if live { Some(0) } else { last },
                reader,
            },
            output.framing,
            output.count,
            output.idle_timeout,
            output.trust_any_owner,
        ),
    }
}

/// The file of a ring named on the command line: `/feed` or `feed` in /dev/shm, or a path
/// (anything with a `/` after its first character).
fn ring_path(name: &str) -> PathBuf {
    let shm = view::shm_name(name);
    if shm[1..].contains('/') {
        PathBuf::from(name)
    } else {
        PathBuf::from(format!("{SHM_DIR}{shm}"))
    }
}

/// The rings `ls` and `top` look at: /dev/shm and the extra directories.
pub fn all_rings(dirs: &[PathBuf]) -> Result<Vec<RingView>, Failure> {
    let mut views = Vec::new();
    for dir in std::iter::once(&PathBuf::from(SHM_DIR)).chain(dirs) {
        let files = view::ring_files(dir)
            .map_err(|e| Failure::new(format!("cannot list {}: {e}", dir.display())))?;
        views.extend(files.iter().map(|path| view::inspect(path)));
    }
    Ok(views)
}

fn ls(json: bool, dirs: &[PathBuf]) -> Result<(), Failure> {
    let views = all_rings(dirs)?;
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "schema": "shmring.ls/1",
            "ring_schema": RING_SCHEMA,
            "rings": views,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).map_err(io_json)?
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:<5} {:>11} {:>9} {:>9} {:>8} {:>8} {:>6} {:>5} {:<15} HEALTH",
        "NAME", "KIND", "SIZE", "MAX MSG", "IN FLIGHT", "PROD", "CONS", "OWNER", "MODE", "WAIT"
    )?;
    for v in &views {
        match &v.ring {
            Some(r) => writeln!(
                out,
                "{:<24} {:<5} {:>11} {:>9} {:>9} {:>8} {:>8} {:>6} {:>5} {:<15} {}",
                v.name,
                r.kind,
                match (r.capacity_bytes, r.slots) {
                    (Some(bytes), _) => view::bytes(bytes),
                    (_, Some(slots)) => format!("{slots} slots"),
                    _ => "?".into(),
                },
                format!("{} B", r.max_message),
                r.messages_in_flight,
                peers_cell(r.producers),
                peers_cell(r.consumers),
                v.owner_uid,
                v.mode,
                r.wait_strategy,
                v.health
            )?,
            None => writeln!(
                out,
                "{:<24} {:<5} {:>11} {:>9} {:>9} {:>8} {:>8} {:>6} {:>5} {:<15} {}: {}",
                v.name,
                "?",
                view::bytes(v.size_bytes),
                "",
                "",
                "",
                "",
                v.owner_uid,
                v.mode,
                "",
                v.health,
                v.error.as_deref().unwrap_or("")
            )?,
        }
    }
    Ok(())
}

/// `1` attached and alive, `1+2dead` with dead ones.
pub fn peers_cell(role: view::RoleView) -> String {
    if role.dead == 0 {
        role.alive.to_string()
    } else {
        format!("{}+{}dead", role.alive, role.dead)
    }
}

fn io_json(e: serde_json::Error) -> Failure {
    Failure::new(format!("JSON: {e}"))
}

fn rm(names: &[String], force: bool) -> Result<(), Failure> {
    let mut failed = 0;
    for name in names {
        let shm = view::shm_name(name);
        let outcome = if force {
            any::unlink(&shm).map(|()| "removed".to_string())
        } else {
            any::remove_unused(&shm, false).map(|removal| match removal {
                Removal::Removed { .. } => "removed".to_string(),
                _ => "in use".to_string(),
            })
        };
        match outcome {
            Ok(what) if what == "removed" => println!("removed {shm}"),
            Ok(_) => {
                eprintln!(
                    "shmring: {shm} is open in a live process: kept (--force removes the name \
                     anyway; its users keep working)"
                );
                failed += 1;
            }
            Err(e) => {
                eprintln!("shmring: {shm}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        Err(Failure::new(format!(
            "{failed} of {} not removed",
            names.len()
        )))
    } else {
        Ok(())
    }
}

fn rm_dead(dry_run: bool) -> Result<(), Failure> {
    let files = view::ring_files(std::path::Path::new(SHM_DIR))?;
    let mut removed = 0;
    for path in files {
        let name = view::name_of(&path);
        if dry_run {
            let v = view::inspect(&path);
            let dead = v
                .ring
                .as_ref()
                .map_or(0, |r| r.producers.dead + r.consumers.dead);
            let alive = v
                .ring
                .as_ref()
                .map_or(0, |r| r.producers.alive + r.consumers.alive);
            if dead > 0 && alive == 0 {
                println!("would remove {name}: {dead} dead holder(s), none alive");
                removed += 1;
            }
            continue;
        }
        match any::remove_unused(&name, true) {
            Ok(Removal::Removed { dead_holders }) => {
                println!("removed {name}: {dead_holders} dead holder(s)");
                removed += 1;
            }
            Ok(_) => {}
            // Gone meanwhile, or not ours to judge: say so and go on.
            Err(e) => eprintln!("shmring: {name}: {e}"),
        }
    }
    // Doorbells (readiness sockets) of processes killed while armed.
    let bells = any::remove_dead_doorbells(dry_run);
    if bells > 0 {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!("{verb} {bells} dead doorbell(s) in {SHM_DIR}/shmring-bells-*");
        removed += 1;
    }
    if removed == 0 {
        println!("nothing to remove");
    }
    Ok(())
}

/// A size with an optional unit: `4096`, `64K`, `1MiB`, `2G`.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 4096, 64K or 1MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?} (use K, M or G)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("12 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
