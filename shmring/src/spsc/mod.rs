//! Single-producer single-consumer rings of variable-length messages.
//!
//! A [`Ring`] is a mapped segment; [`Ring::producer`] and [`Ring::consumer`] attach the two
//! ends (one of each, in any processes). Sending and receiving make no system call and
//! allocate nothing.
//!
//! ```
//! use shmring::{Config, spsc::Ring};
//! let name = format!("/doc-spsc-{}", std::process::id());
//! let ring = Ring::create(&name, &Config::new().capacity(4096))?;
//! let mut tx = ring.producer()?;
//! let mut rx = Ring::open(&name)?.consumer()?;
//!
//! tx.try_send(b"hello")?;
//! let mut buf = [0u8; 64];
//! let n = rx.try_recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! ring.unlink()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use crate::algo::spsc::{Claim, ConsumerCore, Message, ProducerCore};
use crate::config::{Config, OpenOptions};
use crate::error::{Error, Result, Role};
use crate::layout::RingKind;
use crate::layout::geometry::SpscGeometry as Geometry;
use crate::memory::RingMemory;
use crate::peers;
use crate::shm::ShmMemory;
use crate::shm::attach::{self, Attached};
use crate::shm::os;
use crate::shm::segment::{self, Location};
use crate::stats::{Stats, stats_of};
use crate::wait::{Event, Wait, WaitStrategy, Waiter};
use std::os::fd::OwnedFd;

/// A mapped SPSC ring segment. Attach the ends with [`producer`](Ring::producer) and
/// [`consumer`](Ring::consumer); the segment persists until [`unlink`](Ring::unlink)ed.
///
/// ```
/// use shmring::{Config, spsc::Ring};
/// let name = format!("/doc-ring-{}", std::process::id());
/// let ring = Ring::create_or_open(&name, &Config::new().capacity(1 << 12))?;
/// assert_eq!(ring.capacity(), 4096);
/// assert_eq!(ring.max_message(), 2040);
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub struct Ring {
    memory: ShmMemory,
    geometry: Geometry,
    wait: WaitStrategy,
    spin: Duration,
    created: bool,
}

impl Ring {
    /// Creates a new ring named `name` (`/` then 1..=250 of `[A-Za-z0-9._-]`), mode 0600
    /// (0660 with [`Config::group_access`]). Fails with `AlreadyExists` if the name is taken.
    pub fn create(name: &str, config: &Config) -> Result<Ring> {
        Ring::from_attached(
            attach::create(&segment::named(name)?, config, RingKind::Spsc)?,
            config.spin,
        )
    }

    /// Opens the ring `name` with default [`OpenOptions`].
    pub fn open(name: &str) -> Result<Ring> {
        Ring::open_with(name, &OpenOptions::default())
    }

    /// Opens the ring `name`, checking owner, mode, layout and kind as `options` say.
    pub fn open_with(name: &str, options: &OpenOptions) -> Result<Ring> {
        Ring::from_attached(
            attach::open(&segment::named(name)?, options, RingKind::Spsc)?,
            options.spin,
        )
    }

    /// Creates the ring, or opens it if another process got there first (it must then have
    /// the same capacity, maximum message and wait strategy). Exactly one racer creates it.
    pub fn create_or_open(name: &str, config: &Config) -> Result<Ring> {
        Ring::from_attached(
            attach::create_or_open(&segment::named(name)?, config, RingKind::Spsc)?,
            config.spin,
        )
    }

    /// Creates a ring in a file at `path` (persistent storage, hugetlbfs, another tmpfs).
    pub fn create_at(path: impl AsRef<Path>, config: &Config) -> Result<Ring> {
        let location = segment::path_location(path.as_ref());
        Ring::from_attached(
            attach::create(&location, config, RingKind::Spsc)?,
            config.spin,
        )
    }

    /// Opens a ring stored in a file at `path`.
    pub fn open_at(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Ring> {
        let location = segment::path_location(path.as_ref());
        Ring::from_attached(
            attach::open(&location, options, RingKind::Spsc)?,
            options.spin,
        )
    }

    /// Creates a ring with no name: an anonymous memory file (memfd) sealed against
    /// shrinking and growing, so no process holding it can truncate it under a mapping
    /// (SIGBUS). Share it with [`share_fd`](Ring::share_fd) (pass the descriptor over a Unix
    /// socket or to a child) and attach with [`open_fd`](Ring::open_fd). Linux only.
    ///
    /// ```
    /// use shmring::{Config, OpenOptions, spsc::Ring};
    /// let ring = Ring::create_anonymous(&Config::new().capacity(4096))?;
    /// let other = Ring::open_fd(ring.share_fd()?, &OpenOptions::new())?;
    /// # let _ = other;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn create_anonymous(config: &Config) -> Result<Ring> {
        Ring::from_attached(
            attach::create(&Location::Anonymous, config, RingKind::Spsc)?,
            config.spin,
        )
    }

    /// Attaches to an anonymous ring through a descriptor from
    /// [`share_fd`](Ring::share_fd). `PermissionDenied` if the file is not sealed against
    /// resizing (a holder could truncate it under our mapping).
    pub fn open_fd(fd: std::os::fd::OwnedFd, options: &OpenOptions) -> Result<Ring> {
        Ring::from_attached(
            attach::open_fd(fd, &Location::Anonymous, options, RingKind::Spsc)?,
            options.spin,
        )
    }

    /// A new descriptor of an anonymous ring (close-on-exec) to hand to another process.
    /// `InvalidArgument` for a named ring (open it by name instead).
    pub fn share_fd(&self) -> Result<std::os::fd::OwnedFd> {
        self.memory.segment().share_fd()
    }

    fn from_attached(attached: Attached, spin: Duration) -> Result<Ring> {
        let crate::shm::attach::Shape::Spsc(geometry) = attached.shape else {
            return Err(Error::incompatible("not an SPSC ring"));
        };
        Ok(Ring {
            memory: ShmMemory::new(attached.segment, geometry.capacity),
            geometry,
            wait: attached.wait,
            spin,
            created: attached.created,
        })
    }

    /// A waiter for the end playing `role`.
    fn waiter(&self, role: Role) -> Waiter<ShmMemory> {
        Waiter::new(
            self.memory.clone(),
            self.wait,
            self.spin,
            peers::spsc_slot(role),
            2,
        )
    }

    /// Attaches the producing end. Fails with `AlreadyAttached` while a live producer
    /// holds the role. A role given up before is taken again: after a clean close (a
    /// restarted producer; the consumer, having seen `Closed`, receives the new messages,
    /// as a FIFO reader does after a new writer opened it), or after its holder died (the
    /// new producer continues after the last record the dead one published).
    pub fn producer(&self) -> Result<Producer> {
        let holder = self.attach(Role::Producer)?;
        let core = ProducerCore::new(self.memory.clone(), self.geometry).and_then(|mut core| {
            // A previous producer may have published records after its last `tail` store.
            core.recover_tail()?;
            Ok(core)
        });
        let core = match core {
            Ok(core) => core,
            Err(err) => {
                peers::close_spsc(&self.memory, Role::Producer, &holder);
                return Err(err);
            }
        };
        Ok(Producer {
            core,
            waiter: self.waiter(Role::Producer),
            holder,
            fruitless: Fruitless::default(),
        })
    }

    /// Attaches the consuming end. Fails with `AlreadyAttached` while a live consumer
    /// holds the role. A role given up before is taken again: a new consumer resumes at
    /// the last position released, so after a crash the messages the dead one had read but
    /// not released are delivered again (at-least-once).
    pub fn consumer(&self) -> Result<Consumer> {
        let holder = self.attach(Role::Consumer)?;
        let core = match ConsumerCore::new(self.memory.clone(), self.geometry) {
            Ok(core) => core,
            Err(err) => {
                peers::close_spsc(&self.memory, Role::Consumer, &holder);
                return Err(err);
            }
        };
        Ok(Consumer {
            core,
            waiter: self.waiter(Role::Consumer),
            holder,
            fruitless: Fruitless::default(),
        })
    }

    fn attach(&self, role: Role) -> Result<OwnedFd> {
        let me = os::current_process();
        peers::attach_spsc(&self.memory, role, me.owner_word(), me.pid)
    }

    /// Bytes in the data region.
    pub fn capacity(&self) -> u64 {
        self.geometry.capacity
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        self.geometry.max_message as usize
    }

    /// The wait strategy both ends use.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Whether this handle created the segment (useful after `create_or_open`).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// Counters and occupancy, read from the segment.
    pub fn stats(&self) -> Stats {
        stats_of(self.memory.control(), self.geometry)
    }

    /// Messages published and not yet released, as far as the shared counters know.
    pub fn len(&self) -> u64 {
        self.stats().messages_in_flight
    }

    /// Whether no message is waiting (as far as the shared counters know).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The two role records that have been held (producer index 0, consumer index 1), in
    /// the same form as an MPMC ring's registry: status (a holder whose process died shows
    /// as `AttachedDead`), pid, generation (takeovers count), and counters.
    ///
    /// ```
    /// use shmring::{Config, PeerStatus, spsc::Ring};
    /// let name = format!("/doc-spsc-peers-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let _tx = ring.producer()?;
    /// let peers = ring.peers();
    /// assert_eq!(peers.len(), 1);
    /// assert_eq!((peers[0].status, peers[0].generation), (PeerStatus::Attached, 1));
    /// ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn peers(&self) -> Vec<crate::PeerInfo> {
        crate::stats::spsc_peers(self.memory.control(), |slot| self.memory.slot_alive(slot))
    }

    /// Removes the ring's name (or path). Attached handles keep working; new opens fail.
    pub fn unlink(&self) -> Result<()> {
        segment::unlink(self.memory.segment().location())
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("location", &self.memory.segment().location().display())
            .field("capacity", &self.geometry.capacity)
            .field("max_message", &self.geometry.max_message)
            .field("wait", &self.wait)
            .finish()
    }
}

/// Polls between looks for a dead peer when a caller loops on `try_*` (the look is one
/// `fcntl`; a blocked call looks every `RECOVERY_INTERVAL` instead).
const FRUITLESS_POLLS_PER_LOOK: u32 = 1 << 12;

/// Counts `try_*` calls that found nothing to do, so that a caller looping on them still
/// learns of a dead peer (`PeerDead`) without a system call on every poll.
#[derive(Default)]
struct Fruitless {
    polls: u32,
}

impl Fruitless {
    /// Passes `outcome` through; every [`FRUITLESS_POLLS_PER_LOOK`]-th `WouldBlock` first
    /// recovers a dead holder of `peer`, so the next call reports the end of the stream.
    #[inline]
    fn check<T>(
        &mut self,
        outcome: Result<T>,
        memory: &ShmMemory,
        holder: &OwnedFd,
        peer: Role,
    ) -> Result<T> {
        if let Err(Error::WouldBlock) = outcome {
            self.polls = self.polls.wrapping_add(1);
            if self.polls % FRUITLESS_POLLS_PER_LOOK == 0 {
                Self::look(memory, holder, peer);
            }
        }
        outcome
    }

    #[cold]
    fn look(memory: &ShmMemory, holder: &OwnedFd, peer: Role) {
        // An error leaves the peer's liveness unknown: the caller polls on.
        let _ = peers::reap_spsc(memory, peer, holder);
    }
}

/// Waits as `waiter` does, looking every `RECOVERY_INTERVAL` for a dead holder of `peer`
/// (whose slot is then recovered, so the wait ends with `PeerDead` once nothing more can
/// come, or continues with a peer that took over).
fn wait_reaping<T>(
    waiter: &Waiter<ShmMemory>,
    holder: &OwnedFd,
    peer: Role,
    event: Event,
    timeout: Option<Duration>,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    waiter.wait_maintaining(event, timeout, |maintain| {
        if maintain {
            // An error here (the lock call failed) leaves the peer's liveness unknown: keep
            // waiting, within the caller's timeout.
            let _ = peers::reap_spsc(waiter.memory(), peer, holder);
        }
        attempt()
    })
}

/// The writing end of an SPSC ring. Dropping it (or [`close`](Producer::close)) publishes
/// anything pending and gives the consumer end-of-stream after it drains.
///
/// `Send` but not `Sync`: move it to the thread that writes.
pub struct Producer {
    core: ProducerCore<ShmMemory>,
    waiter: Waiter<ShmMemory>,
    /// Holds the producer slot's lock while attached.
    holder: OwnedFd,
    /// Counts `try_*` calls that found the ring full.
    fruitless: Fruitless,
}

impl Producer {
    /// Copies `msg` into the ring as one message, or returns `WouldBlock` if it is full,
    /// `MessageTooLarge`, or `Closed` if the consumer has gone.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        let written = self.core.try_write(msg);
        self.fruitless
            .check(written, self.core.memory(), &self.holder, Role::Consumer)?;
        self.waiter.notify(Event::DataAvailable);
        Ok(())
    }

    /// Like [`try_send`](Producer::try_send), waiting while the ring is full.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, None)
    }

    /// Like [`send`](Producer::send), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(msg, Some(timeout))
    }

    #[inline]
    fn send_until(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        let core = &mut self.core;
        wait_reaping(
            &self.waiter,
            &self.holder,
            Role::Consumer,
            Event::SpaceAvailable,
            timeout,
            || core.try_write(msg),
        )?;
        self.waiter.notify(Event::DataAvailable);
        Ok(())
    }

    /// Reserves `len` bytes for a message written in place; [`WriteGrant::commit`]
    /// publishes it, dropping the grant publishes nothing.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-reserve-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let mut tx = ring.producer()?;
    /// let mut grant = tx.try_reserve(5)?;
    /// grant.copy_from_slice(b"hello");
    /// grant.commit();
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        let claim = self.core.try_claim(len);
        let claim =
            self.fruitless
                .check(claim, self.core.memory(), &self.holder, Role::Consumer)?;
        Ok(WriteGrant::new(self, claim))
    }

    /// Like [`try_reserve`](Producer::try_reserve), waiting while the ring is full.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.reserve_until(len, None)
    }

    /// Like [`reserve`](Producer::reserve), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGrant<'_>> {
        self.reserve_until(len, Some(timeout))
    }

    #[inline]
    fn reserve_until(&mut self, len: usize, timeout: Option<Duration>) -> Result<WriteGrant<'_>> {
        let core = &mut self.core;
        let claim = wait_reaping(
            &self.waiter,
            &self.holder,
            Role::Consumer,
            Event::SpaceAvailable,
            timeout,
            || core.try_claim(len),
        )?;
        Ok(WriteGrant::new(self, claim))
    }

    /// Reserves `len` bytes like [`try_reserve`](Producer::try_reserve), without a borrow:
    /// returns the address of the reserved bytes, which stay valid and reserved until
    /// [`commit_detached`](Producer::commit_detached) or
    /// [`cancel_detached`](Producer::cancel_detached). Meanwhile every other send on this
    /// producer fails with `InvalidArgument`. For callers that cannot hold a grant (the C ABI).
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-detached-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let mut tx = ring.producer()?;
    /// let ptr = tx.reserve_detached(3, None)?;
    /// // SAFETY: 3 reserved bytes, nothing else touches them until the commit.
    /// unsafe { ptr.as_ptr().copy_from_nonoverlapping(b"abc".as_ptr(), 3) };
    /// tx.commit_detached(3)?;
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn reserve_detached(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<std::ptr::NonNull<u8>> {
        let core = &mut self.core;
        let claim = wait_reaping(
            &self.waiter,
            &self.holder,
            Role::Consumer,
            Event::SpaceAvailable,
            timeout,
            || core.try_claim(len),
        )?;
        let ptr = self.core.payload_ptr(&claim);
        self.core.set_detached(claim);
        // A claim's payload pointer points into the mapping, never null.
        Ok(std::ptr::NonNull::new(ptr).expect("payload pointer inside the mapping"))
    }

    /// Non-blocking [`reserve_detached`](Producer::reserve_detached).
    pub fn try_reserve_detached(&mut self, len: usize) -> Result<std::ptr::NonNull<u8>> {
        let claim = self.core.try_claim(len);
        let claim =
            self.fruitless
                .check(claim, self.core.memory(), &self.holder, Role::Consumer)?;
        let ptr = self.core.payload_ptr(&claim);
        self.core.set_detached(claim);
        Ok(std::ptr::NonNull::new(ptr).expect("payload pointer inside the mapping"))
    }

    /// Publishes the first `len` bytes of the pending detached reservation.
    /// `InvalidArgument` if none is pending or `len` exceeds it (it stays pending then).
    pub fn commit_detached(&mut self, len: usize) -> Result<()> {
        let claim = self.core.take_detached().ok_or_else(|| {
            Error::invalid_argument("commit without a pending detached reservation")
        })?;
        if len > claim.len() {
            self.core.set_detached(claim);
            return Err(Error::invalid_argument(format!(
                "commit of {len} bytes exceeds the {} reserved",
                claim.len()
            )));
        }
        let batching = self.core.is_batching();
        self.core.commit(claim, len);
        if !batching {
            self.published();
        }
        Ok(())
    }

    /// Drops the pending detached reservation without publishing anything.
    pub fn cancel_detached(&mut self) {
        let _ = self.core.take_detached();
    }

    /// Starts a batch: messages pushed to it are published together, with one store, when
    /// it is [`publish`](SendBatch::publish)ed or dropped.
    #[inline]
    pub fn batch(&mut self) -> SendBatch<'_> {
        self.core.begin_batch();
        SendBatch {
            producer: self,
            pushed: 0,
        }
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        self.core.geometry().max_message as usize
    }

    /// Bytes in the data region.
    pub fn capacity(&self) -> u64 {
        self.core.geometry().capacity
    }

    /// Counters and occupancy, read from the segment.
    pub fn stats(&self) -> Stats {
        stats_of(self.core.memory().control(), self.core.geometry())
    }

    /// Messages published and not yet released, as far as the shared counters know.
    pub fn len(&self) -> u64 {
        self.stats().messages_in_flight
    }

    /// Whether no message is waiting (as far as the shared counters know).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// System calls this producer made to sleep or to wake the consumer (futex
    /// strategies; always 0 for the polling ones).
    pub fn wake_syscalls(&self) -> u64 {
        self.waiter.syscalls()
    }

    /// Publishes what is pending and ends the stream: the consumer receives everything sent,
    /// then `Closed`. Same as dropping the producer.
    pub fn close(self) {}

    #[inline]
    fn published(&self) {
        self.waiter.notify(Event::DataAvailable);
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.core.close();
        peers::close_spsc(self.core.memory(), Role::Producer, &self.holder);
        self.waiter.notify(Event::DataAvailable);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .finish_non_exhaustive()
    }
}

/// Room for one message inside the ring, from [`Producer::try_reserve`]. Derefs to the
/// reserved bytes (their contents are unspecified until written).
pub struct WriteGrant<'a> {
    producer: &'a mut Producer,
    claim: Claim,
    payload: *mut u8,
}

impl<'a> WriteGrant<'a> {
    #[inline]
    fn new(producer: &'a mut Producer, claim: Claim) -> Self {
        let payload = producer.core.payload_ptr(&claim);
        WriteGrant {
            producer,
            claim,
            payload,
        }
    }

    /// Publishes the whole reserved length as one message (unless inside a batch, which
    /// publishes on its own).
    #[inline]
    pub fn commit(self) {
        let len = self.claim.len();
        self.commit_prefix(len);
    }

    /// Publishes only the first `len` bytes (`len` is clamped to the reserved length).
    #[inline]
    pub fn commit_prefix(self, len: usize) {
        let batching = self.producer.core.is_batching();
        self.producer.core.commit(self.claim, len);
        if !batching {
            self.producer.published();
        }
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `payload` points at `claim.len()` bytes inside the data region that only
        // this producer may touch until the claim is committed (the consumer cannot see
        // them; the producer is borrowed mutably by the grant).
        unsafe { std::slice::from_raw_parts(self.payload, self.claim.len()) }
    }
}

impl DerefMut for WriteGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.payload, self.claim.len()) }
    }
}

/// Messages published together with one store, from [`Producer::batch`]. Dropping the batch
/// publishes what was pushed.
///
/// ```
/// # use shmring::{Config, spsc::Ring};
/// # let name = format!("/doc-batch-{}", std::process::id());
/// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
/// let mut tx = ring.producer()?;
/// let mut batch = tx.batch();
/// for msg in [&b"a"[..], b"bb", b"ccc"] {
///     batch.try_push(msg)?;
/// }
/// assert_eq!(batch.publish(), 3);
/// # ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub struct SendBatch<'a> {
    producer: &'a mut Producer,
    pushed: usize,
}

impl SendBatch<'_> {
    /// Copies `msg` into the batch; `WouldBlock` if the ring has no room (what was pushed
    /// before stays in the batch).
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<()> {
        let written = self.producer.core.try_write(msg);
        let p = &mut *self.producer;
        p.fruitless
            .check(written, p.core.memory(), &p.holder, Role::Consumer)?;
        self.pushed += 1;
        Ok(())
    }

    /// Reserves room for a message written in place; its commit joins the batch.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        let claim = self.producer.core.try_claim(len);
        let p = &mut *self.producer;
        let claim = p
            .fruitless
            .check(claim, p.core.memory(), &p.holder, Role::Consumer)?;
        Ok(WriteGrant::new(self.producer, claim))
    }

    /// Messages copied in with [`try_push`](SendBatch::try_push) so far.
    pub fn len(&self) -> usize {
        self.pushed
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Publishes every message of the batch with one store; returns how many were pushed.
    #[inline]
    pub fn publish(self) -> usize {
        self.pushed
    }
}

impl Drop for SendBatch<'_> {
    #[inline]
    fn drop(&mut self) {
        self.producer.core.flush();
        self.producer.published();
    }
}

/// The reading end of an SPSC ring. Dropping it (or [`close`](Consumer::close)) tells the
/// producer, whose next send returns `Closed`.
pub struct Consumer {
    core: ConsumerCore<ShmMemory>,
    waiter: Waiter<ShmMemory>,
    /// Holds the consumer slot's lock while attached.
    holder: OwnedFd,
    /// Counts `try_*` calls that found the ring empty.
    fruitless: Fruitless,
}

impl Consumer {
    /// The next message without waiting (a caller looping on `try_*` still finds a dead
    /// producer out, every few thousand empty polls).
    #[inline]
    fn try_next(&mut self) -> Result<Message> {
        let next = self.core.try_next();
        self.fruitless
            .check(next, self.core.memory(), &self.holder, Role::Producer)
    }

    #[inline]
    fn next_until(&mut self, timeout: Option<Duration>) -> Result<Message> {
        let core = &self.core;
        wait_reaping(
            &self.waiter,
            &self.holder,
            Role::Producer,
            Event::DataAvailable,
            timeout,
            || core.try_next(),
        )
    }

    #[inline]
    fn copy_out(&mut self, msg: Message, buf: &mut [u8]) -> Result<usize> {
        let len = msg.len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall { needed: len });
        }
        let src = self.core.payload(&msg);
        // SAFETY: `src` points at `len` bytes inside the data region that the producer will
        // not touch until we consume the record; `buf` is private and at least `len` long.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), len) };
        self.consume(msg);
        Ok(len)
    }

    #[inline]
    fn copy_out_vec(&mut self, msg: Message, out: &mut Vec<u8>) -> usize {
        let len = msg.len();
        out.clear();
        out.reserve(len);
        let src = self.core.payload(&msg);
        // SAFETY: as in `copy_out`; `out` has capacity for `len` bytes, which are all
        // initialised by the copy before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), len);
            out.set_len(len);
        }
        self.consume(msg);
        len
    }

    #[inline]
    fn consume(&mut self, msg: Message) {
        let batching = self.core.is_batching();
        self.core.consume(msg);
        if !batching {
            self.waiter.notify(Event::SpaceAvailable);
        }
    }

    /// Copies the next message into `buf` and returns its length; `WouldBlock` if the ring
    /// is empty, `Closed` once the producer has closed and everything is received,
    /// `BufferTooSmall` (the message stays) if `buf` is short.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.try_next()?;
        self.copy_out(msg, buf)
    }

    /// Like [`try_recv`](Consumer::try_recv), waiting while the ring is empty.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.next_until(None)?;
        self.copy_out(msg, buf)
    }

    /// Like [`recv`](Consumer::recv), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        let msg = self.next_until(Some(timeout))?;
        self.copy_out(msg, buf)
    }

    /// Replaces `out`'s contents with the next message (reusing its allocation).
    #[inline]
    pub fn try_recv_vec(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.try_next()?;
        Ok(self.copy_out_vec(msg, out))
    }

    /// Like [`try_recv_vec`](Consumer::try_recv_vec), waiting while the ring is empty.
    #[inline]
    pub fn recv_vec(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.next_until(None)?;
        Ok(self.copy_out_vec(msg, out))
    }

    /// Like [`recv_vec`](Consumer::recv_vec), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn recv_vec_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        let msg = self.next_until(Some(timeout))?;
        Ok(self.copy_out_vec(msg, out))
    }

    /// Borrows the next message in place; [`ReadGrant::release`] frees its space, dropping
    /// the grant leaves the message to be read again.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-read-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// # let mut tx = ring.producer()?;
    /// let mut rx = ring.consumer()?;
    /// tx.try_send(b"in place")?;
    /// let msg = rx.try_read()?;
    /// assert_eq!(&*msg, b"in place");
    /// msg.release();
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_read(&mut self) -> Result<ReadGrant<'_>> {
        let msg = self.try_next()?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Like [`try_read`](Consumer::try_read), waiting while the ring is empty.
    #[inline]
    pub fn read(&mut self) -> Result<ReadGrant<'_>> {
        let msg = self.next_until(None)?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Like [`read`](Consumer::read), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGrant<'_>> {
        let msg = self.next_until(Some(timeout))?;
        Ok(ReadGrant::new(self, msg))
    }

    /// The next message in place, without a borrow: its address and length, valid until
    /// [`release_detached`](Consumer::release_detached). Calling it again before releasing
    /// returns the same message; every other receive fails with `InvalidArgument`
    /// meanwhile. For callers that cannot hold a grant (the C ABI).
    pub fn read_detached(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<(std::ptr::NonNull<u8>, usize)> {
        let msg = match self.core.detached() {
            Some(msg) => msg,
            None => {
                let msg = self.next_until(timeout)?;
                self.core.set_detached(Some(msg));
                msg
            }
        };
        let ptr = self.core.payload(&msg) as *mut u8;
        Ok((
            std::ptr::NonNull::new(ptr).expect("payload pointer inside the mapping"),
            msg.len(),
        ))
    }

    /// Non-blocking [`read_detached`](Consumer::read_detached).
    pub fn try_read_detached(&mut self) -> Result<(std::ptr::NonNull<u8>, usize)> {
        if self.core.detached().is_none() {
            let msg = self.try_next()?;
            self.core.set_detached(Some(msg));
        }
        self.read_detached(None)
    }

    /// Frees the pending detached message's space. `InvalidArgument` if none is pending.
    pub fn release_detached(&mut self) -> Result<()> {
        let msg = self
            .core
            .detached()
            .ok_or_else(|| Error::invalid_argument("release without a pending detached read"))?;
        self.core.set_detached(None);
        self.consume(msg);
        Ok(())
    }

    /// Hands up to `max` waiting messages to `f` in place, then releases them all with one
    /// store. Returns how many; `WouldBlock` / `Closed` if there were none.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-recv-batch-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// # let mut tx = ring.producer()?;
    /// let mut rx = ring.consumer()?;
    /// tx.try_send(b"a")?;
    /// tx.try_send(b"b")?;
    /// let mut seen = Vec::new();
    /// assert_eq!(rx.try_recv_batch(32, |m| seen.extend_from_slice(m))?, 2);
    /// assert_eq!(seen, b"ab");
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let first = self.try_next()?;
        self.core.begin_batch();
        let mut msg = first;
        let mut count = 0;
        let outcome = loop {
            let src = self.core.payload(&msg);
            // SAFETY: the record's payload lies inside the data region (checked by `peek`)
            // and stays untouched by the producer until we release it.
            f(unsafe { std::slice::from_raw_parts(src, msg.len()) });
            self.core.consume(msg);
            count += 1;
            if count == max {
                break Ok(count);
            }
            match self.core.peek() {
                Ok(Some(next)) => msg = next,
                Ok(None) => break Ok(count),
                // Deliver what was good; the next call reports the corruption.
                Err(_) => break Ok(count),
            }
        };
        self.core.flush();
        self.waiter.notify(Event::SpaceAvailable);
        outcome
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        self.core.geometry().max_message as usize
    }

    /// Bytes in the data region.
    pub fn capacity(&self) -> u64 {
        self.core.geometry().capacity
    }

    /// Counters and occupancy, read from the segment.
    pub fn stats(&self) -> Stats {
        stats_of(self.core.memory().control(), self.core.geometry())
    }

    /// Messages published and not yet released, as far as the shared counters know.
    pub fn len(&self) -> u64 {
        self.stats().messages_in_flight
    }

    /// Whether no message is waiting (as far as the shared counters know).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// System calls this consumer made to sleep or to wake the producer (futex
    /// strategies; always 0 for the polling ones).
    pub fn wake_syscalls(&self) -> u64 {
        self.waiter.syscalls()
    }

    /// Stops consuming: the producer's next send returns `Closed`. Same as dropping.
    pub fn close(self) {}
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.core.close();
        peers::close_spsc(self.core.memory(), Role::Consumer, &self.holder);
        self.waiter.notify(Event::SpaceAvailable);
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .finish_non_exhaustive()
    }
}

/// A message borrowed in place, from [`Consumer::try_read`]. Derefs to its bytes.
pub struct ReadGrant<'a> {
    consumer: &'a mut Consumer,
    msg: Message,
    payload: *const u8,
}

impl<'a> ReadGrant<'a> {
    #[inline]
    fn new(consumer: &'a mut Consumer, msg: Message) -> Self {
        let payload = consumer.core.payload(&msg);
        ReadGrant {
            consumer,
            msg,
            payload,
        }
    }

    /// Frees the message's space for the producer.
    #[inline]
    pub fn release(self) {
        self.consumer.consume(self.msg);
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the payload lies inside the data region (checked by `peek`) and the
        // producer does not write it until the consumer releases it, which needs this
        // grant's mutable borrow of the consumer to end.
        unsafe { std::slice::from_raw_parts(self.payload, self.msg.len()) }
    }
}

/// Removes the ring named `name`. Handles already attached keep working.
///
/// ```
/// let err = shmring::spsc::unlink("/shmring-doc-never-created").unwrap_err();
/// assert!(matches!(err, shmring::Error::NotFound { .. }));
/// ```
pub fn unlink(name: &str) -> Result<()> {
    segment::unlink(&Location::Shm(name.into()))
}

/// Removes a ring stored at `path`.
pub fn unlink_at(path: impl AsRef<Path>) -> Result<()> {
    segment::unlink(&segment::path_location(path.as_ref()))
}

#[cfg(all(test, not(shmring_loom)))]
mod tests;
