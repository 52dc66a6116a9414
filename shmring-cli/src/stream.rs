//! `write` (standard input → messages), `cat` (messages → standard output) and `tail` (a
//! broadcast ring followed as one more reader): a ring used between shell pipes, like a
//! FIFO that keeps message boundaries.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use shmring::any;
use shmring::broadcast::JoinAt;
use shmring::{Error, OpenOptions};

use crate::Failure;
use crate::framing::Framing;

fn open(name: &str, trust_any_owner: bool) -> Result<any::Ring, Failure> {
    let options = OpenOptions::new()
        .any_owner(trust_any_owner)
        .writable_by_others(trust_any_owner);
    any::Ring::open(name, &options).map_err(|e| Failure::new(format!("{name}: {e}")))
}

/// Sends every message of standard input; returns when the input ends (the producer then
/// closes, which ends the stream for the consumers once they have read everything).
pub fn write(name: &str, framing: Framing, trust_any_owner: bool) -> Result<(), Failure> {
    let ring = open(name, trust_any_owner)?;
    let mut producer = ring
        .producer()
        .map_err(|e| Failure::new(format!("{name}: {e}")))?;
    let max = producer.max_message();
    let stdin = io::stdin();
    let mut input = io::BufReader::with_capacity(1 << 16, stdin.lock());
    let mut msg = Vec::with_capacity(max);
    let mut sent: u64 = 0;
    while framing
        .read(&mut input, &mut msg, max)
        .map_err(|e| Failure::new(format!("reading standard input: {e}")))?
    {
        match producer.send(&msg, None) {
            Ok(()) => sent += 1,
            Err(Error::MessageTooLarge { len, max }) => {
                return Err(Failure::new(format!(
                    "message {} has {len} bytes, more than {name}'s largest message ({max} \
                     bytes); the {sent} before it were sent",
                    sent + 1
                )));
            }
            Err(e @ Error::PeerDead { .. }) => {
                return Err(Failure::peer_died(format!(
                    "{name}: {e} ({sent} messages sent)"
                )));
            }
            Err(e) => return Err(Failure::new(format!("{name}: {e} ({sent} messages sent)"))),
        }
    }
    Ok(())
}

/// How `cat` reads.
pub enum Reading {
    /// As the ring's kind says a consumer does (SPSC, MPMC: the messages are taken; a
    /// broadcast ring: a reader from the live end).
    Take,
    /// A broadcast reader: the last `last` messages still in the ring (all of them if
    /// `None`, none if 0), then new ones; as the durable reader `reader` if given.
    Follow {
        last: Option<u64>,
        reader: Option<String>,
    },
}

/// A broadcast reader placed as `last` says.
fn follow(
    name: &str,
    ring: &any::Ring,
    last: Option<u64>,
    reader: Option<&str>,
) -> Result<any::Consumer, Failure> {
    let fail = |e: Error| Failure::new(format!("{name}: {e}"));
    let any::Ring::Broadcast(ring) = ring else {
        return Err(Failure::new(format!(
            "{name} is an {} ring: tail follows broadcast rings (cat takes the messages of \
             this one)",
            ring.kind()
        )));
    };
    let join = if last == Some(0) {
        JoinAt::Live
    } else {
        JoinAt::Oldest
    };
    let mut rx = match reader {
        Some(reader) => ring.reader_named(reader, join),
        None => ring.reader(join),
    }
    .map_err(fail)?;
    if let (Some(last), None) = (last, reader) {
        // Skip what is older than the last `last` messages.
        let index = rx.peer_index();
        let behind = ring
            .readers()
            .iter()
            .find(|r| r.index == index)
            .map_or(0, |r| r.lag_messages);
        let mut skip = behind.saturating_sub(last);
        while skip > 0 {
            let want = usize::try_from(skip).unwrap_or(usize::MAX).min(4096);
            match rx.try_recv_batch(want, |_| {}) {
                Ok(n) => skip -= n as u64,
                Err(Error::Lagged { .. }) => {}
                Err(_) => break,
            }
        }
    }
    Ok(any::Consumer::Broadcast(rx))
}

/// Writes messages to standard output until the stream closes (status 0), `count`
/// messages were written, or none came for `idle_timeout` seconds. A closed standard
/// output (the reader of the pipe went away) ends it quietly.
pub fn cat(
    name: &str,
    reading: Reading,
    framing: Framing,
    count: Option<u64>,
    idle_timeout: Option<f64>,
    trust_any_owner: bool,
) -> Result<(), Failure> {
    let ring = open(name, trust_any_owner)?;
    let mut consumer = match reading {
        Reading::Take => ring
            .consumer()
            .map_err(|e| Failure::new(format!("{name}: {e}")))?,
        Reading::Follow { last, reader } => follow(name, &ring, last, reader.as_deref())?,
    };
    let idle = idle_timeout.map(Duration::from_secs_f64);
    let mut buf = vec![0u8; consumer.max_message()];
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let limit = count.unwrap_or(u64::MAX);
    let mut written: u64 = 0;
    let mut failed: Option<io::Error> = None;
    while written < limit {
        // Drain what is there without waiting, then flush before blocking, so a slow
        // producer's lines show up at once.
        let want = usize::try_from(limit - written)
            .unwrap_or(usize::MAX)
            .min(256);
        let drained = consumer.try_recv_batch(want, |msg| {
            if failed.is_none() {
                if let Err(e) = framing.write(&mut out, msg) {
                    failed = Some(e);
                }
            }
        });
        if let Some(e) = failed.take() {
            return output_failed(e);
        }
        match drained {
            Ok(n) => {
                written += n as u64;
                continue;
            }
            Err(Error::WouldBlock) => {}
            Err(Error::Lagged { missed }) => {
                lagged(name, missed);
                continue;
            }
            Err(e) => return ended(name, e, &mut out),
        }
        if let Err(e) = out.flush() {
            return output_failed(e);
        }
        match consumer.recv(&mut buf, idle) {
            Ok(n) => {
                if let Err(e) = framing.write(&mut out, &buf[..n]) {
                    return output_failed(e);
                }
                written += 1;
            }
            Err(Error::Timeout) => break,
            Err(Error::Lagged { missed }) => lagged(name, missed),
            Err(e) => return ended(name, e, &mut out),
        }
    }
    match out.flush() {
        Ok(()) => Ok(()),
        Err(e) => output_failed(e),
    }
}

/// A broadcast reader fell behind: said on standard error, and reading goes on.
fn lagged(name: &str, missed: u64) {
    eprintln!(
        "shmring: {name}: fell behind: {missed} message(s) overwritten before they were read"
    );
}

/// The stream ended: `Closed` is the normal end; anything else is reported.
fn ended(name: &str, e: Error, out: &mut impl Write) -> Result<(), Failure> {
    if let Err(flush) = out.flush() {
        return output_failed(flush);
    }
    match e {
        Error::Closed => Ok(()),
        e @ Error::PeerDead { .. } => Err(Failure::peer_died(format!("{name}: {e}"))),
        e => Err(Failure::new(format!("{name}: {e}"))),
    }
}

/// A broken pipe on standard output is how a reader says it has had enough: end quietly.
fn output_failed(e: io::Error) -> Result<(), Failure> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure::new(format!("writing standard output: {e}")))
    }
}
