//! How a blocking call waits for the other side. The ring algorithms know nothing of this:
//! they answer `WouldBlock`, and a [`Waiter`] decides how to pass the time until a retry.
//!
//! Today: busy-spin and spin-then-yield ([`Polling`]). The futex and process-shared condvar
//! strategies, which need the other side to `notify`, become further [`Waiter`] variants
//! implementing [`Wait`].

use std::time::Instant;

use crate::error::{Error, Result};
use crate::sync::{spin_loop, yield_now};

/// How a blocked call waits. Chosen at creation, recorded in the header, used by both ends.
///
/// ```
/// use shmring::{Config, WaitStrategy};
/// let config = Config::new().wait_strategy(WaitStrategy::Spin);
/// assert_eq!(config.get_wait_strategy(), WaitStrategy::Spin);
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
}

impl WaitStrategy {
    /// Decodes the header field.
    pub(crate) fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(WaitStrategy::Spin),
            2 => Some(WaitStrategy::SpinYield),
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

/// Polls before the first yield.
const SPINS_BEFORE_YIELD: u32 = 64;
/// Polls between clock reads while busy-spinning (a clock read costs ~20 ns).
const SPINS_PER_CLOCK_READ: u32 = 32;

/// A way of passing the time while a ring is full or empty.
///
/// `wait_for` owns the whole retry loop because a sleeping strategy must re-check the ring
/// *after* announcing itself and before sleeping (the Dekker pair of the futex strategy);
/// `notify` is the other half, called by the side that made progress.
pub(crate) trait Wait {
    /// Retries `attempt` while it says `WouldBlock`, until it succeeds, fails otherwise, or
    /// `deadline` passes (`Timeout`). `attempt` runs at least once, and once more at the
    /// deadline, so a deadline never hides a message that arrived.
    fn wait_for<T>(
        &mut self,
        event: Event,
        deadline: Option<Instant>,
        attempt: impl FnMut() -> Result<T>,
    ) -> Result<T>;

    /// Tells waiters on `event` that it may have happened.
    fn notify(&self, event: Event);
}

/// Busy-polling, optionally yielding the CPU after a number of polls. Nobody sleeps, so
/// `notify` has nobody to wake.
#[derive(Debug)]
pub(crate) struct Polling {
    /// Polls before yielding between polls; `None` never yields.
    yield_after: Option<u32>,
}

impl Wait for Polling {
    #[inline]
    fn wait_for<T>(
        &mut self,
        _event: Event,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let mut polls: u32 = 0;
        loop {
            match attempt() {
                Err(Error::WouldBlock) => {}
                done => return done,
            }
            polls = polls.wrapping_add(1);
            let yielding = self.yield_after.is_some_and(|after| polls > after);
            if let Some(deadline) = deadline {
                if (yielding || polls % SPINS_PER_CLOCK_READ == 0) && Instant::now() >= deadline {
                    return match attempt() {
                        Err(Error::WouldBlock) => Err(Error::Timeout),
                        done => done,
                    };
                }
            }
            if yielding {
                yield_now();
            } else {
                spin_loop();
            }
        }
    }

    #[inline]
    fn notify(&self, _event: Event) {}
}

/// The strategy a handle uses, chosen from the segment header at attach.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// Spin or spin-then-yield.
    Polling(Polling),
}

impl Waiter {
    pub(crate) fn new(strategy: WaitStrategy) -> Self {
        match strategy {
            WaitStrategy::Spin => Waiter::Polling(Polling { yield_after: None }),
            WaitStrategy::SpinYield => Waiter::Polling(Polling {
                yield_after: Some(SPINS_BEFORE_YIELD),
            }),
        }
    }
}

impl Wait for Waiter {
    #[inline]
    fn wait_for<T>(
        &mut self,
        event: Event,
        deadline: Option<Instant>,
        attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        match self {
            Waiter::Polling(polling) => polling.wait_for(event, deadline, attempt),
        }
    }

    #[inline]
    fn notify(&self, event: Event) {
        match self {
            Waiter::Polling(polling) => polling.notify(event),
        }
    }
}
