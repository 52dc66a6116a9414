//! The one error type of the crate.

use std::fmt;
use std::io;

/// Which end of a ring a handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The writing end.
    Producer,
    /// The reading end.
    Consumer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// Everything that can go wrong, each with what to do about it.
///
/// `WouldBlock`, `Timeout` and `Closed` are the ordinary outcomes of a non-blocking call, a
/// timed call and the end of a stream; the others mean a call could not do what was asked,
/// and nothing was sent, received or lost.
///
/// ```
/// use shmring::Error;
/// let err = shmring::spsc::Ring::open("no slash").unwrap_err();
/// assert!(matches!(err, Error::InvalidName { .. }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No segment has this name (or path).
    NotFound {
        /// The name or path asked for.
        name: String,
    },
    /// A segment with this name already exists, so `create` refused to adopt it.
    AlreadyExists {
        /// The name or path asked for.
        name: String,
    },
    /// The OS refused access, or the segment's owner or mode is not one we trust.
    PermissionDenied {
        /// Why.
        detail: String,
    },
    /// The name is not `/` followed by 1..=250 of `[A-Za-z0-9._-]`.
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A creation parameter or argument is out of range.
    InvalidArgument {
        /// Which one and why.
        detail: String,
    },
    /// The segment was made by an incompatible build or for another purpose: layout version,
    /// fingerprint, ring kind or wait strategy differ.
    Incompatible {
        /// What differs.
        detail: String,
    },
    /// The shared memory holds something this build never writes: a damaged segment or a
    /// misbehaving peer. The ring cannot be trusted further.
    Corrupted {
        /// What was found.
        detail: String,
    },
    /// The segment's creator did not finish initialising it.
    Uninitialized {
        /// The creator's pid, when it got as far as writing it.
        creator_pid: Option<u32>,
        /// Whether that process still runs (it may be slow rather than dead).
        creator_alive: bool,
    },
    /// Another handle already holds this role (SPSC rings have one producer and one consumer).
    AlreadyAttached {
        /// The role asked for.
        role: Role,
        /// The holder's process id.
        pid: u32,
    },
    /// Every peer record of an MPMC ring is held by a live process (`max_peers` reached).
    RegistryFull {
        /// The ring's number of records.
        max_peers: u32,
    },
    /// The message is longer than the ring's maximum message size.
    MessageTooLarge {
        /// Length asked for.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// The caller's buffer cannot hold the next message; the message stays in the ring.
    BufferTooSmall {
        /// Bytes the next message needs.
        needed: usize,
    },
    /// The ring is full (send) or empty (receive) and the call does not block.
    WouldBlock,
    /// The ring stayed full or empty for the whole timeout.
    Timeout,
    /// The other side closed: a consumer has drained everything that was sent, or a
    /// producer's consumer is gone.
    Closed,
    /// End of stream because a peer died: like [`Closed`](Error::Closed), but at least one
    /// holder of the other role in this stream died without closing (a consumer gets it
    /// only after receiving everything the dead producers published, so it is final, like
    /// `Closed`). A process that takes the role again starts a new stream.
    PeerDead {
        /// Which side died and what it means for this call.
        detail: &'static str,
    },
    /// This handle no longer holds its place in the ring: another process found its slot
    /// abandoned and recovered it (the handle was copied into a child by `fork` and used
    /// there after the parent closed it, or the segment was altered). Nothing more is sent
    /// or received through it; drop it and attach a new handle.
    Revoked {
        /// What happened.
        detail: &'static str,
    },
    /// The filesystem (or memory) cannot hold a ring of this size: creation reserves every
    /// byte up front, so a ring never dies of SIGBUS later for want of space.
    NoSpace {
        /// The ring's name or path.
        location: String,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes the filesystem has free, where it says.
        available: Option<u64>,
        /// Where the space was wanted, in words (e.g. `/dev/shm (tmpfs)`).
        filesystem: String,
    },
    /// A broadcast reader fell behind and the producer overwrote messages before it read
    /// them (an `Overwrite` ring, or a reader demoted by the ring's lag limit). Told once
    /// per gap, by the receive that reaches the first message after it (or by `release`
    /// of a message overwritten while it was held); the reader then continues with the
    /// oldest message still in the ring. Across a reader's life, messages delivered plus
    /// every `missed` equal the messages sent after it joined.
    Lagged {
        /// Messages this reader lost in the gap.
        missed: u64,
    },
    /// An operating-system call failed in a way not covered above.
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which [`Error`] it is, as a plain value (like `std::io::ErrorKind`), with a stable number
/// that the C ABI's `shmring_status` uses for the same condition. Numbers are never reused.
///
/// ```
/// use shmring::{ErrorKind, spsc::Ring};
/// let err = Ring::open("/shmring-doc-kind-never-created").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert_eq!(ErrorKind::NotFound.code(), 1);
/// ```
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::NotFound`].
    NotFound = 1,
    /// [`Error::AlreadyExists`].
    AlreadyExists = 2,
    /// [`Error::PermissionDenied`].
    PermissionDenied = 3,
    /// [`Error::InvalidName`].
    InvalidName = 4,
    /// [`Error::InvalidArgument`].
    InvalidArgument = 5,
    /// [`Error::Incompatible`].
    Incompatible = 6,
    /// [`Error::Corrupted`].
    Corrupted = 7,
    /// [`Error::Uninitialized`].
    Uninitialized = 8,
    /// [`Error::AlreadyAttached`].
    AlreadyAttached = 9,
    /// [`Error::MessageTooLarge`].
    MessageTooLarge = 10,
    /// [`Error::BufferTooSmall`].
    BufferTooSmall = 11,
    /// [`Error::WouldBlock`].
    WouldBlock = 12,
    /// [`Error::Timeout`].
    Timeout = 13,
    /// [`Error::Closed`].
    Closed = 14,
    /// [`Error::PeerDead`].
    PeerDead = 15,
    /// [`Error::Io`].
    Io = 16,
    /// [`Error::RegistryFull`].
    RegistryFull = 17,
    /// [`Error::NoSpace`].
    NoSpace = 18,
    /// [`Error::Revoked`].
    Revoked = 19,
    /// [`Error::Lagged`].
    Lagged = 20,
}

impl ErrorKind {
    /// Every kind, in number order.
    pub const ALL: [ErrorKind; 20] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied,
        ErrorKind::InvalidName,
        ErrorKind::InvalidArgument,
        ErrorKind::Incompatible,
        ErrorKind::Corrupted,
        ErrorKind::Uninitialized,
        ErrorKind::AlreadyAttached,
        ErrorKind::MessageTooLarge,
        ErrorKind::BufferTooSmall,
        ErrorKind::WouldBlock,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::PeerDead,
        ErrorKind::Io,
        ErrorKind::RegistryFull,
        ErrorKind::NoSpace,
        ErrorKind::Revoked,
        ErrorKind::Lagged,
    ];

    /// The stable number of this kind (the C ABI's status code for it).
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The kind with number `code`, if there is one.
    pub fn from_code(code: i32) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|kind| kind.code() == code)
    }

    /// Whether this kind ends a stream ([`Closed`](ErrorKind::Closed) or
    /// [`PeerDead`](ErrorKind::PeerDead)): nothing more will arrive until a peer attaches.
    pub const fn is_end_of_stream(self) -> bool {
        matches!(self, ErrorKind::Closed | ErrorKind::PeerDead)
    }
}

impl Error {
    /// Which error this is, as a plain value.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::InvalidName { .. } => ErrorKind::InvalidName,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Incompatible { .. } => ErrorKind::Incompatible,
            Error::Corrupted { .. } => ErrorKind::Corrupted,
            Error::Uninitialized { .. } => ErrorKind::Uninitialized,
            Error::AlreadyAttached { .. } => ErrorKind::AlreadyAttached,
            Error::RegistryFull { .. } => ErrorKind::RegistryFull,
            Error::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
            Error::BufferTooSmall { .. } => ErrorKind::BufferTooSmall,
            Error::WouldBlock => ErrorKind::WouldBlock,
            Error::Timeout => ErrorKind::Timeout,
            Error::Closed => ErrorKind::Closed,
            Error::PeerDead { .. } => ErrorKind::PeerDead,
            Error::Revoked { .. } => ErrorKind::Revoked,
            Error::NoSpace { .. } => ErrorKind::NoSpace,
            Error::Lagged { .. } => ErrorKind::Lagged,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    pub(crate) fn corrupted(detail: impl Into<String>) -> Self {
        Error::Corrupted {
            detail: detail.into(),
        }
    }

    pub(crate) fn incompatible(detail: impl Into<String>) -> Self {
        Error::Incompatible {
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_argument(detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            detail: detail.into(),
        }
    }

    pub(crate) fn permission(detail: impl Into<String>) -> Self {
        Error::PermissionDenied {
            detail: detail.into(),
        }
    }

    /// Maps an OS error for an operation on `name` to the variant a caller can act on.
    pub(crate) fn from_os(op: &'static str, name: &str, err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name: name.into() },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { name: name.into() },
            io::ErrorKind::PermissionDenied => Error::permission(format!("{op} {name}: {err}")),
            _ if err.raw_os_error() == Some(libc::ELOOP) => Error::permission(format!(
                "{op} {name}: is a symbolic link, which is never followed"
            )),
            _ if err.raw_os_error() == Some(libc::EISDIR) => {
                Error::permission(format!("{op} {name}: is a directory, not a segment"))
            }
            _ => Error::Io { op, source: err },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { name } => write!(
                f,
                "no ring named {name}: create it first, or check the name"
            ),
            Error::AlreadyExists { name } => write!(
                f,
                "{name} already exists: open it, use create_or_open, or unlink it first"
            ),
            Error::PermissionDenied { detail } => write!(f, "permission denied: {detail}"),
            Error::InvalidName { name, reason } => write!(
                f,
                "invalid ring name {name:?}: {reason} (expected '/' then 1..=250 of A-Z a-z 0-9 . _ -)"
            ),
            Error::InvalidArgument { detail } => write!(f, "invalid argument: {detail}"),
            Error::Incompatible { detail } => write!(
                f,
                "incompatible ring: {detail}; both ends must use the same shmring layout and settings"
            ),
            Error::Corrupted { detail } => {
                write!(f, "corrupted ring: {detail}; stop using it and recreate it")
            }
            Error::Uninitialized {
                creator_pid: Some(pid),
                creator_alive: false,
            } => write!(
                f,
                "the ring's creator (pid {pid}) died before finishing it: unlink and create it again"
            ),
            Error::Uninitialized {
                creator_pid: Some(pid),
                creator_alive: true,
            } => write!(
                f,
                "the ring's creator (pid {pid}) is still initialising it: retry later"
            ),
            Error::Uninitialized {
                creator_pid: None, ..
            } => write!(
                f,
                "the ring was never initialised (no creator recorded): unlink and create it again"
            ),
            Error::AlreadyAttached { role, pid } => write!(
                f,
                "the ring already has a {role} (pid {pid}); an SPSC ring allows one of each"
            ),
            Error::RegistryFull { max_peers } => write!(
                f,
                "all {max_peers} peer records of the ring are held by live processes: close a handle, or create the ring with a larger max_peers"
            ),
            Error::MessageTooLarge { len, max } => write!(
                f,
                "message of {len} bytes exceeds the ring's maximum of {max}: split it or create the ring with a larger max_message"
            ),
            Error::BufferTooSmall { needed } => write!(
                f,
                "buffer too small: the next message needs {needed} bytes (it stays in the ring)"
            ),
            Error::WouldBlock => f.write_str("the ring is full or empty; try again later"),
            Error::Timeout => f.write_str("timed out waiting for the ring"),
            Error::Closed => f.write_str("the other end closed the ring"),
            Error::PeerDead { detail } => write!(
                f,
                "end of stream, a peer died: {detail}; a new peer may attach and continue"
            ),
            Error::Revoked { detail } => write!(
                f,
                "this handle was revoked: {detail}; drop it and attach a new one"
            ),
            Error::NoSpace {
                location,
                needed,
                available,
                filesystem,
            } => {
                write!(
                    f,
                    "not enough space for {location}: it needs {}",
                    mib(*needed)
                )?;
                match available {
                    Some(free) => write!(f, " and {filesystem} has {} free", mib(*free))?,
                    None => write!(f, " and {filesystem} has less")?,
                }
                f.write_str(
                    "; remove rings nobody uses, choose a smaller ring, or give the \
                     filesystem more room (Docker: --shm-size=1g; Kubernetes: an emptyDir \
                     volume with medium: Memory and a sizeLimit; a host: \
                     mount -o remount,size=... /dev/shm)",
                )
            }
            Error::Lagged { missed } => write!(
                f,
                "this reader fell behind: the producer overwrote {missed} message(s) before it read them; it continues with the oldest message still in the ring"
            ),
            Error::Io { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

/// Bytes in MiB with one decimal, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

impl From<Error> for std::io::Error {
    /// For `?` in functions returning `io::Result`: the kind maps to the nearest
    /// `io::ErrorKind`, the message is kept, and an `Io` error keeps its OS error.
    fn from(err: Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            ErrorKind::Io => {
                if let Error::Io { source, .. } = err {
                    return source;
                }
                K::Other
            }
            ErrorKind::NotFound => K::NotFound,
            ErrorKind::AlreadyExists => K::AlreadyExists,
            ErrorKind::PermissionDenied => K::PermissionDenied,
            ErrorKind::InvalidName | ErrorKind::InvalidArgument => K::InvalidInput,
            ErrorKind::WouldBlock => K::WouldBlock,
            ErrorKind::Timeout => K::TimedOut,
            ErrorKind::Closed | ErrorKind::PeerDead => K::BrokenPipe,
            ErrorKind::Corrupted | ErrorKind::Incompatible | ErrorKind::Uninitialized => {
                K::InvalidData
            }
            ErrorKind::NoSpace => K::StorageFull,
            ErrorKind::MessageTooLarge => K::FileTooLarge,
            _ => K::Other,
        };
        std::io::Error::new(kind, err)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
