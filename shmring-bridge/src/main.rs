//! `shmring-bridge export|import`: one direction of a ring ↔ NATS bridge per process.
//! See `docs/bridge.md`.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::stream::RetentionPolicy;
use clap::{Args, Parser, Subcommand};
use shmring_bridge::{Common, ExportOptions, ImportOptions, Mode};

/// Carry shmring rings across hosts through NATS.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read a ring (SPSC or broadcast) and publish its records to a subject.
    Export {
        #[command(flatten)]
        common: CommonArgs,
        /// The source ring.
        #[arg(long)]
        ring: String,
        /// Broadcast source: the durable reader name to read as.
        #[arg(long, default_value = "bridge")]
        reader: String,
        /// Most records per NATS message.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Longest a record waits for its batch, in microseconds.
        #[arg(long, default_value_t = 200)]
        linger_us: u64,
        /// JetStream: most batches awaiting acknowledgement.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// JetStream: acknowledgement timeout in milliseconds.
        #[arg(long, default_value_t = 5000)]
        ack_timeout_ms: u64,
        /// Exit once the source's producer has closed and everything is through.
        #[arg(long)]
        until_closed: bool,
    },
    /// Take records from a subject and write them into a ring (as its only producer).
    Import {
        #[command(flatten)]
        common: CommonArgs,
        /// The target ring.
        #[arg(long)]
        ring: String,
        /// JetStream durable consumer name.
        #[arg(long, default_value = "shmring-bridge")]
        durable: String,
        /// JetStream: file keeping what was delivered (survives the importer's crash).
        #[arg(long, default_value = "shmring-bridge.state")]
        state: PathBuf,
        /// Most batches fetched and not yet acknowledged.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Exit after this many records delivered.
        #[arg(long)]
        max_records: Option<u64>,
    },
}

#[derive(Args)]
struct CommonArgs {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// Subject the batches travel on.
    #[arg(long)]
    subject: String,
    /// core (at most once, gaps reported) or jetstream (nothing lost or duplicated).
    #[arg(long, default_value = "jetstream")]
    mode: Mode,
    /// JetStream stream name (default SHMRING_<subject>).
    #[arg(long)]
    stream: Option<String>,
    /// JetStream stream size limit in bytes: a full stream holds the exporter back.
    #[arg(long)]
    stream_max_bytes: Option<i64>,
    /// JetStream retention: limits (kept until size/age limits) or workqueue (dropped once
    /// the importer acknowledged it).
    #[arg(long, default_value = "limits")]
    retention: String,
    /// This node's id (default host-pid); batches from the same id are not imported.
    #[arg(long)]
    node: Option<String>,
    /// Seconds between statistics lines.
    #[arg(long, default_value_t = 1.0)]
    stats_every: f64,
}

impl CommonArgs {
    fn into_common(self) -> Result<Common, String> {
        let mut common = Common::new(&self.server, &self.subject, self.mode);
        common.retention = match self.retention.as_str() {
            "limits" => RetentionPolicy::Limits,
            "workqueue" => RetentionPolicy::WorkQueue,
            other => {
                return Err(format!(
                    "retention must be limits or workqueue, not {other:?}"
                ));
            }
        };
        if let Some(stream) = self.stream {
            common.stream = stream;
        }
        if let Some(node) = self.node {
            common.node = node;
        }
        common.stream_max_bytes = self.stream_max_bytes;
        common.stats_every = Duration::from_secs_f64(self.stats_every.max(0.01));
        Ok(common)
    }
}

fn usage(why: &str) -> ! {
    eprintln!("shmring-bridge: {why}");
    std::process::exit(2);
}

fn main() {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Export {
            common,
            ring,
            reader,
            batch,
            linger_us,
            window,
            ack_timeout_ms,
            until_closed,
        } => {
            let common = common.into_common().unwrap_or_else(|e| usage(&e));
            let mut opts = ExportOptions::new(common, &ring);
            opts.reader = reader;
            opts.batch = batch.max(1);
            opts.linger = Duration::from_micros(linger_us);
            opts.window = window.max(1);
            opts.ack_timeout = Duration::from_millis(ack_timeout_ms);
            opts.until_closed = until_closed;
            shmring_bridge::export(&opts)
        }
        Command::Import {
            common,
            ring,
            durable,
            state,
            window,
            max_records,
        } => {
            let common = common.into_common().unwrap_or_else(|e| usage(&e));
            let mut opts = ImportOptions::new(common, &ring);
            opts.durable = durable;
            opts.state = state;
            opts.window = window.max(1);
            opts.max_records = max_records;
            shmring_bridge::import(&opts)
        }
    };
    if let Err(e) = done {
        eprintln!("shmring-bridge: {e}");
        std::process::exit(1);
    }
}
