//! `stat` (one ring, optionally refreshed with rates) and `top` (every ring, busiest
//! first).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Failure;
use crate::view::{self, RingView};

/// Messages and bytes per second between two looks at a ring.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rates {
    /// Messages published per second.
    pub sent_per_s: f64,
    /// Messages released per second.
    pub received_per_s: f64,
    /// Payload bytes published per second.
    pub bytes_sent_per_s: f64,
}

fn rates(before: &RingView, after: &RingView, elapsed: Duration) -> Rates {
    let (Some(a), Some(b)) = (&before.ring, &after.ring) else {
        return Rates::default();
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    // Counters only grow; a ring removed and made again under the name starts over.
    let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
    Rates {
        sent_per_s: per_s(a.messages_sent, b.messages_sent),
        received_per_s: per_s(a.messages_received, b.messages_received),
        bytes_sent_per_s: per_s(a.bytes_sent, b.bytes_sent),
    }
}

/// `stat`: the ring at `path` once, or every `watch` seconds (`count` times at most).
pub fn stat(
    path: &Path,
    json: bool,
    watch: Option<f64>,
    count: Option<u64>,
) -> Result<(), Failure> {
    if !path.exists() {
        return Err(Failure::new(format!(
            "{}: no such ring",
            view::name_of(path)
        )));
    }
    let mut out = std::io::stdout().lock();
    let Some(every) = watch else {
        let v = view::inspect(path);
        print_stat(&mut out, &v, None, None, json)?;
        return Ok(());
    };
    let every = Duration::from_secs_f64(every.max(0.05));
    let mut before = view::inspect(path);
    let mut taken = Instant::now();
    // The most messages seen in flight while watching.
    let mut high_water = before.ring.as_ref().map_or(0, |r| r.messages_in_flight);
    for _ in 0..count.unwrap_or(u64::MAX) {
        std::thread::sleep(every);
        let now = view::inspect(path);
        let at = Instant::now();
        let r = rates(&before, &now, at - taken);
        if let Some(ring) = &now.ring {
            high_water = high_water.max(ring.messages_in_flight);
        }
        print_stat(&mut out, &now, Some(r), Some(high_water), json)?;
        out.flush()?;
        (before, taken) = (now, at);
    }
    Ok(())
}

fn print_stat(
    out: &mut impl Write,
    v: &RingView,
    rates: Option<Rates>,
    high_water: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    if json {
        let mut doc = serde_json::to_value(v).map_err(|e| Failure::new(e.to_string()))?;
        doc["schema"] = view::RING_SCHEMA.into();
        if let Some(r) = rates {
            doc["rates"] = serde_json::to_value(r).map_err(|e| Failure::new(e.to_string()))?;
        }
        if let Some(h) = high_water {
            doc["messages_in_flight_high_water"] = h.into();
        }
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{}  health {}  owner uid {}  mode {}  file {}",
        v.name,
        v.health,
        v.owner_uid,
        v.mode,
        view::bytes(v.size_bytes)
    )?;
    let Some(r) = &v.ring else {
        writeln!(out, "  {}", v.error.as_deref().unwrap_or("unreadable"))?;
        return Ok(());
    };
    let size = match (r.capacity_bytes, r.slots, r.max_peers) {
        (Some(bytes), _, _) => format!("capacity {}", view::bytes(bytes)),
        (_, Some(slots), Some(peers)) => match &r.lanes {
            Some(lanes) => format!(
                "{slots} slots in each of {} lanes, up to {peers} peers",
                lanes.len()
            ),
            None => format!("{slots} slots, up to {peers} peers"),
        },
        _ => String::new(),
    };
    writeln!(
        out,
        "  {}  {size}  max message {} B  wait {}",
        r.kind, r.max_message, r.wait_strategy
    )?;
    let in_flight = match r.bytes_in_flight {
        Some(bytes) => format!("{} ({})", r.messages_in_flight, view::bytes(bytes)),
        None => r.messages_in_flight.to_string(),
    };
    writeln!(
        out,
        "  messages: in flight {in_flight}, sent {} ({}), received {} ({})",
        r.messages_sent,
        view::bytes(r.bytes_sent),
        r.messages_received,
        view::bytes(r.bytes_received)
    )?;
    if let Some(rt) = rates {
        writeln!(
            out,
            "  rates: {:.0} msgs/s sent, {:.0} msgs/s received, {}/s",
            rt.sent_per_s,
            rt.received_per_s,
            view::bytes(rt.bytes_sent_per_s as u64)
        )?;
    }
    if let Some(h) = high_water {
        writeln!(out, "  most in flight while watching: {h}")?;
    }
    for (role, side) in [("producers", r.producers), ("consumers", r.consumers)] {
        writeln!(
            out,
            "  {role}: {} alive, {} dead, {} waiting; {} died since creation",
            side.alive, side.dead, side.waiting, side.died_since_creation
        )?;
    }
    if let Some(t) = &r.telemetry {
        let at = |v: Option<u64>| v.map_or_else(|| "-".to_string(), view::nanos);
        writeln!(
            out,
            "  latency (commit to receive, 1 in {} stamped, {} timed): p50 < {}, p99 < {}, max < {}",
            t.stamp_every,
            t.timed,
            at(t.latency_p50_ns),
            at(t.latency_p99_ns),
            at(t.latency_max_ns)
        )?;
        writeln!(
            out,
            "  most in flight: {}; last active: {}",
            t.in_flight_high_water,
            t.idle_seconds
                .map_or_else(|| "never".to_string(), |s| format!("{s:.1} s ago"))
        )?;
    }
    if let (Some(skipped), Some(dropped)) = (r.claims_skipped, r.messages_dropped) {
        writeln!(
            out,
            "  recovered: {skipped} dead claims skipped, {dropped} messages lost with dead consumers"
        )?;
    }
    if let Some(lanes) = &r.lanes {
        writeln!(
            out,
            "  {:>8} {:>10} {:>12} {:>12}",
            "PRIORITY", "IN FLIGHT", "SENT", "RECEIVED"
        )?;
        for lane in lanes.iter().rev() {
            writeln!(
                out,
                "  {:>8} {:>10} {:>12} {:>12}",
                lane.priority, lane.in_flight, lane.sent, lane.received
            )?;
        }
    }
    if let (Some(policy), Some(max), Some(retained), Some(missed)) = (
        &r.policy,
        r.max_readers,
        r.retained_bytes,
        r.messages_missed,
    ) {
        writeln!(
            out,
            "  broadcast: {policy}, up to {max} readers, {} retained, {missed} messages missed by readers",
            view::bytes(retained)
        )?;
    }
    if let Some(readers) = r.readers.as_ref().filter(|r| !r.is_empty()) {
        writeln!(
            out,
            "  {:>5} {:<14} {:<14} {:>8} {:>12} {:>10} {:>12} {:>10}",
            "INDEX", "READER", "STATUS", "PID", "LAG", "LAG MSGS", "DELIVERED", "MISSED"
        )?;
        for rd in readers {
            writeln!(
                out,
                "  {:>5} {:<14} {:<14} {:>8} {:>12} {:>10} {:>12} {:>10}",
                rd.index,
                rd.name.as_deref().unwrap_or("-"),
                rd.status,
                rd.pid,
                view::bytes(rd.lag_bytes),
                rd.lag_messages,
                rd.delivered,
                rd.missed
            )?;
        }
    }
    if !r.peers.is_empty() {
        writeln!(
            out,
            "  {:>5} {:<9} {:<14} {:>8} {:>5} {:>12} {:>12}",
            "INDEX", "ROLE", "STATUS", "PID", "GEN", "MESSAGES", "BYTES"
        )?;
        for p in &r.peers {
            writeln!(
                out,
                "  {:>5} {:<9} {:<14} {:>8} {:>5} {:>12} {:>12}",
                p.index, p.role, p.status, p.pid, p.generation, p.messages, p.bytes
            )?;
        }
    }
    Ok(())
}

/// `top`: every ring, refreshed every `interval` seconds, busiest first.
pub fn top(interval: f64, count: Option<u64>) -> Result<(), Failure> {
    let every = Duration::from_secs_f64(interval.max(0.05));
    let terminal = std::io::stdout().is_terminal();
    let mut before = crate::all_rings(&[])?;
    let mut taken = Instant::now();
    for _ in 0..count.unwrap_or(u64::MAX) {
        std::thread::sleep(every);
        let now = crate::all_rings(&[])?;
        let at = Instant::now();
        let mut rows: Vec<(Rates, &RingView)> = now
            .iter()
            .map(|v| {
                let old = before.iter().find(|b| b.path == v.path);
                (
                    old.map_or_else(Rates::default, |b| rates(b, v, at - taken)),
                    v,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            let busy = |r: &Rates| r.sent_per_s + r.received_per_s;
            busy(&b.0)
                .total_cmp(&busy(&a.0))
                .then(a.1.name.cmp(&b.1.name))
        });
        let mut out = std::io::stdout().lock();
        if terminal {
            // Clear the screen and go home, like top(1).
            write!(out, "\x1b[2J\x1b[H")?;
        }
        writeln!(
            out,
            "{:<24} {:<5} {:>12} {:>12} {:>12} {:>9} {:>8} {:>8} HEALTH",
            "NAME", "KIND", "SENT/S", "RECEIVED/S", "BYTES/S", "IN FLIGHT", "PROD", "CONS"
        )?;
        for (r, v) in &rows {
            let Some(ring) = &v.ring else {
                writeln!(out, "{:<24} {:<5} {:>63} {}", v.name, "?", "", v.health)?;
                continue;
            };
            writeln!(
                out,
                "{:<24} {:<5} {:>12.0} {:>12.0} {:>12} {:>9} {:>8} {:>8} {}",
                v.name,
                ring.kind,
                r.sent_per_s,
                r.received_per_s,
                view::bytes(r.bytes_sent_per_s as u64),
                ring.messages_in_flight,
                crate::peers_cell(ring.producers),
                crate::peers_cell(ring.consumers),
                v.health
            )?;
        }
        if !terminal {
            writeln!(out)?;
        }
        out.flush()?;
        (before, taken) = (now, at);
    }
    Ok(())
}
