//! How a blocking call waits for the other side. The ring algorithms know nothing of this:
//! they answer `WouldBlock`, and a [`Waiter`] decides how to pass the time until a retry.
//!
//! - Spin / spin-then-yield poll; nobody sleeps, so nobody needs waking.
//! - Futex spins for a short window, then sleeps. A sleeper sets its slot's bit in its
//!   role's `sleepers` and re-checks the ring; a waker publishes and then looks for sleeper
//!   bits. Both sides put `fence(SeqCst)` between their store and their load (a Dekker
//!   pair, W1/N1 in `docs/ordering.md`), so either the sleeper sees the new data or the
//!   waker sees the sleeper: no lost wake-up, and no system call when nobody sleeps.
//! - The sleeping strategy keeps no per-waiter state that a dead process could hold on to
//!   (the futex word is a plain counter; a dead sleeper's bit is cleared when its slot is
//!   recovered), and any bytes in its words give at worst an early wake-up. The pthread
//!   condvar strategy of layout 3 was removed, and glibc's POSIX semaphores were tried and
//!   rejected in its place: `docs/ordering.md` ("Why only the futex sleeps") says why.
//! - Every sleep lasts at most [`MAX_SLEEP`]; handles wait in slices of
//!   [`RECOVERY_INTERVAL`] and look for dead peers between them
//!   ([`Waiter::wait_maintaining`]).

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{ControlBlock, RoleLine};
use crate::memory::RingMemory;
use crate::sync::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::{fence, spin_loop, yield_now};
use futex::{futex_wait, futex_wake_all};

/// How often a blocked call looks for dead peers (reaps their slots, skips their claims):
/// bounds how long a dead peer can hold up a blocked call, and how long a blocked call
/// takes to report `PeerDead`.
pub const RECOVERY_INTERVAL: Duration = Duration::from_millis(10);

/// The same for the polling strategies, which burn a core while they wait anyway: a look
/// costs a few system calls, so they look every millisecond (a sleeping strategy is woken
/// by a watched peer's exit instead, see [`Waiter::watching`]).
const POLLING_RECOVERY_INTERVAL: Duration = Duration::from_millis(1);

/// How a blocked call waits. Chosen at creation, recorded in the header, used by every end.
///
/// ```
/// use shmring::{Config, WaitStrategy};
/// let config = Config::new().wait_strategy(WaitStrategy::Futex);
/// assert_eq!(config.get_wait_strategy(), WaitStrategy::Futex);
/// ```
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Burn the CPU polling: the lowest latency, one core per waiting end.
    Spin = 1,
    /// Poll briefly, then yield the CPU between polls: near-spin latency when busy, and
    /// polite when the machine has fewer cores than spinning threads.
    #[default]
    SpinYield = 2,
    /// Poll for the spin window, then sleep on a shared futex (Linux; other systems get
    /// their own wait-on-address call in the OS layer). Costs nothing on the message path
    /// while the other side is awake: one fence and one cache-hit load.
    Futex = 3,
}

impl WaitStrategy {
    /// Decodes the header field. 4 was the condvar strategy of layout 3; it is never
    /// reused.
    pub(crate) fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(WaitStrategy::Spin),
            2 => Some(WaitStrategy::SpinYield),
            3 => Some(WaitStrategy::Futex),
            _ => None,
        }
    }

    /// Whether waits of this strategy sleep (and wakers must look for sleepers).
    pub(crate) fn sleeps(self) -> bool {
        matches!(self, WaitStrategy::Futex)
    }
}

impl std::fmt::Display for WaitStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WaitStrategy::Spin => "spin",
            WaitStrategy::SpinYield => "spin-then-yield",
            WaitStrategy::Futex => "futex",
        })
    }
}

/// What a blocked call waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A consumer waits for a record.
    DataAvailable,
    /// A producer waits for free space.
    SpaceAvailable,
}

/// Longest single sleep of the sleeping strategies (a bound even for a caller that does
/// not wait in slices).
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Stands in for a budget too large to represent as an `Instant`.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Polls before the first yield (spin-then-yield).
const SPINS_BEFORE_YIELD: u32 = 64;
/// Polls between clock reads while busy-spinning (a clock read costs ~20 ns).
const SPINS_PER_CLOCK_READ: u32 = 32;
/// Default time a sleeping strategy polls before it sleeps: about two cross-CPU wake-ups on
/// the machines we measured, so a busy pipeline never pays for one.
pub(crate) const DEFAULT_SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(20);

/// A way of passing the time while a ring is full or empty.
///
/// `wait_for` owns the whole retry loop because a sleeping strategy must re-check the ring
/// *after* announcing itself and before sleeping; `notify` is the other half, called by the
/// side that made progress.
pub(crate) trait Wait {
    /// Retries `attempt` while it says `WouldBlock`, until it succeeds, fails otherwise, or
    /// `timeout` passes (`Timeout`). `attempt` runs at least once, and once more at the
    /// deadline, so a deadline never hides a message that arrived. The clock is first read
    /// only after an attempt failed: a call that succeeds at once costs no clock read.
    fn wait_for<T>(
        &self,
        event: Event,
        timeout: Option<Duration>,
        attempt: impl FnMut() -> Result<T>,
    ) -> Result<T>;

    /// Tells waiters on `event` that it may have happened.
    fn notify(&self, event: Event);
}

/// One end's waiting state, over the memory whose wake words it uses.
pub(crate) struct Waiter<M: RingMemory> {
    memory: M,
    strategy: WaitStrategy,
    spin: Duration,
    /// This end's peer slot: the sleeper bit it sets.
    slot: u32,
    /// Words of sleeper bits a waker looks at (the ring's slot count / 64, rounded up).
    words: usize,
    /// Sleep and wake system calls this end made (tests prove the fast path makes none).
    syscalls: Cell<u64>,
    /// Watches the other side's holders while this end sleeps, so a death ends the sleep
    /// at once ([`Waiter::watching`]).
    watch: Option<WatchPeers<M>>,
}

/// Starts watching the holders a sleeper of an event waits on (the other role's): a
/// registration that wakes the event's sleepers ([`wake_sleepers`]) when one exits.
pub(crate) type WatchPeers<M> = Box<dyn Fn(&M, Event) -> Option<crate::os::ExitWatch> + Send>;

/// Wakes every sleeper of `event` as a waker would (they re-check, and look for dead
/// peers): for a watcher that saw a peer exit.
pub(crate) fn wake_sleepers(memory: &impl RingMemory, event: Event) {
    let ctl = memory.control();
    let line = match event {
        Event::DataAvailable => &ctl.consumers,
        Event::SpaceAvailable => &ctl.producers,
    };
    line.seq.fetch_add(1, Release);
    futex_wake_all(&line.seq);
}

impl<M: RingMemory> std::fmt::Debug for Waiter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("strategy", &self.strategy)
            .field("spin", &self.spin)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl<M: RingMemory> Waiter<M> {
    /// A waiter for the end holding peer slot `slot` of a ring with `slots` slots.
    pub(crate) fn new(
        memory: M,
        strategy: WaitStrategy,
        spin: Duration,
        slot: u32,
        slots: u32,
    ) -> Self {
        Waiter {
            memory,
            strategy,
            spin,
            slot,
            words: crate::peers::slot_words(slots),
            syscalls: Cell::new(0),
            watch: None,
        }
    }

    /// Makes futex sleeps end at once when a holder of the other role exits (its pidfd,
    /// through [`os::ExitWatch`](crate::os::ExitWatch)), instead of at the next periodic
    /// look for dead peers.
    pub(crate) fn watching(mut self, watch: WatchPeers<M>) -> Self {
        self.watch = Some(watch);
        self
    }

    /// The strategy this end waits with.
    pub(crate) fn strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// Sleep and wake system calls made so far.
    pub(crate) fn syscalls(&self) -> u64 {
        self.syscalls.get()
    }

    fn control(&self) -> &ControlBlock {
        self.memory.control()
    }

    /// Sleepers of `event` are the holders of this role: consumers wait for data,
    /// producers for space.
    fn line(&self, event: Event) -> &RoleLine {
        match event {
            Event::DataAvailable => &self.control().consumers,
            Event::SpaceAvailable => &self.control().producers,
        }
    }

    fn count_syscall(&self) {
        self.syscalls.set(self.syscalls.get() + 1);
    }

    /// Sets this end's sleeper bit for `event`, then (W1) orders it before the re-check.
    fn announce(&self, line: &RoleLine) {
        let (word, mask) = crate::peers::bit(self.slot);
        line.sleepers[word].fetch_or(mask, Relaxed);
        // ORDERING W1 (pairs with N1): the announcement above is ordered before the
        // caller's re-check of the ring; the waker orders its publish before its look at
        // the sleeper bits. Of the two loads, at least one sees the other side's store.
        fence(SeqCst);
    }

    /// Clears this end's sleeper bit.
    fn withdraw(&self, line: &RoleLine) {
        let (word, mask) = crate::peers::bit(self.slot);
        line.sleepers[word].fetch_and(!mask, Relaxed);
    }

    /// Polls until `attempt` stops saying `WouldBlock` or `budget` has passed; `None` if it
    /// has. The clock is first read after [`SPINS_PER_CLOCK_READ`] polls (or the first
    /// yield), and the budget counts from there: a wait that ends within the first polls
    /// reads no clock at all, and the budget is never cut short.
    /// `yield_after`: polls before yielding between polls (`None`: never yield).
    #[inline]
    fn poll<T>(
        &self,
        budget: Option<Duration>,
        yield_after: Option<u32>,
        attempt: &mut impl FnMut() -> Result<T>,
    ) -> Option<Result<T>> {
        let mut polls: u32 = 0;
        let mut end: Option<Instant> = None;
        loop {
            match attempt() {
                Err(Error::WouldBlock) => {}
                done => return Some(done),
            }
            polls = polls.wrapping_add(1);
            let yielding = yield_after.is_some_and(|after| polls > after);
            if let Some(budget) = budget {
                // One clock read per yield (~20 ns next to a system call), or per 32 spins.
                if yielding || polls % SPINS_PER_CLOCK_READ == 0 {
                    let now = Instant::now();
                    match end {
                        Some(end) if now >= end => return None,
                        Some(_) => {}
                        // A budget too large to represent never ends.
                        None => end = Some(now.checked_add(budget).unwrap_or(now + FOREVER)),
                    }
                }
            }
            if yielding {
                yield_now();
            } else {
                spin_loop();
            }
        }
    }

    /// The final look at a deadline: a message that arrived just in time is still taken.
    fn last_attempt<T>(attempt: &mut impl FnMut() -> Result<T>) -> Result<T> {
        match attempt() {
            Err(Error::WouldBlock) => Err(Error::Timeout),
            done => done,
        }
    }

    /// The sleeping strategy's spin phase: poll for the spin window (or the whole timeout,
    /// if shorter). `Ok(outcome)` ends the wait; `Err(deadline)` goes on to sleep until
    /// `deadline`. Loom models do not spin (no clocks in a model: they would make its
    /// executions irreproducible).
    fn spin_phase<T>(
        &self,
        timeout: Option<Duration>,
        attempt: &mut impl FnMut() -> Result<T>,
    ) -> Result<Result<T>, Option<Instant>> {
        if cfg!(shmring_loom) || self.spin.is_zero() {
            return Err(timeout.and_then(|t| Instant::now().checked_add(t)));
        }
        let window = timeout.map_or(self.spin, |t| t.min(self.spin));
        if let Some(done) = self.poll(Some(window), None, attempt) {
            return Ok(done);
        }
        match timeout {
            Some(t) if t <= self.spin => Ok(Self::last_attempt(attempt)),
            // The window has passed: what is left of the timeout, from now.
            Some(t) => Err(Instant::now().checked_add(t - self.spin)),
            None => Err(None),
        }
    }

    /// The sleeping strategy's sleep loop: announce, re-check, sleep (at most
    /// [`MAX_SLEEP`] at a time), withdraw, re-check, until done or `deadline`.
    fn sleep_for<T>(
        &self,
        event: Event,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let line = self.line(event);
        let watch = if cfg!(shmring_loom) {
            None
        } else {
            self.watch
                .as_ref()
                .and_then(|watch| watch(&self.memory, event))
        };
        if watch.as_ref().is_some_and(crate::os::ExitWatch::fired) {
            // A peer is dead already: end the slice so the caller looks for it now.
            return Err(Error::Timeout);
        }
        loop {
            // Read the futex word before announcing: a wake that comes after this read
            // changes it, so the futex wait below returns at once instead of sleeping
            // through it.
            let seq = line.seq.load(Acquire);
            self.announce(line);
            let outcome = attempt();
            if !matches!(outcome, Err(Error::WouldBlock)) {
                self.withdraw(line);
                return outcome;
            }
            let slice = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.withdraw(line);
                        return Self::last_attempt(&mut attempt);
                    }
                    left.min(MAX_SLEEP)
                }
                None => MAX_SLEEP,
            };
            self.count_syscall();
            crate::crash::point("sleep-announced");
            futex_wait(&line.seq, seq, Some(slice));
            crate::crash::point("woken");
            self.withdraw(line);
            match attempt() {
                Err(Error::WouldBlock) => {}
                done => return done,
            }
            if watch.as_ref().is_some_and(crate::os::ExitWatch::fired) {
                // A peer exited: end this slice now, so the caller looks for the dead peer.
                return Err(Error::Timeout);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Self::last_attempt(&mut attempt);
            }
        }
    }

    /// Arms this end's readiness doorbell for `event`: sets its armed bit and its sleeper
    /// bit, then (W1) orders both before the caller's re-check of the ring. A waker whose
    /// look at the sleeper bits (after N1) comes later in the fences' single total order
    /// sees both bits, so it rings the doorbell; one whose look comes earlier published
    /// before the re-check, which then sees the message (`docs/ordering.md`, "Readiness").
    pub(crate) fn arm(&self, event: Event) {
        let line = self.line(event);
        let (word, mask) = crate::peers::bit(self.slot);
        line.armed[word].fetch_or(mask, Relaxed);
        line.sleepers[word].fetch_or(mask, Relaxed);
        // ORDERING W1 (pairs with N1), as for a futex sleeper; it covers the armed bit too.
        fence(SeqCst);
    }

    /// Withdraws an arming (the caller found what it waited for, or stops waiting).
    pub(crate) fn disarm(&self, event: Event) {
        let line = self.line(event);
        let (word, mask) = crate::peers::bit(self.slot);
        line.armed[word].fetch_and(!mask, Relaxed);
        line.sleepers[word].fetch_and(!mask, Relaxed);
    }

    /// Rings the doorbells of `event`'s armed waiters and disarms them (one ring per
    /// arming). Called by a waker that saw sleeper bits.
    fn ring_armed(&self, line: &RoleLine, event: Event) {
        // The armed bits read below were stored before their owners' W1 fences; this call
        // comes after our N1 fence (see `arm`).
        let role = match event {
            Event::DataAvailable => crate::error::Role::Consumer,
            Event::SpaceAvailable => crate::error::Role::Producer,
        };
        for (w, word) in line.armed[..self.words].iter().enumerate() {
            if word.load(Relaxed) == 0 {
                continue;
            }
            let mut armed = word.swap(0, Relaxed);
            // Their sleeper bits go too: they are not in a futex sleep.
            line.sleepers[w].fetch_and(!armed, Relaxed);
            while armed != 0 {
                let slot = w as u32 * 64 + armed.trailing_zeros();
                armed &= armed - 1;
                self.count_syscall();
                crate::crash::point("ringing");
                self.memory.ring_doorbell(role, slot);
            }
        }
    }

    /// Wakes the sleepers of `event`, if any: rings armed doorbells, then wakes futex
    /// sleepers if any are left.
    fn wake(&self, event: Event) {
        self.wake_after(event, || {});
    }

    /// As [`notify`](Wait::notify), but `publish` runs first if anyone sleeps on `event`:
    /// for an end that holds back what it would publish (a consumer releasing space in
    /// chunks) until someone waits for it.
    #[inline]
    pub(crate) fn notify_after(&self, event: Event, publish: impl FnOnce()) {
        if self.strategy.sleeps() {
            self.wake_after(event, publish);
        }
    }

    fn wake_after(&self, event: Event, publish: impl FnOnce()) {
        let line = self.line(event);
        // ORDERING N1 (pairs with W1): the publish (or release) before this call is ordered
        // before the look at the sleeper bits. (Only the loom negative control removes it.)
        #[cfg(not(shmring_weaken_dekker))]
        fence(SeqCst);
        if !crate::peers::any_relaxed(&line.sleepers, self.words) {
            return;
        }
        // Someone sleeps (or is about to): what was held back is published before the
        // wake, so the sleeper's re-check (after the futex word or doorbell it waits on)
        // sees it. One that announced itself after our look re-checks and finds what was
        // published before it; the rest comes at the next chunk or when the consumer catches up.
        publish();
        self.ring_armed(line, event);
        if !crate::peers::any_relaxed(&line.sleepers, self.words) {
            return;
        }
        self.count_syscall();
        // Release: a sleeper that wakes and reads the new value also sees our publish (it
        // re-checks the ring with Acquire anyway).
        line.seq.fetch_add(1, Release);
        crate::crash::point("notifying");
        futex_wake_all(&line.seq);
    }

    /// Waits as [`Wait::wait_for`] does, in slices of at most [`RECOVERY_INTERVAL`]; after
    /// each slice `attempt(true)` runs, which first looks for dead peers (reaps their
    /// slots, skips what they left unfinished) and then tries again. `Timeout` after
    /// `timeout`.
    pub(crate) fn wait_maintaining<T>(
        &self,
        event: Event,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(bool) -> Result<T>,
    ) -> Result<T> {
        match attempt(false) {
            Err(Error::WouldBlock) => {}
            done => return done,
        }
        if cfg!(shmring_loom) {
            // No clocks in a model (they would make its executions irreproducible): one
            // wait, woken by the futex model; models call maintenance themselves.
            return self.wait_for(event, timeout, || attempt(false));
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let interval = if self.strategy.sleeps() {
            RECOVERY_INTERVAL
        } else {
            POLLING_RECOVERY_INTERVAL
        };
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(interval),
                None => interval,
            };
            match self.wait_for(event, Some(slice), || attempt(false)) {
                Err(Error::Timeout) => {}
                done => return done,
            }
            match attempt(true) {
                Err(Error::WouldBlock) => {}
                done => return done,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
        }
    }
}

impl<M: RingMemory> Wait for Waiter<M> {
    #[inline]
    fn wait_for<T>(
        &self,
        event: Event,
        timeout: Option<Duration>,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        match attempt() {
            Err(Error::WouldBlock) => {}
            done => return done,
        }
        match self.strategy {
            WaitStrategy::Spin | WaitStrategy::SpinYield => {
                let yield_after =
                    (self.strategy == WaitStrategy::SpinYield).then_some(SPINS_BEFORE_YIELD);
                match self.poll(timeout, yield_after, &mut attempt) {
                    Some(done) => done,
                    None => Self::last_attempt(&mut attempt),
                }
            }
            WaitStrategy::Futex => {
                // A deadline too large to represent (`None`) waits forever.
                let deadline = match self.spin_phase(timeout, &mut attempt) {
                    Ok(done) => return done,
                    Err(deadline) => deadline,
                };
                self.sleep_for(event, deadline, attempt)
            }
        }
    }

    #[inline]
    fn notify(&self, event: Event) {
        if self.strategy.sleeps() {
            self.wake(event);
        }
    }
}

/// The futex calls, or under loom a model of them.
#[cfg(not(shmring_loom))]
mod futex {
    use crate::sync::AtomicU32;

    /// Sleeps while `word` holds `expected`, at most `timeout`. Returns on a wake, a value
    /// change, a signal or the timeout; the caller re-checks its condition either way.
    /// Counts as one system call.
    pub(super) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<super::Duration>) {
        crate::os::futex_wait(word.as_std(), expected, timeout);
    }

    /// Wakes every process sleeping on `word`. One system call.
    pub(super) fn futex_wake_all(word: &AtomicU32) {
        crate::os::futex_wake_all(word.as_std());
    }
}

/// Futex model: one mutex + condvar stand in for the kernel's futex hash table; compare
/// and sleep under the mutex, as the kernel compares and queues under its hash-bucket
/// lock. Timeouts are not modelled (models never use them), so a lost wake-up shows as a
/// loom deadlock.
#[cfg(shmring_loom)]
mod futex {
    use crate::sync::AtomicU32;
    use crate::sync::Ordering::SeqCst;

    loom::lazy_static! {
        static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
            (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
    }

    pub(super) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<super::Duration>) {
        let guard = FUTEX.0.lock().unwrap();
        if word.load(SeqCst) == expected {
            drop(FUTEX.1.wait(guard).unwrap());
        }
    }

    /// Wakes everyone (spurious wake-ups are harmless to the protocol).
    pub(super) fn futex_wake_all(_word: &AtomicU32) {
        let _guard = FUTEX.0.lock().unwrap();
        FUTEX.1.notify_all();
    }
}
