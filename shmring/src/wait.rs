//! How a blocking call waits for the other side. The ring algorithms know nothing of this:
//! they answer `WouldBlock`, and a [`Waiter`] decides how to pass the time until a retry.
//!
//! - Spin / spin-then-yield poll; nobody sleeps, so nobody needs waking.
//! - Futex and condvar spin for a short window, then sleep. A sleeper announces itself in
//!   its event's [`WakeLine`] and re-checks the ring; a waker publishes and then checks for
//!   sleepers. Both sides put `fence(SeqCst)` between their store and their load (a Dekker
//!   pair, W1/N1 in `docs/ordering.md`), so either the sleeper sees the new data or the
//!   waker sees the sleeper: no lost wake-up, and no system call when nobody sleeps.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Role};
use crate::layout::{ControlBlock, PeerRecord, WakeLine, peer_state};
use crate::memory::RingMemory;
use crate::sync::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::{fence, futex_wait, futex_wake_all, spin_loop, yield_now};

/// How a blocked call waits. Chosen at creation, recorded in the header, used by both ends.
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
    /// Poll for the spin window, then sleep on a shared futex (Linux). Costs nothing on the
    /// message path while the other side is awake: one fence and one cache-hit load.
    Futex = 3,
    /// Poll for the spin window, then sleep on a process-shared robust pthread condvar
    /// (portable POSIX). All processes must use the same C library.
    Condvar = 4,
}

impl WaitStrategy {
    /// Decodes the header field.
    pub(crate) fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(WaitStrategy::Spin),
            2 => Some(WaitStrategy::SpinYield),
            3 => Some(WaitStrategy::Futex),
            4 => Some(WaitStrategy::Condvar),
            _ => None,
        }
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

/// Polls between liveness checks of the other end while busy-polling (a check reads
/// `/proc/<pid>/stat`, ~10 µs; 65,536 polls take milliseconds). Once a wait yields, the
/// peer is checked every [`YIELDING_LIVENESS_INTERVAL`] of clock time instead.
const POLLS_PER_LIVENESS_CHECK: u32 = 1 << 16;
/// Longest single sleep of the sleeping strategies: a peer that dies while we sleep is
/// noticed within this time.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(100);
/// Liveness check period of a yielding wait (a check costs ~10 µs: 0.04% of the period).
const YIELDING_LIVENESS_INTERVAL: Duration = Duration::from_millis(25);
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
    /// The other end, whose death ends a wait with `PeerDead` (`None`: never checked).
    peer: Option<Role>,
    /// Sleep and wake system calls this end made (tests prove the fast path makes none).
    syscalls: Cell<u64>,
}

impl<M: RingMemory> std::fmt::Debug for Waiter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("strategy", &self.strategy)
            .field("spin", &self.spin)
            .finish_non_exhaustive()
    }
}

impl<M: RingMemory> Waiter<M> {
    pub(crate) fn new(memory: M, strategy: WaitStrategy, spin: Duration) -> Self {
        Waiter {
            memory,
            strategy,
            spin,
            peer: None,
            syscalls: Cell::new(0),
        }
    }

    /// Ends waits with `PeerDead` once `peer`'s process has died without closing.
    pub(crate) fn watching(mut self, peer: Role) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Whether the other end may still make progress: a free role may yet be taken, a closed
    /// one is end of stream (the ring reports it), an attached one lives as long as its
    /// owner process (pid and start time, so a reused pid does not count).
    fn peer_alive(&self) -> bool {
        let Some(peer) = self.peer else { return true };
        let record: &PeerRecord = match peer {
            Role::Producer => &self.control().peers.producer,
            Role::Consumer => &self.control().peers.consumer,
        };
        match record.state.load(Acquire) {
            peer_state::ATTACHED => crate::os::owner_alive(record.owner.load(Acquire)),
            _ => true,
        }
    }

    /// The other end died: one last attempt (a consumer drains what was published),
    /// then `PeerDead`.
    fn peer_died<T>(attempt: &mut impl FnMut() -> Result<T>) -> Result<T> {
        match attempt() {
            Err(Error::WouldBlock) => Err(Error::PeerDead {
                detail: "the other end's process died without closing the ring",
            }),
            done => done,
        }
    }

    /// Sleep and wake system calls made so far.
    pub(crate) fn syscalls(&self) -> u64 {
        self.syscalls.get()
    }

    fn control(&self) -> &ControlBlock {
        self.memory.control()
    }

    fn line(&self, event: Event) -> &WakeLine {
        match event {
            Event::DataAvailable => &self.control().data_wake,
            Event::SpaceAvailable => &self.control().space_wake,
        }
    }

    fn count_syscall(&self) {
        self.syscalls.set(self.syscalls.get() + 1);
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
        // Yielding: when the peer was last checked (a yield may take a whole time slice on
        // a busy machine, so a poll count says nothing about time there).
        let mut checked: Option<Instant> = None;
        loop {
            match attempt() {
                Err(Error::WouldBlock) => {}
                done => return Some(done),
            }
            polls = polls.wrapping_add(1);
            let yielding = yield_after.is_some_and(|after| polls > after);
            // One clock read per yield (~20 ns next to a system call).
            let now = yielding.then(Instant::now);
            let check_peer = match now {
                Some(now) => {
                    let since = *checked.get_or_insert(now);
                    if now.duration_since(since) >= YIELDING_LIVENESS_INTERVAL {
                        checked = Some(now);
                        true
                    } else {
                        false
                    }
                }
                None => polls % POLLS_PER_LIVENESS_CHECK == 0,
            };
            if check_peer && !self.peer_alive() {
                return Some(Self::peer_died(attempt));
            }
            if let Some(budget) = budget {
                if yielding || polls % SPINS_PER_CLOCK_READ == 0 {
                    let now = now.unwrap_or_else(Instant::now);
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

    /// The sleeping strategies' spin phase: poll for the spin window (or the whole timeout,
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

    fn futex_wait_for<T>(
        &self,
        event: Event,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let line = self.line(event);
        loop {
            // Read the word before announcing: a wake that comes after this read changes it,
            // so the futex wait below returns at once instead of sleeping through it.
            let seq = line.seq.load(Acquire);
            line.waiters.fetch_add(1, Relaxed);
            // ORDERING W1 (pairs with N1): the announcement above is ordered before the
            // re-check below; the waker orders its publish before its check of `waiters`.
            // Of the two loads, at least one sees the other side's store.
            fence(SeqCst);
            let outcome = attempt();
            if !matches!(outcome, Err(Error::WouldBlock)) {
                line.waiters.fetch_sub(1, Relaxed);
                return outcome;
            }
            let timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        line.waiters.fetch_sub(1, Relaxed);
                        return Self::last_attempt(&mut attempt);
                    }
                    left
                }
                None => LIVENESS_INTERVAL,
            };
            self.count_syscall();
            // Never longer than the liveness interval: nobody wakes us if the peer dies.
            futex_wait(&line.seq, seq, Some(timeout.min(LIVENESS_INTERVAL)));
            line.waiters.fetch_sub(1, Relaxed);
            match attempt() {
                Err(Error::WouldBlock) => {}
                done => return done,
            }
            if !self.peer_alive() {
                return Self::peer_died(&mut attempt);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Self::last_attempt(&mut attempt);
            }
        }
    }

    fn futex_notify(&self, event: Event) {
        let line = self.line(event);
        // ORDERING N1 (pairs with W1): the publish (or release) before this call is ordered
        // before the check of `waiters`. (Only the loom negative control removes it.)
        #[cfg(not(shmring_weaken_dekker))]
        fence(SeqCst);
        if line.waiters.load(Relaxed) != 0 {
            // Release: a sleeper that wakes and reads the new value also sees our publish
            // (it re-checks the ring with Acquire anyway).
            line.seq.fetch_add(1, Release);
            self.count_syscall();
            futex_wake_all(&line.seq);
        }
    }

    fn condvar_parts(
        &self,
        event: Event,
    ) -> (*mut libc::pthread_mutex_t, *mut libc::pthread_cond_t) {
        let block = &self.control().condvar;
        let cond = match event {
            Event::DataAvailable => &block.data_cond,
            Event::SpaceAvailable => &block.space_cond,
        };
        (
            block.mutex.words.as_ptr() as *mut libc::pthread_mutex_t,
            cond.words.as_ptr() as *mut libc::pthread_cond_t,
        )
    }

    /// Locks the condvar strategy's robust mutex. A holder that died (`EOWNERDEAD`) held it
    /// only to announce itself or to signal, never to change the ring, so the ring needs no
    /// repair; the mutex is made consistent and the caller learns of the death.
    fn lock(&self, mutex: *mut libc::pthread_mutex_t) -> Result<()> {
        // SAFETY: the creator initialised the mutex before READY, which we Acquired at open.
        match unsafe { crate::os::mutex_lock(mutex) } {
            Ok(crate::os::Locked::Clean) => Ok(()),
            Ok(crate::os::Locked::OwnerDied) => Err(self.owner_died(mutex)),
            Err(e) => Err(Self::mutex_error(e)),
        }
    }

    /// We hold `mutex` after `EOWNERDEAD`: make it consistent, release it, report.
    fn owner_died(&self, mutex: *mut libc::pthread_mutex_t) -> Error {
        // SAFETY: we hold the mutex (lock or cond_wait returned EOWNERDEAD).
        let made = unsafe { crate::os::mutex_consistent(mutex) };
        // SAFETY: still held.
        unsafe { crate::os::mutex_unlock(mutex) };
        match made {
            Ok(()) => Error::PeerDead {
                detail: "a process died holding the ring's wait mutex; the mutex was recovered",
            },
            Err(e) => Self::mutex_error(e),
        }
    }

    fn mutex_error(err: std::io::Error) -> Error {
        if err.raw_os_error() == Some(libc::ENOTRECOVERABLE) {
            Error::corrupted("the ring's wait mutex is not recoverable")
        } else {
            Error::Io {
                op: "pthread_mutex_lock",
                source: err,
            }
        }
    }

    fn condvar_wait_for<T>(
        &self,
        event: Event,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let line = self.line(event);
        let (mutex, cond) = self.condvar_parts(event);
        self.lock(mutex)?;
        line.waiters.fetch_add(1, Relaxed);
        // ORDERING W1 (pairs with N1), as in the futex strategy.
        fence(SeqCst);
        let outcome = loop {
            match attempt() {
                Err(Error::WouldBlock) => {}
                done => break done,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err(Error::Timeout);
            }
            self.count_syscall();
            // Never longer than the liveness interval: nobody signals if the peer dies.
            let wake_by = Instant::now().checked_add(LIVENESS_INTERVAL);
            let until = match (deadline, wake_by) {
                (Some(d), Some(w)) => Some(d.min(w)),
                (d, w) => d.or(w),
            };
            // SAFETY: we hold `mutex`; both objects were initialised by the creator.
            match unsafe { crate::os::cond_wait(cond, mutex, until) } {
                Ok(crate::os::Locked::Clean) => {
                    // Only a wake that finds nothing to do costs a liveness check.
                    match attempt() {
                        Err(Error::WouldBlock) => {
                            if !self.peer_alive() {
                                break Self::peer_died(&mut attempt);
                            }
                        }
                        done => break done,
                    }
                }
                Ok(crate::os::Locked::OwnerDied) => {
                    line.waiters.fetch_sub(1, Relaxed);
                    return Err(self.owner_died(mutex));
                }
                Err(e) => {
                    line.waiters.fetch_sub(1, Relaxed);
                    // SAFETY: cond_wait returns with the mutex held, also on error.
                    unsafe { crate::os::mutex_unlock(mutex) };
                    return Err(Error::Io {
                        op: "pthread_cond_wait",
                        source: e,
                    });
                }
            }
        };
        line.waiters.fetch_sub(1, Relaxed);
        // SAFETY: held since `lock` (cond_wait re-acquires it before returning).
        unsafe { crate::os::mutex_unlock(mutex) };
        outcome
    }

    fn condvar_notify(&self, event: Event) {
        let line = self.line(event);
        // ORDERING N1 (pairs with W1), as in the futex strategy.
        fence(SeqCst);
        if line.waiters.load(Relaxed) != 0 {
            let (mutex, cond) = self.condvar_parts(event);
            // A sleeper increments `waiters` under the mutex and releases it only inside
            // cond_wait, so once we hold the mutex it is asleep (or gone): the broadcast
            // cannot slip in between its re-check and its sleep.
            if self.lock(mutex).is_ok() {
                self.count_syscall();
                // SAFETY: initialised by the creator; we hold the mutex.
                unsafe {
                    crate::os::cond_broadcast(cond);
                    crate::os::mutex_unlock(mutex);
                }
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
            WaitStrategy::Futex | WaitStrategy::Condvar => {
                // A deadline too large to represent (`None`) waits forever.
                let deadline = match self.spin_phase(timeout, &mut attempt) {
                    Ok(done) => return done,
                    Err(deadline) => deadline,
                };
                if self.strategy == WaitStrategy::Futex {
                    self.futex_wait_for(event, deadline, attempt)
                } else {
                    self.condvar_wait_for(event, deadline, attempt)
                }
            }
        }
    }

    #[inline]
    fn notify(&self, event: Event) {
        match self.strategy {
            WaitStrategy::Spin | WaitStrategy::SpinYield => {}
            WaitStrategy::Futex => self.futex_notify(event),
            WaitStrategy::Condvar => self.condvar_notify(event),
        }
    }
}

/// Initialises the condvar strategy's objects in a new segment (creator, before READY).
pub(crate) fn init_condvar(ctl: &ControlBlock) -> Result<()> {
    let block = &ctl.condvar;
    let mutex = block.mutex.words.as_ptr() as *mut libc::pthread_mutex_t;
    let conds = [
        block.data_cond.words.as_ptr() as *mut libc::pthread_cond_t,
        block.space_cond.words.as_ptr() as *mut libc::pthread_cond_t,
    ];
    // SAFETY: the slots are zeroed, suitably sized and aligned (layout asserts), and no other
    // process uses them before the creator publishes READY.
    unsafe { crate::os::pthread_init(mutex, &conds) }.map_err(|source| Error::Io {
        op: "pthread mutex/condvar init",
        source,
    })
}

/// Test hook: locks the condvar strategy's mutex and never unlocks it, so a test can kill
/// the holder. Returns whether the lock was taken.
pub(crate) fn hold_condvar_mutex(ctl: &ControlBlock) -> bool {
    let mutex = ctl.condvar.mutex.words.as_ptr() as *mut libc::pthread_mutex_t;
    // SAFETY: initialised by the creator of a condvar-strategy ring.
    unsafe { crate::os::mutex_lock(mutex) }.is_ok()
}
