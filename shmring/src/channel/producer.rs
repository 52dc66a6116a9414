//! The writing end, for every ring kind.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::Kind;
use super::ready::{EndReadiness, Readiness};
use crate::algo::ProducerCore;
use crate::error::{Error, Result, Role};
use crate::memory::Memory;
use crate::shm::ShmMemory;
use crate::telemetry::{STAMP_BYTES, Stamper};
use crate::wait::{Event, Wait, Waiter};

type Claim<K, M> = <<K as super::sealed::KindImpl>::Producer<M> as ProducerCore>::Claim;

/// `try_*` calls that found the ring full between two looks for a dead consumer (the look
/// is one `fcntl`; a blocked call looks every `RECOVERY_INTERVAL` instead).
pub(super) const FRUITLESS_POLLS_PER_LOOK: u32 = 1 << 12;

/// The writing end of a ring. Dropping it (or [`close`](Producer::close)) publishes what
/// is pending and ends the stream for the consumers once no producer is left: they receive
/// everything sent, then `Closed`.
///
/// `Send` but not `Sync`: move it to the thread that writes.
///
/// ```
/// use shmring::{Config, spsc::Ring};
/// let name = format!("/doc-producer-{}", std::process::id());
/// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
/// let mut tx = ring.producer()?;
/// tx.try_send(b"hello")?;
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub struct Producer<K: Kind, M: Memory = ShmMemory> {
    core: K::Producer<M>,
    waiter: Waiter<M>,
    geometry: K::Geometry,
    /// `try_*` calls that found the ring full since the last look for dead consumers.
    fruitless: u32,
    /// A reservation handed out without a borrow (the C ABI): every other send waits for
    /// its commit or cancel.
    detached: Option<Claim<K, M>>,
    /// Telemetry: stamps messages (`None` when the ring keeps none).
    stamper: Option<Stamper>,
    /// Bytes of each message before its payload: the stamp (8), or 0 without telemetry.
    stamp_bytes: usize,
    /// Readiness for event loops ([`readiness`](Producer::readiness)).
    ready: EndReadiness,
}

impl<K: Kind, M: Memory> Producer<K, M> {
    pub(crate) fn new(
        waiter: Waiter<M>,
        core: K::Producer<M>,
        geometry: K::Geometry,
        telemetry: bool,
    ) -> Self {
        let stamper = telemetry.then(|| Stamper::new(&core.memory().control().telemetry));
        Producer {
            core,
            waiter,
            geometry,
            fruitless: 0,
            detached: None,
            stamper,
            stamp_bytes: if telemetry { STAMP_BYTES } else { 0 },
            ready: EndReadiness::default(),
        }
    }

    /// For event loops: sends `msg` if it fits, and otherwise arms this producer's
    /// [`readiness`](Producer::readiness) descriptor, which becomes readable when a
    /// consumer frees space, the consumers are gone, or one dies. `Ok(true)`: sent;
    /// `Ok(false)`: the ring is full and this end is armed — poll the descriptor, then call
    /// again. Errors as [`try_send`](Producer::try_send). Needs a
    /// [`WaitStrategy::Futex`](crate::WaitStrategy::Futex) ring (`InvalidArgument`
    /// otherwise). A release after an arming that said `false` always makes the descriptor
    /// readable (`docs/ordering.md`, "Readiness").
    pub fn try_send_or_arm(&mut self, msg: &[u8]) -> Result<bool> {
        match self.try_send(msg) {
            Err(Error::WouldBlock) => {}
            done => return done.map(|()| true),
        }
        EndReadiness::supported(self.waiter.strategy())?;
        if self.ready.drain() {
            self.core.maintain();
            let (pids, _) =
                super::live_pids::<K, M>(self.core.memory(), &self.geometry, Role::Consumer);
            self.ready.looked(&pids);
        }
        self.waiter.arm(Event::SpaceAvailable);
        match self.try_send(msg) {
            Err(Error::WouldBlock) => Ok(false),
            done => {
                self.waiter.disarm(Event::SpaceAvailable);
                done.map(|()| true)
            }
        }
    }

    /// Copies `msg` into the ring as one message; on a telemetry ring after its stamp,
    /// taken just before the commit. Returns the stamp (0: none).
    #[inline]
    fn write_msg(
        core: &mut K::Producer<M>,
        stamper: &mut Option<Stamper>,
        msg: &[u8],
    ) -> Result<u64> {
        let Some(stamper) = stamper else {
            return core.try_write(msg).map(|()| 0);
        };
        let claim = Self::claim_msg(core, STAMP_BYTES, msg.len())?;
        let ptr = core.payload_ptr(&claim);
        // SAFETY: the claim holds `STAMP_BYTES + msg.len()` bytes at `ptr`, inside the data
        // region and the producer's alone until committed; `msg` is private memory.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), ptr.add(STAMP_BYTES), msg.len());
        }
        let stamp = stamper.next();
        // SAFETY: as above; the stamp's bytes are the first 8 of the claim.
        unsafe {
            ptr.cast::<[u8; STAMP_BYTES]>()
                .write_unaligned(stamp.to_le_bytes())
        };
        core.commit(claim, STAMP_BYTES + msg.len())?;
        Ok(stamp)
    }

    /// Claims room for a message of `len` payload bytes after `stamp_bytes` of stamp;
    /// `MessageTooLarge` names the largest payload the caller may send.
    #[inline]
    fn claim_msg(core: &mut K::Producer<M>, stamp_bytes: usize, len: usize) -> Result<Claim<K, M>> {
        if stamp_bytes == 0 {
            return core.try_claim(len);
        }
        let max = core.max_message().saturating_sub(stamp_bytes);
        if len > max {
            return Err(Error::MessageTooLarge { len, max });
        }
        core.try_claim(stamp_bytes + len)
    }

    /// After a message stamped `stamp` was committed: telemetry's counters.
    #[cold]
    fn note_stamp(&mut self, stamp: u64) {
        let memory = self.core.memory();
        let sample = self.stamper.as_mut().is_some_and(Stamper::sample_due);
        Stamper::stamped(
            &memory.control().telemetry,
            stamp,
            sample.then(|| K::in_flight(memory, &self.geometry)),
        );
    }

    /// Commits `claim` with the first `len` bytes of its payload (clamped to the claim),
    /// stamping it first on a telemetry ring, and tells sleeping consumers unless a batch
    /// is open.
    #[inline]
    fn commit_claim(&mut self, claim: Claim<K, M>, len: usize) -> Result<()> {
        let reserved = <K::Producer<M> as ProducerCore>::claim_len(&claim);
        let total = (self.stamp_bytes + len).min(reserved);
        let stamp = match &mut self.stamper {
            Some(stamper) => {
                let stamp = stamper.next();
                let ptr = self.core.payload_ptr(&claim);
                // SAFETY: a telemetry claim starts with `STAMP_BYTES` bytes of the
                // producer's own (`claim_msg`), inside the data region.
                unsafe {
                    ptr.cast::<[u8; STAMP_BYTES]>()
                        .write_unaligned(stamp.to_le_bytes())
                };
                stamp
            }
            None => 0,
        };
        self.core.commit(claim, total)?;
        if stamp != 0 {
            self.note_stamp(stamp);
        }
        if !self.core.batching() {
            self.published();
        }
        Ok(())
    }

    /// One message into an open SPSC batch (published when the batch ends).
    #[inline]
    pub(crate) fn batch_write(&mut self, msg: &[u8]) -> Result<()> {
        let written = Self::write_msg(&mut self.core, &mut self.stamper, msg);
        let stamp = self.polled(written)?;
        if stamp != 0 {
            self.note_stamp(stamp);
        }
        Ok(())
    }

    /// Room for one message in an open SPSC batch.
    #[inline]
    pub(crate) fn batch_claim(&mut self, len: usize) -> Result<Claim<K, M>> {
        let claim = Self::claim_msg(&mut self.core, self.stamp_bytes, len);
        self.polled(claim)
    }

    pub(crate) fn core_mut(&mut self) -> &mut K::Producer<M> {
        &mut self.core
    }

    pub(crate) fn core(&self) -> &K::Producer<M> {
        &self.core
    }

    /// Tells sleeping consumers that there is something to read.
    #[inline]
    pub(crate) fn published(&self) {
        self.waiter.notify(Event::DataAvailable);
    }

    /// Passes a non-blocking outcome through; every few thousand `WouldBlock`s it first
    /// looks for dead consumers, so a caller that only polls still reaches the end of the
    /// stream.
    #[inline]
    pub(crate) fn polled<T>(&mut self, outcome: Result<T>) -> Result<T> {
        if let Err(Error::WouldBlock) = outcome {
            self.fruitless = self.fruitless.wrapping_add(1);
            if self.fruitless % FRUITLESS_POLLS_PER_LOOK == 0 && !cfg!(shmring_loom) {
                self.core.maintain();
            }
        }
        outcome
    }

    #[inline]
    fn no_detached(&self) -> Result<()> {
        if self.detached.is_some() {
            return Err(Error::invalid_argument(
                "a detached reservation is pending: commit or cancel it first",
            ));
        }
        Ok(())
    }

    /// Waits (as the ring's strategy says, looking for dead consumers between waits) until
    /// `attempt` stops saying `WouldBlock`, or `timeout` passes.
    fn wait_until<T>(
        &mut self,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(&mut K::Producer<M>, &mut Option<Stamper>) -> Result<T>,
    ) -> Result<T> {
        self.no_detached()?;
        let (core, stamper) = (&mut self.core, &mut self.stamper);
        self.waiter
            .wait_maintaining(Event::SpaceAvailable, timeout, |maintain| {
                if maintain {
                    core.maintain();
                }
                attempt(core, stamper)
            })
    }

    /// The stream position after the last message published — by this producer, or, just
    /// after it attached, by whichever producer published last (including one that died
    /// after publishing). Grows with every message for the ring's whole life. A process
    /// that must not publish a message twice across its own crash (a bridge importer)
    /// notes the position before publishing and compares after restarting. SPSC and
    /// broadcast rings; `InvalidArgument` on MPMC rings, whose producers share the stream.
    ///
    /// ```
    /// use shmring::{Config, spsc::Ring};
    /// let name = format!("/doc-position-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let mut tx = ring.producer()?;
    /// let before = tx.position()?;
    /// tx.try_send(b"x")?;
    /// assert!(tx.position()? > before);
    /// ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn position(&self) -> Result<u64> {
        self.core.position()
    }

    /// Copies `msg` into the ring as one message, or says why not: `WouldBlock` if it is
    /// full, `MessageTooLarge`, `Closed` / `PeerDead` once the consumers have gone.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.no_detached()?;
        let written = Self::write_msg(&mut self.core, &mut self.stamper, msg);
        let stamp = self.polled(written)?;
        if stamp != 0 {
            self.note_stamp(stamp);
        }
        self.published();
        Ok(())
    }

    /// Like [`try_send`](Producer::try_send), waiting while the ring is full.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_within(msg, None)
    }

    /// Like [`send`](Producer::send), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_within(msg, Some(timeout))
    }

    /// Like [`send`](Producer::send), giving up with `Timeout` at `deadline`.
    #[inline]
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<()> {
        self.send_within(
            msg,
            Some(deadline.saturating_duration_since(Instant::now())),
        )
    }

    #[inline]
    fn send_within(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        let stamp =
            self.wait_until(timeout, |core, stamper| Self::write_msg(core, stamper, msg))?;
        if stamp != 0 {
            self.note_stamp(stamp);
        }
        self.published();
        Ok(())
    }

    /// Sends as many of `msgs` as fit, in order, published together (SPSC: one store; MPMC:
    /// the slots taken with one atomic operation); returns how many (`WouldBlock` if none
    /// fits; `MessageTooLarge` before anything is sent).
    ///
    /// ```
    /// # use shmring::{Config, mpmc::Ring};
    /// # let name = format!("/doc-send-batch-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().slots(4))?;
    /// let mut tx = ring.producer()?;
    /// assert_eq!(tx.try_send_batch(&[&b"a"[..], b"b", b"c", b"d", b"e"])?, 4);
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn try_send_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        self.no_detached()?;
        let sent = if self.stamper.is_some() {
            self.stamped_batch(msgs)
        } else {
            self.core.try_write_batch(msgs)
        };
        let sent = self.polled(sent)?;
        self.published();
        Ok(sent)
    }

    /// `try_send_batch` on a telemetry ring: each message with its own stamp and commit.
    fn stamped_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        let max = self.max_message();
        if let Some(big) = msgs.iter().find(|m| m.as_ref().len() > max) {
            return Err(Error::MessageTooLarge {
                len: big.as_ref().len(),
                max,
            });
        }
        let mut sent = 0;
        for msg in msgs {
            match Self::write_msg(&mut self.core, &mut self.stamper, msg.as_ref()) {
                Ok(stamp) => {
                    sent += 1;
                    if stamp != 0 {
                        self.note_stamp(stamp);
                    }
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Like [`try_send`](Producer::try_send), with priority `priority`: on an MPMC ring
    /// with [`lanes`](crate::Config::lanes), into lane `priority` (`0..lanes`), so
    /// consumers take it before every message of a lower priority; like `mq_send`. Every
    /// ring without lanes takes priority 0 only (`InvalidArgument` otherwise, nothing
    /// sent). A full lane is `WouldBlock` even when other lanes have room.
    ///
    /// ```
    /// use shmring::{Config, mpmc::Ring};
    /// let name = format!("/doc-send-priority-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().lanes(4).slots(16))?;
    /// let mut tx = ring.producer()?;
    /// tx.try_send_priority(b"now", 3)?;
    /// assert!(tx.try_send_priority(b"?", 4).is_err());
    /// ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_send_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        self.core.set_lane(priority)?;
        let sent = self.try_send(msg);
        self.default_lane(priority);
        sent
    }

    /// Like [`try_send_priority`](Producer::try_send_priority), waiting while the lane is
    /// full.
    #[inline]
    pub fn send_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        self.core.set_lane(priority)?;
        let sent = self.send_within(msg, None);
        self.default_lane(priority);
        sent
    }

    /// Like [`send_priority`](Producer::send_priority), giving up with `Timeout` after
    /// `timeout`.
    #[inline]
    pub fn send_priority_timeout(
        &mut self,
        msg: &[u8],
        priority: u32,
        timeout: Duration,
    ) -> Result<()> {
        self.core.set_lane(priority)?;
        let sent = self.send_within(msg, Some(timeout));
        self.default_lane(priority);
        sent
    }

    /// Like [`send_priority`](Producer::send_priority), giving up with `Timeout` at
    /// `deadline`.
    #[inline]
    pub fn send_priority_deadline(
        &mut self,
        msg: &[u8],
        priority: u32,
        deadline: Instant,
    ) -> Result<()> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.send_priority_timeout(msg, priority, timeout)
    }

    /// Like [`try_reserve`](Producer::try_reserve), in lane `priority`: the grant's
    /// message is sent with that priority.
    #[inline]
    pub fn try_reserve_priority(
        &mut self,
        len: usize,
        priority: u32,
    ) -> Result<WriteGrant<'_, K, M>> {
        self.no_detached()?;
        self.core.set_lane(priority)?;
        let claim = Self::claim_msg(&mut self.core, self.stamp_bytes, len);
        self.default_lane(priority);
        let claim = self.polled(claim)?;
        Ok(WriteGrant::new(self, claim))
    }

    /// Like [`try_reserve_priority`](Producer::try_reserve_priority), waiting while the
    /// lane is full, up to `timeout` (`None`: no limit).
    pub fn reserve_priority_timeout(
        &mut self,
        len: usize,
        priority: u32,
        timeout: Option<Duration>,
    ) -> Result<WriteGrant<'_, K, M>> {
        self.core.set_lane(priority)?;
        let stamp_bytes = self.stamp_bytes;
        let claim = self.wait_until(timeout, |core, _| Self::claim_msg(core, stamp_bytes, len));
        self.default_lane(priority);
        Ok(WriteGrant::new(self, claim?))
    }

    /// Back to priority 0 after a send with `priority`.
    #[inline]
    fn default_lane(&mut self, priority: u32) {
        if priority != 0 {
            // Lane 0 exists in every ring: this cannot fail.
            let _ = self.core.set_lane(0);
        }
    }

    /// Reserves room for a message of up to `len` bytes written in place;
    /// [`WriteGrant::commit`] publishes it, dropping the grant sends nothing.
    ///
    /// ```
    /// # use shmring::{Config, spsc::Ring};
    /// # let name = format!("/doc-reserve-{}", std::process::id());
    /// # let ring = Ring::create(&name, &Config::new().capacity(4096))?;
    /// let mut tx = ring.producer()?;
    /// let mut grant = tx.try_reserve(5)?;
    /// grant.copy_from_slice(b"hello");
    /// grant.commit()?;
    /// # ring.unlink()?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_, K, M>> {
        self.no_detached()?;
        let claim = Self::claim_msg(&mut self.core, self.stamp_bytes, len);
        let claim = self.polled(claim)?;
        Ok(WriteGrant::new(self, claim))
    }

    /// Like [`try_reserve`](Producer::try_reserve), waiting while the ring is full.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_, K, M>> {
        let stamp_bytes = self.stamp_bytes;
        let claim = self.wait_until(None, |core, _| Self::claim_msg(core, stamp_bytes, len))?;
        Ok(WriteGrant::new(self, claim))
    }

    /// Like [`reserve`](Producer::reserve), giving up with `Timeout` after `timeout`.
    #[inline]
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<WriteGrant<'_, K, M>> {
        let stamp_bytes = self.stamp_bytes;
        let claim = self.wait_until(Some(timeout), |core, _| {
            Self::claim_msg(core, stamp_bytes, len)
        })?;
        Ok(WriteGrant::new(self, claim))
    }

    /// Reserves `len` bytes like [`reserve_timeout`](Producer::reserve_timeout) (`None`:
    /// no limit), without a borrow: returns the address of the reserved bytes, valid until
    /// [`commit_detached`](Producer::commit_detached) or
    /// [`cancel_detached`](Producer::cancel_detached). Meanwhile every other send on this
    /// producer fails with `InvalidArgument`. For callers that cannot hold a grant (the C
    /// ABI); Rust code uses [`reserve`](Producer::reserve).
    pub(crate) fn reserve_detached(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<NonNull<u8>> {
        let stamp_bytes = self.stamp_bytes;
        let claim = self.wait_until(timeout, |core, _| Self::claim_msg(core, stamp_bytes, len))?;
        Ok(self.hold_detached(claim))
    }

    /// Non-blocking [`reserve_detached`](Producer::reserve_detached).
    pub(crate) fn try_reserve_detached(&mut self, len: usize) -> Result<NonNull<u8>> {
        self.no_detached()?;
        let claim = Self::claim_msg(&mut self.core, self.stamp_bytes, len);
        let claim = self.polled(claim)?;
        Ok(self.hold_detached(claim))
    }

    fn hold_detached(&mut self, claim: Claim<K, M>) -> NonNull<u8> {
        // SAFETY: the payload starts after the stamp's bytes, inside the claim.
        let ptr = unsafe { self.core.payload_ptr(&claim).add(self.stamp_bytes) };
        self.detached = Some(claim);
        NonNull::new(ptr).expect("a claim's payload lies inside the mapping")
    }

    /// Publishes the first `len` bytes of the pending detached reservation.
    /// `InvalidArgument` if none is pending or `len` exceeds it (it stays pending then).
    pub(crate) fn commit_detached(&mut self, len: usize) -> Result<()> {
        let claim = self.detached.take().ok_or_else(|| {
            Error::invalid_argument("commit without a pending detached reservation")
        })?;
        let reserved =
            <K::Producer<M> as ProducerCore>::claim_len(&claim).saturating_sub(self.stamp_bytes);
        if len > reserved {
            self.detached = Some(claim);
            return Err(Error::invalid_argument(format!(
                "commit of {len} bytes exceeds the {reserved} reserved"
            )));
        }
        self.commit_claim(claim, len)
    }

    /// Gives the pending detached reservation back: nothing is sent.
    pub(crate) fn cancel_detached(&mut self) {
        if let Some(claim) = self.detached.take() {
            self.core.cancel(claim);
            self.published();
        }
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

    /// Publishes what is pending and detaches (same as dropping).
    pub fn close(self) {}
}

impl<K: Kind> Producer<K> {
    /// A descriptor that becomes readable when this producer, armed by
    /// [`try_send_or_arm`](Producer::try_send_or_arm), may have room: as
    /// [`Consumer::readiness`](crate::Consumer::readiness), with the consumers' pidfds.
    pub fn readiness(&mut self) -> Result<Readiness> {
        let slot = self.core.slot();
        self.ready
            .descriptor(self.core.memory(), Role::Producer, slot)
    }
}

#[cfg(feature = "tokio")]
impl<K: Kind> Producer<K> {
    /// [`send`](Producer::send) for async code (feature `tokio`): while the ring is full
    /// it waits on the readiness descriptor through tokio's reactor. Cancel-safe: a dropped
    /// future has sent nothing (the message is sent whole or not at all). Futex rings only.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmring::Result<()> {
    /// use shmring::{Config, WaitStrategy, spsc::Ring};
    /// let name = format!("/doc-send-async-{}", std::process::id());
    /// let ring = Ring::create(&name, &Config::new().wait_strategy(WaitStrategy::Futex))?;
    /// let mut tx = ring.producer()?;
    /// tx.send_async(b"hello").await?;
    /// assert_eq!(ring.len(), 1);
    /// ring.unlink()?;
    /// # Ok(()) }
    /// ```
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<()> {
        let slot = self.core.slot();
        let memory = self.core.memory().clone();
        let reactor = self
            .ready
            .reactor(|ready| ready.descriptor(&memory, Role::Producer, slot))?;
        while !self.try_send_or_arm(msg)? {
            super::ready::readable(&reactor).await?;
        }
        Ok(())
    }
}

impl<K: Kind, M: Memory> Drop for Producer<K, M> {
    fn drop(&mut self) {
        // The doorbell goes before the slot does (see the consumer's drop).
        if self.ready.close() {
            self.waiter.disarm(Event::SpaceAvailable);
        }
        if let Some(claim) = self.detached.take() {
            self.core.cancel(claim);
        }
        self.core.close();
        self.published();
    }
}

impl<K: Kind, M: Memory> std::fmt::Debug for Producer<K, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("geometry", &self.geometry)
            .field("peer_index", &self.peer_index())
            .finish_non_exhaustive()
    }
}

/// Room for one message inside the ring, from [`Producer::try_reserve`]. Derefs to the
/// reserved bytes (their contents are unspecified until written).
/// [`commit`](WriteGrant::commit) publishes them; dropping the grant sends nothing.
#[must_use = "dropping a WriteGrant sends nothing: call commit()"]
pub struct WriteGrant<'a, K: Kind, M: Memory = ShmMemory> {
    producer: &'a mut Producer<K, M>,
    claim: Option<Claim<K, M>>,
    payload: *mut u8,
    len: usize,
}

impl<'a, K: Kind, M: Memory> WriteGrant<'a, K, M> {
    #[inline]
    pub(crate) fn new(producer: &'a mut Producer<K, M>, claim: Claim<K, M>) -> Self {
        let stamp = producer.stamp_bytes;
        // SAFETY: the payload starts after the stamp's bytes, inside the claim.
        let payload = unsafe { producer.core.payload_ptr(&claim).add(stamp) };
        let len = <K::Producer<M> as ProducerCore>::claim_len(&claim).saturating_sub(stamp);
        WriteGrant {
            producer,
            claim: Some(claim),
            payload,
            len,
        }
    }

    /// Publishes the whole reserved length as one message (inside an SPSC batch: with the
    /// batch). `Revoked` (nothing published) if this producer lost its place in the ring.
    #[inline]
    pub fn commit(self) -> Result<()> {
        let len = self.len;
        self.commit_prefix(len)
    }

    /// Publishes only the first `len` bytes (`len` is clamped to the reserved length).
    #[inline]
    pub fn commit_prefix(mut self, len: usize) -> Result<()> {
        let claim = self
            .claim
            .take()
            .expect("a grant holds its claim until consumed");
        self.producer.commit_claim(claim, len.min(self.len))
    }
}

impl<K: Kind, M: Memory> Drop for WriteGrant<'_, K, M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.producer.core.cancel(claim);
            if !self.producer.core.batching() {
                // MPMC: consumers waiting on the given-back slot skip it now.
                self.producer.published();
            }
        }
    }
}

impl<K: Kind, M: Memory> Deref for WriteGrant<'_, K, M> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `payload` points at `len` bytes inside the data region that only this
        // producer may touch until the claim is committed or cancelled (consumers cannot
        // see them; the producer is borrowed mutably by the grant).
        unsafe { std::slice::from_raw_parts(self.payload, self.len) }
    }
}

impl<K: Kind, M: Memory> DerefMut for WriteGrant<'_, K, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.payload, self.len) }
    }
}
