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
    /// Device and inode: the file's identity while it exists.
    pub dev: u64,
    pub ino: u64,
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
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
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

/// Where the doorbells of the segment with identity (`dev`, `ino`) live: a directory in
/// `/dev/shm` (shared wherever the segments are; Unix socket paths must stay under 108
/// bytes, so it is named by identity, not by the ring's name).
pub(crate) fn doorbell_dir(dev: u64, ino: u64) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/shm/shmring-bells-{dev:x}-{ino:x}"))
}

/// A bound, non-blocking Unix datagram socket: a waiter's doorbell. Any process that may
/// use the ring can ring it; its path is removed when it is dropped.
#[derive(Debug)]
pub(crate) struct Doorbell {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl Doorbell {
    /// Binds the doorbell `file` in `dir` (created with `mode` plus search permission if
    /// missing), readable and writable as `mode` says (0600 or 0660). A file left at that
    /// path by a dead holder of the same slot is replaced: the caller holds the slot.
    pub(crate) fn bind(dir: &Path, file: &str, mode: u32) -> io::Result<Doorbell> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let path = dir.join(file);
        // Search permission for whoever may read the ring; exact, whatever the umask.
        let dir_mode = mode | (mode & 0o444) >> 2;
        for _ in 0..3 {
            match fs::DirBuilder::new().mode(dir_mode).create(dir) {
                Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            match std::os::unix::net::UnixDatagram::bind(&path) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
                    return Ok(Doorbell { socket, path });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    // A dead holder's socket file: nobody can be bound to it now.
                    let _ = fs::remove_file(&path);
                }
                // The directory was removed between our mkdir and bind: make it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} keeps being taken", path.display()),
        ))
    }

    /// Empties the socket: every ring so far is consumed. Never waits.
    pub(crate) fn drain(&self) {
        let mut byte = [0u8; 8];
        while self.socket.recv(&mut byte).is_ok() {}
    }

    /// The descriptor that becomes readable when the doorbell rings.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        // The last one out removes the directory (it fails harmlessly while others remain).
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Rings the doorbell at `path` through `sender` (an unbound datagram socket): one
/// non-blocking datagram. A full socket already reads as ready (the rings coalesce); a
/// missing or dead doorbell does not matter. Never waits, never fails.
pub(crate) fn ring_doorbell(sender: &std::os::unix::net::UnixDatagram, path: &Path) {
    let _ = sender.send_to(&[1], path);
}

/// An unbound, non-blocking datagram socket to ring doorbells with.
pub(crate) fn doorbell_sender() -> io::Result<std::os::unix::net::UnixDatagram> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Removes the doorbell directory `dir` and what is in it (the ring is gone or unused).
pub(crate) fn remove_doorbells(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// Removes doorbells whose socket nobody holds any more (left by processes killed while
/// armed) and the doorbell directories that leaves empty, for every ring (`remove`
/// false: only counts them). A doorbell is dead when a datagram to it is refused; a live
/// one gets an empty datagram (a spurious readiness, which its holder tolerates). Returns
/// how many dead doorbells there were.
pub(crate) fn remove_dead_doorbells(remove: bool) -> usize {
    let Ok(entries) = fs::read_dir("/dev/shm") else {
        return 0;
    };
    let Ok(sender) = doorbell_sender() else {
        return 0;
    };
    let mut removed = 0;
    for dir in entries.flatten() {
        if !dir
            .file_name()
            .to_string_lossy()
            .starts_with("shmring-bells-")
        {
            continue;
        }
        let Ok(bells) = fs::read_dir(dir.path()) else {
            continue;
        };
        for bell in bells.flatten() {
            let refused = matches!(
                sender.send_to(&[], bell.path()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
            );
            if refused && (!remove || fs::remove_file(bell.path()).is_ok()) {
                removed += 1;
            }
        }
        if remove {
            // Fails while a live doorbell is in it.
            let _ = fs::remove_dir(dir.path());
        }
    }
    removed
}

/// What a readiness descriptor is: an epoll set holding a waiter's doorbell, a slow
/// periodic timer, and a pidfd for each peer it can watch. It becomes readable when the
/// doorbell rings, when a watched peer exits, and once per tick (so a death nothing
/// watches is still found by the next look, within a tick).
#[derive(Debug)]
pub(crate) struct Waitset {
    epoll: OwnedFd,
    timer: OwnedFd,
    /// Watched pids and their pidfds (closing one removes it from the set).
    watched: Vec<(u32, OwnedFd)>,
}

fn last_os_error_if(failed: bool) -> io::Result<()> {
    if failed {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Waitset {
    /// A set holding `doorbell` and a timer that fires every `tick`.
    pub(crate) fn new(
        doorbell: std::os::fd::BorrowedFd<'_>,
        tick: std::time::Duration,
    ) -> io::Result<Waitset> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain system calls; every returned descriptor is checked, then owned.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        last_os_error_if(epoll < 0)?;
        // SAFETY: a new descriptor we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: as above.
        let timer = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        last_os_error_if(timer < 0)?;
        // SAFETY: a new descriptor we own.
        let timer = unsafe { OwnedFd::from_raw_fd(timer) };
        let spec = libc::timespec {
            tv_sec: tick.as_secs() as libc::time_t,
            tv_nsec: tick.subsec_nanos() as libc::c_long,
        };
        let period = libc::itimerspec {
            it_interval: spec,
            it_value: spec,
        };
        // SAFETY: a valid timer descriptor and a valid itimerspec.
        let rc =
            unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &period, std::ptr::null_mut()) };
        last_os_error_if(rc < 0)?;
        let set = Waitset {
            epoll,
            timer,
            watched: Vec::new(),
        };
        set.add(doorbell.as_raw_fd())?;
        set.add(set.timer.as_raw_fd())?;
        Ok(set)
    }

    fn add(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: valid epoll and target descriptors, a valid event.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        last_os_error_if(rc < 0)
    }

    /// Watches exactly `pids` (pidfds for new ones, dropped for the rest). A pid that
    /// cannot be opened (gone already, another PID namespace's number, Linux < 5.3) is left
    /// to the tick.
    pub(crate) fn watch(&mut self, pids: &[u32]) {
        use std::os::fd::{AsRawFd, FromRawFd};
        self.watched.retain(|(pid, _)| pids.contains(pid));
        for &pid in pids {
            if pid == 0 || self.watched.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
            if fd < 0 {
                continue;
            }
            // SAFETY: a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) };
            if self.add(fd.as_raw_fd()).is_ok() {
                self.watched.push((pid, fd));
            }
        }
    }

    /// Whether a watched process has exited (its pidfd reads as ready). Never waits.
    pub(crate) fn exited(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut fds: Vec<libc::pollfd> = self
            .watched
            .iter()
            .map(|(_, fd)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            return false;
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds; timeout 0 never waits.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        n > 0
    }

    /// Consumes the timer's expirations (the doorbell is drained by its owner).
    pub(crate) fn drain(&self) {
        use std::os::fd::AsRawFd;
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8 from our own descriptor.
        let _ = unsafe { libc::read(self.timer.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
    }

    /// The epoll descriptor callers poll.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

/// Wakes a sleeper when a watched process exits: what a blocked call registers while it
/// sleeps (dropping it deregisters). One thread per process, started on first use, waits
/// in `epoll` on the pidfds of every registration and runs a registration's `wake` when one
/// of its processes exits. A pid that cannot be opened (gone, another PID namespace's
/// number) is not watched: the sleeper's periodic look finds that death instead.
pub(crate) struct ExitWatch {
    id: u64,
    /// Set (before the wake runs) once a watched process exited.
    fired: std::sync::Arc<Mutex<bool>>,
}

type Wake = Box<dyn Fn() + Send + Sync>;

struct Registration {
    pidfds: Vec<OwnedFd>,
    wake: std::sync::Arc<Wake>,
    fired: std::sync::Arc<Mutex<bool>>,
}

struct Watcher {
    epoll: OwnedFd,
    /// Registration id → its pidfds, its wake, and whether it fired.
    registrations: Mutex<std::collections::HashMap<u64, Registration>>,
    next_id: Mutex<u64>,
}

fn watcher() -> Option<&'static Watcher> {
    static WATCHER: std::sync::OnceLock<Option<Watcher>> = std::sync::OnceLock::new();
    WATCHER
        .get_or_init(|| {
            use std::os::fd::FromRawFd;
            // SAFETY: a plain system call; the result is checked, then owned.
            let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if epoll < 0 {
                return None;
            }
            // SAFETY: a new descriptor we own.
            let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
            let spawned = std::thread::Builder::new()
                .name("shmring-exit-watch".into())
                .spawn(watch_exits);
            spawned.ok().map(|_| Watcher {
                epoll,
                registrations: Mutex::new(std::collections::HashMap::new()),
                next_id: Mutex::new(1),
            })
        })
        .as_ref()
}

/// The watcher thread: waits for pidfds to become readable and runs their wakes.
fn watch_exits() {
    use std::os::fd::AsRawFd;
    // Started from inside the OnceLock's initialisation: this call blocks until that
    // finishes, and it finishes with a watcher (it spawned us).
    let Some(watcher) = watcher() else { return };
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    loop {
        // SAFETY: a valid epoll descriptor and a buffer of 16 events.
        let n = unsafe { libc::epoll_wait(watcher.epoll.as_raw_fd(), events.as_mut_ptr(), 16, -1) };
        for event in events.iter().take(usize::try_from(n).unwrap_or(0)) {
            let (id, fd) = (event.u64 >> 32, event.u64 as u32 as i32);
            let wake = {
                let Ok(registrations) = watcher.registrations.lock() else {
                    continue;
                };
                match registrations.get(&id) {
                    // Still registered, so `fd` is still its pidfd (not a reused number).
                    Some(r) if r.pidfds.iter().any(|f| f.as_raw_fd() == fd) => {
                        // Stop watching it: an exited process's pidfd stays readable.
                        // SAFETY: removes our own descriptor from our epoll set.
                        unsafe {
                            libc::epoll_ctl(
                                watcher.epoll.as_raw_fd(),
                                libc::EPOLL_CTL_DEL,
                                fd,
                                std::ptr::null_mut(),
                            )
                        };
                        if let Ok(mut fired) = r.fired.lock() {
                            *fired = true;
                        }
                        r.wake.clone()
                    }
                    _ => continue,
                }
            };
            wake();
        }
    }
}

impl ExitWatch {
    /// Runs `wake` when any of `pids` exits (until dropped). `None` if nothing could be
    /// watched.
    pub(crate) fn new(pids: &[u32], wake: Wake) -> Option<ExitWatch> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let watcher = watcher()?;
        let id = {
            let mut next = watcher.next_id.lock().ok()?;
            *next += 1;
            *next
        };
        let mut fds = Vec::new();
        for &pid in pids {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
            if fd < 0 {
                continue;
            }
            // SAFETY: a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) };
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: id << 32 | u64::from(fd.as_raw_fd() as u32),
            };
            // SAFETY: valid descriptors and event.
            let rc = unsafe {
                libc::epoll_ctl(
                    watcher.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    fd.as_raw_fd(),
                    &mut event,
                )
            };
            if rc == 0 {
                fds.push(fd);
            }
        }
        if fds.is_empty() {
            return None;
        }
        let fired = std::sync::Arc::new(Mutex::new(false));
        watcher.registrations.lock().ok()?.insert(
            id,
            Registration {
                pidfds: fds,
                wake: std::sync::Arc::new(wake),
                fired: fired.clone(),
            },
        );
        Some(ExitWatch { id, fired })
    }

    /// A watch that has fired already: a peer was found dead before the sleep began.
    pub(crate) fn fired_now() -> ExitWatch {
        ExitWatch {
            id: 0,
            fired: std::sync::Arc::new(Mutex::new(true)),
        }
    }

    /// Whether a watched process has exited.
    pub(crate) fn fired(&self) -> bool {
        self.fired.lock().map(|f| *f).unwrap_or(false)
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        // Closing the pidfds takes them out of the epoll set.
        if self.id == 0 {
            return;
        }
        if let Some(watcher) = watcher() {
            if let Ok(mut registrations) = watcher.registrations.lock() {
                registrations.remove(&self.id);
            }
        }
    }
}

/// Request/reply (`rpc`): the service's listening socket, in the abstract namespace
/// (`\0shmring-rpc/<service>`: no file to leave behind; it goes with its last descriptor,
/// so a server that died leaves nothing a restart must remove). Non-blocking.
pub(crate) fn rpc_listen(service: &str) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(rpc_address(service))?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Connects to the service's socket.
pub(crate) fn rpc_connect(service: &str) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(rpc_address(service))?;
    std::os::unix::net::UnixStream::connect_addr(&addr)
}

fn rpc_address(service: &str) -> Vec<u8> {
    format!("shmring-rpc/{service}").into_bytes()
}

/// Who is at the other end of `stream`, as the kernel recorded it when it connected
/// (`SO_PEERCRED`): pid, uid, gid.
pub(crate) fn peer_credentials(
    stream: &std::os::unix::net::UnixStream,
) -> io::Result<(u32, u32, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket and an out-buffer of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    last_os_error_if(rc < 0)?;
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// Most descriptors one message carries.
const MAX_FDS: usize = 4;

/// Sends `bytes` and `fds` (at most 4) as one message on `stream`.
pub(crate) fn send_with_fds(
    stream: &std::os::unix::net::UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    assert!(fds.len() <= MAX_FDS);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid empty header; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        assert!(space <= std::mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` writable, aligned bytes, enough for one
        // header and `fds.len()` descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
            let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    // SAFETY: a valid socket and a message whose buffers are valid for the call.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    last_os_error_if(sent < 0)?;
    if sent as usize != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Receives one message of at most `buf.len()` bytes on `stream`, with the descriptors it
/// carries (owned; at most 4, the rest closed by the kernel as truncated): (bytes, fds).
/// 0 bytes: the other end closed.
pub(crate) fn recv_with_fds(
    stream: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid empty header; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: a valid socket and buffers valid for the call.
    let got = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    last_os_error_if(got < 0)?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with `msg_controllen` bytes of well-formed
    // headers; every SCM_RIGHTS descriptor in them is ours now.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let header = libc::CMSG_LEN(0) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((got as usize, fds))
}

/// An epoll set of descriptors, each with a token (level-triggered, readable or hung up).
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain system call; the descriptor is checked, then owned.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        last_os_error_if(epoll < 0)?;
        // SAFETY: a new descriptor we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        Ok(Poller { epoll })
    }

    /// Watches `fd` for input or hang-up, reported as `token`.
    pub(crate) fn add(&self, fd: std::os::fd::BorrowedFd<'_>, token: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: valid epoll and target descriptors, a valid event.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        };
        last_os_error_if(rc < 0)
    }

    /// Stops watching `fd`.
    pub(crate) fn remove(&self, fd: std::os::fd::BorrowedFd<'_>) {
        use std::os::fd::AsRawFd;
        // SAFETY: valid descriptors; a failure (not in the set) changes nothing.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout` (`None`: no limit) and appends the tokens of ready
    /// descriptors to `ready`. An interrupted wait returns with none.
    pub(crate) fn wait(
        &self,
        timeout: Option<std::time::Duration>,
        ready: &mut Vec<u64>,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: a valid epoll descriptor and a buffer of 32 events.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 32, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        ready.extend(events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}
