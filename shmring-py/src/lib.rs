//! `import shmring`: the rings from Python.
//!
//! Bound once, on the run-time-kind layer (`shmring::any`), so every ring kind is reached
//! through the same three classes. Blocking calls release the GIL and wait in slices of at
//! most [`SIGNAL_SLICE`], checking for signals between slices: Ctrl-C interrupts a blocked
//! receive promptly and nothing is lost (a message is either taken and returned, or left in
//! the ring). Zero-copy reservations and reads are objects exporting the buffer protocol
//! over ring memory; the view is released when the `with` block ends, and a handle refuses
//! to close while a view of its memory is still exported.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shmring::any::{self, KindName};
use shmring::broadcast::{JoinAt, Policy};
use shmring::raw::{RawConsumer, RawProducer};
use shmring::{Config, ErrorKind, OpenOptions, WaitStrategy};

mod errors;
mod views;

use errors::to_py;
pub use views::{ReadGrant, Reservation};

/// Longest stretch a blocking call waits without the GIL before it looks for signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// How long a blocking call may wait: `None` waits for ever; a negative or NaN timeout is
/// refused.
fn timeout_of(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("timeout must be a number of seconds >= 0, not {s}"))
            })
        })
        .transpose()
}

/// Runs `op` without the GIL, in slices of at most [`SIGNAL_SLICE`] until it stops saying
/// `Timeout` or `timeout` has passed, raising pending signals (`KeyboardInterrupt`)
/// between slices. `op` gets the slice to wait (`Some(ZERO)`: do not wait).
fn blocking<T: Send, H: Send>(
    py: Python<'_>,
    handle: &mut H,
    timeout: Option<Duration>,
    mut op: impl FnMut(&mut H, Option<Duration>) -> shmring::Result<T> + Send,
) -> PyResult<T> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            None => SIGNAL_SLICE,
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(SIGNAL_SLICE),
        };
        let result = if slice.is_zero() {
            op(handle, Some(Duration::ZERO))
        } else {
            py.detach(|| op(handle, Some(slice)))
        };
        match result {
            Err(e) if e.kind() == ErrorKind::Timeout => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(to_py(e));
                }
                py.check_signals()?;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && timeout == Some(Duration::ZERO) => {
                return Err(to_py(e));
            }
            other => return other.map_err(to_py),
        }
    }
}

/// Parses a wait strategy's name.
fn wait_of(name: &str) -> PyResult<WaitStrategy> {
    match name {
        "spin" => Ok(WaitStrategy::Spin),
        "spin-then-yield" | "spin-yield" => Ok(WaitStrategy::SpinYield),
        "futex" => Ok(WaitStrategy::Futex),
        other => Err(PyValueError::new_err(format!(
            "wait must be 'spin', 'spin-then-yield' or 'futex', not {other:?}"
        ))),
    }
}

fn kind_of(name: &str) -> PyResult<KindName> {
    name.parse().map_err(to_py)
}

fn options(any_owner: bool) -> OpenOptions {
    OpenOptions::new().any_owner(any_owner)
}

fn policy_of(name: &str) -> PyResult<Policy> {
    match name {
        "lossless" => Ok(Policy::Lossless),
        "overwrite" => Ok(Policy::Overwrite),
        other => Err(to_py(shmring::Error::InvalidArgument {
            detail: format!("overflow {other:?}: use \"lossless\" or \"overwrite\""),
        })),
    }
}

impl Ring {
    /// The broadcast ring this is, or `Incompatible`.
    fn broadcast(&self) -> PyResult<&shmring::broadcast::Ring> {
        match &self.ring {
            any::Ring::Broadcast(ring) => Ok(ring),
            other => Err(to_py(shmring::Error::Incompatible {
                detail: format!("a {} ring has no broadcast readers", other.kind()),
            })),
        }
    }
}

/// A mapped ring. Attach ends with [`producer`](Ring::producer) and
/// [`consumer`](Ring::consumer); the ring outlives this object until `unlink`ed.
#[pyclass(module = "shmring", frozen)]
pub struct Ring {
    ring: any::Ring,
}

#[pymethods]
impl Ring {
    /// Creates a ring named `name` ("/" then letters, digits, ".", "_", "-").
    #[staticmethod]
    #[pyo3(signature = (name, *, kind="spsc", capacity=None, slots=None, max_message=None,
        max_peers=None, max_readers=None, overflow=None, lag_limit=None, lanes=None,
        wait="spin-then-yield", telemetry=0, group_access=false, exist_ok=false))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        name: &str,
        kind: &str,
        capacity: Option<usize>,
        slots: Option<usize>,
        max_message: Option<usize>,
        max_peers: Option<u32>,
        max_readers: Option<u32>,
        overflow: Option<&str>,
        lag_limit: Option<u64>,
        lanes: Option<u32>,
        wait: &str,
        telemetry: u32,
        group_access: bool,
        exist_ok: bool,
    ) -> PyResult<Ring> {
        let mut config = Config::new()
            .wait_strategy(wait_of(wait)?)
            .telemetry(telemetry)
            .group_access(group_access);
        if let Some(c) = capacity {
            config = config.capacity(c);
        }
        if let Some(s) = slots {
            config = config.slots(s);
        }
        if let Some(m) = max_message {
            config = config.max_message(m);
        }
        if let Some(p) = max_peers {
            config = config.max_peers(p);
        }
        if let Some(r) = max_readers {
            config = config.max_readers(r);
        }
        if let Some(policy) = overflow {
            config = config.overflow(policy_of(policy)?);
        }
        if let Some(bytes) = lag_limit {
            config = config.lag_limit(bytes);
        }
        if let Some(n) = lanes {
            config = config.lanes(n);
        }
        let kind = kind_of(kind)?;
        let ring = if exist_ok {
            any::Ring::create_or_open(kind, name, &config)
        } else {
            any::Ring::create(kind, name, &config)
        };
        Ok(Ring {
            ring: ring.map_err(to_py)?,
        })
    }

    /// Opens the ring `name`, whatever its kind. `any_owner`: accept a ring another user
    /// created (by default only our own).
    #[staticmethod]
    #[pyo3(signature = (name, *, any_owner=false))]
    fn open(name: &str, any_owner: bool) -> PyResult<Ring> {
        Ok(Ring {
            ring: any::Ring::open(name, &options(any_owner)).map_err(to_py)?,
        })
    }

    /// The ring's kind: "spsc" or "mpmc".
    #[getter]
    fn kind(&self) -> &'static str {
        self.ring.kind().as_str()
    }

    /// Largest message payload in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.ring.max_message()
    }

    /// Priority lanes (MPMC rings created with `lanes=`; 1 for every other ring).
    #[getter]
    fn lanes(&self) -> u32 {
        self.ring.lanes()
    }

    /// Whether this object created the ring (useful with `exist_ok=True`).
    #[getter]
    fn was_created(&self) -> bool {
        self.ring.was_created()
    }

    /// Attaches a producing end.
    fn producer(&self) -> PyResult<Producer> {
        Ok(Producer::new(self.ring.producer().map_err(to_py)?))
    }

    /// Attaches a consuming end.
    fn consumer(&self) -> PyResult<Consumer> {
        Ok(Consumer::new(self.ring.consumer().map_err(to_py)?))
    }

    /// Broadcast rings: attaches a reader starting at `join` ("live": the next message
    /// published; "oldest": the oldest still in the ring), durable under `name` if given
    /// (it then resumes where that name's last holder stopped).
    #[pyo3(signature = (name=None, *, join="live"))]
    fn reader(&self, name: Option<&str>, join: &str) -> PyResult<Consumer> {
        let ring = self.broadcast()?;
        let join = match join {
            "live" => JoinAt::Live,
            "oldest" => JoinAt::Oldest,
            other => {
                return Err(to_py(shmring::Error::InvalidArgument {
                    detail: format!("join {other:?}: use \"live\" or \"oldest\""),
                }));
            }
        };
        let reader = match name {
            Some(name) => ring.reader_named(name, join),
            None => ring.reader(join),
        };
        Ok(Consumer::new(any::Consumer::Broadcast(
            reader.map_err(to_py)?,
        )))
    }

    /// Broadcast rings: forgets the durable reader `name`; whether a record had it.
    fn forget_reader(&self, name: &str) -> PyResult<bool> {
        self.broadcast()?.forget_reader(name).map_err(to_py)
    }

    /// Broadcast rings: every reader record (name, status, pid, lag, counts).
    fn readers(&self) -> PyResult<Vec<ReaderInfo>> {
        Ok(self
            .broadcast()?
            .readers()
            .into_iter()
            .map(|r| ReaderInfo {
                index: r.index,
                name: r.name.map(|n| n.to_string()),
                status: r.status.as_str(),
                pid: r.pid,
                lag_bytes: r.lag_bytes,
                lag_messages: r.lag_messages,
                delivered: r.delivered,
                missed: r.missed,
            })
            .collect())
    }

    /// Counters and occupancy.
    fn stats(&self) -> Stats {
        Stats::from(self.ring.stats())
    }

    /// Every peer record that has been held.
    fn peers(&self) -> Vec<Peer> {
        self.ring.peers().into_iter().map(Peer::from).collect()
    }

    /// Removes the ring's name; attached ends keep working.
    fn unlink(&self) -> PyResult<()> {
        self.ring.unlink().map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmring.Ring kind={} max_message={}>",
            self.kind(),
            self.max_message()
        )
    }
}

/// Removes the ring `name` (attached ends keep working).
#[pyfunction]
fn unlink(name: &str) -> PyResult<()> {
    any::unlink(name).map_err(to_py)
}

/// The state of a handle shared with the views it exported.
struct Handle<H> {
    /// `None` once closed.
    end: Mutex<Option<H>>,
    /// Buffer exports of its ring memory still alive (views not yet released).
    exports: Arc<Mutex<u32>>,
}

impl<H> Handle<H> {
    fn new(end: H) -> Handle<H> {
        Handle {
            end: Mutex::new(Some(end)),
            exports: Arc::new(Mutex::new(0)),
        }
    }

    /// The end, for one call; another thread using it at this moment is an error, not a
    /// wait (waiting here while holding the GIL could deadlock with that thread).
    fn lock(&self) -> PyResult<MutexGuard<'_, Option<H>>> {
        match self.end.try_lock() {
            Ok(guard) => Ok(guard),
            // A panic cannot leave the handle half-changed (shmring's calls do not panic).
            Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
                "this shmring handle is in use by another thread (give each thread its own)",
            )),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut H) -> PyResult<T>) -> PyResult<T> {
        let mut guard = self.lock()?;
        match guard.as_mut() {
            Some(end) => f(end),
            None => Err(PyValueError::new_err("this shmring handle is closed")),
        }
    }

    fn close(&self) -> PyResult<()> {
        if *views::locked(&self.exports) > 0 {
            return Err(PyBufferError::new_err(
                "a view of this handle's ring memory is still in use: release it first",
            ));
        }
        drop(self.lock()?.take());
        Ok(())
    }
}

/// What both handle classes have: `max_message`, `stats()`, `close()` and the context
/// manager that closes.
macro_rules! handle_methods {
    ($class:ident, $close_doc:literal) => {
        #[pymethods]
        impl $class {
            /// Largest message payload in bytes.
            #[getter]
            fn max_message(&self) -> PyResult<usize> {
                self.handle.with(|end| Ok(end.max_message()))
            }

            /// Counters and occupancy.
            fn stats(&self) -> PyResult<Stats> {
                self.handle.with(|end| Ok(Stats::from(end.stats())))
            }

            #[doc = $close_doc]
            fn close(&self) -> PyResult<()> {
                self.handle.close()
            }

            fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
                slf
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
                self.close()?;
                Ok(false)
            }
        }
    };
}

/// The writing end of a ring.
#[pyclass(module = "shmring", frozen)]
pub struct Producer {
    handle: Handle<any::Producer>,
    /// The readiness descriptor, once asked for (`fileno()`).
    readiness: std::sync::OnceLock<shmring::Readiness>,
}

impl Producer {
    fn new(end: any::Producer) -> Producer {
        Producer {
            handle: Handle::new(end),
            readiness: std::sync::OnceLock::new(),
        }
    }
}

#[pymethods]
impl Producer {
    /// Sends `data` (any bytes-like object) as one message, waiting while the ring is full
    /// (`timeout` seconds at most; `None`: no limit).
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout_of(timeout)?;
        self.handle.with(|p| {
            blocking(py, p, timeout, |p: &mut any::Producer, slice| {
                p.send(data, slice)
            })
        })
    }

    /// Sends `data` if it fits now; `WouldBlock` if the ring is full.
    fn try_send(&self, data: &[u8]) -> PyResult<()> {
        self.handle.with(|p| p.try_send(data).map_err(to_py))
    }

    /// Sends `data` with priority `priority` (lane `priority` of an MPMC ring created with
    /// `lanes=`; other rings take 0 only), waiting while that lane is full.
    #[pyo3(signature = (data, priority, timeout=None))]
    fn send_priority(
        &self,
        py: Python<'_>,
        data: &[u8],
        priority: u32,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let timeout = timeout_of(timeout)?;
        self.handle.with(|p| {
            blocking(py, p, timeout, |p: &mut any::Producer, slice| {
                p.send_priority(data, priority, slice)
            })
        })
    }

    /// Sends `data` with priority `priority` if its lane has room now (`WouldBlock` if not).
    fn try_send_priority(&self, data: &[u8], priority: u32) -> PyResult<()> {
        self.handle
            .with(|p| p.try_send_priority(data, priority).map_err(to_py))
    }

    /// Sends `data` if it fits now (`True`); otherwise arms `fileno()` and returns `False`:
    /// wait for the descriptor, then call again. Needs a `wait="futex"` ring.
    fn try_send_or_arm(&self, data: &[u8]) -> PyResult<bool> {
        self.handle.with(|p| p.try_send_or_arm(data).map_err(to_py))
    }

    /// The readiness descriptor (owned by this producer: do not close it): readable when
    /// the producer, armed by `try_send_or_arm`, may have room.
    fn fileno(&self) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        if let Some(r) = self.readiness.get() {
            return Ok(r.as_raw_fd());
        }
        let made = self.handle.with(|p| p.readiness().map_err(to_py))?;
        Ok(self.readiness.get_or_init(|| made).as_raw_fd())
    }

    /// Sends as many of `messages` as fit now, published together; how many.
    fn try_send_batch(&self, messages: Vec<Vec<u8>>) -> PyResult<usize> {
        self.handle
            .with(|p| p.try_send_batch(&messages).map_err(to_py))
    }

    /// Reserves room for a message of up to `size` bytes, written in place through the
    /// returned reservation: `with producer.reserve(n) as view: view[:] = ...` commits all
    /// `n` bytes at the end of the block (nothing if it raised); `commit(k)` sends the first
    /// `k` only.
    #[pyo3(signature = (size, timeout=None))]
    fn reserve(
        slf: Bound<'_, Self>,
        py: Python<'_>,
        size: usize,
        timeout: Option<f64>,
    ) -> PyResult<Reservation> {
        let timeout = timeout_of(timeout)?;
        let me = slf.get();
        let ptr = me.handle.with(|p| {
            blocking(py, p, timeout, |p: &mut any::Producer, slice| {
                p.reserve_detached(size, slice).map(SendPtr)
            })
        })?;
        Ok(Reservation::new(
            slf.clone().unbind(),
            ptr.0,
            size,
            me.handle.exports.clone(),
        ))
    }
}

handle_methods!(
    Producer,
    "Gives the role back: consumers see the end of the stream once they have read \
     everything. Refused while a reservation's view is still exported."
);

impl Producer {
    /// Publishes the pending reservation's first `len` bytes.
    pub(crate) fn commit(&self, len: usize) -> PyResult<()> {
        self.handle.with(|p| p.commit_detached(len).map_err(to_py))
    }

    /// Gives the pending reservation back.
    pub(crate) fn cancel(&self) -> PyResult<()> {
        self.handle.with(|p| {
            p.cancel_detached();
            Ok(())
        })
    }
}

/// A pointer into ring memory handed from a GIL-free closure back to Python's side.
struct SendPtr(NonNull<u8>);
// SAFETY: the pointer is only carried across the `detach` boundary of the same call and
// used by the thread that holds the handle's lock.
unsafe impl Send for SendPtr {}

/// The reading end of a ring. Iterating over it receives until the stream ends.
#[pyclass(module = "shmring", frozen)]
pub struct Consumer {
    handle: Handle<any::Consumer>,
    /// The readiness descriptor, once asked for (`fileno()`).
    readiness: std::sync::OnceLock<shmring::Readiness>,
}

impl Consumer {
    fn new(end: any::Consumer) -> Consumer {
        Consumer {
            handle: Handle::new(end),
            readiness: std::sync::OnceLock::new(),
        }
    }

    /// The next message copied into a new `bytes` (one copy, out of the ring).
    fn take(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Py<PyBytes>> {
        self.handle.with(|c| {
            let (ptr, len) = blocking(py, c, timeout, |c: &mut any::Consumer, slice| {
                c.read_detached(slice).map(|(p, n)| (SendPtr(p), n))
            })?;
            // SAFETY: `read_detached` handed out `len` readable bytes at `ptr`, valid until
            // the release below, and we hold the handle's lock meanwhile.
            let bytes = unsafe { std::slice::from_raw_parts(ptr.0.as_ptr(), len) };
            let out = PyBytes::new(py, bytes).unbind();
            c.release_detached().map_err(to_py)?;
            Ok(out)
        })
    }
}

#[pymethods]
impl Consumer {
    /// The next message as `bytes`, waiting for one (`timeout` seconds at most; `None`: no
    /// limit). `Closed` (or `PeerDead`) once the stream ended and everything was read.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        self.take(py, timeout_of(timeout)?)
    }

    /// The readiness descriptor (owned by this consumer: do not close it), for `select`,
    /// `selectors` and `loop.add_reader`: readable when the consumer, armed by `arm()`,
    /// may have something to receive. Needs a ring created with `wait="futex"`.
    fn fileno(&self) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        if let Some(r) = self.readiness.get() {
            return Ok(r.as_raw_fd());
        }
        let made = self.handle.with(|c| c.readiness().map_err(to_py))?;
        Ok(self.readiness.get_or_init(|| made).as_raw_fd())
    }

    /// Prepares to wait on `fileno()`: `True` if the ring is empty and the consumer is now
    /// armed (wait for the descriptor), `False` if there is something to receive now.
    fn arm(&self) -> PyResult<bool> {
        self.handle.with(|c| c.arm().map_err(to_py))
    }

    /// The next message if one is there now; `WouldBlock` if not.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        self.take(py, Some(Duration::ZERO))
    }

    /// The next message and its priority, `(bytes, priority)`: the oldest of the highest
    /// non-empty selected lane, waiting for one (`timeout` seconds at most).
    #[pyo3(signature = (timeout=None))]
    fn recv_priority(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(Py<PyBytes>, u32)> {
        let timeout = timeout_of(timeout)?;
        self.handle.with(|c| {
            let mut buf = vec![0u8; c.max_message()];
            let (len, priority) = blocking(py, c, timeout, |c: &mut any::Consumer, slice| {
                c.recv_priority(&mut buf, slice)
            })?;
            Ok((PyBytes::new(py, &buf[..len]).unbind(), priority))
        })
    }

    /// Receives only priorities `low..=high` from now on (like `msgrcv`'s type).
    fn select_priorities(&self, low: u32, high: u32) -> PyResult<()> {
        self.handle
            .with(|c| c.select_priorities(low..=high).map_err(to_py))
    }

    /// Copies the next message into `buffer` (a writable bytes-like object: `bytearray`,
    /// `memoryview`, numpy array) and returns its length. `BufferTooSmall` keeps the
    /// message for the next receive.
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let timeout = timeout_of(timeout)?;
        let target = pyo3::buffer::PyBuffer::<u8>::get(buffer)?;
        if target.readonly() || !target.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "recv_into needs a writable, contiguous buffer of bytes",
            ));
        }
        let (addr, cap) = (target.buf_ptr() as usize, target.len_bytes());
        self.handle.with(|c| {
            blocking(py, c, timeout, move |c: &mut any::Consumer, slice| {
                // SAFETY: the buffer export `target` keeps these `cap` writable bytes alive
                // and in place until it is dropped after this call; nothing else in this
                // call touches them.
                let out = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, cap) };
                c.recv(out, slice)
            })
        })
    }

    /// Up to `max` messages there now, as a list of `bytes` (empty list: none).
    #[pyo3(signature = (max=64))]
    fn try_recv_batch<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let mut failed = None;
        let got = self.handle.with(|c| {
            Ok(c.try_recv_batch(max, |m| {
                if let Err(e) = list.append(PyBytes::new(py, m)) {
                    failed.get_or_insert(e);
                }
            }))
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        match got {
            Ok(_) => Ok(list),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(list),
            Err(e) => Err(to_py(e)),
        }
    }

    /// The next message in place: `with consumer.read() as view:` gives a read-only
    /// `memoryview` of the ring's bytes, released (and the message freed) when the block
    /// ends.
    #[pyo3(signature = (timeout=None))]
    fn read(slf: Bound<'_, Self>, py: Python<'_>, timeout: Option<f64>) -> PyResult<ReadGrant> {
        let timeout = timeout_of(timeout)?;
        let me = slf.get();
        let (ptr, len) = me.handle.with(|c| {
            blocking(py, c, timeout, |c: &mut any::Consumer, slice| {
                c.read_detached(slice).map(|(p, n)| (SendPtr(p), n))
            })
        })?;
        Ok(ReadGrant::new(
            slf.clone().unbind(),
            ptr.0,
            len,
            me.handle.exports.clone(),
        ))
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next message; the iteration ends when the stream closed cleanly (`PeerDead`
    /// is raised: the producer died).
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        match self.take(py, None) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_instance_of::<errors::Closed>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

handle_methods!(
    Consumer,
    "Gives the role back. Refused while a read's view is still exported."
);

impl Consumer {
    /// Frees the pending read.
    pub(crate) fn release(&self) -> PyResult<()> {
        self.handle.with(|c| c.release_detached().map_err(to_py))
    }
}

/// Counters and occupancy of a ring, as plain values.
#[pyclass(module = "shmring", frozen, get_all)]
pub struct Stats {
    /// "spsc" or "mpmc".
    kind: &'static str,
    /// Largest payload.
    max_message: u64,
    /// Messages published and not yet released.
    messages_in_flight: u64,
    /// Messages and bytes sent since creation.
    messages_sent: u64,
    bytes_sent: u64,
    /// Messages and bytes received since creation.
    messages_received: u64,
    bytes_received: u64,
    /// Attached producers and consumers, and how many of each sleep.
    producers: u32,
    consumers: u32,
    producers_waiting: u32,
    consumers_waiting: u32,
    /// Ends that died attached, since creation.
    producers_died: u64,
    consumers_died: u64,
    /// SPSC: data region bytes; MPMC: `None`.
    capacity: Option<u64>,
    /// MPMC: slots; SPSC: `None`.
    slots: Option<u64>,
    /// Broadcast: "lossless" or "overwrite"; `None` for the other kinds.
    policy: Option<String>,
    /// Broadcast: messages readers lost to overwrites; `None` for the other kinds.
    messages_missed: Option<u64>,
}

impl From<shmring::Stats> for Stats {
    fn from(s: shmring::Stats) -> Stats {
        let (kind, capacity, slots) = match s.kind {
            shmring::KindStats::Spsc { capacity, .. } => ("spsc", Some(capacity), None),
            shmring::KindStats::Mpmc { slots, .. } => ("mpmc", None, Some(slots)),
            shmring::KindStats::Broadcast { capacity, .. } => ("broadcast", Some(capacity), None),
            _ => ("unknown", None, None),
        };
        let (policy, messages_missed) = match s.kind {
            shmring::KindStats::Broadcast {
                policy,
                messages_missed,
                ..
            } => (Some(policy.to_string()), Some(messages_missed)),
            _ => (None, None),
        };
        Stats {
            kind,
            max_message: s.max_message,
            messages_in_flight: s.messages_in_flight,
            messages_sent: s.messages_sent,
            bytes_sent: s.bytes_sent,
            messages_received: s.messages_received,
            bytes_received: s.bytes_received,
            producers: s.producers,
            consumers: s.consumers,
            producers_waiting: s.producers_waiting,
            consumers_waiting: s.consumers_waiting,
            producers_died: s.producers_died,
            consumers_died: s.consumers_died,
            capacity,
            slots,
            policy,
            messages_missed,
        }
    }
}

#[pymethods]
impl Stats {
    fn __repr__(&self) -> String {
        let size = match (self.capacity, self.slots) {
            (Some(c), _) => format!("capacity={c}"),
            (_, Some(s)) => format!("slots={s}"),
            _ => String::new(),
        };
        format!(
            "Stats(kind={:?}, {size}, max_message={}, in_flight={}, sent={} ({} B), \
             received={} ({} B), producers={}, consumers={}, waiting={}/{}, died={}/{})",
            self.kind,
            self.max_message,
            self.messages_in_flight,
            self.messages_sent,
            self.bytes_sent,
            self.messages_received,
            self.bytes_received,
            self.producers,
            self.consumers,
            self.producers_waiting,
            self.consumers_waiting,
            self.producers_died,
            self.consumers_died,
        )
    }
}

/// One peer record: who holds (or held) a role.
#[pyclass(module = "shmring", frozen, get_all)]
pub struct Peer {
    /// The record's index.
    index: u32,
    /// "producer", "consumer" or `None` (never held).
    role: Option<&'static str>,
    /// "attached", "attached-dead", "closed", "dead" or "unknown".
    status: &'static str,
    /// The holder's pid, in its own PID namespace.
    pid: u32,
    /// Times the record was taken.
    generation: u32,
    /// Messages and bytes this record moved.
    messages: u64,
    bytes: u64,
    /// A durable broadcast reader's name.
    name: Option<String>,
}

impl From<shmring::PeerInfo> for Peer {
    fn from(p: shmring::PeerInfo) -> Peer {
        Peer {
            index: p.index,
            role: p.role.map(|r| match r {
                shmring::Role::Producer => "producer",
                _ => "consumer",
            }),
            status: p.status.as_str(),
            pid: p.pid,
            generation: p.generation,
            messages: p.messages,
            bytes: p.bytes,
            name: p.name.map(|n| n.to_string()),
        }
    }
}

#[pymethods]
impl Peer {
    fn __repr__(&self) -> String {
        format!(
            "Peer(index={}, role={}, status={:?}, pid={}, generation={}, messages={}, bytes={})",
            self.index,
            self.role.map_or("None".to_string(), |r| format!("{r:?}")),
            self.status,
            self.pid,
            self.generation,
            self.messages,
            self.bytes
        )
    }
}

/// The `shmring` module.
#[pymodule]
#[pyo3(name = "shmring")]
fn shmring_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Ring>()?;
    m.add_class::<Producer>()?;
    m.add_class::<Consumer>()?;
    m.add_class::<Reservation>()?;
    m.add_class::<ReadGrant>()?;
    m.add_class::<Stats>()?;
    m.add_class::<Peer>()?;
    m.add_class::<ReaderInfo>()?;
    m.add_function(wrap_pyfunction!(unlink, m)?)?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// One broadcast reader record, from `Ring.readers()`.
#[pyclass(module = "shmring", frozen, get_all)]
pub struct ReaderInfo {
    /// The record's index (as in `peers()`).
    index: u32,
    /// A durable reader's name.
    name: Option<String>,
    /// "attached", "attached-dead", "closed", "dead" or "unknown".
    status: &'static str,
    /// The (last) holder's pid.
    pid: u32,
    /// Bytes and messages published that it has not released.
    lag_bytes: u64,
    lag_messages: u64,
    /// Messages released, and lost to overwrites, by this record's holders.
    delivered: u64,
    missed: u64,
}

#[pymethods]
impl ReaderInfo {
    fn __repr__(&self) -> String {
        format!(
            "ReaderInfo(index={}, name={}, status={:?}, pid={}, lag_messages={}, delivered={}, missed={})",
            self.index,
            self.name
                .as_ref()
                .map_or("None".to_string(), |n| format!("{n:?}")),
            self.status,
            self.pid,
            self.lag_messages,
            self.delivered,
            self.missed
        )
    }
}
