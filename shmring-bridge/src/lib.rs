//! shmring-bridge: carries a ring's messages to another host through NATS, one direction
//! per process: [`export`] reads a ring and publishes to a subject, [`import`] takes a
//! subject and writes a ring. Uses shmring's public API only; `docs/bridge.md` has the
//! semantics per mode and the failure table.
//!
//! - **`core` mode**: plain NATS publish/subscribe, at most once. Each batch carries its
//!   session and the sequence number of its first record, so an importer that misses
//!   batches reports a gap naming exactly the records it did not get.
//! - **`jetstream` mode**: at least once on the wire, exactly once end to end. The exporter
//!   defers the ring's releases and gives space back only up to what JetStream
//!   acknowledged; every batch carries `Nats-Msg-Id` (the server drops repeats) and every
//!   record its source position, by which the importer drops anything it already wrote,
//!   across its own crash too (a small state file settled against the target producer's
//!   position).
//!
//! ```no_run
//! use shmring_bridge::{Common, ExportOptions, Mode};
//! let common = Common::new("nats://127.0.0.1:4222", "quotes", Mode::JetStream);
//! shmring_bridge::export(&ExportOptions::new(common, "/quotes"))?;
//! # Ok::<(), shmring_bridge::BoxError>(())
//! ```

pub mod state;
pub mod wire;

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use shmring::any::{self, KindName};
use shmring::broadcast::{self, JoinAt};
use shmring::{Error, OpenOptions, ReadMark};

/// Errors of the bridge, in words.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Delivery guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Core NATS: at most once; gaps reported exactly.
    Core,
    /// JetStream: nothing lost, nothing duplicated end to end.
    JetStream,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "core" => Ok(Mode::Core),
            "jetstream" => Ok(Mode::JetStream),
            other => Err(format!("mode must be core or jetstream, not {other:?}")),
        }
    }
}

/// What both directions share.
#[derive(Clone, Debug)]
pub struct Common {
    /// NATS server URL.
    pub server: String,
    /// Subject the batches travel on.
    pub subject: String,
    /// Delivery guarantee.
    pub mode: Mode,
    /// JetStream stream holding `subject` (created if missing).
    pub stream: String,
    /// Limit of the stream's size in bytes (JetStream; `None`: no limit). A full stream
    /// refuses new batches, so the exporter stops giving ring space back.
    pub stream_max_bytes: Option<i64>,
    /// When the stream drops a batch: `Limits` (by size or age only: several importers
    /// may read it), or `WorkQueue` (once the one importer acknowledged it: with
    /// `stream_max_bytes`, a stalled importer holds the exporter back).
    pub retention: jetstream::stream::RetentionPolicy,
    /// This node's id: an importer skips batches its own node exported (both directions
    /// on one subject).
    pub node: String,
    /// How often a statistics line is printed.
    pub stats_every: Duration,
}

impl Common {
    /// Defaults: stream `SHMRING_<subject>`, node id from the host name and pid, a
    /// statistics line every second.
    pub fn new(server: &str, subject: &str, mode: Mode) -> Common {
        let stream: String = subject
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Common {
            server: server.into(),
            subject: subject.into(),
            mode,
            stream: format!("SHMRING_{stream}"),
            stream_max_bytes: None,
            retention: jetstream::stream::RetentionPolicy::Limits,
            node: default_node(),
            stats_every: Duration::from_secs(1),
        }
    }
}

fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Export: ring → subject.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// What both directions share.
    pub common: Common,
    /// The source ring (SPSC or broadcast).
    pub ring: String,
    /// Broadcast source: the durable reader name the exporter reads as (its position
    /// survives the exporter's restart).
    pub reader: String,
    /// Most records per NATS message.
    pub batch: usize,
    /// Longest a record waits for its batch to fill.
    pub linger: Duration,
    /// JetStream: most batches published and not yet acknowledged.
    pub window: usize,
    /// JetStream: how long an acknowledgement may take before the batch is sent again.
    pub ack_timeout: Duration,
    /// Stop once the source ring's producer has closed and everything is acknowledged.
    pub until_closed: bool,
}

impl ExportOptions {
    /// Defaults: batches of up to 64 records or 200 µs, a window of 32 batches, 5 s ack
    /// timeout, durable reader name `bridge`.
    pub fn new(common: Common, ring: &str) -> ExportOptions {
        ExportOptions {
            common,
            ring: ring.into(),
            reader: "bridge".into(),
            batch: 64,
            linger: Duration::from_micros(200),
            window: 32,
            ack_timeout: Duration::from_secs(5),
            until_closed: false,
        }
    }
}

/// Import: subject → ring.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// What both directions share.
    pub common: Common,
    /// The target ring (SPSC or broadcast: the importer must be its only producer).
    pub ring: String,
    /// JetStream durable consumer name.
    pub durable: String,
    /// Where the importer keeps what it delivered (JetStream).
    pub state: PathBuf,
    /// Most batches fetched and not yet acknowledged.
    pub window: usize,
    /// Stop after this many records delivered (tests, benchmarks).
    pub max_records: Option<u64>,
}

impl ImportOptions {
    /// Defaults: durable `shmring-bridge`, state file `./shmring-bridge.state`, window 64.
    pub fn new(common: Common, ring: &str) -> ImportOptions {
        ImportOptions {
            common,
            ring: ring.into(),
            durable: "shmring-bridge".into(),
            state: PathBuf::from("shmring-bridge.state"),
            window: 64,
            max_records: None,
        }
    }
}

/// Counters, printed as one JSON line per `stats_every` on standard output.
#[derive(Debug, Default)]
struct Counters {
    /// Records published (exporter) or received from NATS (importer).
    forwarded: u64,
    /// Records whose batch JetStream acknowledged.
    acked: u64,
    /// Records published again after a failed or timed-out publish.
    retried: u64,
    /// Batches the server recognised as repeats (`Nats-Msg-Id`).
    server_duplicates: u64,
    /// Records the importer dropped because it had delivered them already.
    deduplicated: u64,
    /// Records written into the target ring.
    delivered: u64,
    /// Batches skipped because this node exported them.
    own_skipped: u64,
    /// Records missing in core mode (each gap is also an event line).
    missing: u64,
    /// Records a broadcast source's producer overwrote before the exporter read them.
    lagged: u64,
    /// Core mode: records whose publish failed (the importer reports them as a gap).
    dropped: u64,
    /// Batches that arrived ahead of one still missing, handed back to JetStream for later.
    ahead: u64,
}

struct Reporter {
    role: &'static str,
    mode: Mode,
    every: Duration,
    last: Instant,
    counters: Counters,
}

impl Reporter {
    fn new(role: &'static str, common: &Common) -> Reporter {
        Reporter {
            role,
            mode: common.mode,
            every: common.stats_every,
            last: Instant::now(),
            counters: Counters::default(),
        }
    }

    fn due(&self) -> bool {
        self.last.elapsed() >= self.every
    }

    /// An importer's turn of its loop: the statistics line when due; true (after a last
    /// line) once `max_records` are delivered.
    fn tick(&mut self, max_records: Option<u64>) -> bool {
        if self.due() {
            self.print(0);
        }
        let done = max_records.is_some_and(|m| self.counters.delivered >= m);
        if done {
            self.print(0);
        }
        done
    }

    /// Prints the statistics line; `lag`: records not yet through this hop.
    fn print(&mut self, lag: u64) {
        let c = &self.counters;
        let line = serde_json::json!({
            "bridge": self.role,
            "mode": if self.mode == Mode::Core { "core" } else { "jetstream" },
            "forwarded": c.forwarded,
            "acked": c.acked,
            "retried": c.retried,
            "server_duplicates": c.server_duplicates,
            "deduplicated": c.deduplicated,
            "delivered": c.delivered,
            "own_skipped": c.own_skipped,
            "missing": c.missing,
            "lagged": c.lagged,
            "dropped": c.dropped,
            "ahead": c.ahead,
            "lag": lag,
        });
        println!("{line}");
        self.last = Instant::now();
    }
}

/// Prints an event line (a gap, a source change) on standard output.
fn event(fields: serde_json::Value) {
    println!("{}", serde_json::json!({ "event": fields }));
}

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

async fn connect(server: &str) -> Result<async_nats::Client, BoxError> {
    Ok(async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(server)
        .await?)
}

async fn ensure_stream(
    js: &jetstream::Context,
    common: &Common,
) -> Result<jetstream::stream::Stream, BoxError> {
    let config = jetstream::stream::Config {
        name: common.stream.clone(),
        subjects: vec![common.subject.clone()],
        max_bytes: common.stream_max_bytes.unwrap_or(-1),
        discard: jetstream::stream::DiscardPolicy::New,
        retention: common.retention,
        duplicate_window: Duration::from_secs(120),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    Ok(js.get_or_create_stream(config).await?)
}

/// The exporter's source: a ring, and how to attach a reader that resumes where the last
/// acknowledged record left off.
struct Source {
    ring: any::Ring,
    broadcast: Option<broadcast::Ring>,
    reader: String,
    id: String,
}

impl Source {
    fn open(opts: &ExportOptions) -> Result<Source, BoxError> {
        let ring = any::Ring::open(&opts.ring, &OpenOptions::new())?;
        let id = format!("{}@{}", opts.ring, ring.created_unix_ns());
        let broadcast = match ring.kind() {
            KindName::Broadcast => Some(broadcast::Ring::open(&opts.ring)?),
            KindName::Spsc => None,
            other => {
                return Err(format!(
                    "{} is an {other} ring: the exporter reads SPSC and broadcast rings, whose \
                     readers can hold messages until the broker has them",
                    opts.ring
                )
                .into());
            }
        };
        Ok(Source {
            ring,
            broadcast,
            reader: opts.reader.clone(),
            id,
        })
    }

    /// A reader at the last position given back. `deferred`: releases held until
    /// acknowledged (JetStream); otherwise given back as read (core).
    fn attach(&self, deferred: bool) -> Result<any::Consumer, BoxError> {
        let mut rx = match &self.broadcast {
            Some(ring) => {
                any::Consumer::Broadcast(ring.reader_named(&self.reader, JoinAt::Oldest)?)
            }
            None => self.ring.consumer()?,
        };
        if deferred {
            rx.defer_releases()?;
        }
        Ok(rx)
    }
}

/// Records read and not yet published.
struct Batch {
    body: Vec<u8>,
    count: u64,
    /// The position before the first record.
    prev: u64,
    first: u64,
    last: Option<ReadMark>,
    /// Records lost to the source's producer just before this batch.
    lagged: u64,
    started: Instant,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            body: Vec::new(),
            count: 0,
            prev: 0,
            first: 0,
            last: None,
            lagged: 0,
            started: Instant::now(),
        }
    }

    /// Adds the record read at `mark`, which follows position `prev`.
    fn push(&mut self, prev: u64, mark: ReadMark, payload: &[u8]) {
        if self.count == 0 {
            self.prev = prev;
            self.first = mark.position();
            self.started = Instant::now();
        }
        wire::push(&mut self.body, mark.position(), payload);
        self.count += 1;
        self.last = Some(mark);
    }
}

/// A published batch waiting for its acknowledgement.
struct InFlight {
    ack: tokio::task::JoinHandle<Result<jetstream::publish::PublishAck, String>>,
    mark: ReadMark,
    records: u64,
}

/// Reads the source ring and publishes its records to the subject until the process is
/// stopped (or, with `until_closed`, the source's producer has closed and everything is
/// through).
pub fn export(opts: &ExportOptions) -> Result<(), BoxError> {
    let rt = runtime()?;
    let _in_runtime = rt.enter();
    let client = rt.block_on(connect(&opts.common.server))?;
    let source = Source::open(opts)?;
    let js = jetstream::new(client.clone());
    if opts.common.mode == Mode::JetStream {
        rt.block_on(ensure_stream(&js, &opts.common))?;
    }
    let deferred = opts.common.mode == Mode::JetStream;
    let mut rx = source.attach(deferred)?;
    // The position before the next record read.
    let mut prev = rx.read_mark()?.position();
    let mut report = Reporter::new("export", &opts.common);
    let session: u64 = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (t ^ u64::from(std::process::id()).rotate_left(32)).max(1)
    };
    let mut next_seq: u64 = 1;
    let mut window: VecDeque<InFlight> = VecDeque::new();
    let mut batch = Batch::new();
    let mut buf = vec![0u8; source.ring.max_message()];
    let mut backoff = Duration::from_millis(10);
    let mut closed = false;
    // Records lost to the source's producer after the current batch's last record.
    let mut pending_lag = 0u64;
    // The batch ends here (a gap in the source follows it).
    let mut flush_now = false;
    loop {
        // Acknowledgements, oldest first: space goes back up to each acknowledged batch.
        let mut failed = false;
        while let Some(front) = window.front() {
            let must_wait = window.len() >= opts.window || (closed && batch.count == 0);
            if !front.ack.is_finished() && !must_wait {
                break;
            }
            let front = window.pop_front().expect("front exists");
            match rt.block_on(front.ack) {
                Ok(Ok(ack)) => {
                    if ack.duplicate {
                        report.counters.server_duplicates += 1;
                    }
                    rx.release_to(front.mark)?;
                    report.counters.acked += front.records;
                    backoff = Duration::from_millis(10);
                }
                Ok(Err(why)) => {
                    event(serde_json::json!({"kind": "publish failed", "detail": why}));
                    failed = true;
                    break;
                }
                Err(join) => return Err(join.into()),
            }
        }
        if failed {
            // Everything after the last acknowledged batch is read again and published
            // again: the importer drops what it already has.
            let again: u64 = window.iter().map(|f| f.records).sum::<u64>() + batch.count;
            report.counters.retried += again;
            window.clear();
            batch = Batch::new();
            pending_lag = 0;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
            rx.rewind()?;
            prev = rx.read_mark()?.position();
            closed = false;
            continue;
        }
        if closed && window.is_empty() && batch.count == 0 {
            report.print(0);
            return Ok(());
        }
        if report.due() {
            report.print(source.ring.stats().messages_in_flight);
        }
        // The next record, waiting at most until the batch is due.
        let wait = if batch.count == 0 {
            Duration::from_millis(10)
        } else {
            opts.linger.saturating_sub(batch.started.elapsed())
        };
        match rx.recv(&mut buf, Some(wait)) {
            Ok(n) => {
                let mark = rx.read_mark()?;
                batch.push(prev, mark, &buf[..n]);
                prev = mark.position();
            }
            Err(Error::Timeout | Error::WouldBlock) => {}
            Err(Error::Closed | Error::PeerDead { .. }) => {
                if opts.until_closed {
                    closed = true;
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(Error::Lagged { missed }) => {
                report.counters.lagged += missed;
                event(serde_json::json!({"kind": "source lagged", "missed": missed}));
                // The next record does not follow the last one read: a batch of its own,
                // marked so.
                prev = rx.read_mark()?.position();
                if batch.count > 0 {
                    flush_now = true;
                    pending_lag += missed;
                } else {
                    batch.lagged += missed;
                }
            }
            Err(e) => return Err(e.into()),
        }
        let due = batch.count as usize >= opts.batch
            || (batch.count > 0 && (closed || flush_now || batch.started.elapsed() >= opts.linger));
        if !due {
            continue;
        }
        let mut headers = HeaderMap::new();
        headers.insert(wire::RING, source.id.as_str());
        headers.insert(wire::NODE, opts.common.node.as_str());
        headers.insert(wire::COUNT, batch.count.to_string().as_str());
        headers.insert(wire::PREV, batch.prev.to_string().as_str());
        if batch.lagged > 0 {
            headers.insert(wire::LAGGED, batch.lagged.to_string().as_str());
        }
        flush_now = false;
        let full = std::mem::replace(&mut batch, Batch::new());
        batch.lagged = std::mem::take(&mut pending_lag);
        let records = full.count;
        let last = full.last.expect("a due batch has records");
        report.counters.forwarded += records;
        let body = Bytes::from(full.body);
        match opts.common.mode {
            Mode::Core => {
                headers.insert(wire::SESSION, session.to_string().as_str());
                headers.insert(wire::SEQ, next_seq.to_string().as_str());
                next_seq += records;
                let subject = opts.common.subject.clone();
                if let Err(e) = rt.block_on(client.publish_with_headers(subject, headers, body)) {
                    // At most once: these records are gone; the importer reports the gap.
                    report.counters.dropped += records;
                    event(serde_json::json!({"kind": "publish failed", "detail": e.to_string()}));
                }
            }
            Mode::JetStream => {
                let id = format!("{}:{}:{}", source.id, full.first, last.position());
                headers.insert("Nats-Msg-Id", id.as_str());
                let timeout = opts.ack_timeout;
                let published = rt.block_on(js.publish_with_headers(
                    opts.common.subject.clone(),
                    headers,
                    body,
                ));
                let ack = match published {
                    Ok(future) => rt.spawn(async move {
                        match tokio::time::timeout(timeout, future).await {
                            Ok(Ok(ack)) => Ok(ack),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err(format!("no acknowledgement within {timeout:?}")),
                        }
                    }),
                    Err(e) => {
                        let why = e.to_string();
                        rt.spawn(async move { Err(why) })
                    }
                };
                window.push_back(InFlight {
                    ack,
                    mark: last,
                    records,
                });
            }
        }
    }
}

/// Where imported records go: the target ring's only producer.
struct Target {
    tx: any::Producer,
}

impl Target {
    /// Writes one record, waiting while the ring is full or has no consumer (the NATS
    /// side holds back meanwhile).
    fn deliver(&mut self, payload: &[u8]) -> Result<(), BoxError> {
        loop {
            match self.tx.send(payload, Some(Duration::from_millis(100))) {
                Ok(()) => return Ok(()),
                Err(Error::Timeout | Error::Closed | Error::PeerDead { .. }) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Takes batches from the subject and writes their records into the target ring until the
/// process is stopped (or `max_records` were delivered).
pub fn import(opts: &ImportOptions) -> Result<(), BoxError> {
    let rt = runtime()?;
    let _in_runtime = rt.enter();
    let client = rt.block_on(connect(&opts.common.server))?;
    let ring = any::Ring::open(&opts.ring, &OpenOptions::new())?;
    let mut target = Target {
        tx: ring.producer()?,
    };
    let mut report = Reporter::new("import", &opts.common);
    match opts.common.mode {
        Mode::JetStream => import_jetstream(opts, &rt, client, &mut target, &mut report),
        Mode::Core => import_core(opts, &rt, client, &mut target, &mut report),
    }
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

fn import_jetstream(
    opts: &ImportOptions,
    rt: &tokio::runtime::Runtime,
    client: async_nats::Client,
    target: &mut Target,
    report: &mut Reporter,
) -> Result<(), BoxError> {
    let mut state = state::DeliveryState::open(&opts.state)?;
    state.recover(target.tx.position()?);
    let js = jetstream::new(client);
    let stream = rt.block_on(ensure_stream(&js, &opts.common))?;
    let consumer: jetstream::consumer::PullConsumer =
        rt.block_on(stream.get_or_create_consumer(
            &opts.durable,
            jetstream::consumer::pull::Config {
                durable_name: Some(opts.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                max_ack_pending: opts.window as i64,
                ack_wait: Duration::from_secs(10),
                ..Default::default()
            },
        ))?;
    let mut messages = rt.block_on(consumer.messages())?;
    loop {
        if report.tick(opts.max_records) {
            return Ok(());
        }
        let next = rt.block_on(tokio::time::timeout(
            opts.common.stats_every,
            messages.next(),
        ));
        let msg = match next {
            Err(_) => continue,
            Ok(None) => return Err("the JetStream consumer's message stream ended".into()),
            Ok(Some(Err(e))) => {
                event(serde_json::json!({"kind": "fetch failed", "detail": e.to_string()}));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Ok(Some(Ok(msg))) => msg,
        };
        let headers = msg.headers.as_ref();
        if header(headers, wire::NODE) == Some(opts.common.node.as_str()) {
            report.counters.own_skipped += 1;
            rt.block_on(msg.ack())?;
            continue;
        }
        let Some(ring_id) = header(headers, wire::RING) else {
            event(
                serde_json::json!({"kind": "not a shmring batch", "subject": msg.subject.as_str()}),
            );
            rt.block_on(msg.ack())?;
            continue;
        };
        let source = state::source_hash(ring_id);
        if state.delivered().0 != source {
            event(serde_json::json!({"kind": "source", "ring": ring_id}));
            state.switch_source(source);
        }
        let mut prev: u64 = header(headers, wire::PREV)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("a batch without a valid {} header", wire::PREV))?;
        // A source new to this importer, or one whose producer overwrote records before
        // the exporter read them, starts a new chain here.
        let mut restart = state.delivered().1 == 0 || header(headers, wire::LAGGED).is_some();
        let mut ahead = false;
        for record in wire::records(&msg.payload) {
            let (position, payload) = record?;
            let delivered = state.delivered().1;
            if position <= delivered && !restart {
                report.counters.deduplicated += 1;
                prev = position;
                continue;
            }
            if prev != delivered && !restart {
                // Published after a batch that is not here yet (a publish before it failed:
                // the exporter sends everything from there again). Delivered once that
                // batch has come.
                ahead = true;
                break;
            }
            restart = false;
            state.begin(position, target.tx.position()?);
            target.deliver(payload)?;
            state.done(position);
            report.counters.delivered += 1;
            prev = position;
        }
        if ahead {
            report.counters.ahead += 1;
            let later = jetstream::AckKind::Nak(Some(Duration::from_millis(50)));
            rt.block_on(msg.ack_with(later))?;
        } else {
            rt.block_on(msg.ack())?;
        }
    }
}

fn import_core(
    opts: &ImportOptions,
    rt: &tokio::runtime::Runtime,
    client: async_nats::Client,
    target: &mut Target,
    report: &mut Reporter,
) -> Result<(), BoxError> {
    let mut subscriber = rt.block_on(client.subscribe(opts.common.subject.clone()))?;
    // Per exporter session: the sequence number expected next.
    let mut expected: std::collections::HashMap<String, u64> = Default::default();
    loop {
        if report.tick(opts.max_records) {
            return Ok(());
        }
        let next = rt.block_on(tokio::time::timeout(
            opts.common.stats_every,
            subscriber.next(),
        ));
        let msg = match next {
            Err(_) => continue,
            Ok(None) => return Err("the subscription ended".into()),
            Ok(Some(msg)) => msg,
        };
        let headers = msg.headers.as_ref();
        if header(headers, wire::NODE) == Some(opts.common.node.as_str()) {
            report.counters.own_skipped += 1;
            continue;
        }
        let (Some(session), Some(seq)) =
            (header(headers, wire::SESSION), header(headers, wire::SEQ))
        else {
            event(
                serde_json::json!({"kind": "not a shmring core batch", "subject": msg.subject.as_str()}),
            );
            continue;
        };
        let seq: u64 = seq
            .parse()
            .map_err(|_| format!("bad {} header {seq:?}", wire::SEQ))?;
        let want = expected.entry(session.to_owned()).or_insert(1);
        if seq > *want {
            report.counters.missing += seq - *want;
            event(serde_json::json!({
                "kind": "gap", "session": session, "first_missing": *want, "last_missing": seq - 1,
            }));
        }
        let mut count = 0;
        for record in wire::records(&msg.payload) {
            let (_, payload) = record?;
            report.counters.forwarded += 1;
            target.deliver(payload)?;
            report.counters.delivered += 1;
            count += 1;
        }
        *want = (*want).max(seq + count);
    }
}
