//! Creation parameters and open options.

use std::time::Duration;

use crate::wait::{DEFAULT_SPIN_BEFORE_SLEEP, WaitStrategy};

/// Parameters for creating a ring.
///
/// ```
/// use shmring::{Config, WaitStrategy};
/// let config = Config::new()
///     .capacity(1 << 16)
///     .max_message(4096)
///     .wait_strategy(WaitStrategy::SpinYield);
/// assert_eq!(config.get_capacity(), Some(65536));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// `None`: not set (the kind's default applies; a kind it does not apply to accepts it).
    pub(crate) capacity: Option<usize>,
    pub(crate) max_message: Option<usize>,
    pub(crate) slots: Option<usize>,
    pub(crate) max_peers: Option<u32>,
    pub(crate) max_readers: Option<u32>,
    pub(crate) overflow: Option<crate::layout::geometry::Policy>,
    pub(crate) lag_limit: Option<u64>,
    pub(crate) lanes: Option<u32>,
    pub(crate) wait: WaitStrategy,
    pub(crate) group_access: bool,
    pub(crate) populate: bool,
    pub(crate) lock_memory: bool,
    pub(crate) initial_position: u64,
    /// Telemetry: stamp one message in this many (0: off).
    pub(crate) telemetry: u32,
    pub(crate) spin: Duration,
    pub(crate) open: OpenOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: None,
            max_message: None,
            slots: None,
            max_peers: None,
            max_readers: None,
            overflow: None,
            lag_limit: None,
            lanes: None,
            wait: WaitStrategy::default(),
            group_access: false,
            populate: true,
            lock_memory: false,
            initial_position: 0,
            telemetry: 0,
            spin: DEFAULT_SPIN_BEFORE_SLEEP,
            open: OpenOptions::default(),
        }
    }
}

impl Config {
    /// Defaults: 1 MiB data region, largest possible messages, spin-then-yield waits,
    /// mode 0600, pages pre-faulted, not locked.
    pub fn new() -> Self {
        Config::default()
    }

    /// SPSC rings: bytes in the data region, a power of two from 256 to 2^40 (default
    /// 1 MiB). An MPMC ring refuses it (`InvalidArgument`): it is sized by
    /// [`slots`](Config::slots) and [`max_message`](Config::max_message).
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// Largest message payload. SPSC: at most `capacity / 2 - 8` (the default). MPMC: the
    /// slot payload size, 1 to 2^24 (default 240, so a slot is 256 bytes).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// MPMC rings: number of slots, a power of two from 2 to 2^24 (default 1024). An SPSC
    /// ring refuses it (`InvalidArgument`): it is sized by [`capacity`](Config::capacity).
    ///
    /// ```
    /// let config = shmring::Config::new().slots(256).max_message(48).max_peers(8);
    /// # let _ = config;
    /// ```
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = Some(slots);
        self
    }

    /// MPMC rings: how many producers and consumers may be attached at once, 2 to 1024
    /// (default 16). Each costs a 128-byte record in the segment. An SPSC ring (one of
    /// each) refuses it (`InvalidArgument`).
    pub fn max_peers(mut self, peers: u32) -> Self {
        self.max_peers = Some(peers);
        self
    }

    /// Broadcast rings: most readers attached at once, 1 to 1023 (default 16). Each costs a
    /// 128-byte record in the segment; a durable reader's name keeps its record while it
    /// is away. Other kinds refuse it (`InvalidArgument`).
    pub fn max_readers(mut self, readers: u32) -> Self {
        self.max_readers = Some(readers);
        self
    }

    /// Broadcast rings: what the producer does when the slowest reader is a whole ring
    /// behind ([`Policy::Lossless`](crate::broadcast::Policy::Lossless), the default:
    /// wait; [`Policy::Overwrite`](crate::broadcast::Policy::Overwrite): overwrite, and
    /// the reader learns what it missed). Other kinds refuse it.
    pub fn overflow(mut self, policy: crate::layout::geometry::Policy) -> Self {
        self.overflow = Some(policy);
        self
    }

    /// Broadcast rings, `Lossless`: a reader more than `bytes` behind the producer stops
    /// holding it back (it is overwritten like an `Overwrite` reader and learns it through
    /// `Lagged`), so one stalled reader cannot stop the feed. At least one largest record,
    /// less than the capacity. Default: no limit. Other kinds refuse it.
    pub fn lag_limit(mut self, bytes: u64) -> Self {
        self.lag_limit = Some(bytes);
        self
    }

    /// MPMC rings: priority lanes, 1 to 32 (default 1). A message sent with
    /// [`send_priority`](crate::Producer::send_priority)`(msg, p)` goes to lane `p`
    /// (`0..lanes`); a receive takes the oldest message of the highest non-empty lane.
    /// Each lane has its own [`slots`](Config::slots), so a full lane never takes space
    /// from another (`docs/lanes.md`). The other kinds have one lane and refuse more.
    ///
    /// ```
    /// let config = shmring::Config::new().lanes(8).slots(256);
    /// # let _ = config;
    /// ```
    pub fn lanes(mut self, lanes: u32) -> Self {
        self.lanes = Some(lanes);
        self
    }

    /// Refuses more than one lane for a kind that has one.
    pub(crate) fn one_lane(&self, kind: &str) -> crate::Result<()> {
        match self.lanes {
            Some(lanes) if lanes != 1 => Err(crate::Error::invalid_argument(format!(
                "Config::lanes({lanes}): {kind} rings have one lane; priority lanes are an \
                 MPMC ring's (mpmc::Ring with Config::lanes, also for one producer and one \
                 consumer)"
            ))),
            _ => Ok(()),
        }
    }

    /// How blocking calls wait (both ends use the creator's choice).
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.wait = strategy;
        self
    }

    /// How long the futex strategy polls before sleeping (default 20 µs). Longer
    /// keeps a busy pipeline from ever paying a wake-up; zero sleeps at once.
    pub fn spin_before_sleep(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Create with mode 0660 instead of 0600 so the owner's group may open the ring.
    pub fn group_access(mut self, allow: bool) -> Self {
        self.group_access = allow;
        self
    }

    /// Fault in every page at creation and open (default on), so no page fault lands on
    /// the message path.
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// Lock the mapping into RAM (`mlock`); fails if RLIMIT_MEMLOCK is too small.
    pub fn lock_memory(mut self, lock: bool) -> Self {
        self.lock_memory = lock;
        self
    }

    /// Keeps telemetry in the segment (off by default): producers stamp one message in
    /// `stamp_every` (1 = every message; up to 65,536) with its commit time, consumers
    /// count commit-to-receive latencies in a histogram, and [`Stats::telemetry`] (and
    /// `shmring stat`) shows them, with the most messages seen in flight and when each side
    /// was last active. The stamp travels in 8 bytes before each message, so the largest
    /// message is 8 bytes smaller than the same ring without telemetry (`max_message` is
    /// what you may send either way). 0 turns it off. Cost: see `docs/cli.md`.
    ///
    /// [`Stats::telemetry`]: crate::Stats::telemetry
    pub fn telemetry(mut self, stamp_every: u32) -> Self {
        self.telemetry = stamp_every;
        self
    }

    /// The parameters the kind's geometry is made from: with telemetry, every message
    /// carries its stamp, so the ring holds 8 more bytes per message than asked.
    pub(crate) fn for_geometry(&self) -> crate::Result<Config> {
        if self.telemetry > crate::telemetry::MAX_STAMP_EVERY {
            return Err(crate::Error::invalid_argument(format!(
                "Config::telemetry({}): stamp one message in at most {}",
                self.telemetry,
                crate::telemetry::MAX_STAMP_EVERY
            )));
        }
        let mut config = self.clone();
        if self.telemetry > 0 {
            config.max_message = self
                .max_message
                .map(|m| m.saturating_add(crate::telemetry::STAMP_BYTES));
        }
        Ok(config)
    }

    /// Options used when `create_or_open` finds the ring already made.
    pub fn open_options(mut self, options: OpenOptions) -> Self {
        self.open = options;
        self
    }

    /// Stream position of the first record (SPSC: a multiple of 8). Only for tests of
    /// position wrap-around.
    #[doc(hidden)]
    pub fn initial_position(mut self, position: u64) -> Self {
        self.initial_position = position;
        self
    }

    /// The SPSC capacity, if set.
    pub fn get_capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Refuses a field that `kind` (its name in the message) has no use for, naming what
    /// sizes that kind instead.
    pub(crate) fn refuse(
        &self,
        kind: &str,
        fields: &[(&str, bool)],
        sized_by: &str,
    ) -> crate::Result<()> {
        match fields.iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(crate::Error::invalid_argument(format!(
                "Config::{field} does not apply to {kind} rings (they are sized by {sized_by})"
            ))),
            None => Ok(()),
        }
    }

    /// The configured wait strategy.
    pub fn get_wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    pub(crate) fn mode(&self) -> u32 {
        if self.group_access { 0o660 } else { 0o600 }
    }
}

/// How much to trust an existing segment when opening it.
///
/// ```
/// use std::time::Duration;
/// let options = shmring::OpenOptions::new().init_timeout(Duration::from_millis(100));
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub(crate) any_owner: bool,
    pub(crate) writable_by_others: bool,
    pub(crate) init_timeout: Duration,
    pub(crate) expect_wait: Option<WaitStrategy>,
    pub(crate) populate: bool,
    pub(crate) lock_memory: bool,
    pub(crate) spin: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            any_owner: false,
            writable_by_others: false,
            init_timeout: Duration::from_secs(2),
            expect_wait: None,
            populate: true,
            lock_memory: false,
            spin: DEFAULT_SPIN_BEFORE_SLEEP,
        }
    }
}

impl OpenOptions {
    /// Defaults: the segment must be owned by this process's effective user and writable by
    /// nobody else; wait up to 2 s for a creator still initialising it.
    pub fn new() -> Self {
        OpenOptions::default()
    }

    /// Accept a segment owned by another user.
    pub fn any_owner(mut self, allow: bool) -> Self {
        self.any_owner = allow;
        self
    }

    /// Accept a segment that group or other users may write (e.g. made with `group_access`).
    pub fn writable_by_others(mut self, allow: bool) -> Self {
        self.writable_by_others = allow;
        self
    }

    /// How long to wait for a creator that has not finished initialising the segment.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// Refuse (`Incompatible`) a ring created with another wait strategy.
    pub fn expect_wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.expect_wait = Some(strategy);
        self
    }

    /// Fault in every page when mapping (default on).
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// How long the futex strategy polls before sleeping (default 20 µs).
    pub fn spin_before_sleep(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Lock the mapping into RAM (`mlock`).
    pub fn lock_memory(mut self, lock: bool) -> Self {
        self.lock_memory = lock;
        self
    }
}
