//! Opt-in telemetry kept in the segment (`Config::telemetry`): producers stamp one message
//! in `stamp_every` with the time of its commit, in 8 bytes carried before the payload;
//! consumers that receive a stamped message count its commit-to-receive latency in a log2
//! histogram; both note when they last did. Tools read it without joining the ring.
//!
//! The clock is the invariant time-stamp counter where the CPU has one (x86_64; the
//! creator measures its rate against `CLOCK_MONOTONIC`), `CLOCK_MONOTONIC` otherwise. Both
//! count the same in every process of the machine; the counter costs about half as much to
//! read (`docs/cli.md`, "Telemetry", has the figures and the reasoning). Everything here is
//! read from shared memory and may be garbage: a damaged line misleads the numbers, never
//! the program.

use std::time::Duration;

use crate::layout::{LATENCY_BUCKETS, TelemetryLine, telemetry_clock};
use crate::sync::Ordering::Relaxed;

/// Bytes every message of a telemetry ring carries before its payload: the commit stamp.
pub(crate) const STAMP_BYTES: usize = 8;

/// Most messages between two stamps a ring may ask for.
pub(crate) const MAX_STAMP_EVERY: u32 = 1 << 16;

/// The clock of a ring, as its telemetry line describes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    kind: u32,
    /// Nanoseconds per tick as a 32.32 fixed-point number.
    ns_per_tick_q32: u64,
}

impl Clock {
    /// Now, in ticks of this clock (never 0: 0 means "not stamped").
    #[inline]
    pub(crate) fn now(self) -> u64 {
        let ticks = match self.kind {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: RDTSC has no preconditions; `telemetry_clock::TSC` is only chosen on
            // x86_64 CPUs that report an invariant counter.
            telemetry_clock::TSC => unsafe { core::arch::x86_64::_rdtsc() },
            _ => crate::os::monotonic_ns(),
        };
        ticks.max(1)
    }

    /// `ticks` of this clock in nanoseconds.
    #[inline]
    pub(crate) fn ns(self, ticks: u64) -> u64 {
        let ns = (u128::from(ticks) * u128::from(self.ns_per_tick_q32)) >> 32;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// The clock a telemetry line describes; `None` if telemetry is off or the line holds
    /// nothing a creator writes.
    pub(crate) fn of(line: &TelemetryLine) -> Option<Clock> {
        let kind = line.clock.load(Relaxed);
        let per_second = line.ticks_per_second.load(Relaxed);
        let supported = kind == telemetry_clock::MONOTONIC
            || (kind == telemetry_clock::TSC && cfg!(target_arch = "x86_64"));
        // From 1 MHz to 100 GHz: anything else is damage.
        if !supported || !(1_000_000..=100_000_000_000).contains(&per_second) {
            return None;
        }
        Some(Clock {
            kind,
            ns_per_tick_q32: ((1_000_000_000u128 << 32) / u128::from(per_second)) as u64,
        })
    }
}

/// Whether this CPU has a time-stamp counter that ticks at one rate on every core and in
/// every power state (CPUID leaf 0x8000_0007, EDX bit 8).
fn invariant_tsc() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Leaf 0x8000_0000 says how far the extended leaves go before we ask 0x8000_0007.
        use core::arch::x86_64::__cpuid;
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The creator's part: chooses the clock, measures its rate, and writes the line (before
/// the header is published).
pub(crate) fn set_up(line: &TelemetryLine, stamp_every: u32) {
    let (kind, per_second) = if invariant_tsc() {
        (telemetry_clock::TSC, tsc_rate())
    } else {
        (telemetry_clock::MONOTONIC, 1_000_000_000)
    };
    line.stamp_every.store(stamp_every, Relaxed);
    line.ticks_per_second.store(per_second, Relaxed);
    line.clock.store(kind, Relaxed);
}

/// Ticks of the time-stamp counter per second, measured against `CLOCK_MONOTONIC` over
/// about 2 ms (an error of a few parts in 10^5 at most: a latency of 1 ms reads within
/// tens of nanoseconds).
#[cfg(target_arch = "x86_64")]
fn tsc_rate() -> u64 {
    // SAFETY: see `Clock::now`.
    let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
    let (t0, n0) = (tsc(), crate::os::monotonic_ns());
    let mut n1 = n0;
    while n1.saturating_sub(n0) < 2_000_000 {
        std::hint::spin_loop();
        n1 = crate::os::monotonic_ns();
    }
    let t1 = tsc();
    let rate = u128::from(t1.wrapping_sub(t0)) * 1_000_000_000 / u128::from(n1 - n0).max(1);
    u64::try_from(rate).unwrap_or(0)
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc_rate() -> u64 {
    0
}

/// Fewest messages between two samples of how many are in flight: a sample reads the
/// consumers' counters, a cache miss on the line they write, too dear for every message
/// (stamping every message with a sample each cost ~50 ns per 8-byte message in the
/// stream benchmark, without one no measurable time).
const SAMPLE_EVERY: u32 = 64;

/// The producer's side: stamps one message in `every`.
#[derive(Debug)]
pub(crate) struct Stamper {
    clock: Option<Clock>,
    every: u32,
    /// Messages until the next stamp.
    left: u32,
    /// Messages since occupancy was last sampled (starts due).
    unsampled: u32,
}

impl Stamper {
    /// A stamper for a ring whose telemetry line is `line`.
    pub(crate) fn new(line: &TelemetryLine) -> Stamper {
        let every = line.stamp_every.load(Relaxed).clamp(1, MAX_STAMP_EVERY);
        Stamper {
            clock: Clock::of(line),
            every,
            left: 0,
            unsampled: SAMPLE_EVERY,
        }
    }

    /// Whether the message just stamped should also sample occupancy: at most once in
    /// [`SAMPLE_EVERY`] messages, at every stamp when stamps are that far apart.
    #[inline]
    pub(crate) fn sample_due(&mut self) -> bool {
        self.unsampled = self.unsampled.saturating_add(self.every);
        if self.unsampled < SAMPLE_EVERY {
            return false;
        }
        self.unsampled = 0;
        true
    }

    /// The stamp for the next message: its commit time, or 0 if this one is not stamped.
    #[inline]
    pub(crate) fn next(&mut self) -> u64 {
        let Some(clock) = self.clock else { return 0 };
        if self.left > 0 {
            self.left -= 1;
            return 0;
        }
        self.left = self.every - 1;
        clock.now()
    }

    /// After a message stamped `stamp` was committed: counts it and notes the stamp and,
    /// if sampled, how many messages were in flight.
    #[cold]
    pub(crate) fn stamped(line: &TelemetryLine, stamp: u64, in_flight: Option<u64>) {
        line.stamped.fetch_add(1, Relaxed);
        if let Some(in_flight) = in_flight {
            // A read first: the mark rarely moves, and a read-modify-write that does not
            // change it would still take the line exclusively.
            if in_flight > line.in_flight_high_water.load(Relaxed) {
                line.in_flight_high_water.fetch_max(in_flight, Relaxed);
            }
        }
        line.last_send_ticks.store(stamp, Relaxed);
    }
}

/// The consumer's side: counts the latency of a stamped message received now.
#[inline]
pub(crate) fn received(line: &TelemetryLine, clock: Clock, stamp: u64) {
    if stamp == 0 {
        return;
    }
    let now = clock.now();
    line.latency[bucket(clock.ns(now.saturating_sub(stamp)))].fetch_add(1, Relaxed);
    line.last_receive_ticks.store(now, Relaxed);
}

/// The histogram bucket of a latency of `ns` nanoseconds.
#[inline]
pub(crate) fn bucket(ns: u64) -> usize {
    (63 - (ns | 1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1)
}

/// What a telemetry ring recorded (see [`Stats::telemetry`](crate::Stats::telemetry)). The
/// counters are read one by one while the ring runs, and from shared memory: a hostile
/// process can make them say anything, though never make reading them fail.
///
/// ```
/// use shmring::{Config, spsc::Ring};
/// let name = format!("/doc-telemetry-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().capacity(4096).telemetry(1))?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.try_send(b"tick")?;
/// rx.try_recv(&mut [0u8; 64])?;
/// let t = ring.stats().telemetry.expect("on");
/// assert_eq!((t.stamped, t.timed()), (1, 1));
/// assert!(t.latency_quantile(0.5).is_some());
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Telemetry {
    /// Producers stamp one message in this many.
    pub stamp_every: u32,
    /// Messages stamped by producers.
    pub stamped: u64,
    /// Stamped messages received, by commit-to-receive latency: bucket `b` counts
    /// `[2^b, 2^(b+1))` ns (the last also everything longer).
    pub latency_buckets: [u64; LATENCY_BUCKETS],
    /// Most messages in flight a producer saw when it stamped one.
    pub in_flight_high_water: u64,
    /// `CLOCK_MONOTONIC` (ns since boot) when a producer last stamped a message; 0: never.
    pub last_send_ns: u64,
    /// `CLOCK_MONOTONIC` (ns since boot) when a consumer last received a stamped message.
    pub last_receive_ns: u64,
}

impl Telemetry {
    /// Reads a telemetry line, turning its clock's ticks into `CLOCK_MONOTONIC` time.
    pub(crate) fn read(line: &TelemetryLine) -> Telemetry {
        let clock = Clock::of(line);
        let to_monotonic = |ticks: u64| match clock {
            Some(clock) if ticks != 0 => {
                let ago = clock.ns(clock.now().saturating_sub(ticks));
                crate::os::monotonic_ns().saturating_sub(ago).max(1)
            }
            _ => 0,
        };
        Telemetry {
            stamp_every: line.stamp_every.load(Relaxed),
            stamped: line.stamped.load(Relaxed),
            latency_buckets: core::array::from_fn(|b| line.latency[b].load(Relaxed)),
            in_flight_high_water: line.in_flight_high_water.load(Relaxed),
            last_send_ns: to_monotonic(line.last_send_ticks.load(Relaxed)),
            last_receive_ns: to_monotonic(line.last_receive_ticks.load(Relaxed)),
        }
    }

    /// How long ago either side was last active (a producer stamped or a consumer received
    /// a stamped message); `None` if neither ever was.
    pub fn since_last_activity(&self) -> Option<Duration> {
        let last = self.last_send_ns.max(self.last_receive_ns);
        (last > 0).then(|| Duration::from_nanos(crate::os::monotonic_ns().saturating_sub(last)))
    }

    /// Stamped messages received (the histogram's total).
    pub fn timed(&self) -> u64 {
        self.latency_buckets
            .iter()
            .fold(0u64, |sum, &n| sum.saturating_add(n))
    }

    /// The latency below which a fraction `q` (0 to 1) of the timed messages fell, as the
    /// upper edge of its bucket (so within a factor of two above the truth); `None` before
    /// any message was timed.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let total = self.timed();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (b, &n) in self.latency_buckets.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Some(Duration::from_nanos(1u64 << (b + 1).min(63)));
            }
        }
        Some(Duration::from_nanos(1u64 << LATENCY_BUCKETS))
    }
}

#[cfg(all(test, not(shmring_loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(1023), 9);
        assert_eq!(bucket(1024), 10);
        assert_eq!(bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_buckets_and_survive_garbage() {
        let mut t = Telemetry {
            stamp_every: 1,
            stamped: 4,
            latency_buckets: [0; LATENCY_BUCKETS],
            in_flight_high_water: 0,
            last_send_ns: 0,
            last_receive_ns: 0,
        };
        assert_eq!(t.latency_quantile(0.5), None);
        t.latency_buckets[6] = 3; // 64..128 ns
        t.latency_buckets[20] = 1; // about 1 ms
        assert_eq!(t.latency_quantile(0.5), Some(Duration::from_nanos(128)));
        assert_eq!(
            t.latency_quantile(0.99),
            Some(Duration::from_nanos(1 << 21))
        );
        // A hostile writer's counters: no overflow, no panic.
        t.latency_buckets = [u64::MAX; LATENCY_BUCKETS];
        assert_eq!(t.timed(), u64::MAX);
        assert!(t.latency_quantile(1.0).is_some());
    }

    #[test]
    fn a_damaged_line_turns_stamping_off() {
        let line = crate::layout::ControlBlock::new_zeroed();
        let t = &line.telemetry;
        assert!(Clock::of(t).is_none(), "off");
        t.clock.store(telemetry_clock::MONOTONIC, Relaxed);
        t.ticks_per_second.store(7, Relaxed);
        assert!(Clock::of(t).is_none(), "a 7 Hz clock is damage");
        set_up(t, 3);
        let clock = Clock::of(t).expect("set up");
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        let waited = clock.ns(clock.now() - a);
        assert!(
            (4_000_000..1_000_000_000).contains(&waited),
            "5 ms read as {waited} ns"
        );
        let mut stamper = Stamper::new(t);
        let stamps: Vec<bool> = (0..7).map(|_| stamper.next() != 0).collect();
        assert_eq!(stamps, [true, false, false, true, false, false, true]);
    }
}
