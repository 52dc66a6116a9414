//! The reading end, for every ring kind.

use std::ops::Deref;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::Kind;
use super::producer::FRUITLESS_POLLS_PER_LOOK;
use super::ready::{EndReadiness, Readiness};
use crate::algo::{ConsumerCore, ReadMark};
use crate::error::{Error, Result, Role};
use crate::memory::Memory;
use crate::shm::ShmMemory;
use crate::telemetry::{self, Clock, STAMP_BYTES};
use crate::wait::{Event, Wait, Waiter};

type Msg<K, M> = <<K as super::sealed::KindImpl>::Consumer<M> as ConsumerCore>::Msg;

/// The reading end of a ring. Dropping it (or [`close`](Consumer::close)) detaches it; the
/// producers' sends end with `Closed` once no consumer is left.
///
/// Every receive comes in the same forms: `try_*` (never waits: `WouldBlock`), blocking,
/// `*_timeout` and `*_deadline` (`Timeout`); at the end of the stream `Closed`, or
/// `PeerDead` if a producer of the stream died without closing — after everything it
/// published has been received.
///
/// ```
/// use shmring::{Config, spsc::Ring};
/// let name = format!("/doc-consumer-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// tx.try_send(b"hello")?;
/// let mut buf = [0u8; 64];
/// let n = rx.try_recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub struct Consumer<K: Kind, M: Memory = ShmMemory> {
    core: K::Consumer<M>,
    waiter: Waiter<M>,
    geometry: K::Geometry,
    /// `try_*` calls that found the ring empty since the last look for dead producers.
    fruitless: u32,
    /// A message found but not delivered (its grant was dropped, or the caller's buffer was
    /// too small): the next receive returns it first.
    held: Option<Msg<K, M>>,
    /// A message handed out without a borrow (the C ABI): every other receive waits for its
    /// release.
    detached: Option<Msg<K, M>>,
    /// Telemetry: the ring's clock, to time stamped messages (`None`: no telemetry, or a
    /// damaged telemetry line).
    clock: Option<Clock>,
    /// Bytes of each message before its payload: the stamp (8), or 0 without telemetry.
    stamp_bytes: usize,
    /// Readiness for event loops ([`readiness`](Consumer::readiness), [`arm`](Consumer::arm)).
    ready: EndReadiness,
}

impl<K: Kind, M: Memory> Consumer<K, M> {
    pub(crate) fn new(
        waiter: Waiter<M>,
        core: K::Consumer<M>,
        geometry: K::Geometry,
        telemetry: bool,
    ) -> Self {
        let clock = telemetry
            .then(|| Clock::of(&core.memory().control().telemetry))
            .flatten();
        Consumer {
            core,
            waiter,
            geometry,
            fruitless: 0,
            held: None,
            detached: None,
            clock,
            stamp_bytes: if telemetry { STAMP_BYTES } else { 0 },
            ready: EndReadiness::default(),
        }
    }

    /// Prepares to wait in an event loop: `Ok(true)` if the ring is empty and this end is
    /// now armed, so its [`readiness`](Consumer::readiness) descriptor becomes readable
    /// when a message is published, the stream ends, or (within [`RECOVERY_INTERVAL`] of
    /// the next `arm`) a producer is found dead; `Ok(false)` if there is something to
    /// receive now (a message, or the end of the stream): call `try_recv` instead of
    /// waiting. Empties the descriptor first. Needs a [`WaitStrategy::Futex`] ring
    /// (the other strategies' producers never look for waiters): `InvalidArgument`
    /// otherwise.
    ///
    /// The loop: receive until `WouldBlock`; `arm()`; if it says `true`, poll the
    /// descriptor; repeat. Readiness may be spurious; a publish after `arm()` is never
    /// missed (`docs/ordering.md`, "Readiness": W1/N1).
    ///
    /// [`RECOVERY_INTERVAL`]: crate::wait::RECOVERY_INTERVAL
    /// [`WaitStrategy::Futex`]: crate::WaitStrategy::Futex
    pub fn arm(&mut self) -> Result<bool> {
        self.no_detached()?;
        EndReadiness::supported(self.waiter.strategy())?;
        if self.held.is_some() {
            return Ok(false);
        }
        if self.ready.drain() {
            self.core.maintain();
            let (pids, _) =
                super::live_pids::<K, M>(self.core.memory(), &self.geometry, Role::Producer);
            self.ready.looked(&pids);
        }
        self.waiter.arm(Event::DataAvailable);
        match self.core.try_next() {
            Err(Error::WouldBlock) => Ok(true),
            found => {
                self.waiter.disarm(Event::DataAvailable);
                if let Ok(msg) = found {
                    self.taken(&msg);
                    self.held = Some(msg);
                }
                // An end of stream is told again by the next receive.
                Ok(false)
            }
        }
    }

    /// A message just taken from the ring: on a telemetry ring, counts its latency if it
    /// was stamped.
    #[inline]
    fn taken(&self, msg: &Msg<K, M>) {
        if let Some(clock) = self.clock {
            let bytes = self.message(msg);
            if let Some(stamp) = bytes.first_chunk::<STAMP_BYTES>() {
                telemetry::received(
                    &self.core.memory().control().telemetry,
                    clock,
                    u64::from_le_bytes(*stamp),
                );
            }
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn core_mut(&mut self) -> &mut K::Consumer<M> {
        &mut self.core
    }

    pub(crate) fn core(&self) -> &K::Consumer<M> {
        &self.core
    }

    #[inline]
    fn no_detached(&self) -> Result<()> {
        if self.detached.is_some() {
            return Err(Error::invalid_argument(
                "a detached read is pending: release it first",
            ));
        }
        Ok(())
    }

    /// The next message without waiting.
    #[inline]
    fn try_next(&mut self) -> Result<Msg<K, M>> {
        self.no_detached()?;
        if let Some(msg) = self.held.take() {
            return Ok(msg);
        }
        let next = self.core.try_next();
        match &next {
            Ok(msg) => self.taken(msg),
            Err(Error::WouldBlock) => {
                self.fruitless = self.fruitless.wrapping_add(1);
                if self.fruitless % FRUITLESS_POLLS_PER_LOOK == 0 && !cfg!(shmring_loom) {
                    self.core.maintain();
                }
            }
            Err(_) => {}
        }
        next
    }

    /// The next message, waiting (looking for dead producers between waits) at most
    /// `timeout` (`None`: no limit).
    #[inline]
    fn next_within(&mut self, timeout: Option<Duration>) -> Result<Msg<K, M>> {
        self.no_detached()?;
        if let Some(msg) = self.held.take() {
            return Ok(msg);
        }
        let core = &mut self.core;
        let msg = self
            .waiter
            .wait_maintaining(Event::DataAvailable, timeout, |maintain| {
                if maintain {
                    core.maintain();
                }
                core.try_next()
            })?;
        self.taken(&msg);
        Ok(msg)
    }

    /// Frees `msg`'s space and tells sleeping producers; `Lagged` (broadcast) if its bytes
    /// were overwritten while in use.
    #[inline]
    fn release(&mut self, msg: Msg<K, M>) -> Result<()> {
        let released = self.core.release(msg);
        let core = &mut self.core;
        self.waiter.notify_after(Event::SpaceAvailable, || {
            core.publish_released();
        });
        released
    }

    /// The whole message as the ring holds it (stamp included).
    #[inline]
    fn message(&self, msg: &Msg<K, M>) -> &[u8] {
        let len = <K::Consumer<M> as ConsumerCore>::msg_len(msg);
        // SAFETY: the core checked the message's length and place against the ring's
        // limits; its bytes are not written until the message is released, which takes
        // `&mut self`, so they outlive this borrow.
        unsafe { std::slice::from_raw_parts(self.core.payload(msg), len) }
    }

    /// The payload the producer sent (after the stamp, on a telemetry ring; a damaged
    /// message too short for its stamp has none).
    #[inline]
    fn payload(&self, msg: &Msg<K, M>) -> &[u8] {
        self.message(msg).get(self.stamp_bytes..).unwrap_or(&[])
    }

    #[inline]
    fn copy_out(&mut self, msg: Msg<K, M>, buf: &mut [u8]) -> Result<usize> {
        let src = self.payload(&msg);
        let len = src.len();
        if buf.len() < len {
            self.held = Some(msg);
            return Err(Error::BufferTooSmall { needed: len });
        }
        buf[..len].copy_from_slice(src);
        // Broadcast: the copy counts only if the producer left the bytes alone meanwhile.
        self.release(msg)?;
        Ok(len)
    }

    #[inline]
    fn copy_out_vec(&mut self, msg: Msg<K, M>, out: &mut Vec<u8>) -> Result<usize> {
        let src = self.payload(&msg);
        out.clear();
        out.extend_from_slice(src);
        let len = src.len();
        if let Err(e) = self.release(msg) {
            out.clear();
            return Err(e);
        }
        Ok(len)
    }

    /// Defers releases, for a consumer that passes messages on and may give their space
    /// back only once the next hop has them (a bridge exporter waiting for a broker's
    /// acknowledgement): from now on every receive moves this consumer on, but the space
    /// of what it received stays taken — producers wait for it as for unread messages —
    /// until [`release_to`](Consumer::release_to). If this consumer dies or closes first,
    /// the next one (SPSC: the next consumer; broadcast: the name's next holder) reads
    /// again from the last mark given back. `InvalidArgument` on MPMC rings, whose
    /// consumers take each message out as they receive it.
    ///
    /// ```
    /// use shmring::{Config, spsc::Ring};
    /// let name = format!("/doc-defer-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let mut tx = ring.producer()?;
    /// let mut rx = ring.consumer()?;
    /// rx.defer_releases()?;
    /// for msg in [b"a", b"b", b"c"] {
    ///     tx.try_send(msg)?;
    /// }
    /// let mut buf = [0u8; 8];
    /// rx.try_recv(&mut buf)?;
    /// let after_a = rx.read_mark()?;
    /// rx.try_recv(&mut buf)?;
    /// rx.release_to(after_a)?; // "a" is given back; "b" is still held
    /// rx.close();
    /// let mut rx = ring.consumer()?; // a new consumer starts at "b" again
    /// let n = rx.try_recv(&mut buf)?;
    /// assert_eq!(&buf[..n], b"b");
    /// ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn defer_releases(&mut self) -> Result<()> {
        self.core.defer_releases()
    }

    /// Where this consumer has read to: the position after the last message it received
    /// (a message kept after `BufferTooSmall` is not received yet). See [`ReadMark`].
    pub fn read_mark(&self) -> Result<ReadMark> {
        self.core.read_mark()
    }

    /// With deferred releases: gives back the space of every message received before
    /// `mark` (a mark from [`read_mark`](Consumer::read_mark), not older than the last one
    /// given back), and wakes producers waiting for it. `InvalidArgument` if releases are
    /// not deferred or the mark is out of that range.
    pub fn release_to(&mut self, mark: ReadMark) -> Result<()> {
        self.core.give_back_to(mark)?;
        self.waiter.notify(Event::SpaceAvailable);
        Ok(())
    }

    /// With deferred releases: reads again, from the last mark given back, every message
    /// received since (a bridge exporter whose publish failed sends them again), without
    /// leaving the role — producers see no end of stream. `InvalidArgument` if releases
    /// are not deferred.
    pub fn rewind(&mut self) -> Result<()> {
        self.no_detached()?;
        self.core.rewind()?;
        self.held = None;
        Ok(())
    }

    /// Copies the next message into `buf` and returns its length; `WouldBlock` if none is
    /// waiting, the end of the stream once it has ended, `BufferTooSmall` if `buf` is short
    /// (the message is kept for the next receive).
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.try_next()?;
        self.copy_out(msg, buf)
    }

    /// Like [`try_recv`](Consumer::try_recv), waiting while the ring is empty.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let msg = self.next_within(None)?;
        self.copy_out(msg, buf)
    }

    /// Like [`recv`](Consumer::recv), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        let msg = self.next_within(Some(timeout))?;
        self.copy_out(msg, buf)
    }

    /// Like [`recv`](Consumer::recv), giving up with `Timeout` at `deadline`.
    #[inline]
    pub fn recv_deadline(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize> {
        self.recv_timeout(buf, deadline.saturating_duration_since(Instant::now()))
    }

    /// Like [`try_recv`](Consumer::try_recv), also returning the message's priority: the
    /// highest-priority message waiting, oldest first within a priority (MPMC rings with
    /// [`lanes`](crate::Config::lanes); every other ring's messages have priority 0).
    /// Like `mq_receive`'s `msg_prio`.
    ///
    /// ```
    /// use shmring::{Config, mpmc::Ring};
    /// let name = format!("/doc-recv-priority-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().lanes(8).slots(16))?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// tx.try_send_priority(b"routine", 0)?;
    /// tx.try_send_priority(b"alarm", 7)?;
    /// let mut buf = [0u8; 64];
    /// let (n, priority) = rx.try_recv_priority(&mut buf)?;
    /// assert_eq!((&buf[..n], priority), (&b"alarm"[..], 7));
    /// assert_eq!(rx.try_recv_priority(&mut buf)?, (7, 0));
    /// ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_recv_priority(&mut self, buf: &mut [u8]) -> Result<(usize, u32)> {
        let msg = self.try_next()?;
        let priority = <K::Consumer<M> as ConsumerCore>::msg_priority(&msg);
        self.copy_out(msg, buf).map(|len| (len, priority))
    }

    /// Like [`try_recv_priority`](Consumer::try_recv_priority), waiting while the selected
    /// lanes are empty.
    #[inline]
    pub fn recv_priority(&mut self, buf: &mut [u8]) -> Result<(usize, u32)> {
        self.recv_priority_within(buf, None)
    }

    /// Like [`recv_priority`](Consumer::recv_priority), giving up with `Timeout` after
    /// `timeout`.
    #[inline]
    pub fn recv_priority_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, u32)> {
        self.recv_priority_within(buf, Some(timeout))
    }

    /// Like [`recv_priority`](Consumer::recv_priority), giving up with `Timeout` at
    /// `deadline`.
    #[inline]
    pub fn recv_priority_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<(usize, u32)> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.recv_priority_within(buf, Some(timeout))
    }

    #[inline]
    fn recv_priority_within(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(usize, u32)> {
        let msg = self.next_within(timeout)?;
        let priority = <K::Consumer<M> as ConsumerCore>::msg_priority(&msg);
        self.copy_out(msg, buf).map(|len| (len, priority))
    }

    /// Receives only messages whose priority is in `priorities` from now on, like
    /// `msgrcv`'s type argument: `p..=p` one lane, `0..=p` priorities up to `p`. Every
    /// receive form follows the selection, blocking ones wait for a message in it, and the
    /// end of the stream comes once the producers are gone and the selected lanes are
    /// drained. `InvalidArgument` for priorities beyond the ring's lanes, an empty range,
    /// or while a message found by an earlier receive is kept (a short buffer or a dropped
    /// grant): receive it first, so that nothing outside the selection is ever returned.
    ///
    /// ```
    /// use shmring::{Config, mpmc::Ring};
    /// let name = format!("/doc-select-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().lanes(4).slots(16))?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// tx.try_send_priority(b"high", 3)?;
    /// tx.try_send_priority(b"low", 1)?;
    /// rx.select_priorities(0..=1)?;
    /// let mut buf = [0u8; 16];
    /// assert_eq!(rx.try_recv_priority(&mut buf)?, (3, 1));
    /// assert!(matches!(rx.try_recv(&mut buf), Err(shmring::Error::WouldBlock)));
    /// ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn select_priorities(&mut self, priorities: std::ops::RangeInclusive<u32>) -> Result<()> {
        if let Some(msg) = self.held.as_ref().or(self.detached.as_ref()) {
            let priority = <K::Consumer<M> as ConsumerCore>::msg_priority(msg);
            return Err(Error::invalid_argument(format!(
                "a message of priority {priority} found by an earlier receive is kept for \
                 the next one: receive it before changing the selection"
            )));
        }
        let (low, high) = priorities.into_inner();
        self.core.select_lanes(low, high)
    }

    /// Replaces `out`'s contents with the next message (reusing its allocation).
    #[inline]
    pub fn try_recv_vec(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.try_next()?;
        self.copy_out_vec(msg, out)
    }

    /// Like [`try_recv_vec`](Consumer::try_recv_vec), waiting while the ring is empty.
    #[inline]
    pub fn recv_vec(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let msg = self.next_within(None)?;
        self.copy_out_vec(msg, out)
    }

    /// Like [`recv_vec`](Consumer::recv_vec), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn recv_vec_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        let msg = self.next_within(Some(timeout))?;
        self.copy_out_vec(msg, out)
    }

    /// Borrows the next message in place. [`ReadGrant::release`] frees its space; dropping
    /// the grant keeps the message: the next receive returns it again.
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
    /// msg.release()?;
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_read(&mut self) -> Result<ReadGrant<'_, K, M>> {
        let msg = self.try_next()?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Like [`try_read`](Consumer::try_read), waiting while the ring is empty.
    #[inline]
    pub fn read(&mut self) -> Result<ReadGrant<'_, K, M>> {
        let msg = self.next_within(None)?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Like [`read`](Consumer::read), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGrant<'_, K, M>> {
        let msg = self.next_within(Some(timeout))?;
        Ok(ReadGrant::new(self, msg))
    }

    /// Hands up to `max` waiting messages to `f` in place, then frees them together (SPSC:
    /// one store; MPMC: taken with one atomic operation). Returns how many; `WouldBlock` /
    /// the end of the stream if there were none.
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
        self.no_detached()?;
        if max == 0 {
            return Ok(0);
        }
        let mut delivered = 0;
        if let Some(msg) = self.held.take() {
            // Copied and checked first: a broadcast reader's held message may have been
            // overwritten since it was found.
            let copy = self.payload(&msg).to_vec();
            self.core.release(msg)?;
            f(&copy);
            delivered = 1;
        }
        let got = match self.read_batch(max - delivered, &mut f) {
            Ok(got) => got,
            Err(_) if delivered > 0 => 0,
            Err(Error::WouldBlock) => {
                self.fruitless = self.fruitless.wrapping_add(1);
                if self.fruitless % FRUITLESS_POLLS_PER_LOOK == 0 && !cfg!(shmring_loom) {
                    self.core.maintain();
                }
                return Err(Error::WouldBlock);
            }
            Err(e) => return Err(e),
        };
        self.waiter.notify(Event::SpaceAvailable);
        Ok(delivered + got)
    }

    /// The core's batch read, with the stamp taken off (and timed) on a telemetry ring.
    #[inline]
    fn read_batch(&mut self, max: usize, f: &mut impl FnMut(&[u8])) -> Result<usize> {
        let Some(clock) = self.clock.filter(|_| self.stamp_bytes > 0) else {
            if self.stamp_bytes > 0 {
                // Telemetry on, its line damaged: drop the stamps, time nothing.
                let stamp = self.stamp_bytes;
                return self
                    .core
                    .try_read_batch(max, &mut |m| f(m.get(stamp..).unwrap_or(&[])));
            }
            return self.core.try_read_batch(max, f);
        };
        let memory = self.core.memory().clone();
        let line = &memory.control().telemetry;
        self.core.try_read_batch(max, &mut |m| {
            if let Some(stamp) = m.first_chunk::<STAMP_BYTES>() {
                telemetry::received(line, clock, u64::from_le_bytes(*stamp));
            }
            f(m.get(STAMP_BYTES..).unwrap_or(&[]));
        })
    }

    /// The messages waiting now, each as a new `Vec`: the iterator ends when the ring is
    /// empty (or the stream has ended); an error other than those is its last item.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-try-iter-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// # let mut tx = ring.producer()?;
    /// let mut rx = ring.consumer()?;
    /// tx.try_send(b"a")?;
    /// tx.try_send(b"b")?;
    /// let got: Vec<Vec<u8>> = rx.try_iter().collect::<Result<_, _>>()?;
    /// assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn try_iter(&mut self) -> TryRecvIter<'_, K, M> {
        TryRecvIter {
            consumer: self,
            done: false,
        }
    }

    /// Every message until the end of the stream, waiting for each: the iterator ends at
    /// `Closed`; `PeerDead` (a producer of the stream died) or another error is its last
    /// item.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-iter-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let mut tx = ring.producer()?;
    /// let mut rx = ring.consumer()?;
    /// tx.try_send(b"last words")?;
    /// drop(tx); // end of stream
    /// let all: Vec<Vec<u8>> = rx.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(all, [b"last words".to_vec()]);
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn iter(&mut self) -> RecvIter<'_, K, M> {
        RecvIter {
            consumer: self,
            done: false,
        }
    }

    /// The next message in place without a borrow: its address and length, valid until
    /// [`release_detached`](Consumer::release_detached). Calling it again before releasing
    /// returns the same message; every other receive fails with `InvalidArgument`
    /// meanwhile. For callers that cannot hold a grant (the C ABI).
    pub(crate) fn read_detached(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<(NonNull<u8>, usize)> {
        let msg = match self.detached {
            Some(msg) => msg,
            None => {
                let msg = self.next_within(timeout)?;
                self.detached = Some(msg);
                msg
            }
        };
        Ok(self.detached_view(&msg))
    }

    /// Non-blocking [`read_detached`](Consumer::read_detached).
    pub(crate) fn try_read_detached(&mut self) -> Result<(NonNull<u8>, usize)> {
        let msg = match self.detached {
            Some(msg) => msg,
            None => {
                let msg = self.try_next()?;
                self.detached = Some(msg);
                msg
            }
        };
        Ok(self.detached_view(&msg))
    }

    fn detached_view(&self, msg: &Msg<K, M>) -> (NonNull<u8>, usize) {
        let payload = self.payload(msg);
        (
            NonNull::new(payload.as_ptr() as *mut u8)
                .expect("a message's payload lies inside the mapping"),
            payload.len(),
        )
    }

    /// Frees the pending detached message. `InvalidArgument` if none is pending.
    pub(crate) fn release_detached(&mut self) -> Result<()> {
        let msg = self
            .detached
            .take()
            .ok_or_else(|| Error::invalid_argument("release without a pending detached read"))?;
        self.release(msg)
    }

    super::end_accessors!();

    /// Ends this handle as a killed process would: no close, no release, nothing told to
    /// the ring; only its own memory (and, on shared memory, its descriptor, so its slot
    /// lock goes as it would with the process). For tests that simulate deaths.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn abandon(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; `core` and `waiter` are the only
        // fields with drop glue (the others are plain copies), each dropped once here.
        unsafe {
            std::ptr::drop_in_place(&mut this.core);
            std::ptr::drop_in_place(&mut this.waiter);
        }
    }

    /// Detaches (same as dropping). A message found and not released stays for the next
    /// SPSC consumer; on MPMC it was taken from the others and is released.
    pub fn close(self) {}
}

impl<K: Kind> Consumer<K> {
    /// A descriptor that becomes readable when this consumer, [armed](Consumer::arm),
    /// has something to receive: for `poll`, `epoll`, `select`, or an async runtime's
    /// reactor (tokio's `AsyncFd`). Made on first call; every call returns a new
    /// descriptor of the same set. It is an epoll set of: the consumer's doorbell (a Unix
    /// datagram socket in `/dev/shm/shmring-bells-*`, removed when this consumer closes),
    /// a pidfd per producer in this PID namespace (readable the moment one exits), and a
    /// one-second tick (so a death no pidfd can see — a producer in another PID namespace —
    /// is found by the next `arm` within a second).
    ///
    /// ```
    /// use shmring::{Config, WaitStrategy, spsc::Ring};
    /// use std::os::fd::AsRawFd;
    /// let name = format!("/doc-readiness-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().wait_strategy(WaitStrategy::Futex))?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let ready = rx.readiness()?;
    /// assert!(rx.arm()?); // empty: armed
    /// tx.try_send(b"hi")?; // rings the doorbell
    /// let mut fds = [libc::pollfd { fd: ready.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    /// // SAFETY: one valid pollfd.
    /// assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) }, 1);
    /// let mut buf = [0u8; 8];
    /// assert_eq!(rx.try_recv(&mut buf)?, 2);
    /// ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn readiness(&mut self) -> Result<Readiness> {
        let slot = self.core.slot();
        self.ready
            .descriptor(self.core.memory(), Role::Consumer, slot)
    }
}

#[cfg(feature = "tokio")]
impl<K: Kind> Consumer<K> {
    /// Waits, without a thread, until `attempt` stops saying `WouldBlock`: the readiness
    /// loop (try, arm, await the descriptor). The only await is on readiness, before
    /// anything is taken, so dropping the future loses nothing.
    async fn ready_for<T>(&mut self, mut attempt: impl FnMut(&mut Self) -> Result<T>) -> Result<T> {
        let slot = self.core.slot();
        let memory = self.core.memory().clone();
        let reactor = self
            .ready
            .reactor(|ready| ready.descriptor(&memory, Role::Consumer, slot))?;
        loop {
            match attempt(self) {
                Err(Error::WouldBlock) => {}
                done => return done,
            }
            if self.arm()? {
                super::ready::readable(&reactor).await?;
            }
        }
    }

    /// [`recv`](Consumer::recv) for async code (feature `tokio`): waits on the readiness
    /// descriptor through tokio's reactor, so an idle receiver uses no thread and no CPU.
    /// Cancel-safe: a dropped future has taken nothing. Futex rings only (as
    /// [`arm`](Consumer::arm)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmring::Result<()> {
    /// use shmring::{Config, WaitStrategy, spsc::Ring};
    /// let name = format!("/doc-async-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().wait_strategy(WaitStrategy::Futex))?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// std::thread::spawn(move || tx.send(b"later").unwrap());
    /// let mut buf = [0u8; 16];
    /// let n = rx.recv_async(&mut buf).await?;
    /// assert_eq!(&buf[..n], b"later");
    /// ring.unlink()?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_async(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.ready_for(|c| c.try_recv(buf)).await
    }

    /// [`recv_vec`](Consumer::recv_vec) for async code (feature `tokio`), cancel-safe.
    pub async fn recv_vec_async(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        self.ready_for(|c| c.try_recv_vec(out)).await
    }

    /// The messages as a `futures::Stream` (feature `tokio`): each item one message, the
    /// stream ending when the producers closed (`Closed`); a dead producer's end comes as
    /// one `Err(PeerDead)` item before it ends. Dropping it between items loses nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmring::Result<()> {
    /// use shmring::{Config, WaitStrategy, spsc::Ring};
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    /// let name = format!("/doc-stream-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().wait_strategy(WaitStrategy::Futex))?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// std::thread::spawn(move || (0..3u8).for_each(|i| tx.send(&[i]).unwrap()));
    /// let mut messages = rx.messages()?;
    /// let mut got = Vec::new();
    /// while let Some(m) = poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)).await {
    ///     got.push(m?);
    /// }
    /// assert_eq!(got, [[0], [1], [2]]);
    /// ring.unlink()?;
    /// # Ok(()) }
    /// ```
    pub fn messages(&mut self) -> Result<Messages<'_, K>> {
        let slot = self.core.slot();
        let memory = self.core.memory().clone();
        let reactor = self
            .ready
            .reactor(|ready| ready.descriptor(&memory, Role::Consumer, slot))?;
        Ok(Messages {
            consumer: self,
            reactor,
            ended: false,
        })
    }
}

/// A consumer's messages as a `futures::Stream` ([`Consumer::messages`], feature `tokio`).
#[cfg(feature = "tokio")]
pub struct Messages<'a, K: Kind> {
    consumer: &'a mut Consumer<K>,
    reactor: std::sync::Arc<tokio::io::unix::AsyncFd<Readiness>>,
    ended: bool,
}

#[cfg(feature = "tokio")]
impl<K: Kind> futures_core::Stream for Messages<'_, K> {
    type Item = Result<Vec<u8>>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            let mut out = Vec::new();
            match this.consumer.try_recv_vec(&mut out) {
                Ok(_) => return Poll::Ready(Some(Ok(out))),
                Err(Error::Closed) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Err(Error::WouldBlock) => {}
                Err(e) => {
                    // The end of the stream (PeerDead) or damage: told once, then the end.
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match this.consumer.arm() {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            match this.reactor.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(source)) => {
                    return Poll::Ready(Some(Err(Error::Io {
                        op: "wait for readiness",
                        source,
                    })));
                }
            }
        }
    }
}

impl<K: Kind, M: Memory> Drop for Consumer<K, M> {
    fn drop(&mut self) {
        // The doorbell goes before the slot does: a new holder of the slot binds the same
        // path, and must not have it removed under it.
        if self.ready.close() {
            self.waiter.disarm(Event::DataAvailable);
        }
        let held = self.detached.take().or(self.held.take());
        self.core.close(held);
        self.waiter.notify(Event::SpaceAvailable);
    }
}

impl<K: Kind, M: Memory> std::fmt::Debug for Consumer<K, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("geometry", &self.geometry)
            .field("peer_index", &self.peer_index())
            .finish_non_exhaustive()
    }
}

/// A message borrowed in place, from [`Consumer::try_read`]. Derefs to its bytes.
/// [`release`](ReadGrant::release) frees its space; dropping the grant keeps the message
/// for the next receive on the same consumer.
#[must_use = "dropping a ReadGrant keeps the message: call release() once done with it"]
pub struct ReadGrant<'a, K: Kind, M: Memory = ShmMemory> {
    consumer: &'a mut Consumer<K, M>,
    msg: Option<Msg<K, M>>,
}

impl<'a, K: Kind, M: Memory> ReadGrant<'a, K, M> {
    #[inline]
    fn new(consumer: &'a mut Consumer<K, M>, msg: Msg<K, M>) -> Self {
        ReadGrant {
            consumer,
            msg: Some(msg),
        }
    }

    /// Frees the message's space for the producers. On SPSC and MPMC rings it always
    /// succeeds. On a broadcast ring whose producer may overwrite unread messages
    /// (`Overwrite`, or a lag limit), `Lagged` means the bytes were overwritten while the
    /// grant was held: whatever was read through it must be dropped (the reader has moved
    /// on to the oldest message left).
    #[inline]
    pub fn release(mut self) -> Result<()> {
        match self.msg.take() {
            Some(msg) => self.consumer.release(msg),
            None => Ok(()),
        }
    }

    /// The message's priority (MPMC rings with lanes; 0 on every other ring).
    #[inline]
    pub fn priority(&self) -> u32 {
        self.msg
            .as_ref()
            .map_or(0, <K::Consumer<M> as ConsumerCore>::msg_priority)
    }
}

impl<K: Kind, M: Memory> Drop for ReadGrant<'_, K, M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(msg) = self.msg.take() {
            self.consumer.held = Some(msg);
        }
    }
}

impl<K: Kind, M: Memory> Deref for ReadGrant<'_, K, M> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let msg = self
            .msg
            .as_ref()
            .expect("a grant holds its message until dropped");
        self.consumer.payload(msg)
    }
}

/// The messages waiting now, from [`Consumer::try_iter`].
pub struct TryRecvIter<'a, K: Kind, M: Memory = ShmMemory> {
    consumer: &'a mut Consumer<K, M>,
    done: bool,
}

impl<K: Kind, M: Memory> Iterator for TryRecvIter<'_, K, M> {
    type Item = Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        match self.consumer.try_recv_vec(&mut out) {
            Ok(_) => Some(Ok(out)),
            Err(Error::WouldBlock | Error::Closed) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Every message until the end of the stream, from [`Consumer::iter`].
pub struct RecvIter<'a, K: Kind, M: Memory = ShmMemory> {
    consumer: &'a mut Consumer<K, M>,
    done: bool,
}

impl<K: Kind, M: Memory> Iterator for RecvIter<'_, K, M> {
    type Item = Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        match self.consumer.recv_vec(&mut out) {
            Ok(_) => Some(Ok(out)),
            Err(Error::Closed) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
