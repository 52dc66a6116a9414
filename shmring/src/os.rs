//! Every operating-system call shmring makes, behind a small surface, so another POSIX
//! system can follow by reimplementing this one module. Linux today (`/dev/shm`, `/proc`).

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use rustix::fs::{FileType, Mode, OFlags};

/// What `fstat` says about an open segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileInfo {
    pub is_regular: bool,
    pub uid: u32,
    /// Permission bits only (`0o777`).
    pub mode: u32,
    pub size: u64,
}

/// A process, told apart from a later process that reuses its pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

fn io_err(err: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(err.raw_os_error())
}

/// Creates a new POSIX shared-memory object, failing if the name exists. Never follows a
/// symbolic link; `mode` is applied with `fchmod` so the umask cannot change it.
pub(crate) fn shm_create(name: &str, mode: u32) -> io::Result<OwnedFd> {
    let flags = rustix::shm::OFlags::CREATE
        | rustix::shm::OFlags::EXCL
        | rustix::shm::OFlags::RDWR
        | rustix::shm::OFlags::from_bits_retain(OFlags::NOFOLLOW.bits());
    let fd = rustix::shm::open(name, flags, Mode::from_raw_mode(mode)).map_err(io_err)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io_err)?;
    Ok(fd)
}

/// Opens an existing shared-memory object for reading and writing, never through a link.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    let flags =
        rustix::shm::OFlags::RDWR | rustix::shm::OFlags::from_bits_retain(OFlags::NOFOLLOW.bits());
    rustix::shm::open(name, flags, Mode::empty()).map_err(io_err)
}

/// Removes a shared-memory name; mappings that exist stay valid.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    rustix::shm::unlink(name).map_err(io_err)
}

/// Creates a new file-backed segment at `path` (exclusive, no links followed).
pub(crate) fn file_create(path: &Path, mode: u32) -> io::Result<OwnedFd> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(mode)).map_err(io_err)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io_err)?;
    Ok(fd)
}

/// Opens an existing file-backed segment (no links followed).
pub(crate) fn file_open(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(path, flags, Mode::empty()).map_err(io_err)
}

/// Creates an anonymous shared-memory file (memfd) of `len` bytes, sealed so that nobody,
/// whoever holds a descriptor, can shrink or grow it (or change the seals): a mapping of it
/// can never fault with SIGBUS.
pub(crate) fn memfd_create_sealed(label: &str, len: u64) -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(label, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(io_err)?;
    rustix::fs::ftruncate(&fd, len).map_err(io_err)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(io_err)?;
    Ok(fd)
}

/// Whether `fd`'s size is sealed: it can neither shrink nor grow.
pub(crate) fn size_sealed(fd: impl AsFd) -> io::Result<bool> {
    use rustix::fs::SealFlags;
    match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => Ok(seals.contains(SealFlags::SHRINK | SealFlags::GROW)),
        // A file that does not support sealing (not a memfd) is not sealed.
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(io_err(e)),
    }
}

/// Removes a file-backed segment's path.
pub(crate) fn file_unlink(path: &Path) -> io::Result<()> {
    fs::remove_file(path)
}

/// Type, owner, permission bits and size of an open file.
pub(crate) fn fstat(fd: impl AsFd) -> io::Result<FileInfo> {
    let st = rustix::fs::fstat(fd).map_err(io_err)?;
    Ok(FileInfo {
        is_regular: FileType::from_raw_mode(st.st_mode) == FileType::RegularFile,
        uid: st.st_uid,
        mode: st.st_mode & 0o777,
        size: u64::try_from(st.st_size).unwrap_or(0),
    })
}

/// Sets the size of a freshly created segment; new bytes read as zero.
pub(crate) fn set_len(fd: impl AsFd, len: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, len).map_err(io_err)
}

/// Effective user id of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Locks `len` bytes at `ptr` into RAM.
///
/// # Safety
/// `ptr..ptr+len` must be a live mapping of this process.
pub(crate) unsafe fn mlock(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is mapped; mlock does not touch the bytes.
    unsafe { rustix::mm::mlock(ptr.cast(), len) }.map_err(io_err)
}

/// `FUTEX_WAIT` (shared, never `FUTEX_PRIVATE_FLAG`: the waker is another process) while
/// `word == expected`, at most `timeout` (relative, CLOCK_MONOTONIC). `EAGAIN` (value
/// changed), `EINTR` and `ETIMEDOUT` all return: the caller re-checks its condition.
#[allow(clippy::disallowed_types)] // the kernel interface takes the std atomic
pub(crate) fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) {
    use rustix::thread::futex;
    let timeout = timeout.map(|t| futex::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let _ = futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref());
}

/// `FUTEX_WAKE` of every process sleeping on `word` (shared futex).
#[allow(clippy::disallowed_types)] // the kernel interface takes the std atomic
pub(crate) fn futex_wake_all(word: &std::sync::atomic::AtomicU32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// How a robust mutex was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Normally.
    Clean,
    /// The previous holder died holding it (`EOWNERDEAD`); the caller must decide whether the
    /// protected state is sound, then call [`mutex_consistent`].
    OwnerDied,
}

fn pthread_result(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Initialises a process-shared robust mutex and process-shared CLOCK_MONOTONIC condvars in
/// place.
///
/// # Safety
/// The pointers are valid, suitably aligned, not yet initialised objects nobody else uses.
pub(crate) unsafe fn pthread_init(
    mutex: *mut libc::pthread_mutex_t,
    conds: &[*mut libc::pthread_cond_t],
) -> io::Result<()> {
    // SAFETY: the attribute objects are initialised by *_init before any other use and
    // destroyed after; the targets are valid per the caller's contract.
    unsafe {
        let mut mattr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        pthread_result(libc::pthread_mutexattr_init(mattr.as_mut_ptr()))?;
        let mattr = mattr.as_mut_ptr();
        let made = pthread_result(libc::pthread_mutexattr_setpshared(
            mattr,
            libc::PTHREAD_PROCESS_SHARED,
        ))
        .and_then(|()| {
            pthread_result(libc::pthread_mutexattr_setrobust(
                mattr,
                libc::PTHREAD_MUTEX_ROBUST,
            ))
        })
        .and_then(|()| pthread_result(libc::pthread_mutex_init(mutex, mattr)));
        libc::pthread_mutexattr_destroy(mattr);
        made?;

        let mut cattr = std::mem::MaybeUninit::<libc::pthread_condattr_t>::uninit();
        pthread_result(libc::pthread_condattr_init(cattr.as_mut_ptr()))?;
        let cattr = cattr.as_mut_ptr();
        let mut made = pthread_result(libc::pthread_condattr_setpshared(
            cattr,
            libc::PTHREAD_PROCESS_SHARED,
        ))
        .and_then(|()| {
            pthread_result(libc::pthread_condattr_setclock(
                cattr,
                libc::CLOCK_MONOTONIC,
            ))
        });
        for &cond in conds {
            made = made.and_then(|()| pthread_result(libc::pthread_cond_init(cond, cattr)));
        }
        libc::pthread_condattr_destroy(cattr);
        made
    }
}

/// Locks a robust mutex.
///
/// # Safety
/// `mutex` points at a mutex initialised by [`pthread_init`] (possibly by another process).
pub(crate) unsafe fn mutex_lock(mutex: *mut libc::pthread_mutex_t) -> io::Result<Locked> {
    // SAFETY: per the caller's contract.
    match unsafe { libc::pthread_mutex_lock(mutex) } {
        0 => Ok(Locked::Clean),
        libc::EOWNERDEAD => Ok(Locked::OwnerDied),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// Marks a robust mutex whose owner died as consistent again (we hold it).
///
/// # Safety
/// As [`mutex_lock`], and this thread holds the mutex after an `OwnerDied` lock.
pub(crate) unsafe fn mutex_consistent(mutex: *mut libc::pthread_mutex_t) -> io::Result<()> {
    // SAFETY: per the caller's contract.
    pthread_result(unsafe { libc::pthread_mutex_consistent(mutex) })
}

/// Unlocks a mutex this thread holds.
///
/// # Safety
/// As [`mutex_lock`], and this thread holds the mutex.
pub(crate) unsafe fn mutex_unlock(mutex: *mut libc::pthread_mutex_t) {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_unlock(mutex) };
}

/// Waits on a condvar until signalled, spuriously woken, or `deadline` (CLOCK_MONOTONIC)
/// passes. Returns with the mutex held; `OwnerDied` if it was re-acquired from a dead holder.
///
/// # Safety
/// As [`mutex_lock`] for `mutex`, which this thread holds; `cond` initialised by
/// [`pthread_init`].
pub(crate) unsafe fn cond_wait(
    cond: *mut libc::pthread_cond_t,
    mutex: *mut libc::pthread_mutex_t,
    deadline: Option<std::time::Instant>,
) -> io::Result<Locked> {
    let rc = match deadline {
        // SAFETY: per the caller's contract.
        None => unsafe { libc::pthread_cond_wait(cond, mutex) },
        Some(deadline) => {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let mut sec = now
                .tv_sec
                .saturating_add(left.as_secs().min(i64::MAX as u64) as i64);
            let mut nsec = now.tv_nsec + i64::from(left.subsec_nanos());
            if nsec >= 1_000_000_000 {
                sec = sec.saturating_add(1);
                nsec -= 1_000_000_000;
            }
            let abs = libc::timespec {
                tv_sec: sec as libc::time_t,
                tv_nsec: nsec as libc::c_long,
            };
            // SAFETY: per the caller's contract; `abs` is a valid timespec.
            unsafe { libc::pthread_cond_timedwait(cond, mutex, &abs) }
        }
    };
    match rc {
        0 | libc::ETIMEDOUT => Ok(Locked::Clean),
        libc::EOWNERDEAD => Ok(Locked::OwnerDied),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// Wakes every waiter of a condvar.
///
/// # Safety
/// `cond` initialised by [`pthread_init`].
pub(crate) unsafe fn cond_broadcast(cond: *mut libc::pthread_cond_t) {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_cond_broadcast(cond) };
}

impl ProcessId {
    /// The identity word of a `PeerRecord::owner`: pid and start time (mod 2^32) together.
    pub(crate) fn owner_word(self) -> u64 {
        (u64::from(self.pid) << 32) | (self.start_time & 0xFFFF_FFFF)
    }
}

/// Whether the process an owner word names still runs (0, "attaching", counts as alive).
pub(crate) fn owner_alive(owner: u64) -> bool {
    if owner == 0 {
        return true;
    }
    let pid = (owner >> 32) as u32;
    match read_start_time(pid) {
        Some((start, state)) => {
            (start & 0xFFFF_FFFF) == (owner & 0xFFFF_FFFF) && state != 'Z' && state != 'X'
        }
        None => false,
    }
}

/// This process, with its start time (read once).
pub(crate) fn current_process() -> ProcessId {
    static START: OnceLock<u64> = OnceLock::new();
    let pid = std::process::id();
    let start_time = *START.get_or_init(|| read_start_time(pid).map_or(0, |(start, _)| start));
    ProcessId { pid, start_time }
}

/// Whether the process that was `id` still runs (a zombie or a reused pid counts as dead).
pub(crate) fn process_alive(id: ProcessId) -> bool {
    match read_start_time(id.pid) {
        Some((start, state)) => start == id.start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

/// `(start time, state letter)` of a process from `/proc/<pid>/stat`.
fn read_start_time(pid: u32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); starttime is field 22, i.e. 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_stale_identity_is_not() {
        let me = current_process();
        assert!(me.start_time > 0);
        assert!(process_alive(me));
        assert!(!process_alive(ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1
        }));
    }

    #[test]
    fn a_stopped_process_is_alive_and_a_zombie_is_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let owner = ProcessId {
            pid,
            start_time: read_start_time(pid).unwrap().0,
        }
        .owner_word();
        assert!(owner_alive(owner));
        // SAFETY: plain signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(owner_alive(owner), "a stopped process is slow, not dead");
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        // Not yet reaped: a zombie, which no longer runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while owner_alive(owner) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!owner_alive(owner), "a zombie counts as dead");
        child.wait().unwrap();
        assert!(!owner_alive(owner));
        // A reused pid with another start time is another process.
        assert!(!owner_alive((u64::from(std::process::id()) << 32) | 1));
    }

    #[test]
    fn a_reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let id = ProcessId {
            pid,
            start_time: read_start_time(pid).map_or(1, |(s, _)| s),
        };
        child.wait().unwrap();
        assert!(!process_alive(id));
    }
}
