//! Test-only crash points (feature `crash-hooks`, which only the crate's own tests enable).
//! With `SHMRING_CRASH_AT=<step>:<n>` in its environment, a process kills itself with
//! SIGKILL — no unwinding, no `Drop`, exactly a `kill -9` — the n-th time it reaches
//! `<step>`. Steps: `producer-claimed`, `producer-written`, `producer-published`,
//! `consumer-read`, `consumer-released` (SPSC); `mpmc-producer-claimed`,
//! `mpmc-producer-written`, `mpmc-consumer-taken` (MPMC); and for both kinds the moments
//! of the peer and wait protocols: `attaching` (slot locked, record not yet attached),
//! `closing` (record closed, still present), `sleep-announced` (sleeper bit set, about to
//! sleep), `woken` (back from the sleep, bit still set), `notifying` (futex word bumped,
//! wake not yet sent). Without the feature every point compiles to nothing.

#[cfg(feature = "crash-hooks")]
pub(crate) fn point(step: &'static str) {
    use std::cell::Cell;
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    thread_local! {
        static REACHED: Cell<u64> = const { Cell::new(0) };
    }
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("SHMRING_CRASH_AT").ok()?;
        let (name, n) = spec.split_once(':')?;
        Some((name.to_string(), n.parse().ok()?))
    });
    if let Some((name, n)) = target {
        if name == step {
            let reached = REACHED.with(|r| {
                r.set(r.get() + 1);
                r.get()
            });
            if reached >= *n {
                // SAFETY: plain system calls; the process ends here.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
        }
    }
}

#[cfg(not(feature = "crash-hooks"))]
#[inline(always)]
pub(crate) fn point(_step: &'static str) {}
