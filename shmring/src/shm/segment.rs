//! Named shared-memory segments and file-backed segments: create, open, map, unlink.
//!
//! Knows nothing of rings: it hands out a mapped, size-checked, permission-checked region.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::layout::locks;
use crate::os;

/// Longest name after the leading `/` (NAME_MAX is 255 on Linux; leave room for prefixes).
const MAX_NAME_LEN: usize = 250;

/// Where a segment lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// A POSIX shared-memory name such as `/orders` (`/dev/shm/orders` on Linux).
    Shm(String),
    /// A file (for persistence, hugetlbfs, or another filesystem).
    Path(PathBuf),
    /// An anonymous memfd, shared by passing its descriptor; sealed against resizing.
    Anonymous,
}

impl Location {
    pub(crate) fn display(&self) -> String {
        match self {
            Location::Shm(name) => name.clone(),
            Location::Path(path) => path.display().to_string(),
            Location::Anonymous => "(anonymous ring)".into(),
        }
    }
}

/// Checks a shared-memory name: `/` then 1..=250 of `[A-Za-z0-9._-]`, not only dots.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.into(),
            reason,
        })
    };
    let Some(rest) = name.strip_prefix('/') else {
        return invalid("must start with '/'");
    };
    if rest.is_empty() {
        return invalid("is empty after '/'");
    }
    if rest.len() > MAX_NAME_LEN {
        return invalid("is longer than 250 characters after '/'");
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("contains a character other than A-Z a-z 0-9 . _ -");
    }
    if rest.bytes().all(|b| b == b'.') {
        return invalid("consists only of dots");
    }
    Ok(())
}

/// Who may open a segment, beyond its owner.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TrustPolicy {
    /// Accept a segment owned by another user.
    pub any_owner: bool,
    /// Accept a segment that users other than the owner may write.
    pub writable_by_others: bool,
}

/// An open, mapped segment. The mapping lives as long as this value.
pub(crate) struct Segment {
    map: MmapRaw,
    location: Location,
    /// The segment's file: shared (anonymous rings), reopened for each handle's slot lock,
    /// and used to see other holders' locks (it never holds a peer lock itself).
    fd: OwnedFd,
    /// Where this segment's doorbells are and how to ring them (made on first use).
    bells: std::sync::OnceLock<Bells>,
}

/// The doorbells of a segment's waiters (readiness descriptors): their directory, the
/// mode their files get (the segment's), and a socket to ring them with.
#[derive(Debug)]
pub(crate) struct Bells {
    pub dir: std::path::PathBuf,
    pub mode: u32,
    /// `None` if no socket could be made (then nobody can be rung from this process, and
    /// waiters fall back on their periodic look: `docs/waiting.md`).
    pub sender: Option<std::os::unix::net::UnixDatagram>,
}

impl Segment {
    /// Creates the name exclusively with `mode`, sizes it to `len` bytes (zero-filled),
    /// reserves their space on the filesystem (so touching them can never raise SIGBUS for
    /// want of space), and maps it. A named segment is created holding the creator lock
    /// ([`Segment::release_creator`] gives it back). On failure after the name was created,
    /// the name is removed again.
    pub(crate) fn create(
        location: &Location,
        len: u64,
        mode: u32,
        populate: bool,
        lock: bool,
    ) -> Result<Segment> {
        let shown = location.display();
        let fd = match location {
            Location::Shm(name) => os::shm_create(name, mode),
            Location::Path(path) => os::file_create(path, mode),
            Location::Anonymous => {
                // Sized, reserved and sealed at birth: no holder of the descriptor can
                // resize it.
                let fd = os::memfd_create("shmring")
                    .map_err(|e| Error::from_os("memfd_create", &shown, e))?;
                os::set_len(&fd, len).map_err(|e| Error::from_os("ftruncate", &shown, e))?;
                reserve(&fd, location, len)?;
                os::seal_size(&fd).map_err(|e| Error::from_os("F_ADD_SEALS", &shown, e))?;
                return Segment::map(fd, location, len, populate, lock);
            }
        }
        .map_err(|e| Error::from_os("create", &shown, e))?;
        let made = (|| {
            // Openers that find the header unfinished ask this lock whether we still run.
            os::lock_byte(&fd, locks::CREATOR)
                .map_err(|e| Error::from_os("fcntl(F_OFD_SETLK)", &shown, e))?;
            // We have it open (a remover must find us).
            os::share_byte(&fd, locks::HOLD)
                .map_err(|e| Error::from_os("fcntl(F_OFD_SETLK)", &shown, e))?;
            // Size before mapping: a mapping of a zero-length object "succeeds" and then faults.
            os::set_len(&fd, len).map_err(|e| Error::from_os("ftruncate", &shown, e))?;
            reserve(&fd, location, len)?;
            Ok(())
        })();
        let mapped = made.and_then(|()| Segment::map(fd, location, len, populate, lock));
        if mapped.is_err() {
            // We made the name; do not leave a half-built segment behind.
            let _ = unlink(location);
        }
        mapped
    }

    /// Takes the hold lock (shared) through `fd`, for an opener: waits, until `deadline`,
    /// while a remover holds it exclusively, then checks the file still has its name
    /// (`NotFound` if it was removed meanwhile). Anonymous segments have no name to remove.
    pub(crate) fn hold(fd: &OwnedFd, location: &Location, deadline: Instant) -> Result<()> {
        if *location == Location::Anonymous {
            return Ok(());
        }
        let shown = location.display();
        while !os::share_byte(fd, locks::HOLD)
            .map_err(|e| Error::from_os("fcntl(F_OFD_SETLK)", &shown, e))?
        {
            // A remover is deciding whether to remove it (microseconds, unless it hangs).
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let info = os::fstat(fd).map_err(|e| Error::from_os("fstat", &shown, e))?;
        if info.links == 0 {
            return Err(Error::NotFound {
                name: format!("{shown} (removed while it was being opened)"),
            });
        }
        Ok(())
    }

    /// Whether no other process has this segment open through shmring: tries to make our
    /// hold lock exclusive (and keeps it so if it could, until the segment is dropped, so
    /// nobody opens it meanwhile).
    pub(crate) fn hold_alone(&self) -> Result<bool> {
        if self.location == Location::Anonymous {
            return Ok(false);
        }
        os::lock_byte(&self.fd, locks::HOLD)
            .map_err(|e| Error::from_os("fcntl(F_OFD_SETLK)", &self.location.display(), e))
    }

    /// Gives back the creator lock (the header is READY).
    pub(crate) fn release_creator(&self) {
        let _ = os::unlock_byte(&self.fd, locks::CREATOR);
    }

    /// Whether a creator still holds the creator lock of the file behind `fd`.
    pub(crate) fn creator_busy(fd: &OwnedFd) -> bool {
        // An error counts as busy: never declare a live creator dead.
        os::byte_locked(fd, locks::CREATOR).unwrap_or(true)
    }

    /// Opens an existing segment's file descriptor (no mapping yet).
    pub(crate) fn open_fd(location: &Location) -> Result<OwnedFd> {
        match location {
            Location::Shm(name) => os::shm_open(name),
            Location::Path(path) => os::file_open(path),
            Location::Anonymous => {
                return Err(Error::invalid_argument(
                    "an anonymous ring is opened from its descriptor",
                ));
            }
        }
        .map_err(|e| Error::from_os("open", &location.display(), e))
    }

    /// Checks type, owner and mode of an open segment and returns what `fstat` says. An anonymous
    /// segment has no name to squat: whoever holds its descriptor was given it, so owner
    /// and mode do not matter; it must instead be sealed against resizing.
    pub(crate) fn check_file(
        fd: &OwnedFd,
        location: &Location,
        trust: TrustPolicy,
    ) -> Result<os::FileInfo> {
        let shown = location.display();
        let info = os::fstat(fd).map_err(|e| Error::from_os("fstat", &shown, e))?;
        if !info.is_regular {
            return Err(Error::permission(format!("{shown} is not a regular file")));
        }
        if *location == Location::Anonymous {
            let sealed =
                os::size_sealed(fd).map_err(|e| Error::from_os("F_GET_SEALS", &shown, e))?;
            if !sealed {
                return Err(Error::permission(
                    "the descriptor's file is not sealed against shrinking and growing \
                     (F_SEAL_SHRINK | F_SEAL_GROW): a holder could truncate it under the \
                     mapping"
                        .to_string(),
                ));
            }
            return Ok(info);
        }
        let me = os::euid();
        if !trust.any_owner && info.uid != me {
            return Err(Error::permission(format!(
                "{shown} is owned by uid {} and this process runs as uid {me}; \
                 open it with OpenOptions::any_owner if that user is trusted",
                info.uid
            )));
        }
        if !trust.writable_by_others && info.mode & 0o022 != 0 {
            return Err(Error::permission(format!(
                "{shown} has mode {:03o}, writable by users other than its owner; \
                 open it with OpenOptions::writable_by_others if they are trusted",
                info.mode
            )));
        }
        Ok(info)
    }

    /// Maps `len` bytes of `fd` shared and read-write; the segment keeps `fd`.
    pub(crate) fn map(
        fd: OwnedFd,
        location: &Location,
        len: u64,
        populate: bool,
        lock: bool,
    ) -> Result<Segment> {
        let shown = location.display();
        let len_usize = usize::try_from(len).map_err(|_| {
            Error::invalid_argument(format!("segment of {len} bytes cannot be mapped"))
        })?;
        let mut options = MmapOptions::new();
        options.len(len_usize);
        if populate {
            options.populate();
        }
        let map = options
            .map_raw(&fd)
            .map_err(|e| Error::from_os("mmap", &shown, e))?;
        if lock {
            // SAFETY: `map` is a live mapping of exactly `map.len()` bytes owned by this value.
            unsafe { os::mlock(map.as_mut_ptr(), map.len()) }
                .map_err(|e| Error::from_os("mlock", &shown, e))?;
        }
        Ok(Segment {
            map,
            location: location.clone(),
            fd,
            bells: std::sync::OnceLock::new(),
        })
    }

    /// This segment's doorbells (named by the file's identity, so the same for every
    /// process that maps it, and after its name was removed).
    pub(crate) fn bells(&self) -> &Bells {
        self.bells.get_or_init(|| {
            let (dir, mode) = match os::fstat(&self.fd) {
                Ok(info) => (os::doorbell_dir(info.dev, info.ino), info.mode & 0o660),
                // Cannot happen for an open descriptor; a directory nobody else uses.
                Err(_) => (os::doorbell_dir(0, u64::from(std::process::id())), 0o600),
            };
            Bells {
                dir,
                mode,
                sender: os::doorbell_sender().ok(),
            }
        })
    }

    /// The segment's descriptor.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// A new descriptor of an anonymous segment (close-on-exec), to pass to another
    /// process (`SCM_RIGHTS`, or inheritance after clearing close-on-exec).
    pub(crate) fn share_fd(&self) -> Result<OwnedFd> {
        if self.location != Location::Anonymous {
            return Err(Error::invalid_argument(
                "only anonymous rings are shared by descriptor; open it by name",
            ));
        }
        self.fd
            .try_clone()
            .map_err(|e| Error::from_os("dup", &self.location.display(), e))
    }

    /// First byte of the mapping (page-aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Mapped length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Where the segment lives.
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }
}

/// Reserves `len` bytes for `fd`'s file, or says in words why there is no room.
fn reserve(fd: &OwnedFd, location: &Location, len: u64) -> Result<()> {
    let shown = location.display();
    match os::reserve(fd, len) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::ENOMEM)) => {
            let space = os::space(fd).ok();
            Err(Error::NoSpace {
                location: shown,
                needed: len,
                available: space.as_ref().map(|s| s.available),
                filesystem: match location {
                    Location::Shm(_) => format!("/dev/shm ({})", space.map_or("tmpfs", |s| s.kind)),
                    Location::Path(_) => {
                        format!("the {} holding it", space.map_or("filesystem", |s| s.kind))
                    }
                    Location::Anonymous => "memory (an anonymous ring)".into(),
                },
            })
        }
        Err(e) => Err(Error::from_os("fallocate", &shown, e)),
    }
}

/// Removes a segment's name or path. Existing mappings stay valid until dropped.
pub(crate) fn unlink(location: &Location) -> Result<()> {
    let shown = location.display();
    match location {
        Location::Shm(name) => {
            validate_name(name)?;
            os::shm_unlink(name)
        }
        Location::Path(path) => os::file_unlink(path),
        // Nothing to remove: it disappears with its last descriptor and mapping.
        Location::Anonymous => Ok(()),
    }
    .map_err(|e| Error::from_os("unlink", &shown, e))
}

/// A path, for messages.
/// The location of a named segment, after checking the name.
pub(crate) fn named(name: &str) -> Result<Location> {
    validate_name(name)?;
    Ok(Location::Shm(name.into()))
}

pub(crate) fn path_location(path: &Path) -> Location {
    Location::Path(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in [
            "/a",
            "/orders.v1",
            "/A-b_c.9",
            &format!("/{}", "x".repeat(250)),
        ] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/",
            "a",
            "//a",
            "/a/b",
            "/a b",
            "/é",
            "/.",
            "/..",
            "/a\0",
            &format!("/{}", "x".repeat(251)),
        ] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
