//! Multi-producer multi-consumer rings of messages up to a slot size.
//!
//! A [`Ring`] is a mapped segment of sequence-numbered slots. Any number of
//! [`Producer`]s and [`Consumer`]s, in any processes, attach to it (up to
//! [`Config::max_peers`] at once); each message goes to exactly one consumer, and the
//! messages of one producer arrive in the order it sent them.
//!
//! A producer that dies between claiming a slot and publishing it does not stall the ring:
//! once its process is proven dead (pid + start time, so a stopped process is never taken
//! for dead), consumers skip the slot. Nothing a live producer published is lost.
//!
//! ```
//! use shmring::{Config, mpmc::Ring};
//! let name = format!("/doc-mpmc-{}", std::process::id());
//! let ring = Ring::create(&name, &Config::new().slots(64).max_message(48))?;
//! let mut a = ring.producer()?;
//! let mut b = ring.producer()?;
//! let mut rx = Ring::open(&name)?.consumer()?;
//!
//! a.try_send(b"from a")?;
//! b.try_send(b"from b")?;
//! let mut buf = [0u8; 48];
//! let n = rx.try_recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"from a");
//! ring.unlink()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use crate::algo::mpmc::{ConsumerCore, ProducerCore, SlotClaim, SlotMessage};
use crate::algo::registry;
use crate::config::{Config, OpenOptions};
use crate::error::{Error, Result};
use crate::layout::RingKind;
use crate::layout::geometry::MpmcGeometry;
use crate::layout::registry::{ROLE_CONSUMER, ROLE_PRODUCER};
use crate::memory::RingMemory;
use crate::shm::ShmMemory;
use crate::shm::attach::{self, Attached, Shape};
use crate::shm::os;
use crate::shm::segment::{self, Location};
pub use crate::stats::{PeerInfo, PeerStatus};
use crate::sync::Ordering::Relaxed;
use crate::wait::{Event, Wait, WaitStrategy, Waiter};

pub use crate::wait::RECOVERY_INTERVAL;

/// A mapped MPMC ring segment. Attach ends with [`producer`](Ring::producer) and
/// [`consumer`](Ring::consumer), as many as `max_peers`.
///
/// ```
/// use shmring::{Config, mpmc::Ring};
/// let name = format!("/doc-mpmc-ring-{}", std::process::id());
/// let ring = Ring::create_or_open(&name, &Config::new().slots(1024))?;
/// assert_eq!((ring.slots(), ring.max_message(), ring.max_peers()), (1024, 240, 16));
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub struct Ring {
    memory: ShmMemory,
    geometry: MpmcGeometry,
    wait: WaitStrategy,
    spin: Duration,
    created: bool,
}

impl Ring {
    /// Creates a new ring named `name` (`/` then 1..=250 of `[A-Za-z0-9._-]`), mode 0600
    /// (0660 with [`Config::group_access`]), sized by [`Config::slots`],
    /// [`Config::max_message`] and [`Config::max_peers`]. `AlreadyExists` if the name is
    /// taken.
    pub fn create(name: &str, config: &Config) -> Result<Ring> {
        Ring::from_attached(
            attach::create(&segment::named(name)?, config, RingKind::Mpmc)?,
            config.spin,
        )
    }

    /// Opens the ring `name` with default [`OpenOptions`].
    pub fn open(name: &str) -> Result<Ring> {
        Ring::open_with(name, &OpenOptions::default())
    }

    /// Opens the ring `name`, checking owner, mode, layout and kind as `options` say.
    /// An SPSC ring of that name is `Incompatible`.
    pub fn open_with(name: &str, options: &OpenOptions) -> Result<Ring> {
        Ring::from_attached(
            attach::open(&segment::named(name)?, options, RingKind::Mpmc)?,
            options.spin,
        )
    }

    /// Creates the ring, or opens it if another process got there first (it must then have
    /// the same slots, maximum message, peers and wait strategy).
    pub fn create_or_open(name: &str, config: &Config) -> Result<Ring> {
        Ring::from_attached(
            attach::create_or_open(&segment::named(name)?, config, RingKind::Mpmc)?,
            config.spin,
        )
    }

    /// Creates a ring in a file at `path`.
    pub fn create_at(path: impl AsRef<Path>, config: &Config) -> Result<Ring> {
        let location = segment::path_location(path.as_ref());
        Ring::from_attached(
            attach::create(&location, config, RingKind::Mpmc)?,
            config.spin,
        )
    }

    /// Opens a ring stored in a file at `path`.
    pub fn open_at(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Ring> {
        let location = segment::path_location(path.as_ref());
        Ring::from_attached(
            attach::open(&location, options, RingKind::Mpmc)?,
            options.spin,
        )
    }

    /// Creates a ring with no name: an anonymous memory file (memfd) sealed against
    /// shrinking and growing, so no process holding it can truncate it under a mapping
    /// (SIGBUS). Share it with [`share_fd`](Ring::share_fd) (pass the descriptor over a Unix
    /// socket or to a child) and attach with [`open_fd`](Ring::open_fd). Linux only.
    ///
    /// ```
    /// use shmring::{Config, OpenOptions, mpmc::Ring};
    /// let ring = Ring::create_anonymous(&Config::new().slots(16))?;
    /// let other = Ring::open_fd(ring.share_fd()?, &OpenOptions::new())?;
    /// # let _ = other;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn create_anonymous(config: &Config) -> Result<Ring> {
        Ring::from_attached(
            attach::create(&Location::Anonymous, config, RingKind::Mpmc)?,
            config.spin,
        )
    }

    /// Attaches to an anonymous ring through a descriptor from
    /// [`share_fd`](Ring::share_fd). `PermissionDenied` if the file is not sealed against
    /// resizing (a holder could truncate it under our mapping).
    pub fn open_fd(fd: std::os::fd::OwnedFd, options: &OpenOptions) -> Result<Ring> {
        Ring::from_attached(
            attach::open_fd(fd, &Location::Anonymous, options, RingKind::Mpmc)?,
            options.spin,
        )
    }

    /// A new descriptor of an anonymous ring (close-on-exec) to hand to another process.
    /// `InvalidArgument` for a named ring (open it by name instead).
    pub fn share_fd(&self) -> Result<std::os::fd::OwnedFd> {
        self.memory.segment().share_fd()
    }

    fn from_attached(attached: Attached, spin: Duration) -> Result<Ring> {
        let Shape::Mpmc(geometry) = attached.shape else {
            return Err(Error::incompatible("not an MPMC ring"));
        };
        Ok(Ring {
            memory: ShmMemory::new(attached.segment, geometry.data_len()),
            geometry,
            wait: attached.wait,
            spin,
            created: attached.created,
        })
    }

    /// A waiter for the handle holding registry record `slot`.
    fn waiter(&self, slot: u32) -> Waiter<ShmMemory> {
        Waiter::new(
            self.memory.clone(),
            self.wait,
            self.spin,
            slot,
            self.geometry.max_peers,
        )
    }

    /// Attaches a producer: takes a free registry record (or one whose process died).
    /// `RegistryFull` if `max_peers` live handles are attached.
    pub fn producer(&self) -> Result<Producer> {
        let me = os::current_process().owner_word();
        let core = ProducerCore::attach(self.memory.clone(), self.geometry, me)?;
        Ok(Producer {
            waiter: self.waiter(core.shared().membership().index),
            core,
        })
    }

    /// Attaches a consumer, like [`producer`](Ring::producer).
    pub fn consumer(&self) -> Result<Consumer> {
        let me = os::current_process().owner_word();
        let core = ConsumerCore::attach(self.memory.clone(), self.geometry, me)?;
        Ok(Consumer {
            waiter: self.waiter(core.shared().membership().index),
            core,
            held: None,
        })
    }

    /// Number of slots.
    pub fn slots(&self) -> u64 {
        self.geometry.slot_count
    }

    /// Largest message payload in bytes (the slot size).
    pub fn max_message(&self) -> usize {
        self.geometry.max_message as usize
    }

    /// Most handles attached at once.
    pub fn max_peers(&self) -> u32 {
        self.geometry.max_peers
    }

    /// The wait strategy every end uses.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Whether this handle created the segment.
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// Counters and occupancy, read from the segment.
    pub fn stats(&self) -> Stats {
        stats_of(&self.memory, &self.geometry)
    }

    /// Every registry record that has been held: who is attached, closed or dead.
    pub fn peers(&self) -> Vec<PeerInfo> {
        registry::list(&self.memory, &self.geometry)
    }

    /// Removes the ring's name (or path). Attached handles keep working.
    pub fn unlink(&self) -> Result<()> {
        segment::unlink(self.memory.segment().location())
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Ring")
            .field("location", &self.memory.segment().location().display())
            .field("slots", &self.geometry.slot_count)
            .field("max_message", &self.geometry.max_message)
            .field("max_peers", &self.geometry.max_peers)
            .field("wait", &self.wait)
            .finish()
    }
}

/// A snapshot of an MPMC ring. Values are read one by one while peers run.
///
/// ```
/// use shmring::{Config, mpmc::Ring};
/// let name = format!("/doc-mpmc-stats-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().slots(16))?;
/// ring.producer()?.try_send(b"abc")?;
/// let stats = ring.stats();
/// assert_eq!((stats.messages_sent, stats.bytes_sent, stats.messages_in_flight), (1, 3, 1));
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Number of slots.
    pub slots: u64,
    /// Largest message payload.
    pub max_message: u64,
    /// Positions taken by producers and not yet taken by consumers (published or not).
    pub messages_in_flight: u64,
    /// Messages published since creation.
    pub messages_sent: u64,
    /// Payload bytes published since creation.
    pub bytes_sent: u64,
    /// Messages released by consumers since creation.
    pub messages_received: u64,
    /// Payload bytes released since creation.
    pub bytes_received: u64,
    /// Claims of dead producers that consumers skipped (nothing was published there).
    pub claims_skipped: u64,
    /// Messages that dead consumers had taken and not released.
    pub messages_dropped: u64,
    /// Producers attached now (including dead ones not yet found out).
    pub producers: u32,
    /// Consumers attached now (likewise).
    pub consumers: u32,
    /// Consumers asleep waiting for data (futex strategy).
    pub consumers_waiting: u32,
    /// Producers asleep waiting for space (futex strategy).
    pub producers_waiting: u32,
    /// Producers that died without closing, since creation (counted when found out).
    pub producers_died: u64,
    /// Consumers that died without closing, since creation.
    pub consumers_died: u64,
}

fn stats_of(memory: &ShmMemory, geometry: &MpmcGeometry) -> Stats {
    let ctl = memory.control();
    let words = crate::peers::slot_words(geometry.max_peers);
    let (messages_received, bytes_received) = registry::totals(memory, geometry, ROLE_CONSUMER);
    let (messages_sent, bytes_sent) = registry::totals(memory, geometry, ROLE_PRODUCER);
    let head = ctl.consumer.head.load(Relaxed);
    let tail = ctl.producer.tail.load(Relaxed);
    Stats {
        slots: geometry.slot_count,
        max_message: geometry.max_message,
        messages_in_flight: tail.wrapping_sub(head).min(geometry.slot_count),
        messages_sent,
        bytes_sent,
        messages_received,
        bytes_received,
        claims_skipped: ctl.peers.claims_skipped.load(Relaxed),
        messages_dropped: ctl.peers.messages_dropped.load(Relaxed),
        producers: crate::peers::count(&ctl.producers.present, words),
        consumers: crate::peers::count(&ctl.consumers.present, words),
        consumers_waiting: crate::peers::count(&ctl.consumers.sleepers, words),
        producers_waiting: crate::peers::count(&ctl.producers.sleepers, words),
        producers_died: ctl.producers.deaths.load(Relaxed),
        consumers_died: ctl.consumers.deaths.load(Relaxed),
    }
}

/// Runs `attempt` until it stops saying `WouldBlock`, waiting as the ring's strategy says,
/// and every [`RECOVERY_INTERVAL`] of waiting calls `attempt(true)`, which first looks for
/// dead peers. `Timeout` after `timeout`.
fn wait_recovering<T>(
    waiter: &Waiter<ShmMemory>,
    event: Event,
    timeout: Option<Duration>,
    attempt: impl FnMut(bool) -> Result<T>,
) -> Result<T> {
    waiter.wait_maintaining(event, timeout, attempt)
}

/// A writing end of an MPMC ring. Dropping it (or [`close`](Producer::close)) detaches it;
/// consumers get `Closed` once every producer has detached and the ring is drained.
pub struct Producer {
    core: ProducerCore<ShmMemory>,
    waiter: Waiter<ShmMemory>,
}

impl Producer {
    /// Copies `msg` into a slot; `WouldBlock` if the ring is full, `MessageTooLarge`, or
    /// `Closed` once every consumer has detached.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.core.try_write(msg)?;
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

    fn send_until(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        let core = &mut self.core;
        wait_recovering(&self.waiter, Event::SpaceAvailable, timeout, |maintain| {
            if maintain {
                core.maintain();
            }
            core.try_write(msg)
        })?;
        self.waiter.notify(Event::DataAvailable);
        Ok(())
    }

    /// Copies as many of `msgs` as there are free slots, taking them with one atomic
    /// operation; returns how many were sent (`WouldBlock` if none).
    ///
    /// ```
    /// # use shmring::{Config, mpmc::Ring};
    /// # let name = format!("/doc-mpmc-batch-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().slots(4))?;
    /// let mut tx = ring.producer()?;
    /// assert_eq!(tx.try_send_batch(&[&b"a"[..], b"b", b"c", b"d", b"e"])?, 4);
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn try_send_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        let sent = self.core.try_write_batch(msgs)?;
        self.waiter.notify(Event::DataAvailable);
        Ok(sent)
    }

    /// Claims a slot for a message of up to `len` bytes written in place;
    /// [`WriteGrant::commit`] publishes it. Dropping the grant publishes an empty
    /// placeholder that consumers skip (a claimed slot cannot be given back otherwise).
    ///
    /// ```
    /// # use shmring::{Config, mpmc::Ring};
    /// # let name = format!("/doc-mpmc-reserve-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().slots(4))?;
    /// let mut tx = ring.producer()?;
    /// let mut grant = tx.try_reserve(5)?;
    /// grant.copy_from_slice(b"hello");
    /// grant.commit()?;
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        let claim = self.core.try_claim(len)?;
        Ok(WriteGrant::new(self, claim))
    }

    /// Like [`try_reserve`](Producer::try_reserve), waiting while the ring is full.
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.reserve_until(len, None)
    }

    /// Like [`reserve`](Producer::reserve), giving up with `Timeout` after `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGrant<'_>> {
        self.reserve_until(len, Some(timeout))
    }

    fn reserve_until(&mut self, len: usize, timeout: Option<Duration>) -> Result<WriteGrant<'_>> {
        let claim = self.claim_until(len, timeout)?;
        Ok(WriteGrant::new(self, claim))
    }

    fn claim_until(&mut self, len: usize, timeout: Option<Duration>) -> Result<SlotClaim> {
        let core = &mut self.core;
        wait_recovering(&self.waiter, Event::SpaceAvailable, timeout, |maintain| {
            if maintain {
                core.maintain();
            }
            core.try_claim(len)
        })
    }

    /// Claims a slot like [`reserve`](Producer::reserve) without a borrow (for the C ABI):
    /// the address stays valid until [`commit_detached`](Producer::commit_detached) or
    /// [`cancel_detached`](Producer::cancel_detached); other sends fail meanwhile.
    pub fn reserve_detached(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<std::ptr::NonNull<u8>> {
        let claim = self.claim_until(len, timeout)?;
        Ok(self.hold_detached(claim))
    }

    /// Non-blocking [`reserve_detached`](Producer::reserve_detached).
    pub fn try_reserve_detached(&mut self, len: usize) -> Result<std::ptr::NonNull<u8>> {
        let claim = self.core.try_claim(len)?;
        Ok(self.hold_detached(claim))
    }

    fn hold_detached(&mut self, claim: SlotClaim) -> std::ptr::NonNull<u8> {
        let ptr = self.core.shared().payload_ptr(claim.pos);
        self.core.set_detached(claim);
        std::ptr::NonNull::new(ptr).expect("payload pointer inside the mapping")
    }

    /// Publishes the first `len` bytes of the pending detached claim. `InvalidArgument` if
    /// none is pending or `len` exceeds it (it stays pending then).
    pub fn commit_detached(&mut self, len: usize) -> Result<()> {
        let claim = self.core.take_detached().ok_or_else(|| {
            Error::invalid_argument("commit without a pending detached reservation")
        })?;
        if len as u64 > claim.len {
            self.core.set_detached(claim);
            return Err(Error::invalid_argument(format!(
                "commit of {len} bytes exceeds the {} reserved",
                claim.len
            )));
        }
        self.core.commit(claim, len)?;
        self.waiter.notify(Event::DataAvailable);
        Ok(())
    }

    /// Gives the pending detached claim back (consumers skip it).
    pub fn cancel_detached(&mut self) {
        if let Some(claim) = self.core.take_detached() {
            self.core.cancel(claim);
            self.waiter.notify(Event::DataAvailable);
        }
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        self.core.shared().geometry().max_message as usize
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> Stats {
        stats_of(self.core.shared().memory(), &self.core.shared().geometry())
    }

    /// This producer's registry record index.
    pub fn peer_index(&self) -> u32 {
        self.core.shared().membership().index
    }

    /// System calls this producer made to sleep or to wake consumers.
    pub fn wake_syscalls(&self) -> u64 {
        self.waiter.syscalls()
    }

    /// Detaches (same as dropping).
    pub fn close(self) {}
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.core.close();
        self.waiter.notify(Event::DataAvailable);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Producer")
            .field("peer_index", &self.peer_index())
            .finish_non_exhaustive()
    }
}

/// A claimed slot, from [`Producer::try_reserve`]. Derefs to its bytes (unspecified until
/// written).
pub struct WriteGrant<'a> {
    producer: &'a mut Producer,
    claim: Option<SlotClaim>,
    payload: *mut u8,
}

impl<'a> WriteGrant<'a> {
    fn new(producer: &'a mut Producer, claim: SlotClaim) -> Self {
        let payload = producer.core.shared().payload_ptr(claim.pos);
        WriteGrant {
            producer,
            claim: Some(claim),
            payload,
        }
    }

    fn reserved(&self) -> usize {
        self.claim.map_or(0, |c| c.len as usize)
    }

    /// Publishes the whole reserved length.
    pub fn commit(self) -> Result<()> {
        let len = self.reserved();
        self.commit_prefix(len)
    }

    /// Publishes only the first `len` bytes (clamped to the reserved length).
    pub fn commit_prefix(mut self, len: usize) -> Result<()> {
        let claim = self
            .claim
            .take()
            .expect("a grant holds its claim until consumed");
        self.producer.core.commit(claim, len)?;
        self.producer.waiter.notify(Event::DataAvailable);
        Ok(())
    }
}

impl Drop for WriteGrant<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.producer.core.cancel(claim);
            self.producer.waiter.notify(Event::DataAvailable);
        }
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot's payload area holds `reserved() <= max_message` bytes and is
        // ours until published (consumers wait for its sequence word).
        unsafe { std::slice::from_raw_parts(self.payload, self.reserved()) }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.payload, self.reserved()) }
    }
}

/// A reading end of an MPMC ring. Each message goes to one consumer.
pub struct Consumer {
    core: ConsumerCore<ShmMemory>,
    waiter: Waiter<ShmMemory>,
    /// A message taken but not delivered because the caller's buffer was too small; the
    /// next receive returns it first.
    held: Option<SlotMessage>,
}

impl Consumer {
    fn next_until(&mut self, timeout: Option<Duration>) -> Result<SlotMessage> {
        if let Some(msg) = self.held.take() {
            return Ok(msg);
        }
        let core = &mut self.core;
        wait_recovering(&self.waiter, Event::DataAvailable, timeout, |maintain| {
            if maintain {
                core.maintain();
            }
            core.try_next()
        })
    }

    fn try_next(&mut self) -> Result<SlotMessage> {
        match self.held.take() {
            Some(msg) => Ok(msg),
            None => self.core.try_next(),
        }
    }

    fn consume(&mut self, msg: SlotMessage) {
        self.core.consume(msg);
        self.waiter.notify(Event::SpaceAvailable);
    }

    fn copy_out(&mut self, msg: SlotMessage, buf: &mut [u8]) -> Result<usize> {
        let len = msg.len as usize;
        if buf.len() < len {
            self.held = Some(msg);
            return Err(Error::BufferTooSmall { needed: len });
        }
        // SAFETY: the position is ours until consumed; `len <= max_message` bytes of its
        // slot; `buf` is private and at least `len` long.
        unsafe { std::ptr::copy_nonoverlapping(self.core.payload(&msg), buf.as_mut_ptr(), len) };
        self.consume(msg);
        Ok(len)
    }

    fn copy_out_vec(&mut self, msg: SlotMessage, out: &mut Vec<u8>) -> usize {
        let len = msg.len as usize;
        out.clear();
        out.reserve(len);
        // SAFETY: as in `copy_out`; `out` has capacity for `len` bytes, all initialised by
        // the copy before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.core.payload(&msg), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        self.consume(msg);
        len
    }

    /// Copies the next message into `buf`; `WouldBlock` if none is waiting, `Closed` once
    /// every producer has detached and the ring is drained (`PeerDead` if one died),
    /// `BufferTooSmall` if `buf` is short (the message is kept for the next call).
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.try_next()?;
        self.copy_out(msg, buf)
    }

    /// Like [`try_recv`](Consumer::try_recv), waiting while the ring is empty.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.next_until(None)?;
        self.copy_out(msg, buf)
    }

    /// Like [`recv`](Consumer::recv), giving up with `Timeout` after `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        let msg = self.next_until(Some(timeout))?;
        self.copy_out(msg, buf)
    }

    /// Replaces `out`'s contents with the next message.
    pub fn try_recv_vec(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.try_next()?;
        Ok(self.copy_out_vec(msg, out))
    }

    /// Like [`try_recv_vec`](Consumer::try_recv_vec), waiting while the ring is empty.
    pub fn recv_vec(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.next_until(None)?;
        Ok(self.copy_out_vec(msg, out))
    }

    /// Like [`recv_vec`](Consumer::recv_vec), giving up with `Timeout` after `timeout`.
    pub fn recv_vec_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        let msg = self.next_until(Some(timeout))?;
        Ok(self.copy_out_vec(msg, out))
    }

    /// Takes the next message to read in place; releasing (or dropping) the grant frees its
    /// slot. (A taken message cannot be put back: other consumers have moved on.)
    ///
    /// ```
    /// # use shmring::{Config, mpmc::Ring};
    /// # let name = format!("/doc-mpmc-read-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().slots(4))?;
    /// # let mut tx = ring.producer()?;
    /// let mut rx = ring.consumer()?;
    /// tx.try_send(b"in place")?;
    /// let msg = rx.try_read()?;
    /// assert_eq!(&*msg, b"in place");
    /// msg.release();
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn try_read(&mut self) -> Result<ReadGrant<'_>> {
        let msg = self.try_next()?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Like [`try_read`](Consumer::try_read), waiting while the ring is empty.
    pub fn read(&mut self) -> Result<ReadGrant<'_>> {
        let msg = self.next_until(None)?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Like [`read`](Consumer::read), giving up with `Timeout` after `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGrant<'_>> {
        let msg = self.next_until(Some(timeout))?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Takes up to `max` waiting messages with one atomic operation, hands each to `f` in
    /// place, and frees them. Returns how many; `WouldBlock` / `Closed` if none.
    ///
    /// ```
    /// # use shmring::{Config, mpmc::Ring};
    /// # let name = format!("/doc-mpmc-recv-batch-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().slots(8))?;
    /// # let mut tx = ring.producer()?;
    /// let mut rx = ring.consumer()?;
    /// tx.try_send_batch(&[b"a", b"b"])?;
    /// let mut seen = Vec::new();
    /// assert_eq!(rx.try_recv_batch(32, |m| seen.extend_from_slice(m))?, 2);
    /// assert_eq!(seen, b"ab");
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn try_recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        if let Some(msg) = self.held.take() {
            // SAFETY: a held message is ours until consumed; its length was checked.
            f(unsafe { std::slice::from_raw_parts(self.core.payload(&msg), msg.len as usize) });
            self.consume(msg);
            return Ok(1);
        }
        let got = self.core.try_read_batch(max, f)?;
        self.waiter.notify(Event::SpaceAvailable);
        Ok(got)
    }

    /// The next message in place without a borrow (for the C ABI): address and length,
    /// valid until [`release_detached`](Consumer::release_detached). Calling it again
    /// before releasing returns the same message.
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
            msg.len as usize,
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

    /// Frees the pending detached message. `InvalidArgument` if none is pending.
    pub fn release_detached(&mut self) -> Result<()> {
        let msg = self
            .core
            .detached()
            .ok_or_else(|| Error::invalid_argument("release without a pending detached read"))?;
        self.core.set_detached(None);
        self.consume(msg);
        Ok(())
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        self.core.shared().geometry().max_message as usize
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> Stats {
        stats_of(self.core.shared().memory(), &self.core.shared().geometry())
    }

    /// This consumer's registry record index.
    pub fn peer_index(&self) -> u32 {
        self.core.shared().membership().index
    }

    /// System calls this consumer made to sleep or to wake producers.
    pub fn wake_syscalls(&self) -> u64 {
        self.waiter.syscalls()
    }

    /// Detaches (same as dropping). A message held after `BufferTooSmall` is released.
    pub fn close(self) {}
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(msg) = self.held.take() {
            self.core.consume(msg);
        }
        self.core.close();
        self.waiter.notify(Event::SpaceAvailable);
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Consumer")
            .field("peer_index", &self.peer_index())
            .finish_non_exhaustive()
    }
}

/// A message taken in place, from [`Consumer::try_read`]. Derefs to its bytes; releasing
/// or dropping it frees the slot.
pub struct ReadGrant<'a> {
    consumer: &'a mut Consumer,
    msg: SlotMessage,
    payload: *const u8,
}

impl<'a> ReadGrant<'a> {
    fn new(consumer: &'a mut Consumer, msg: SlotMessage) -> Self {
        let payload = consumer.core.payload(&msg);
        ReadGrant {
            consumer,
            msg,
            payload,
        }
    }

    /// Frees the slot (same as dropping the grant).
    pub fn release(self) {}
}

impl Drop for ReadGrant<'_> {
    fn drop(&mut self) {
        self.consumer.consume(self.msg);
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the position is ours until the grant drops; its length was checked
        // against max_message, so the bytes lie inside its slot.
        unsafe { std::slice::from_raw_parts(self.payload, self.msg.len as usize) }
    }
}

/// Removes the MPMC ring named `name`.
///
/// ```
/// let err = shmring::mpmc::unlink("/shmring-doc-mpmc-never").unwrap_err();
/// assert!(matches!(err, shmring::Error::NotFound { .. }));
/// ```
pub fn unlink(name: &str) -> Result<()> {
    segment::unlink(&Location::Shm(name.into()))
}

#[cfg(all(test, not(shmring_loom)))]
mod tests;
