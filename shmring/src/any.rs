//! Rings whose kind is known only at run time: opened by name (the kind is read from the
//! segment's header), or created with a [`KindName`] chosen by the caller. For the C ABI,
//! command-line tools and language bindings; Rust code that knows its kind uses
//! [`spsc`](crate::spsc) / [`mpmc`](crate::mpmc).
//!
//! Each call is forwarded to the kind's [`channel`](crate::Ring) handle, so it means
//! exactly what it means there. The list of kinds is written once, in the `kinds!` macro
//! below: adding a kind is one line there.
//!
//! ```
//! use shmring::{Config, any};
//! let name = format!("/doc-any-{}", std::process::id());
//! let made = any::Ring::create(any::KindName::Mpmc, &name, &Config::new().slots(16))?;
//! let found = any::Ring::open(&name, &shmring::OpenOptions::new())?;
//! assert_eq!(found.kind(), any::KindName::Mpmc);
//! let mut tx = found.producer()?;
//! tx.try_send(b"hello")?;
//! assert_eq!(made.stats().messages_sent, 1);
//! made.unlink()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use std::path::Path;
use std::ptr::NonNull;

use crate::raw::{RawConsumer, RawProducer};
use std::time::Duration;

use crate::channel;
use crate::config::{Config, OpenOptions};
use crate::error::{Error, Result};
use crate::layout::RingKind;
use crate::shm::attach;
use crate::shm::segment::{self, Location, Segment};
use crate::stats::{PeerInfo, Stats};
use crate::wait::WaitStrategy;

/// Declares the kinds: the name enum, the three handle enums and the dispatch macro.
macro_rules! kinds {
    ($($variant:ident => $kind:ty, $tag:path, $name:literal, $text:literal;)+) => {
        /// A kind of ring, as a value.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum KindName {
            $(
                #[doc = $text]
                $variant,
            )+
        }

        impl KindName {
            /// Every kind.
            pub const ALL: &'static [KindName] = &[$(KindName::$variant),+];

            fn of_tag(tag: RingKind) -> KindName {
                match tag {
                    $($tag => KindName::$variant,)+
                }
            }

            /// The kind's lower-case name ("spsc", "mpmc").
            ///
            /// ```
            /// assert_eq!(shmring::any::KindName::Mpmc.as_str(), "mpmc");
            /// assert_eq!("SPSC".parse::<shmring::any::KindName>()?, shmring::any::KindName::Spsc);
            /// # Ok::<(), shmring::Error>(())
            /// ```
            pub fn as_str(self) -> &'static str {
                match self {
                    $(KindName::$variant => $name,)+
                }
            }
        }

        /// A ring of any kind.
        pub enum Ring {
            $(
                #[doc = $text]
                $variant(channel::Ring<$kind>),
            )+
        }

        /// A producing end of any kind.
        pub enum Producer {
            $(
                #[doc = $text]
                $variant(channel::Producer<$kind>),
            )+
        }

        /// A consuming end of any kind.
        pub enum Consumer {
            $(
                #[doc = $text]
                $variant(channel::Consumer<$kind>),
            )+
        }

        /// Runs `$body` with `$x` bound to whichever kind's handle `$value` holds.
        macro_rules! dispatch {
            ($value:expr, $x:ident => $body:expr) => {
                match $value {
                    $(Self::$variant($x) => $body,)+
                }
            };
        }

        impl Ring {
            /// Creates a ring of `kind` named `name`.
            pub fn create(kind: KindName, name: &str, config: &Config) -> Result<Ring> {
                match kind {
                    $(KindName::$variant => channel::Ring::<$kind>::create(name, config).map(Ring::$variant),)+
                }
            }

            /// Creates a ring of `kind`, or opens it if it exists (with the same kind and
            /// parameters).
            pub fn create_or_open(kind: KindName, name: &str, config: &Config) -> Result<Ring> {
                match kind {
                    $(KindName::$variant => channel::Ring::<$kind>::create_or_open(name, config).map(Ring::$variant),)+
                }
            }

            /// Creates a ring of `kind` in a file at `path`.
            pub fn create_at(kind: KindName, path: impl AsRef<Path>, config: &Config) -> Result<Ring> {
                match kind {
                    $(KindName::$variant => channel::Ring::<$kind>::create_at(path, config).map(Ring::$variant),)+
                }
            }

            fn from_segment(segment: Segment, options: &OpenOptions) -> Result<Ring> {
                match KindName::of_tag(attach::kind_of(&segment)?) {
                    $(KindName::$variant => channel::Ring::<$kind>::from_segment(segment, options).map(Ring::$variant),)+
                }
            }

            /// The ring's kind.
            pub fn kind(&self) -> KindName {
                match self {
                    $(Ring::$variant(_) => KindName::$variant,)+
                }
            }

            /// Attaches a producing end.
            pub fn producer(&self) -> Result<Producer> {
                match self {
                    $(Ring::$variant(r) => r.producer().map(Producer::$variant),)+
                }
            }

            /// Attaches a consuming end.
            pub fn consumer(&self) -> Result<Consumer> {
                match self {
                    $(Ring::$variant(r) => r.consumer().map(Consumer::$variant),)+
                }
            }
        }
    };
}

kinds! {
    Spsc => crate::spsc::Spsc, RingKind::Spsc, "spsc", "One producer, one consumer (`shmring::spsc`).";
    Mpmc => crate::mpmc::Mpmc, RingKind::Mpmc, "mpmc", "Many producers and consumers (`shmring::mpmc`).";
    Broadcast => crate::broadcast::Broadcast, RingKind::Broadcast, "broadcast", "One producer, many readers each at its own position (`shmring::broadcast`).";
}

impl std::fmt::Display for KindName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KindName {
    type Err = Error;
    /// "spsc" or "mpmc" (any case).
    fn from_str(s: &str) -> Result<KindName> {
        KindName::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::invalid_argument(format!("unknown ring kind {s:?}")))
    }
}

impl Ring {
    /// Opens the ring `name`, whatever its kind.
    pub fn open(name: &str, options: &OpenOptions) -> Result<Ring> {
        Ring::open_in(&segment::named(name)?, options)
    }

    /// Opens the ring stored in a file at `path`, whatever its kind.
    pub fn open_at(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Ring> {
        Ring::open_in(&segment::path_location(path.as_ref()), options)
    }

    fn open_in(location: &Location, options: &OpenOptions) -> Result<Ring> {
        let fd = Segment::open_fd(location)?;
        Ring::from_segment(attach::open_ready(fd, location, options)?, options)
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> Stats {
        dispatch!(self, r => r.stats())
    }

    /// Every peer record that has been held.
    pub fn peers(&self) -> Vec<PeerInfo> {
        dispatch!(self, r => r.peers())
    }

    /// See [`channel::Ring::created_unix_ns`].
    pub fn created_unix_ns(&self) -> u64 {
        dispatch!(self, r => r.created_unix_ns())
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        dispatch!(self, r => r.max_message())
    }

    /// Priority lanes: an MPMC ring's [`lanes`](channel::Ring::lanes); 1 for every other
    /// ring (priority 0 only).
    pub fn lanes(&self) -> u32 {
        match self {
            Ring::Mpmc(ring) => ring.lanes(),
            _ => 1,
        }
    }

    /// Each lane's figures, lowest priority first: an MPMC ring's
    /// [`lane_stats`](channel::Ring::lane_stats); empty for the other kinds (one stream,
    /// in [`stats`](Ring::stats)).
    pub fn lane_stats(&self) -> Vec<crate::LaneStats> {
        match self {
            Ring::Mpmc(ring) => ring.lane_stats(),
            _ => Vec::new(),
        }
    }

    /// The wait strategy every end uses.
    pub fn wait_strategy(&self) -> WaitStrategy {
        dispatch!(self, r => r.wait_strategy())
    }

    /// Whether this handle created the segment.
    pub fn was_created(&self) -> bool {
        dispatch!(self, r => r.was_created())
    }

    /// Removes the ring's name (or path).
    pub fn unlink(&self) -> Result<()> {
        dispatch!(self, r => r.unlink())
    }

    fn remove_if_alone(&self, only_if_dead: bool) -> Result<Removal> {
        dispatch!(self, r => r.remove_if_alone(only_if_dead))
    }
}

pub use crate::channel::Removal;

/// Whether the file at `path` starts like a shmring segment (its magic number, in either
/// byte order), read without opening it as a ring: for tools that scan a directory and
/// skip what is not theirs. An empty or unreadable file is not one.
///
/// ```
/// let name = format!("/doc-probe-{}", std::process::id());
/// let ring = shmring::spsc::Ring::create(&name, &shmring::Config::new().capacity(4096))?;
/// assert!(shmring::any::is_ring_file(format!("/dev/shm{name}")));
/// assert!(!shmring::any::is_ring_file("/etc/hostname"));
/// ring.unlink()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub fn is_ring_file(path: impl AsRef<Path>) -> bool {
    crate::os::first_word(path.as_ref())
        .is_ok_and(|word| word == crate::layout::MAGIC || word.swap_bytes() == crate::layout::MAGIC)
}

/// Removes the ring `name` if no process has it open through shmring — not even one that
/// is opening or attaching at this very moment: the check and the removal happen under a
/// lock every opener takes shared, and an opener that comes after finds the name gone.
/// With `only_if_dead`, also keeps a ring whose holders all closed cleanly (a ring kept
/// on purpose) and removes only what crashed processes left: rings with a holder that died
/// attached, and rings whose creator died before finishing them.
///
/// ```
/// use shmring::{Config, any, spsc};
/// let name = format!("/doc-remove-{}", std::process::id());
/// let ring = spsc::Ring::create(&name, &Config::new().capacity(4096))?;
/// assert_eq!(any::remove_unused(&name, false)?, any::Removal::InUse);
/// drop(ring);
/// assert!(matches!(any::remove_unused(&name, false)?, any::Removal::Removed { .. }));
/// # Ok::<(), shmring::Error>(())
/// ```
pub fn remove_unused(name: &str, only_if_dead: bool) -> Result<Removal> {
    remove_in(&segment::named(name)?, only_if_dead)
}

/// Removes the name `name` whatever its ring kind (handles already attached keep working,
/// new opens fail), like `spsc::unlink` / `mpmc::unlink`.
pub fn unlink(name: &str) -> Result<()> {
    segment::unlink(&segment::named(name)?)
}

/// [`remove_unused`] for a ring stored in a file at `path`.
pub fn remove_unused_at(path: impl AsRef<Path>, only_if_dead: bool) -> Result<Removal> {
    remove_in(&segment::path_location(path.as_ref()), only_if_dead)
}

fn remove_in(location: &Location, only_if_dead: bool) -> Result<Removal> {
    // Inspect, never trust: the ring is only looked at, and may belong to another user.
    let options = OpenOptions::new()
        .any_owner(true)
        .writable_by_others(true)
        .populate(false)
        .init_timeout(Duration::from_millis(100));
    match Ring::open_in(location, &options) {
        Ok(ring) => ring.remove_if_alone(only_if_dead),
        // Its creator died before finishing it: nobody can ever open it.
        Err(Error::Uninitialized {
            creator_alive: false,
            ..
        }) => {
            segment::unlink(location)?;
            Ok(Removal::Removed { dead_holders: 0 })
        }
        Err(Error::Uninitialized { .. }) => Ok(Removal::InUse),
        Err(e) => Err(e),
    }
}

/// Removes the readiness doorbells (socket files under `/dev/shm/shmring-bells-*`) that no
/// process holds any more — left by processes killed while armed, rings of every kind,
/// named or anonymous — and the directories that leaves empty; `dry_run`: only counts
/// them. Live doorbells get an empty datagram (a spurious readiness) and stay. Returns how
/// many dead doorbells there were. `shmring rm --dead` and `rpc::Server::bind` call it.
///
/// ```
/// let dead = shmring::any::remove_dead_doorbells(true);
/// # let _ = dead;
/// ```
pub fn remove_dead_doorbells(dry_run: bool) -> usize {
    crate::os::remove_dead_doorbells(!dry_run)
}

impl Producer {
    /// See [`channel::Producer::try_send`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        dispatch!(self, p => p.try_send(msg))
    }

    /// See [`channel::Producer::send`] (`None`: no limit) and `send_timeout`.
    pub fn send(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        match timeout {
            None => dispatch!(self, p => p.send(msg)),
            Some(t) => dispatch!(self, p => p.send_timeout(msg, t)),
        }
    }

    /// See [`channel::Producer::try_send_priority`].
    pub fn try_send_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        dispatch!(self, p => p.try_send_priority(msg, priority))
    }

    /// See [`channel::Producer::send_priority`] (`None`: no limit) and
    /// `send_priority_timeout`.
    pub fn send_priority(
        &mut self,
        msg: &[u8],
        priority: u32,
        timeout: Option<Duration>,
    ) -> Result<()> {
        match timeout {
            None => dispatch!(self, p => p.send_priority(msg, priority)),
            Some(t) => dispatch!(self, p => p.send_priority_timeout(msg, priority, t)),
        }
    }

    /// See [`channel::Producer::try_send_or_arm`].
    pub fn try_send_or_arm(&mut self, msg: &[u8]) -> Result<bool> {
        dispatch!(self, p => p.try_send_or_arm(msg))
    }

    /// See [`channel::Producer::readiness`].
    pub fn readiness(&mut self) -> Result<channel::Readiness> {
        dispatch!(self, p => p.readiness())
    }

    /// See [`channel::Producer::try_send_batch`].
    pub fn try_send_batch<B: AsRef<[u8]>>(&mut self, msgs: &[B]) -> Result<usize> {
        dispatch!(self, p => p.try_send_batch(msgs))
    }

    /// See [`channel::Producer::position`].
    pub fn position(&self) -> Result<u64> {
        dispatch!(self, p => p.position())
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        dispatch!(self, p => p.max_message())
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> Stats {
        dispatch!(self, p => p.stats())
    }

    /// System calls made to sleep or wake.
    pub fn wake_syscalls(&self) -> u64 {
        dispatch!(self, p => p.wake_syscalls())
    }
}

impl Consumer {
    /// See [`channel::Consumer::try_recv`].
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        dispatch!(self, c => c.try_recv(buf))
    }

    /// See [`channel::Consumer::recv`] (`None`: no limit) and `recv_timeout`.
    pub fn recv(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        match timeout {
            None => dispatch!(self, c => c.recv(buf)),
            Some(t) => dispatch!(self, c => c.recv_timeout(buf, t)),
        }
    }

    /// See [`channel::Consumer::try_recv_priority`].
    pub fn try_recv_priority(&mut self, buf: &mut [u8]) -> Result<(usize, u32)> {
        dispatch!(self, c => c.try_recv_priority(buf))
    }

    /// See [`channel::Consumer::recv_priority`] (`None`: no limit) and
    /// `recv_priority_timeout`.
    pub fn recv_priority(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(usize, u32)> {
        match timeout {
            None => dispatch!(self, c => c.recv_priority(buf)),
            Some(t) => dispatch!(self, c => c.recv_priority_timeout(buf, t)),
        }
    }

    /// See [`channel::Consumer::select_priorities`].
    pub fn select_priorities(&mut self, priorities: std::ops::RangeInclusive<u32>) -> Result<()> {
        dispatch!(self, c => c.select_priorities(priorities))
    }

    /// See [`channel::Consumer::arm`].
    pub fn arm(&mut self) -> Result<bool> {
        dispatch!(self, c => c.arm())
    }

    /// See [`channel::Consumer::readiness`].
    pub fn readiness(&mut self) -> Result<channel::Readiness> {
        dispatch!(self, c => c.readiness())
    }

    /// See [`channel::Consumer::try_recv_batch`].
    pub fn try_recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        dispatch!(self, c => c.try_recv_batch(max, f))
    }

    /// See [`channel::Consumer::defer_releases`].
    pub fn defer_releases(&mut self) -> Result<()> {
        dispatch!(self, c => c.defer_releases())
    }

    /// See [`channel::Consumer::read_mark`].
    pub fn read_mark(&self) -> Result<crate::ReadMark> {
        dispatch!(self, c => c.read_mark())
    }

    /// See [`channel::Consumer::release_to`].
    pub fn release_to(&mut self, mark: crate::ReadMark) -> Result<()> {
        dispatch!(self, c => c.release_to(mark))
    }

    /// See [`channel::Consumer::rewind`].
    pub fn rewind(&mut self) -> Result<()> {
        dispatch!(self, c => c.rewind())
    }

    /// Largest message payload in bytes.
    pub fn max_message(&self) -> usize {
        dispatch!(self, c => c.max_message())
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> Stats {
        dispatch!(self, c => c.stats())
    }

    /// System calls made to sleep or wake.
    pub fn wake_syscalls(&self) -> u64 {
        dispatch!(self, c => c.wake_syscalls())
    }
}

impl crate::raw::RawProducer for Producer {
    /// Reserves `len` bytes without a borrow (`Some(ZERO)`: do not wait; `None`: no limit);
    /// see [`crate::raw`].
    fn reserve_detached(&mut self, len: usize, timeout: Option<Duration>) -> Result<NonNull<u8>> {
        dispatch!(self, p => RawProducer::reserve_detached(p, len, timeout))
    }

    /// Publishes `len` bytes of the pending detached reservation.
    fn commit_detached(&mut self, len: usize) -> Result<()> {
        dispatch!(self, p => RawProducer::commit_detached(p, len))
    }

    /// Gives the pending detached reservation back.
    fn cancel_detached(&mut self) {
        dispatch!(self, p => RawProducer::cancel_detached(p))
    }
}

impl crate::raw::RawConsumer for Consumer {
    /// The next message in place without a borrow (`Some(ZERO)`: do not wait; `None`: no
    /// limit); see [`crate::raw`].
    fn read_detached(&mut self, timeout: Option<Duration>) -> Result<(NonNull<u8>, usize)> {
        dispatch!(self, c => RawConsumer::read_detached(c, timeout))
    }

    /// Frees the pending detached message.
    fn release_detached(&mut self) -> Result<()> {
        dispatch!(self, c => RawConsumer::release_detached(c))
    }
}
