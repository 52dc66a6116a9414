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
