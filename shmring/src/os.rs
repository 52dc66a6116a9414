//! Every operating-system call shmring makes, behind a small surface, so another POSIX
//! system can follow by reimplementing this one module. Linux today (`/dev/shm`, `/proc`).

#![cfg_attr(shmring_loom, allow(dead_code))] // loom builds model the futex calls

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

use rustix::fs::{FileType, Mode, OFlags};

/// What `fstat` says about an open segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileInfo {
    pub is_regular: bool,
    pub uid: u32,
    /// Permission bits only (`0o777`).
    pub mode: u32,
    pub size: u64,
    /// When the file's contents or attributes last changed (the later of mtime and ctime).
    pub changed: std::time::SystemTime,
    /// Names the file has (0: unlinked).
    pub links: u64,
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

/// Creates an anonymous shared-memory file (memfd), empty, that may be sealed.
pub(crate) fn memfd_create(label: &str) -> io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    rustix::fs::memfd_create(label, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).map_err(io_err)
}

/// Seals a memfd so that nobody, whoever holds a descriptor, can shrink or grow it (or
/// change the seals): a mapping of it can never fault with SIGBUS.
pub(crate) fn seal_size(fd: impl AsFd) -> io::Result<()> {
    use rustix::fs::SealFlags;
    rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(io_err)
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
        links: st.st_nlink as u64,
        changed: {
            let at = |secs: i64, nanos: i64| {
                std::time::UNIX_EPOCH
                    + std::time::Duration::new(
                        u64::try_from(secs).unwrap_or(0),
                        u32::try_from(nanos).unwrap_or(0).min(999_999_999),
                    )
            };
            at(st.st_mtime as i64, st.st_mtime_nsec as i64)
                .max(at(st.st_ctime as i64, st.st_ctime_nsec as i64))
        },
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

/// Takes the write lock on byte `offset` of `fd`'s file for `fd`'s open file description,
/// without waiting. `Ok(false)` if another open file description holds it. The kernel
/// drops the lock when the last descriptor of this description closes (however the
/// process ends).
pub(crate) fn lock_byte(fd: impl AsFd, offset: u64) -> io::Result<bool> {
    match ofd_lock(
        fd,
        libc::F_OFD_SETLK,
        libc::F_WRLCK as libc::c_short,
        offset,
    ) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (the same clock in every process of the machine).
///
/// Through the C library, not rustix: rustix finds the vDSO itself and crashes under
/// valgrind, which hides it (rustix issue 1559); programs that use shmring get run under
/// valgrind.
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_MONOTONIC exists on every Linux and
    // the call cannot fail with a valid pointer (if it did, `t` stays 0).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// The first 8 bytes of the file at `path`, as a little-endian word.
pub(crate) fn first_word(path: &Path) -> io::Result<u64> {
    use std::io::Read;
    let mut word = [0u8; 8];
    fs::File::open(path)?.read_exact(&mut word)?;
    Ok(u64::from_le_bytes(word))
}

/// Takes (or turns an exclusive lock of this open file description into) a shared lock on
/// byte `offset`, without waiting: `false` if another holds it exclusively.
pub(crate) fn share_byte(fd: impl AsFd, offset: u64) -> io::Result<bool> {
    match ofd_lock(
        fd,
        libc::F_OFD_SETLK,
        libc::F_RDLCK as libc::c_short,
        offset,
    ) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases this open file description's lock on byte `offset` (if it holds one).
pub(crate) fn unlock_byte(fd: impl AsFd, offset: u64) -> io::Result<()> {
    ofd_lock(
        fd,
        libc::F_OFD_SETLK,
        libc::F_UNLCK as libc::c_short,
        offset,
    )
    .map(drop)
}

/// Whether an open file description other than `fd`'s holds a lock on byte `offset`.
pub(crate) fn byte_locked(fd: impl AsFd, offset: u64) -> io::Result<bool> {
    let found = ofd_lock(
        fd,
        libc::F_OFD_GETLK,
        libc::F_WRLCK as libc::c_short,
        offset,
    )?;
    Ok(found.l_type != libc::F_UNLCK as libc::c_short)
}

fn ofd_lock(
    fd: impl AsFd,
    command: libc::c_int,
    kind: libc::c_short,
    offset: u64,
) -> io::Result<libc::flock> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value (every field is an integer).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    lock.l_len = 1;
    // l_pid must be 0 for open-file-description locks.
    // SAFETY: `fd` is an open descriptor for the duration of the call; `lock` is a valid
    // `flock` the kernel reads and (for GETLK) writes.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), command, &mut lock) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(lock)
    }
}

/// A new open file description of the file behind `fd` (read-write, close-on-exec),
/// through `/proc/self/fd`: the same file even if its name was unlinked or replaced since.
pub(crate) fn reopen(fd: impl AsFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let reopened = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(io_err)?;
    // The same file, not whatever the link now resolves to.
    let (a, b) = (
        rustix::fs::fstat(&fd).map_err(io_err)?,
        rustix::fs::fstat(&reopened).map_err(io_err)?,
    );
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(io::Error::other("the reopened segment is another file"));
    }
    Ok(reopened)
}

/// Allocates the blocks of `fd`'s first `len` bytes now, so that touching them later can
/// never fail for want of space (which a mapping reports with SIGBUS). `Ok(false)` where
/// the filesystem cannot reserve space (`EOPNOTSUPP`); ENOSPC / ENOMEM are errors.
pub(crate) fn reserve(fd: impl AsFd, len: u64) -> io::Result<bool> {
    match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => Ok(false),
        Err(e) => Err(io_err(e)),
    }
}

/// What a filesystem has room for.
#[derive(Clone, Debug)]
pub(crate) struct Space {
    /// Bytes an unprivileged writer may still allocate.
    pub available: u64,
    /// The filesystem type, as a name where we know it (`tmpfs`, `hugetlbfs`, ...).
    pub kind: &'static str,
}

/// Free space and type of the filesystem holding `fd`'s file.
pub(crate) fn space(fd: impl AsFd) -> io::Result<Space> {
    let vfs = rustix::fs::fstatvfs(&fd).map_err(io_err)?;
    let fs = rustix::fs::fstatfs(&fd).map_err(io_err)?;
    let kind = match fs.f_type as i64 {
        0x0102_1994 => "tmpfs",
        0x9584_58f6 => "hugetlbfs",
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        _ => "filesystem",
    };
    Ok(Space {
        available: vfs.f_bavail.saturating_mul(vfs.f_frsize),
        kind,
    })
}

impl ProcessId {
    /// The identity word of a `PeerRecord::owner`: pid and start time (mod 2^32) together.
    pub(crate) fn owner_word(self) -> u64 {
        (u64::from(self.pid) << 32) | (self.start_time & 0xFFFF_FFFF)
    }
}

/// This process, with its start time. The start time is read once per pid: a child
/// forked without `exec` is another process, with its own start time.
pub(crate) fn current_process() -> ProcessId {
    static CACHED: Mutex<Option<ProcessId>> = Mutex::new(None);
    let pid = std::process::id();
    let mut cached = CACHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match *cached {
        Some(me) if me.pid == pid => me,
        _ => {
            let me = ProcessId {
                pid,
                start_time: read_start_time(pid).map_or(0, |(start, _)| start),
            };
            *cached = Some(me);
            me
        }
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
    fn this_process_has_a_start_time_read_per_pid() {
        let me = current_process();
        assert!(me.start_time > 0);
        assert_eq!(current_process(), me);
        assert_eq!(me.pid, std::process::id());
    }

    /// A byte lock held by another process: seen while it runs (stopped too), gone the
    /// moment it dies, before anyone reaps it.
    #[test]
    fn a_lock_lives_exactly_as_long_as_its_holder() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir();
        let path = dir.join(format!("shmring-lock-test-{}", std::process::id()));
        let file = fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut pipe = [0i32; 2];
        // SAFETY: a valid two-int array.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes async-signal-safe calls (open, fcntl, write, pause,
        // _exit) before it is killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: async-signal-safe calls on valid arguments.
            unsafe {
                let fd = libc::open(c_path.as_ptr(), libc::O_RDWR);
                let mut lock: libc::flock = std::mem::zeroed();
                lock.l_type = libc::F_WRLCK as libc::c_short;
                lock.l_whence = libc::SEEK_SET as libc::c_short;
                lock.l_start = 7;
                lock.l_len = 1;
                let ok = fd >= 0 && libc::fcntl(fd, libc::F_OFD_SETLK, &mut lock) == 0;
                libc::write(pipe[1], [u8::from(ok)].as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        let mut byte = [0u8; 1];
        // SAFETY: reads one byte into a valid buffer.
        let got = unsafe { libc::read(pipe[0], byte.as_mut_ptr().cast(), 1) };
        assert_eq!(got, 1);
        assert_eq!(byte[0], 1, "the child could not take its lock");
        assert!(byte_locked(&file, 7).unwrap());
        assert!(!byte_locked(&file, 8).unwrap(), "only the byte asked for");
        assert!(!lock_byte(&file, 7).unwrap(), "held by another description");
        // SAFETY: signals to our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(byte_locked(&file, 7).unwrap(), "a stopped process is alive");
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Dead (a zombie until reaped): the kernel closed its descriptors, and the lock.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while byte_locked(&file, 7).unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock outlived its holder"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(lock_byte(&file, 7).unwrap());
        // Our own lock does not show to our own description, and is released on request.
        assert!(!byte_locked(&file, 7).unwrap());
        unlock_byte(&file, 7).unwrap();
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // SAFETY: closes the pipe we made.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
        let _ = file.as_raw_fd();
        let _ = fs::remove_file(&path);
    }
}
