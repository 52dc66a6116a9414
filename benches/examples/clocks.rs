//! What reading each clock telemetry could stamp with costs here: 20 million reads each,
//! three rounds (`docs/cli.md`, "Which clock").
//!
//! ```sh
//! cargo run --release -p shmring-benches --example clocks
//! ```

use std::hint::black_box;
use std::time::Instant;

const READS: u32 = 20_000_000;

fn per_read(mut read: impl FnMut() -> u64) -> f64 {
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..READS {
        sum = sum.wrapping_add(read());
    }
    black_box(sum);
    start.elapsed().as_nanos() as f64 / f64::from(READS)
}

fn clock_gettime(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_nsec as u64
}

fn main() {
    for round in 1..=3 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: RDTSC has no preconditions.
        let tsc = per_read(|| unsafe { core::arch::x86_64::_rdtsc() });
        #[cfg(not(target_arch = "x86_64"))]
        let tsc = f64::NAN;
        let monotonic = per_read(|| clock_gettime(libc::CLOCK_MONOTONIC));
        let coarse = per_read(|| clock_gettime(libc::CLOCK_MONOTONIC_COARSE));
        println!(
            "round {round}: rdtsc {tsc:.1} ns, CLOCK_MONOTONIC {monotonic:.1} ns, \
             CLOCK_MONOTONIC_COARSE {coarse:.1} ns per read"
        );
    }
}
