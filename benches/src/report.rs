//! From samples to figures: merging repetitions, ratios to the floor and to memcpy, the
//! markdown table, JSON records, and the kernel-queue limits a run needed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::Sample;

/// One row: a transport in one mode at one size with one API, all repetitions merged.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) transport: String,
    pub(crate) mode: String,
    pub(crate) size: usize,
    pub(crate) api: String,
    pub(crate) rtt: Option<Histogram<u64>>,
    pub(crate) msgs_per_s: Option<f64>,
    pub(crate) bytes_per_s: Option<f64>,
    pub(crate) syscalls_per_msg: Option<f64>,
}

pub(crate) struct Figures {
    pub(crate) rows: Vec<Row>,
    /// `floor-spin` round-trip median (ns), the denominator of every latency ratio.
    pub floor_p50: Option<f64>,
    /// memcpy bytes/s by size, the denominator of every bandwidth ratio.
    pub(crate) memcpy: BTreeMap<usize, f64>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

impl Figures {
    pub(crate) fn from_samples(
        samples: BTreeMap<(String, String, usize, String), Vec<Sample>>,
    ) -> Figures {
        let mut rows = Vec::new();
        for ((transport, mode, size, api), samples) in samples {
            let mut rtt: Option<Histogram<u64>> = None;
            for s in &samples {
                if let Some(h) = &s.rtt {
                    match &mut rtt {
                        Some(all) => all.add(h).expect("same bounds"),
                        None => rtt = Some(h.clone()),
                    }
                }
            }
            rows.push(Row {
                transport,
                mode,
                size,
                api,
                rtt,
                msgs_per_s: median(samples.iter().filter_map(|s| s.msgs_per_s).collect()),
                bytes_per_s: median(samples.iter().filter_map(|s| s.bytes_per_s).collect()),
                syscalls_per_msg: median(
                    samples
                        .iter()
                        .filter(|s| s.messages > 0 && s.counts_syscalls)
                        .map(|s| s.wake_syscalls as f64 / s.messages as f64)
                        .collect(),
                ),
            });
        }
        let floor_p50 = rows
            .iter()
            .find(|r| r.transport == "floor-spin")
            .and_then(|r| r.rtt.as_ref())
            .map(|h| h.value_at_quantile(0.5) as f64);
        let memcpy = rows
            .iter()
            .filter(|r| r.transport == "memcpy")
            .filter_map(|r| Some((r.size, r.bytes_per_s?)))
            .collect();
        Figures {
            rows,
            floor_p50,
            memcpy,
        }
    }
}

fn si(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.2} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

fn ns(value: u64) -> String {
    if value >= 10_000 {
        format!("{:.1} µs", value as f64 / 1000.0)
    } else {
        format!("{value} ns")
    }
}

/// What the run was made on and with.
pub(crate) struct Machine {
    pub(crate) lines: Vec<String>,
}

pub(crate) fn machine(
    pinned: &str,
    reps: u32,
    round_trips: u64,
    stream: Duration,
    limits: &Limits,
) -> Machine {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mut lines = vec![
        format!("kernel {}, CPU {cpu}, {pinned}", kernel.trim()),
        format!(
            "{reps} repetition(s), interleaved; {round_trips} measured round trips per repetition (+10% warm-up); streams of {} ms",
            stream.as_millis()
        ),
        format!(
            "shmring rings: 1 MiB or 64 messages, whichever is larger; futex spin window 20 µs (\"asleep\": 0)"
        ),
    ];
    lines.extend(limits.notes.iter().cloned());
    Machine { lines }
}

pub(crate) fn markdown(figures: &Figures, machine: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# shmring-bench\n");
    for line in &machine.lines {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n## Round trip (ping-pong between two processes)\n");
    let _ = writeln!(
        out,
        "| transport | mode | size | p50 | p99 | p99.9 | max | p50 / floor |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|");
    let mut rtt_rows: Vec<&Row> = figures.rows.iter().filter(|r| r.rtt.is_some()).collect();
    rtt_rows.sort_by_key(|r| (r.size, r.rtt.as_ref().map(|h| h.value_at_quantile(0.5))));
    for r in rtt_rows {
        let h = r.rtt.as_ref().unwrap();
        let p50 = h.value_at_quantile(0.5);
        let ratio = figures
            .floor_p50
            .map_or("–".into(), |f| format!("{:.2}×", p50 as f64 / f));
        let _ = writeln!(
            out,
            "| {} | {} | {} B | {} | {} | {} | {} | {ratio} |",
            r.transport,
            r.mode,
            r.size,
            ns(p50),
            ns(h.value_at_quantile(0.99)),
            ns(h.value_at_quantile(0.999)),
            ns(h.max()),
        );
    }
    let _ = writeln!(
        out,
        "\n## One-way throughput (the consumer reads every byte)\n"
    );
    let _ = writeln!(
        out,
        "| transport | api | size | msgs/s | bytes/s | bytes / memcpy | syscalls/msg |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|");
    let mut tput_rows: Vec<&Row> = figures
        .rows
        .iter()
        .filter(|r| r.msgs_per_s.is_some())
        .collect();
    tput_rows.sort_by(|a, b| {
        (a.size, b.msgs_per_s.unwrap_or(0.0))
            .partial_cmp(&(b.size, a.msgs_per_s.unwrap_or(0.0)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for r in tput_rows {
        let bytes = r.bytes_per_s.unwrap_or(0.0);
        let ratio = figures
            .memcpy
            .get(&r.size)
            .map_or("–".into(), |m| format!("{:.2}", bytes / m));
        let calls = r.syscalls_per_msg.map_or("–".into(), |c| format!("{c:.4}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} B | {} | {}B/s | {ratio} | {calls} |",
            r.transport,
            r.api,
            r.size,
            si(r.msgs_per_s.unwrap_or(0.0)),
            si(bytes),
        );
    }
    out
}

pub(crate) fn json(figures: &Figures, machine: &Machine) -> String {
    let mut records = Vec::new();
    let mut push = |r: &Row, metric: &str, value: f64, unit: &str| {
        records.push(json!({
            "transport": r.transport,
            "mode": r.mode,
            "api": r.api,
            "msg_size": r.size,
            "metric": metric,
            "value": value,
            "unit": unit,
        }));
    };
    for r in &figures.rows {
        if let Some(h) = &r.rtt {
            push(r, "rtt_p50_ns", h.value_at_quantile(0.5) as f64, "ns");
            push(r, "rtt_p99_ns", h.value_at_quantile(0.99) as f64, "ns");
            push(r, "rtt_p999_ns", h.value_at_quantile(0.999) as f64, "ns");
            push(r, "rtt_max_ns", h.max() as f64, "ns");
            if let Some(f) = figures.floor_p50 {
                push(
                    r,
                    "rtt_p50_over_floor",
                    h.value_at_quantile(0.5) as f64 / f,
                    "ratio",
                );
            }
        }
        if let Some(v) = r.msgs_per_s {
            push(r, "msgs_per_s", v, "1/s");
        }
        if let Some(v) = r.bytes_per_s {
            push(r, "bytes_per_s", v, "B/s");
            if let Some(m) = figures.memcpy.get(&r.size) {
                push(r, "bytes_per_s_over_memcpy", v / m, "ratio");
            }
        }
        if let Some(v) = r.syscalls_per_msg {
            push(r, "syscalls_per_msg", v, "1/msg");
        }
    }
    let doc = json!({ "machine": machine.lines, "records": records });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Kernel message-queue limits: raised for the run when we may (root), restored after;
/// otherwise the sizes above them are skipped and the table says so.
pub(crate) struct Limits {
    saved: Vec<(String, String)>,
    posix_msgsize: usize,
    sysv_msgmax: usize,
    pub(crate) notes: Vec<String>,
}

fn read_limit(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn raise_kernel_limits() -> Limits {
    let mut limits = Limits {
        saved: Vec::new(),
        posix_msgsize: 0,
        sysv_msgmax: 0,
        notes: Vec::new(),
    };
    let want = 65536usize;
    // Each POSIX queue is charged maxmsg * msgsize against RLIMIT_MSGQUEUE (800 KiB by
    // default): two 10 x 64 KiB queues need more.
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid rlimit for getrlimit/setrlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut rl) == 0 && rl.rlim_cur < 64 << 20 {
            let old = rl.rlim_cur;
            let raised = libc::rlimit {
                rlim_cur: 64 << 20,
                rlim_max: rl.rlim_max.max(64 << 20),
            };
            if libc::setrlimit(libc::RLIMIT_MSGQUEUE, &raised) == 0 {
                limits.notes.push(format!(
                    "RLIMIT_MSGQUEUE raised {old} → {} for this process",
                    64 << 20
                ));
            } else {
                limits.notes.push(format!(
                    "RLIMIT_MSGQUEUE is {old} B and cannot be raised here: posix-mq queues hold \
                     fewer than 10 messages when 10 would not fit"
                ));
            }
        }
    }
    for (path, label, need) in [
        (
            "/proc/sys/fs/mqueue/msgsize_max",
            "posix-mq msgsize_max",
            want,
        ),
        ("/proc/sys/kernel/msgmax", "sysv-mq msgmax", want),
        ("/proc/sys/kernel/msgmnb", "sysv-mq msgmnb", want * 4),
    ] {
        let Some(old) = read_limit(path) else {
            limits
                .notes
                .push(format!("{label}: unreadable, queue tests may fail"));
            continue;
        };
        let now = if old < need && std::fs::write(path, need.to_string()).is_ok() {
            limits.saved.push((path.to_string(), old.to_string()));
            limits.notes.push(format!(
                "{label} raised {old} → {need} for the run (restored after)"
            ));
            need
        } else {
            if old < need {
                limits.notes.push(format!(
                    "{label} is {old} and cannot be raised here: larger messages skipped"
                ));
            }
            old
        };
        match path {
            "/proc/sys/fs/mqueue/msgsize_max" => limits.posix_msgsize = now,
            "/proc/sys/kernel/msgmax" => limits.sysv_msgmax = now,
            _ => limits.sysv_msgmax = limits.sysv_msgmax.min(now / 2),
        }
    }
    limits
}

impl Limits {
    pub(crate) fn allows(&self, transport: &str, size: usize) -> bool {
        match transport {
            "posix-mq" => size <= self.posix_msgsize,
            "sysv-mq" => size <= self.sysv_msgmax,
            // Fixed-size `Copy` slots, one type per size: the sizes it is built for.
            "ringfire-spin" | "ringfire-futex" => matches!(size, 8 | 64 | 1024),
            _ => true,
        }
    }
}

impl Drop for Limits {
    /// Puts the system limits back, on every way out of a run.
    fn drop(&mut self) {
        for (path, old) in &self.saved {
            let _ = std::fs::write(path, old);
        }
    }
}
