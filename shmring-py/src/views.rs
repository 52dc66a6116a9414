//! Zero-copy views: a reservation (writable) or a read (read-only) exports the buffer
//! protocol over ring memory. The `with` block hands out a `memoryview` of it and releases
//! that view when it ends, then commits or releases; a view used after that raises
//! `ValueError` (Python's own check on a released `memoryview`). While any view is still
//! exported (a `memoryview` kept, or a numpy array made from it), commit, release and the
//! handle's `close` raise `BufferError` instead of freeing memory under it.

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::{Consumer, Producer};

/// What a view object shares: where the bytes are and who still looks at them.
struct Span {
    ptr: NonNull<u8>,
    len: usize,
    /// Exports of every view of the handle (the handle refuses to close while > 0).
    handle: Arc<Mutex<u32>>,
    state: Mutex<SpanState>,
}

#[derive(Default)]
struct SpanState {
    /// Exports of this object still alive.
    exports: u32,
    /// Committed, cancelled or released: the bytes are no longer ours.
    done: bool,
    /// The `memoryview` the `with` block handed out, released when it ends.
    view: Option<Py<PyAny>>,
}

// SAFETY: the pointer is into a mapping the owning handle keeps alive (the view object
// holds a reference to that handle); it is only dereferenced by Python through the buffer
// protocol while `done` is false.
unsafe impl Send for Span {}
// SAFETY: as above; every mutable field is behind a mutex.
unsafe impl Sync for Span {}

/// Locks a mutex whose holder cannot have panicked halfway (every critical section here
/// is a few plain assignments); a poisoned one is used as it is.
pub(crate) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Span {
    fn new(ptr: NonNull<u8>, len: usize, handle: Arc<Mutex<u32>>) -> Span {
        Span {
            ptr,
            len,
            handle,
            state: Mutex::new(SpanState::default()),
        }
    }

    fn done(&self) -> bool {
        locked(&self.state).done
    }

    fn set_done(&self) {
        locked(&self.state).done = true;
    }

    /// Fills `view` for Python (the buffer protocol's export).
    ///
    /// # Safety
    /// `view` is the `Py_buffer` Python passed to `__getbuffer__` for `owner`.
    unsafe fn export(
        &self,
        owner: *mut ffi::PyObject,
        view: *mut ffi::Py_buffer,
        flags: c_int,
        readonly: bool,
    ) -> PyResult<()> {
        if self.done() {
            return Err(PyValueError::new_err(
                "this view's ring memory was already committed or released",
            ));
        }
        let len = ffi::Py_ssize_t::try_from(self.len)
            .map_err(|_| PyBufferError::new_err("message too large for a buffer"))?;
        // SAFETY: `view` is Python's; `ptr` is valid for `len` bytes while not `done`, and
        // `owner` (which keeps the handle and so the mapping alive) is referenced by the
        // filled view until `__releasebuffer__`.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                owner,
                self.ptr.as_ptr().cast(),
                len,
                c_int::from(readonly),
                flags,
            )
        };
        if status != 0 {
            return Err(Python::attach(|py| {
                PyErr::take(py).unwrap_or_else(|| PyBufferError::new_err("buffer refused"))
            }));
        }
        locked(&self.state).exports += 1;
        *locked(&self.handle) += 1;
        Ok(())
    }

    fn unexport(&self) {
        let mine = &mut locked(&self.state).exports;
        *mine = mine.saturating_sub(1);
        let all = &mut *locked(&self.handle);
        *all = all.saturating_sub(1);
    }

    /// A `memoryview` of `owner`, remembered so the end of the `with` block releases it.
    fn enter<'py>(&self, owner: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = owner.py();
        let view = py
            .import("builtins")?
            .getattr("memoryview")?
            .call1((owner,))?;
        locked(&self.state).view = Some(view.clone().unbind());
        Ok(view)
    }

    /// Releases the `with` block's view, then checks nothing else still looks at the bytes.
    fn settle(&self, py: Python<'_>) -> PyResult<()> {
        let view = locked(&self.state).view.take();
        if let Some(view) = view {
            // Raises BufferError if a view was made of the view (numpy, slicing kept alive).
            view.call_method0(py, "release")?;
        }
        let exports = locked(&self.state).exports;
        match exports {
            0 => Ok(()),
            n => Err(PyBufferError::new_err(format!(
                "{n} view(s) of this ring memory are still in use: release them first"
            ))),
        }
    }
}

/// What both view classes have: their length and the `with` block's `memoryview`. (The
/// buffer protocol's two methods stay in each class: PyO3 does not take unsafe methods
/// from a `macro_rules!` expansion.)
macro_rules! view_methods {
    ($class:ident, $len_doc:literal, $enter_doc:literal) => {
        #[pymethods]
        impl $class {
            #[doc = $len_doc]
            fn __len__(&self) -> usize {
                self.span.len
            }

            #[doc = $enter_doc]
            fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                slf.get().span.enter(slf.as_any())
            }
        }
    };
}

/// Room reserved in a ring, written in place, sent by [`commit`](Reservation::commit).
#[pyclass(module = "shmring", frozen)]
pub struct Reservation {
    producer: Py<Producer>,
    span: Span,
}

impl Reservation {
    pub(crate) fn new(
        producer: Py<Producer>,
        ptr: NonNull<u8>,
        len: usize,
        exports: Arc<Mutex<u32>>,
    ) -> Reservation {
        Reservation {
            producer,
            span: Span::new(ptr, len, exports),
        }
    }

    fn finish(&self, py: Python<'_>, commit: Option<usize>) -> PyResult<()> {
        if self.span.done() {
            return Err(PyValueError::new_err(
                "this reservation was already committed or cancelled",
            ));
        }
        self.span.settle(py)?;
        let producer = self.producer.get();
        match commit {
            Some(n) => producer.commit(n)?,
            None => producer.cancel()?,
        }
        self.span.set_done();
        Ok(())
    }
}

#[pymethods]
impl Reservation {
    /// Sends the first `size` bytes (all of them by default) as one message.
    #[pyo3(signature = (size=None))]
    fn commit(&self, py: Python<'_>, size: Option<usize>) -> PyResult<()> {
        let size = size.unwrap_or(self.span.len);
        if size > self.span.len {
            return Err(PyValueError::new_err(format!(
                "commit({size}): only {} bytes were reserved",
                self.span.len
            )));
        }
        self.finish(py, Some(size))
    }

    /// Gives the room back; nothing is sent.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py, None)
    }

    /// Commits everything (or cancels if the block raised), unless done already.
    #[pyo3(signature = (*args))]
    fn __exit__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        if self.span.done() {
            return Ok(false);
        }
        let raised = args.get_item(0).is_ok_and(|t| !t.is_none());
        self.finish(py, (!raised).then_some(self.span.len))?;
        Ok(false)
    }

    /// # Safety
    /// Called by Python with its own `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: forwarded from Python's call.
        unsafe { slf.get().span.export(slf.as_ptr(), view, flags, false) }
    }

    /// # Safety
    /// Called by Python for a view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.span.unexport();
    }
}

view_methods!(
    Reservation,
    "Bytes reserved.",
    "A writable `memoryview` of the reserved bytes."
);

/// A message read in place, freed by [`release`](ReadGrant::release).
#[pyclass(module = "shmring", frozen)]
pub struct ReadGrant {
    consumer: Py<Consumer>,
    span: Span,
}

impl ReadGrant {
    pub(crate) fn new(
        consumer: Py<Consumer>,
        ptr: NonNull<u8>,
        len: usize,
        exports: Arc<Mutex<u32>>,
    ) -> ReadGrant {
        ReadGrant {
            consumer,
            span: Span::new(ptr, len, exports),
        }
    }
}

#[pymethods]
impl ReadGrant {
    /// Frees the message for producers. Views made of it must be released first.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.span.done() {
            return Err(PyValueError::new_err("this message was already released"));
        }
        self.span.settle(py)?;
        self.consumer.get().release()?;
        self.span.set_done();
        Ok(())
    }

    /// Releases the message (also when the block raised: it was read).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        if !self.span.done() {
            self.release(py)?;
        }
        Ok(false)
    }

    /// # Safety
    /// Called by Python with its own `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: forwarded from Python's call.
        unsafe { slf.get().span.export(slf.as_ptr(), view, flags, true) }
    }

    /// # Safety
    /// Called by Python for a view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.span.unexport();
    }
}

view_methods!(
    ReadGrant,
    "The message's length in bytes.",
    "A read-only `memoryview` of the message."
);
