//! shmring's errors as a small exception hierarchy: `shmring.Error` and one subclass per
//! `ErrorKind`, carrying the same message text as Rust and C, and the kind's stable number
//! as `.code` (= the C status).

use pyo3::create_exception;
use pyo3::prelude::*;
use shmring::ErrorKind;

create_exception!(
    shmring,
    Error,
    pyo3::exceptions::PyException,
    "Every shmring error."
);

macro_rules! kinds {
    ($($kind:ident: $doc:literal,)+) => {
        $(create_exception!(shmring, $kind, Error, $doc);)+

        /// The exception class of `kind`.
        fn class_of(py: Python<'_>, kind: ErrorKind) -> Bound<'_, pyo3::types::PyType> {
            match kind {
                $(ErrorKind::$kind => py.get_type::<$kind>(),)+
                _ => py.get_type::<Error>(),
            }
        }

        /// Adds the hierarchy to the module.
        pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            m.add("Error", m.py().get_type::<Error>())?;
            $(m.add(stringify!($kind), m.py().get_type::<$kind>())?;)+
            Ok(())
        }
    };
}

kinds! {
    NotFound: "No ring by that name.",
    AlreadyExists: "The name is taken.",
    PermissionDenied: "The ring's owner or mode keeps this process out.",
    InvalidName: "Not a ring name: '/' then letters, digits, '.', '_', '-'.",
    InvalidArgument: "A parameter out of range, or a call out of order.",
    Incompatible: "Another layout version, kind or wait strategy.",
    Corrupted: "The segment holds something shmring never writes.",
    Uninitialized: "Its creator has not finished it (or died before it did).",
    AlreadyAttached: "The role is held by a live process.",
    MessageTooLarge: "Larger than the ring's largest message.",
    BufferTooSmall: "The buffer cannot hold the message (it stays in the ring).",
    WouldBlock: "Nothing to do now: the ring is full or empty.",
    Timeout: "The wait ended before the ring was ready.",
    Closed: "The other side closed and everything was read.",
    PeerDead: "The other side died; everything it published was read.",
    Io: "An operating-system error.",
    RegistryFull: "Every peer record is held.",
    NoSpace: "The filesystem cannot hold the ring.",
    Revoked: "The ring was taken over.",
    Lagged: "A broadcast reader was overwritten: `.missed` messages lost.",
}

/// A shmring error as a Python exception of its kind's class.
pub(crate) fn to_py(e: shmring::Error) -> PyErr {
    let kind = e.kind();
    Python::attach(|py| {
        let err = PyErr::from_type(class_of(py, kind), e.to_string());
        let e = &e;
        // The stable number, for programs that switch on it (= the C status).
        let _ = err.value(py).setattr("code", kind as i32);
        if let shmring::Error::Lagged { missed } = e {
            let _ = err.value(py).setattr("missed", missed);
        }
        err
    })
}
