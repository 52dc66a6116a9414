//! C ABI for shmring: `libshmring.so` / `libshmring.a` and `include/shmring.h`.
//!
//! Conventions (`docs/ffi.md`): opaque handles with `_create`/`_open`/`_free`; one
//! `shmring_status` enum whose numbers are never reused; out-parameters written only on
//! success; every pointer argument checked (`SHMRING_NULL_ARGUMENT`), also in release
//! builds; the detail of the last failure on this thread from
//! `shmring_last_error_message()`; every entry point behind one panic boundary, so a Rust
//! panic becomes `SHMRING_PANIC` and never unwinds into C.
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use shmring::broadcast::{JoinAt, Policy};
use shmring::raw::{RawConsumer, RawProducer};
use shmring::{Config, Error, KindStats, OpenOptions, PeerStatus, Role, WaitStrategy, any};

/// ABI major version: bumped on any incompatible change from 1.0 on; while it is 0, a new
/// minor may change a struct (0.4 added `lanes` to `shmring_mpmc_config_t`).
pub const SHMRING_ABI_VERSION_MAJOR: u32 = 0;
/// ABI minor version: bumped when functions are added.
pub const SHMRING_ABI_VERSION_MINOR: u32 = 4;
/// ABI patch version.
pub const SHMRING_ABI_VERSION_PATCH: u32 = 0;
/// `major << 16 | minor << 8 | patch`, as `shmring_abi_version()` returns it.
pub const SHMRING_ABI_VERSION: u32 = (SHMRING_ABI_VERSION_MAJOR << 16)
    | (SHMRING_ABI_VERSION_MINOR << 8)
    | SHMRING_ABI_VERSION_PATCH;

/// Result of every fallible call. Numbers are stable and never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmring_status {
    /// Success.
    SHMRING_OK = 0,
    /// No ring has this name.
    SHMRING_NOT_FOUND = 1,
    /// A ring with this name exists already.
    SHMRING_ALREADY_EXISTS = 2,
    /// The OS refused, or the segment's owner or mode is not trusted.
    SHMRING_PERMISSION_DENIED = 3,
    /// The name is not '/' + 1..=250 of [A-Za-z0-9._-].
    SHMRING_INVALID_NAME = 4,
    /// A parameter is out of range, or the call does not fit the handle's state.
    SHMRING_INVALID_ARGUMENT = 5,
    /// Another layout version, build, ring kind or wait strategy.
    SHMRING_INCOMPATIBLE = 6,
    /// The segment holds something shmring never writes.
    SHMRING_CORRUPTED = 7,
    /// The creator has not finished (or died before finishing) the segment.
    SHMRING_UNINITIALIZED = 8,
    /// The role is already held (one producer, one consumer).
    SHMRING_ALREADY_ATTACHED = 9,
    /// The message exceeds the ring's maximum.
    SHMRING_MESSAGE_TOO_LARGE = 10,
    /// The buffer is shorter than the next message, which stays in the ring.
    SHMRING_BUFFER_TOO_SMALL = 11,
    /// Full (send) or empty (receive) on a non-blocking call.
    SHMRING_WOULD_BLOCK = 12,
    /// The timeout passed.
    SHMRING_TIMEOUT = 13,
    /// The other end closed.
    SHMRING_CLOSED = 14,
    /// End of stream: a peer of this stream died without closing (after everything it
    /// published was received). Final like SHMRING_CLOSED until a peer attaches again.
    SHMRING_PEER_DEAD = 15,
    /// Another OS failure.
    SHMRING_IO = 16,
    /// Every peer record of an MPMC ring is held by a live process.
    SHMRING_REGISTRY_FULL = 17,
    /// The filesystem (or memory) has no room for a ring of this size; nothing was created.
    SHMRING_NO_SPACE = 18,
    /// The handle no longer holds its place in the ring (recovered by another process);
    /// free it and create a new one.
    SHMRING_REVOKED = 19,
    /// A broadcast reader fell behind and lost messages to overwrites (how many:
    /// `shmring_last_lagged_missed`); it goes on with the oldest message left. From `shmring_release`: the bytes read in place were
    /// overwritten while held and must be dropped.
    SHMRING_LAGGED = 20,
    /// A required pointer argument was NULL.
    SHMRING_NULL_ARGUMENT = 100,
    /// shmring panicked (a bug); the handle should not be used further.
    SHMRING_PANIC = 101,
    /// An error this version of the ABI has no number for.
    SHMRING_UNKNOWN = 102,
}

use shmring_status::*;

/// The status of `err`: the number of its `ErrorKind` (the two lists are the same, which
/// `every_error_kind_has_its_status` checks).
fn status_of(err: &Error) -> shmring_status {
    status_of_code(err.kind().code())
}

fn status_of_code(code: i32) -> shmring_status {
    match code {
        1 => SHMRING_NOT_FOUND,
        2 => SHMRING_ALREADY_EXISTS,
        3 => SHMRING_PERMISSION_DENIED,
        4 => SHMRING_INVALID_NAME,
        5 => SHMRING_INVALID_ARGUMENT,
        6 => SHMRING_INCOMPATIBLE,
        7 => SHMRING_CORRUPTED,
        8 => SHMRING_UNINITIALIZED,
        9 => SHMRING_ALREADY_ATTACHED,
        10 => SHMRING_MESSAGE_TOO_LARGE,
        11 => SHMRING_BUFFER_TOO_SMALL,
        12 => SHMRING_WOULD_BLOCK,
        13 => SHMRING_TIMEOUT,
        14 => SHMRING_CLOSED,
        15 => SHMRING_PEER_DEAD,
        16 => SHMRING_IO,
        17 => SHMRING_REGISTRY_FULL,
        18 => SHMRING_NO_SPACE,
        19 => SHMRING_REVOKED,
        20 => SHMRING_LAGGED,
        _ => SHMRING_UNKNOWN,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_MISSED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many messages the last `SHMRING_LAGGED` status on this thread said were lost (0
/// before any). Thread-safe (each thread has its own).
#[unsafe(no_mangle)]
pub extern "C" fn shmring_last_lagged_missed() -> u64 {
    LAST_MISSED.with(|last| last.get())
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = text);
}

/// A failure inside an entry point.
enum Fail {
    Null(&'static str),
    Rust(Error),
}

impl From<Error> for Fail {
    fn from(err: Error) -> Self {
        Fail::Rust(err)
    }
}

/// The panic boundary: runs `body`, maps its outcome to a status, records the message of
/// a failure, and turns a panic into `SHMRING_PANIC`.
fn boundary(body: impl FnOnce() -> Result<(), Fail>) -> shmring_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SHMRING_OK,
        Ok(Err(Fail::Null(what))) => {
            set_last_error(&format!("{what} is NULL"));
            SHMRING_NULL_ARGUMENT
        }
        Ok(Err(Fail::Rust(err))) => {
            set_last_error(&err.to_string());
            if let Error::Lagged { missed } = err {
                LAST_MISSED.with(|last| last.set(missed));
            }
            status_of(&err)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (please report): {what}"));
            SHMRING_PANIC
        }
    }
}

/// `ptr` as a reference, or `Fail::Null`.
///
/// # Safety
/// `ptr` is NULL or points at a live `T` (a handle from this library, or a caller-owned
/// object of the declared type) for the chosen lifetime.
unsafe fn nonnull<'a, T>(ptr: *const T, what: &'static str) -> Result<&'a T, Fail> {
    // SAFETY: per the contract.
    unsafe { ptr.as_ref() }.ok_or(Fail::Null(what))
}

/// `ptr` as a mutable reference, or `Fail::Null`.
///
/// # Safety
/// As [`nonnull`], and no other reference to `*ptr` is used meanwhile (a handle is used
/// from one thread at a time, as documented).
unsafe fn nonnull_mut<'a, T>(ptr: *mut T, what: &'static str) -> Result<&'a mut T, Fail> {
    // SAFETY: per the contract.
    unsafe { ptr.as_mut() }.ok_or(Fail::Null(what))
}

/// `name` as UTF-8 text.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string that outlives the chosen lifetime.
unsafe fn name_arg<'a>(name: *const c_char) -> Result<&'a str, Fail> {
    if name.is_null() {
        return Err(Fail::Null("name"));
    }
    // SAFETY: non-NULL and NUL-terminated (contract).
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str().map_err(|_| {
        Fail::Rust(Error::InvalidName {
            name: name.to_string_lossy().into_owned(),
            reason: "is not valid UTF-8",
        })
    })
}

/// `len` bytes at `data` (NULL allowed when `len` is 0).
///
/// # Safety
/// `data` points at `len` readable bytes that outlive the chosen lifetime.
unsafe fn bytes_arg<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Fail::Null("data"));
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// `cap` writable bytes at `buf` (NULL allowed when `cap` is 0).
///
/// # Safety
/// `buf` points at `cap` writable bytes, not otherwise used for the chosen lifetime.
unsafe fn buf_arg<'a>(buf: *mut c_void, cap: usize) -> Result<&'a mut [u8], Fail> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(Fail::Null("buf"));
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) })
}

/// Writes an out-parameter.
///
/// # Safety
/// `out` is non-NULL (checked by the caller before any work was done) and writable.
unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: per the contract.
    unsafe { out.write(value) };
}

/// A C timeout: `UINT64_MAX` waits without limit (`None`), 0 does not wait.
fn timeout_of(timeout_ns: u64) -> Option<Duration> {
    (timeout_ns != u64::MAX).then(|| Duration::from_nanos(timeout_ns))
}

/// An open ring segment of any kind (opaque). A ring handle may be used from several
/// threads at once (stats, attaching ends); freeing it leaves attached ends working.
pub struct shmring_ring_t(any::Ring);
/// A producing end of a ring (opaque). Used by one thread at a time (like a `FILE *`); it
/// may move between threads.
pub struct shmring_producer_t(any::Producer);
/// A consuming end of a ring (opaque). Used by one thread at a time; it may move between
/// threads.
pub struct shmring_consumer_t(any::Consumer);

/// `shmring_config_t.wait_strategy`: busy-poll.
pub const SHMRING_WAIT_SPIN: u32 = 1;
/// `shmring_config_t.wait_strategy`: poll, then yield the CPU between polls (default).
pub const SHMRING_WAIT_SPIN_YIELD: u32 = 2;
/// `shmring_config_t.wait_strategy`: poll for `spin_ns`, then sleep on a futex (Linux).
pub const SHMRING_WAIT_FUTEX: u32 = 3;

/// `shmring_config_t.flags`: create with mode 0660 instead of 0600.
pub const SHMRING_FLAG_GROUP_ACCESS: u32 = 1;
/// `shmring_config_t.flags`: do not pre-fault the mapping.
pub const SHMRING_FLAG_NO_POPULATE: u32 = 2;
/// `shmring_config_t.flags`: lock the mapping into RAM.
pub const SHMRING_FLAG_LOCK_MEMORY: u32 = 4;

/// Creation parameters. Start from `shmring_config_init`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_config_t {
    /// Data region bytes: a power of two in 256..=2^40. Default 1 MiB.
    pub capacity: u64,
    /// Largest message; 0 means the largest possible (capacity / 2 - 8).
    pub max_message: u64,
    /// How blocked calls wait: `SHMRING_WAIT_*`. Default `SHMRING_WAIT_SPIN_YIELD`.
    pub wait_strategy: u32,
    /// `SHMRING_FLAG_*` bits.
    pub flags: u32,
    /// Telemetry: stamp one message in this many (1 = every message); 0 (default) = off.
    /// See `shmring_ring_telemetry`.
    pub telemetry: u32,
    /// Futex: nanoseconds to poll before sleeping. Default 20000.
    pub spin_ns: u64,
}

/// The settings both kinds of ring share.
fn common_config(
    wait_strategy: u32,
    flags: u32,
    spin_ns: u64,
    telemetry: u32,
) -> Result<Config, Fail> {
    let wait = match wait_strategy {
        1 => WaitStrategy::Spin,
        2 => WaitStrategy::SpinYield,
        3 => WaitStrategy::Futex,
        // 4 was the condvar strategy, removed in ABI 0.3; the number is never reused.
        4 => {
            return Err(Fail::Rust(Error::InvalidArgument {
                detail: "wait strategy 4 (condvar) was removed: a process killed while \
                         waiting on a shared pthread condvar can hang its peers; use \
                         SHMRING_WAIT_FUTEX"
                    .into(),
            }));
        }
        other => {
            return Err(Fail::Rust(Error::InvalidArgument {
                detail: format!("unknown wait strategy {other}"),
            }));
        }
    };
    Ok(Config::new()
        .wait_strategy(wait)
        .group_access(flags & SHMRING_FLAG_GROUP_ACCESS != 0)
        .populate(flags & SHMRING_FLAG_NO_POPULATE == 0)
        .lock_memory(flags & SHMRING_FLAG_LOCK_MEMORY != 0)
        .spin_before_sleep(Duration::from_nanos(spin_ns))
        .telemetry(telemetry))
}

/// A size field of a C config as `usize` (`InvalidArgument` if it does not fit).
fn size_field(value: u64, field: &str) -> Result<usize, Fail> {
    usize::try_from(value).map_err(|_| {
        Fail::Rust(Error::InvalidArgument {
            detail: format!("{field} {value} does not fit in this platform's size type"),
        })
    })
}

fn config_of(cfg: &shmring_config_t) -> Result<Config, Fail> {
    let mut config = common_config(cfg.wait_strategy, cfg.flags, cfg.spin_ns, cfg.telemetry)?
        .capacity(size_field(cfg.capacity, "capacity")?);
    if cfg.max_message != 0 {
        config = config.max_message(size_field(cfg.max_message, "max_message")?);
    }
    Ok(config)
}

/// The version of this library's ABI: `major << 16 | minor << 8 | patch`. A program compares
/// it with `SHMRING_ABI_VERSION` from the header it was built with. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn shmring_abi_version() -> u32 {
    SHMRING_ABI_VERSION
}

/// A static, NUL-terminated name for a `shmring_status` value (never NULL;
/// "SHMRING_UNKNOWN" for numbers this library does not know). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn shmring_status_str(status: i32) -> *const c_char {
    let text: &'static CStr = match status {
        0 => c"SHMRING_OK",
        1 => c"SHMRING_NOT_FOUND",
        2 => c"SHMRING_ALREADY_EXISTS",
        3 => c"SHMRING_PERMISSION_DENIED",
        4 => c"SHMRING_INVALID_NAME",
        5 => c"SHMRING_INVALID_ARGUMENT",
        6 => c"SHMRING_INCOMPATIBLE",
        7 => c"SHMRING_CORRUPTED",
        8 => c"SHMRING_UNINITIALIZED",
        9 => c"SHMRING_ALREADY_ATTACHED",
        10 => c"SHMRING_MESSAGE_TOO_LARGE",
        11 => c"SHMRING_BUFFER_TOO_SMALL",
        12 => c"SHMRING_WOULD_BLOCK",
        13 => c"SHMRING_TIMEOUT",
        14 => c"SHMRING_CLOSED",
        15 => c"SHMRING_PEER_DEAD",
        16 => c"SHMRING_IO",
        17 => c"SHMRING_REGISTRY_FULL",
        18 => c"SHMRING_NO_SPACE",
        19 => c"SHMRING_REVOKED",
        20 => c"SHMRING_LAGGED",
        100 => c"SHMRING_NULL_ARGUMENT",
        101 => c"SHMRING_PANIC",
        _ => c"SHMRING_UNKNOWN",
    };
    text.as_ptr()
}

/// The detail of the last failed call on this thread (empty if none yet). The string is
/// owned by the library and valid until the next call into it on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn shmring_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Fills `*config` with the defaults (1 MiB, largest messages, spin-then-yield, 0600,
/// pre-faulted, 20 µs spin before sleeping). NULL is ignored.
///
/// # Safety
/// `config` is NULL or points at a writable `shmring_config_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_config_init(config: *mut shmring_config_t) {
    if config.is_null() {
        return;
    }
    let defaults = shmring_config_t {
        capacity: 1 << 20,
        max_message: 0,
        wait_strategy: SHMRING_WAIT_SPIN_YIELD,
        flags: 0,
        telemetry: 0,
        spin_ns: 20_000,
    };
    // SAFETY: non-NULL and writable (contract).
    unsafe { write_out(config, defaults) };
}

/// The SPSC configuration at `config` (NULL: the defaults).
///
/// # Safety
/// `config` is NULL or points at a readable `shmring_config_t`.
unsafe fn config_arg(config: *const shmring_config_t) -> Result<Config, Fail> {
    if config.is_null() {
        return Ok(Config::new());
    }
    // SAFETY: per the contract.
    config_of(unsafe { nonnull(config, "config") }?)
}

/// Hands a new handle to C through `out`.
///
/// # Safety
/// As [`write_out`].
unsafe fn handle_out<T>(out: *mut *mut T, handle: T) {
    // SAFETY: per the contract.
    unsafe { write_out(out, Box::into_raw(Box::new(handle))) };
}

/// Frees a handle made by `handle_out`; NULL is a no-op; a panic in a destructor is contained.
///
/// # Safety
/// `handle` is NULL or came from `handle_out` and is not used afterwards.
unsafe fn free_handle<T>(handle: *mut T) {
    if handle.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: allocated by `handle_out` with Box::into_raw; freed once (contract).
        drop(unsafe { Box::from_raw(handle) });
    }));
}

/// Runs `make` for a new ring named `name` and hands it to C through `out`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
unsafe fn ring_out(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
    make: impl FnOnce(&str) -> Result<any::Ring, Error>,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let ring = make(name)?;
        // SAFETY: `out` checked non-NULL above.
        unsafe { handle_out(out, shmring_ring_t(ring)) };
        Ok(())
    })
}

/// Creates the SPSC ring `name` (e.g. "/quotes"); `SHMRING_ALREADY_EXISTS` if the name is
/// taken, `SHMRING_NO_SPACE` if /dev/shm cannot hold it. `config` NULL means defaults. On
/// success `*out` receives a handle to free with `shmring_ring_free`. The segment persists
/// until `shmring_unlink`.
///
/// # Safety
/// `name` is a NUL-terminated string; `config` is NULL or valid; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_spsc_create(
    name: *const c_char,
    config: *const shmring_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's; `config` is NULL or valid.
    unsafe {
        make_ring(name, out, any::KindName::Spsc, Make::Create, || {
            config_arg(config)
        })
    }
}

/// Creates the SPSC ring, or opens it if it exists (then its parameters and wait strategy
/// must match `config`). Exactly one of several racing processes creates it.
///
/// # Safety
/// As `shmring_spsc_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_spsc_create_or_open(
    name: *const c_char,
    config: *const shmring_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's; `config` is NULL or valid.
    unsafe {
        make_ring(name, out, any::KindName::Spsc, Make::CreateOrOpen, || {
            config_arg(config)
        })
    }
}

/// Opens the existing SPSC ring `name` (owner must be this user, not writable by others);
/// `SHMRING_INCOMPATIBLE` for a ring of another kind.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_spsc_open(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's.
    unsafe { ring_out(name, out, |name| open_kind(name, any::KindName::Spsc)) }
}

/// Opens the existing ring `name`, whatever its kind (`shmring_ring_kind` tells which). The
/// calls below work on every kind.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_open(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's.
    unsafe { ring_out(name, out, |name| any::Ring::open(name, &OpenOptions::new())) }
}

/// Whether `make_ring` creates, or creates or opens.
#[derive(Clone, Copy)]
enum Make {
    Create,
    CreateOrOpen,
}

/// Creates (or creates or opens) a ring of `kind` `name` with the config `config` reads
/// (NULL: defaults), and writes its handle to `*out`.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable; `config` is safe to call.
unsafe fn make_ring(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
    kind: any::KindName,
    how: Make,
    config: impl FnOnce() -> Result<Config, Fail>,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's.
    unsafe {
        ring_out(name, out, |name| {
            let config = config().map_err(fail_error)?;
            match how {
                Make::Create => any::Ring::create(kind, name, &config),
                Make::CreateOrOpen => any::Ring::create_or_open(kind, name, &config),
            }
        })
    }
}

/// Opens `name` and insists on `kind`.
fn open_kind(name: &str, kind: any::KindName) -> Result<any::Ring, Error> {
    let ring = any::Ring::open(name, &OpenOptions::new())?;
    if ring.kind() != kind {
        return Err(Error::Incompatible {
            detail: format!("{name} is an {} ring, not an {kind} ring", ring.kind()),
        });
    }
    Ok(ring)
}

/// A `Fail` turned back into an `Error` (inside a closure that returns `Error`).
fn fail_error(fail: Fail) -> Error {
    match fail {
        Fail::Rust(e) => e,
        Fail::Null(what) => Error::InvalidArgument {
            detail: format!("{what} is NULL"),
        },
    }
}

/// The kind of a ring, from `shmring_ring_kind`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmring_kind {
    /// One producer, one consumer.
    SHMRING_KIND_SPSC = 1,
    /// Many producers, many consumers.
    SHMRING_KIND_MPMC = 2,
    /// One producer, many readers each at its own position.
    SHMRING_KIND_BROADCAST = 3,
}

/// Writes the kind of `ring` to `*out`. Thread-safe.
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_kind(
    ring: *const shmring_ring_t,
    out: *mut shmring_kind,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let kind = match ring.0.kind() {
            any::KindName::Spsc => shmring_kind::SHMRING_KIND_SPSC,
            any::KindName::Broadcast => shmring_kind::SHMRING_KIND_BROADCAST,
            _ => shmring_kind::SHMRING_KIND_MPMC,
        };
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, kind) };
        Ok(())
    })
}

/// Frees a ring handle (the segment stays; ends attached from it keep working). NULL is a
/// no-op.
///
/// # Safety
/// `ring` is NULL or a handle from this library, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_free(ring: *mut shmring_ring_t) {
    // SAFETY: NULL or a handle from this library's `Box::into_raw`, freed once (contract).
    unsafe { free_handle(ring) };
}

/// Removes the ring `name`, whatever its kind; attached handles keep working.
///
/// # Safety
/// `name` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_unlink(name: *const c_char) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        shmring::spsc::unlink(unsafe { name_arg(name) }?)?;
        Ok(())
    })
}

/// Attaches a producing end (SPSC: `SHMRING_ALREADY_ATTACHED` while a live producer holds
/// the role; MPMC: `SHMRING_REGISTRY_FULL` when `max_peers` live handles are attached). A
/// role given up before is taken again. Free it with `shmring_producer_free`, which ends
/// the stream once no producer is left.
///
/// # Safety
/// `ring` is a live ring handle; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_producer_create(
    ring: *const shmring_ring_t,
    out: *mut *mut shmring_producer_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let producer = ring.0.producer()?;
        // SAFETY: checked non-NULL above.
        unsafe { handle_out(out, shmring_producer_t(producer)) };
        Ok(())
    })
}

/// Attaches a consuming end, as `shmring_producer_create`. Free it with
/// `shmring_consumer_free`.
///
/// # Safety
/// `ring` is a live ring handle; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_create(
    ring: *const shmring_ring_t,
    out: *mut *mut shmring_consumer_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let consumer = ring.0.consumer()?;
        // SAFETY: checked non-NULL above.
        unsafe { handle_out(out, shmring_consumer_t(consumer)) };
        Ok(())
    })
}

/// Publishes anything pending, detaches and frees the producer (the consumers drain, then
/// get `SHMRING_CLOSED` once no producer is left). NULL is a no-op.
///
/// # Safety
/// `producer` is NULL or a handle from this library, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_producer_free(producer: *mut shmring_producer_t) {
    // SAFETY: NULL or a handle from this library's `Box::into_raw`, freed once (contract).
    unsafe { free_handle(producer) };
}

/// Detaches and frees the consumer (the producers' next send gets `SHMRING_CLOSED` once no
/// consumer is left). NULL is a no-op.
///
/// # Safety
/// `consumer` is NULL or a handle from this library, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_free(consumer: *mut shmring_consumer_t) {
    // SAFETY: NULL or a handle from this library's `Box::into_raw`, freed once (contract).
    unsafe { free_handle(consumer) };
}

/// Copies `len` bytes at `data` into the ring as one message. Never blocks:
/// `SHMRING_WOULD_BLOCK` when full. `data` may be NULL only if `len` is 0.
///
/// # Safety
/// `producer` is live; `data` points at `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_try_send(
    producer: *mut shmring_producer_t,
    data: *const c_void,
    len: usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        let msg = unsafe { bytes_arg(data, len) }?;
        p.0.try_send(msg)?;
        Ok(())
    })
}

/// Like `shmring_try_send`, waiting while the ring is full, at most `timeout_ns`
/// nanoseconds (`SHMRING_TIMEOUT`); `UINT64_MAX` waits without limit.
///
/// # Safety
/// As `shmring_try_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_send_timeout(
    producer: *mut shmring_producer_t,
    data: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        let msg = unsafe { bytes_arg(data, len) }?;
        p.0.send(msg, timeout_of(timeout_ns))?;
        Ok(())
    })
}

/// Copies the next message into `buf` (capacity `cap`) and writes its length to `*out_len`.
/// Never blocks: `SHMRING_WOULD_BLOCK` when empty, `SHMRING_CLOSED` / `SHMRING_PEER_DEAD` at
/// the end of the stream, `SHMRING_BUFFER_TOO_SMALL` if `cap` is short (the message stays;
/// `shmring_read` tells its length).
///
/// # Safety
/// `consumer` is live; `buf` has `cap` writable bytes; `out_len` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_try_recv(
    consumer: *mut shmring_consumer_t,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's.
    unsafe { recv_into(consumer, buf, cap, out_len, Some(Duration::ZERO)) }
}

/// Like `shmring_try_recv`, waiting while the ring is empty, at most `timeout_ns`
/// (`UINT64_MAX`: no limit).
///
/// # Safety
/// As `shmring_try_recv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_recv_timeout(
    consumer: *mut shmring_consumer_t,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    timeout_ns: u64,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's.
    unsafe { recv_into(consumer, buf, cap, out_len, timeout_of(timeout_ns)) }
}

/// The receive calls: `Some(ZERO)` does not wait.
///
/// # Safety
/// As `shmring_try_recv`.
unsafe fn recv_into(
    consumer: *mut shmring_consumer_t,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    timeout: Option<Duration>,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_len, "out_len") }?;
        // SAFETY: per the contract.
        let buf = unsafe { buf_arg(buf, cap) }?;
        let n = match timeout {
            Some(t) if t.is_zero() => c.0.try_recv(buf)?,
            _ => c.0.recv(buf, timeout)?,
        };
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_len, n) };
        Ok(())
    })
}

/// Event loops: prepares to wait on the consumer's readiness descriptor
/// (`shmring_consumer_readiness_fd`). `*out_armed` = 1: the ring is empty and the consumer
/// is armed, so poll the descriptor; 0: there is something to receive now (a message, or
/// the end of the stream): call `shmring_try_recv` instead. The loop: receive until
/// `SHMRING_WOULD_BLOCK`, arm, poll if armed, repeat. `SHMRING_INVALID_ARGUMENT` unless the
/// ring uses `SHMRING_WAIT_FUTEX`.
///
/// # Safety
/// `consumer` is live; `out_armed` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_arm(
    consumer: *mut shmring_consumer_t,
    out_armed: *mut c_int,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_armed, "out_armed") }?;
        let armed = c.0.arm()?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_armed, c_int::from(armed)) };
        Ok(())
    })
}

/// Writes to `*out_fd` a new descriptor (close it with `close(2)`) that becomes readable
/// (`POLLIN`) when the consumer, armed by `shmring_consumer_arm`, may have something to
/// receive: a message, the end of the stream, or a producer that died. For `poll`,
/// `epoll`, `select` and event libraries. Readiness may be spurious; a publish after an
/// arm that said 1 is never missed.
///
/// # Safety
/// `consumer` is live; `out_fd` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_readiness_fd(
    consumer: *mut shmring_consumer_t,
    out_fd: *mut c_int,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_fd, "out_fd") }?;
        let readiness = c.0.readiness()?;
        let fd = std::os::fd::OwnedFd::from(readiness);
        // SAFETY: checked non-NULL above; the caller owns the descriptor from here.
        unsafe { write_out(out_fd, std::os::fd::IntoRawFd::into_raw_fd(fd)) };
        Ok(())
    })
}

/// Where a consumer has read to (`shmring_consumer_read_mark`): the stream position after
/// the last message it received, growing for the ring's whole life, and words that only
/// `shmring_consumer_release_to` reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmring_read_mark_t {
    /// Stream position after the marked message.
    pub position: u64,
    /// Internal: pass the mark back unchanged.
    pub internal: [u64; 3],
}

/// Defers releases (SPSC and broadcast rings): from now on what this consumer receives
/// keeps its space — producers wait for it — until `shmring_consumer_release_to`; if the
/// consumer dies or is freed first, the next one reads again from the last mark given
/// back. For a consumer that passes messages on and may let go of them only once the next
/// hop has them. `SHMRING_INVALID_ARGUMENT` on MPMC rings.
///
/// # Safety
/// `consumer` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_defer_releases(
    consumer: *mut shmring_consumer_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        Ok(c.0.defer_releases()?)
    })
}

/// Writes to `*out` where `consumer` has read to (SPSC and broadcast rings).
///
/// # Safety
/// `consumer` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_read_mark(
    consumer: *const shmring_consumer_t,
    out: *mut shmring_read_mark_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull(consumer, "consumer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let [position, a, b, d] = c.0.read_mark()?.to_words();
        let mark = shmring_read_mark_t {
            position,
            internal: [a, b, d],
        };
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, mark) };
        Ok(())
    })
}

/// With deferred releases: gives back the space of every message received before `*mark`
/// and wakes producers waiting for it. `SHMRING_INVALID_ARGUMENT` if releases are not
/// deferred or the mark is not between the last one given back and the last read.
///
/// # Safety
/// `consumer` is live; `mark` is readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_release_to(
    consumer: *mut shmring_consumer_t,
    mark: *const shmring_read_mark_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        // SAFETY: per the contract.
        let mark = unsafe { nonnull(mark, "mark") }?;
        let [a, b, d] = mark.internal;
        Ok(c.0.release_to(shmring::ReadMark::from_words([mark.position, a, b, d]))?)
    })
}

/// With deferred releases: reads again, from the last mark given back, every message
/// received since, without leaving the role (producers see no end of stream).
///
/// # Safety
/// `consumer` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_rewind(
    consumer: *mut shmring_consumer_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        Ok(c.0.rewind()?)
    })
}

/// Writes to `*out` the stream position after the last message published (by this
/// producer, or, just after it attached, by the producer before it, even one that died).
/// SPSC and broadcast rings; `SHMRING_INVALID_ARGUMENT` on MPMC rings.
///
/// # Safety
/// `producer` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_producer_position(
    producer: *const shmring_producer_t,
    out: *mut u64,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull(producer, "producer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let position = p.0.position()?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, position) };
        Ok(())
    })
}

/// Like `shmring_try_send`, with priority `priority`: on an MPMC ring with lanes, into lane
/// `priority`, so consumers receive it before every message of a lower priority (like
/// `mq_send`). Rings without lanes take priority 0 only (`SHMRING_INVALID_ARGUMENT`,
/// nothing sent). A full lane is `SHMRING_WOULD_BLOCK` even when other lanes have room.
///
/// # Safety
/// As `shmring_try_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_try_send_priority(
    producer: *mut shmring_producer_t,
    data: *const c_void,
    len: usize,
    priority: u32,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        let msg = unsafe { bytes_arg(data, len) }?;
        p.0.try_send_priority(msg, priority)?;
        Ok(())
    })
}

/// Like `shmring_try_send_priority`, waiting while the lane is full, at most `timeout_ns`
/// (`UINT64_MAX`: no limit).
///
/// # Safety
/// As `shmring_try_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_send_priority_timeout(
    producer: *mut shmring_producer_t,
    data: *const c_void,
    len: usize,
    priority: u32,
    timeout_ns: u64,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        let msg = unsafe { bytes_arg(data, len) }?;
        p.0.send_priority(msg, priority, timeout_of(timeout_ns))?;
        Ok(())
    })
}

/// Like `shmring_recv_timeout` (`timeout_ns` 0: never waits; `UINT64_MAX`: no limit), also
/// writing the message's priority to `*out_priority`: the highest-priority message of the
/// selected lanes, oldest first within a priority (like `mq_receive`). Messages of rings
/// without lanes have priority 0.
///
/// # Safety
/// As `shmring_try_recv`; `out_priority` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_recv_priority_timeout(
    consumer: *mut shmring_consumer_t,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    out_priority: *mut u32,
    timeout_ns: u64,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_len, "out_len") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_priority, "out_priority") }?;
        // SAFETY: per the contract.
        let buf = unsafe { buf_arg(buf, cap) }?;
        let (len, priority) = match timeout_ns {
            0 => c.0.try_recv_priority(buf)?,
            t => c.0.recv_priority(buf, timeout_of(t))?,
        };
        // SAFETY: checked non-NULL above.
        unsafe {
            write_out(out_len, len);
            write_out(out_priority, priority);
        }
        Ok(())
    })
}

/// From now on the consumer receives only messages of priorities `low..=high` (like
/// `msgrcv`'s type argument: `p, p` one lane, `0, p` up to `p`); blocking receives wait for
/// a message in them, and the end of the stream comes once the producers are gone and the
/// selected lanes are drained. `SHMRING_INVALID_ARGUMENT` beyond the ring's lanes, for
/// `low > high`, or while a message found by an earlier receive is kept for the next one.
///
/// # Safety
/// `consumer` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_select_priorities(
    consumer: *mut shmring_consumer_t,
    low: u32,
    high: u32,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        c.0.select_priorities(low..=high)?;
        Ok(())
    })
}

/// One priority lane's figures (`shmring_ring_lane_stats`). Counts are positions: a message
/// sent, a reservation cancelled, or a claim of a producer that died each take one.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_lane_stats_t {
    /// The lane's priority.
    pub priority: u32,
    /// Slots of the lane.
    pub slots: u64,
    /// Positions taken by producers and not yet released.
    pub in_flight: u64,
    /// Positions producers took in this lane since creation.
    pub sent: u64,
    /// Positions consumers took (or skipped) in this lane.
    pub received: u64,
}

/// Writes the ring's priority lanes to `*out`: an MPMC ring's `lanes`; 1 for the others.
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_lanes(
    ring: *const shmring_ring_t,
    out: *mut u32,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, ring.0.lanes()) };
        Ok(())
    })
}

/// Writes lane `priority`'s figures to `*out` (MPMC rings; `SHMRING_INVALID_ARGUMENT` for a
/// priority beyond the ring's lanes or a ring of another kind).
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_lane_stats(
    ring: *const shmring_ring_t,
    priority: u32,
    out: *mut shmring_lane_stats_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let lanes = ring.0.lane_stats();
        let lane = lanes
            .get(priority as usize)
            .ok_or_else(|| Error::InvalidArgument {
                detail: format!(
                    "lane {priority}: this ring has {} lane(s) with statistics (MPMC rings \
                     only)",
                    lanes.len()
                ),
            })?;
        let stats = shmring_lane_stats_t {
            priority: lane.priority,
            slots: lane.slots,
            in_flight: lane.in_flight,
            sent: lane.sent,
            received: lane.received,
        };
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, stats) };
        Ok(())
    })
}

/// Writes to `*out` when the ring's segment was created, nanoseconds since the Unix epoch
/// (as its creator wrote it): with the name, it tells a re-created ring from the old one.
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_created_unix_ns(
    ring: *const shmring_ring_t,
    out: *mut u64,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, ring.0.created_unix_ns()) };
        Ok(())
    })
}

/// Event loops, producer side: sends `data` (`len` bytes) if it fits, and otherwise arms
/// the producer's readiness descriptor (`shmring_producer_readiness_fd`). `*out_sent` = 1:
/// sent; 0: the ring is full and the producer is armed: poll the descriptor, then call
/// again. Errors as `shmring_try_send`; `SHMRING_INVALID_ARGUMENT` unless the ring uses
/// `SHMRING_WAIT_FUTEX`.
///
/// # Safety
/// `producer` is live; `data` has `len` readable bytes; `out_sent` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_try_send_or_arm(
    producer: *mut shmring_producer_t,
    data: *const c_void,
    len: usize,
    out_sent: *mut c_int,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_sent, "out_sent") }?;
        // SAFETY: per the contract.
        let msg = unsafe { bytes_arg(data, len) }?;
        let sent = p.0.try_send_or_arm(msg)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_sent, c_int::from(sent)) };
        Ok(())
    })
}

/// Writes to `*out_fd` a new descriptor (close it with `close(2)`) that becomes readable
/// when the producer, armed by `shmring_try_send_or_arm`, may have room: a consumer freed
/// space, the consumers are gone, or one died.
///
/// # Safety
/// `producer` is live; `out_fd` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_producer_readiness_fd(
    producer: *mut shmring_producer_t,
    out_fd: *mut c_int,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_fd, "out_fd") }?;
        let fd = std::os::fd::OwnedFd::from(p.0.readiness()?);
        // SAFETY: checked non-NULL above; the caller owns the descriptor from here.
        unsafe { write_out(out_fd, std::os::fd::IntoRawFd::into_raw_fd(fd)) };
        Ok(())
    })
}

/// Zero copy: reserves `len` bytes in the ring and writes their address to `*out_ptr`.
/// Write the message there, then `shmring_commit` (or `shmring_cancel`). Until then every
/// other send on this producer fails with `SHMRING_INVALID_ARGUMENT`. Waits at most
/// `timeout_ns` while full (0: never waits, `SHMRING_WOULD_BLOCK`; `UINT64_MAX`: no limit).
///
/// # Safety
/// `producer` is live; `out_ptr` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_reserve(
    producer: *mut shmring_producer_t,
    len: usize,
    timeout_ns: u64,
    out_ptr: *mut *mut c_void,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_ptr, "out_ptr") }?;
        let ptr = p.0.reserve_detached(len, timeout_of(timeout_ns))?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_ptr, ptr.as_ptr().cast()) };
        Ok(())
    })
}

/// Publishes the first `len` bytes of the pending reservation as one message.
///
/// # Safety
/// `producer` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_commit(
    producer: *mut shmring_producer_t,
    len: usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        unsafe { nonnull_mut(producer, "producer") }?
            .0
            .commit_detached(len)?;
        Ok(())
    })
}

/// Drops the pending reservation; nothing is published.
///
/// # Safety
/// `producer` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_cancel(producer: *mut shmring_producer_t) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        unsafe { nonnull_mut(producer, "producer") }?
            .0
            .cancel_detached();
        Ok(())
    })
}

/// Zero copy: the next message in place. Writes its address to `*out_ptr` and length to
/// `*out_len`; the bytes stay valid until `shmring_release`. Calling again before releasing
/// returns the same message. Waits at most `timeout_ns` while empty (0: never waits;
/// `UINT64_MAX`: no limit).
///
/// # Safety
/// `consumer` is live; `out_ptr` and `out_len` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_read(
    consumer: *mut shmring_consumer_t,
    timeout_ns: u64,
    out_ptr: *mut *const c_void,
    out_len: *mut usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_ptr, "out_ptr") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_len, "out_len") }?;
        let (ptr, len) = c.0.read_detached(timeout_of(timeout_ns))?;
        // SAFETY: both checked non-NULL above.
        unsafe {
            write_out(out_ptr, ptr.as_ptr().cast_const().cast());
            write_out(out_len, len);
        }
        Ok(())
    })
}

/// Frees the space of the message returned by `shmring_read`.
///
/// # Safety
/// `consumer` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_release(consumer: *mut shmring_consumer_t) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        unsafe { nonnull_mut(consumer, "consumer") }?
            .0
            .release_detached()?;
        Ok(())
    })
}

/// One message of a batch: `len` bytes at `data`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_msg_t {
    /// The bytes (may be NULL if `len` is 0).
    pub data: *const c_void,
    /// Their number.
    pub len: usize,
}

/// Slices handed to one batch call (a stack array: no allocation per call).
const BATCH_CHUNK: usize = 64;

/// Copies as many of the `count` messages at `msgs` as fit, in order, and publishes them
/// (up to 64 at a time with one store (SPSC) or one atomic operation (MPMC));
/// `*out_sent` receives how many (if none fits, the status is `SHMRING_WOULD_BLOCK`).
/// Never blocks.
///
/// # Safety
/// `producer` is live; `msgs` points at `count` readable `shmring_msg_t` whose `data`
/// point at `len` readable bytes each; `out_sent` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_try_send_batch(
    producer: *mut shmring_producer_t,
    msgs: *const shmring_msg_t,
    count: usize,
    out_sent: *mut usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let p = unsafe { nonnull_mut(producer, "producer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_sent, "out_sent") }?;
        if count > 0 && msgs.is_null() {
            return Err(Fail::Null("msgs"));
        }
        let msgs = if count == 0 {
            &[][..]
        } else {
            // SAFETY: non-NULL, `count` elements (contract).
            unsafe { std::slice::from_raw_parts(msgs, count) }
        };
        let mut sent = 0;
        for chunk in msgs.chunks(BATCH_CHUNK) {
            let mut slices: [&[u8]; BATCH_CHUNK] = [&[]; BATCH_CHUNK];
            for (slot, m) in slices.iter_mut().zip(chunk) {
                // SAFETY: each message's `data` points at `len` readable bytes (contract).
                *slot = unsafe { bytes_arg(m.data, m.len) }?;
            }
            match p.0.try_send_batch(&slices[..chunk.len()]) {
                Ok(n) => {
                    sent += n;
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(Error::WouldBlock) => break,
                Err(e) if sent == 0 => return Err(e.into()),
                Err(_) => break,
            }
        }
        if sent == 0 {
            return Err(Fail::Rust(Error::WouldBlock));
        }
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_sent, sent) };
        Ok(())
    })
}

/// Called by `shmring_try_recv_batch` once per message, in order; `data` is valid only
/// during the call.
pub type shmring_msg_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, data: *const c_void, len: usize)>;

/// Hands up to `max` waiting messages to `fn` in place, then releases them together;
/// `*out_count` receives how many. `SHMRING_WOULD_BLOCK` if none was waiting,
/// `SHMRING_CLOSED` / `SHMRING_PEER_DEAD` at the end of the stream. Never blocks. `fn` must
/// not call into this consumer.
///
/// # Safety
/// `consumer` is live; `callback` is a valid function; `out_count` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_try_recv_batch(
    consumer: *mut shmring_consumer_t,
    max: usize,
    callback: shmring_msg_fn,
    ctx: *mut c_void,
    out_count: *mut usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let c = unsafe { nonnull_mut(consumer, "consumer") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_count, "out_count") }?;
        let callback = callback.ok_or(Fail::Null("callback"))?;
        let each = |m: &[u8]| {
            // SAFETY: a C function pointer supplied by the caller; the slice is valid for
            // the duration of the call, as documented.
            unsafe { callback(ctx, m.as_ptr().cast(), m.len()) }
        };
        let n = c.0.try_recv_batch(max, each)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_count, n) };
        Ok(())
    })
}

/// A peer record's state, from `shmring_ring_peers`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmring_peer_state {
    /// Attached, and its process runs.
    SHMRING_PEER_ATTACHED = 1,
    /// Closed by its holder.
    SHMRING_PEER_CLOSED = 2,
    /// A value shmring never writes.
    SHMRING_PEER_UNKNOWN = 3,
    /// Its holder died without closing, and another process found out.
    SHMRING_PEER_DIED = 4,
    /// Attached in the record, but its process has died (not found out yet).
    SHMRING_PEER_ATTACHED_DEAD = 5,
}

fn peer_state(status: PeerStatus) -> shmring_peer_state {
    match status {
        PeerStatus::Attached => shmring_peer_state::SHMRING_PEER_ATTACHED,
        PeerStatus::AttachedDead => shmring_peer_state::SHMRING_PEER_ATTACHED_DEAD,
        PeerStatus::Closed => shmring_peer_state::SHMRING_PEER_CLOSED,
        PeerStatus::Dead => shmring_peer_state::SHMRING_PEER_DIED,
        _ => shmring_peer_state::SHMRING_PEER_UNKNOWN,
    }
}

/// A snapshot of a ring of any kind (like `mq_getattr`). Values are read one by one while
/// the ends run.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_stats_t {
    /// The ring's kind.
    pub kind: shmring_kind,
    /// SPSC: data region bytes; MPMC: slots × slot size.
    pub capacity: u64,
    /// MPMC: number of slots (0 for SPSC).
    pub slots: u64,
    /// Largest message.
    pub max_message: u64,
    /// SPSC: bytes of published, unreleased records (0 for MPMC).
    pub used_bytes: u64,
    /// Messages published (MPMC: positions taken), not yet released.
    pub messages_in_flight: u64,
    /// Messages published since creation.
    pub messages_sent: u64,
    /// Payload bytes published since creation.
    pub bytes_sent: u64,
    /// Messages released since creation.
    pub messages_received: u64,
    /// Payload bytes released since creation.
    pub bytes_received: u64,
    /// Producers attached now (including dead ones not yet found out).
    pub producers: u32,
    /// Consumers attached now.
    pub consumers: u32,
    /// Producers asleep waiting for space.
    pub producers_waiting: u32,
    /// Consumers asleep waiting for data.
    pub consumers_waiting: u32,
    /// Producers that died without closing, since creation.
    pub producers_died: u64,
    /// Consumers that died without closing, since creation.
    pub consumers_died: u64,
    /// MPMC: claims of dead producers that consumers skipped (0 for SPSC).
    pub claims_skipped: u64,
    /// MPMC: messages dead consumers had taken and not released (0 for SPSC).
    pub messages_dropped: u64,
    /// Broadcast: `SHMRING_LOSSLESS` or `SHMRING_OVERWRITE` (0 for the other kinds).
    pub policy: u32,
    /// Broadcast: most readers at once (0 for the other kinds).
    pub max_readers: u32,
    /// Broadcast: bytes of the records still in the ring (0 for the other kinds).
    pub retained_bytes: u64,
    /// Broadcast: messages readers lost to overwrites, summed (0 for the other kinds).
    pub messages_missed: u64,
}

/// Buckets of `shmring_telemetry_t::latency_buckets`.
pub const SHMRING_LATENCY_BUCKETS: usize = 40;

/// What a telemetry ring recorded (`shmring_ring_telemetry`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_telemetry_t {
    /// 1 if the ring keeps telemetry (the other fields are 0 otherwise).
    pub enabled: u32,
    /// Producers stamp one message in this many.
    pub stamp_every: u32,
    /// Messages stamped.
    pub stamped: u64,
    /// Stamped messages received, by commit-to-receive latency: bucket `b` counts
    /// `[2^b, 2^(b+1))` nanoseconds (the last also everything longer).
    pub latency_buckets: [u64; SHMRING_LATENCY_BUCKETS],
    /// Most messages in flight a producer saw when stamping.
    pub in_flight_high_water: u64,
    /// `CLOCK_MONOTONIC` (ns) when a producer last stamped a message; 0: never.
    pub last_send_ns: u64,
    /// `CLOCK_MONOTONIC` (ns) when a consumer last received a stamped message; 0: never.
    pub last_receive_ns: u64,
}

/// Reads what a ring's telemetry recorded into `*out` (`enabled` 0 if it keeps none).
/// The counters come from shared memory: a hostile process can make them say anything.
/// Thread-safe with respect to the ends.
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_telemetry(
    ring: *const shmring_ring_t,
    out: *mut shmring_telemetry_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let mut view = shmring_telemetry_t {
            enabled: 0,
            stamp_every: 0,
            stamped: 0,
            latency_buckets: [0; SHMRING_LATENCY_BUCKETS],
            in_flight_high_water: 0,
            last_send_ns: 0,
            last_receive_ns: 0,
        };
        if let Some(t) = ring.0.stats().telemetry {
            view = shmring_telemetry_t {
                enabled: 1,
                stamp_every: t.stamp_every,
                stamped: t.stamped,
                latency_buckets: t.latency_buckets,
                in_flight_high_water: t.in_flight_high_water,
                last_send_ns: t.last_send_ns,
                last_receive_ns: t.last_receive_ns,
            };
        }
        // SAFETY: non-NULL (checked) and writable (contract).
        unsafe { write_out(out, view) };
        Ok(())
    })
}

/// Reads the counters of a ring of any kind into `*out`. Thread-safe with respect to the
/// ends.
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_stats(
    ring: *const shmring_ring_t,
    out: *mut shmring_stats_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let s = ring.0.stats();
        let mut stats = shmring_stats_t {
            kind: shmring_kind::SHMRING_KIND_SPSC,
            capacity: 0,
            slots: 0,
            max_message: s.max_message,
            used_bytes: 0,
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
            claims_skipped: 0,
            messages_dropped: 0,
            policy: 0,
            max_readers: 0,
            retained_bytes: 0,
            messages_missed: 0,
        };
        match s.kind {
            KindStats::Spsc {
                capacity,
                used_bytes,
            } => {
                stats.capacity = capacity;
                stats.used_bytes = used_bytes;
            }
            KindStats::Mpmc {
                slots,
                claims_skipped,
                messages_dropped,
                ..
            } => {
                stats.kind = shmring_kind::SHMRING_KIND_MPMC;
                stats.slots = slots;
                stats.capacity = slots * (s.max_message + 16).div_ceil(64) * 64;
                stats.claims_skipped = claims_skipped;
                stats.messages_dropped = messages_dropped;
            }
            KindStats::Broadcast {
                capacity,
                policy,
                max_readers,
                retained_bytes,
                messages_missed,
                ..
            } => {
                stats.kind = shmring_kind::SHMRING_KIND_BROADCAST;
                stats.capacity = capacity;
                stats.used_bytes = retained_bytes;
                stats.policy = policy_code(policy);
                stats.max_readers = max_readers;
                stats.retained_bytes = retained_bytes;
                stats.messages_missed = messages_missed;
            }
            _ => {}
        }
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, stats) };
        Ok(())
    })
}

/// One peer record, from `shmring_ring_peers`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_peer_t {
    /// Record index (SPSC: 0 producer, 1 consumer; MPMC: registry record).
    pub index: u32,
    /// 1 producer, 2 consumer, 0 a role byte shmring never writes.
    pub role: u32,
    /// The record's state.
    pub state: shmring_peer_state,
    /// Process id of the (last) holder.
    pub pid: u32,
    /// Bumped on every attach to this record.
    pub generation: u32,
    /// Messages published (producer) or released (consumer) by this record's holders.
    pub messages: u64,
}

/// Writes up to `cap` peer records that have been held to `out` and their total number to
/// `*out_count` (which may exceed `cap`: call again with more room). Thread-safe.
///
/// # Safety
/// `ring` is live; `out` has room for `cap` records (NULL if `cap` is 0); `out_count` is
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_peers(
    ring: *const shmring_ring_t,
    out: *mut shmring_peer_t,
    cap: usize,
    out_count: *mut usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_count, "out_count") }?;
        if cap > 0 && out.is_null() {
            return Err(Fail::Null("out"));
        }
        let peers = ring.0.peers();
        for (i, p) in peers.iter().take(cap).enumerate() {
            let record = shmring_peer_t {
                index: p.index,
                role: match p.role {
                    Some(Role::Producer) => 1,
                    Some(Role::Consumer) => 2,
                    None => 0,
                },
                state: peer_state(p.status),
                pid: p.pid,
                generation: p.generation,
                messages: p.messages,
            };
            // SAFETY: `out` has room for `cap` records and `i < cap` (contract).
            unsafe { out.add(i).write(record) };
        }
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_count, peers.len()) };
        Ok(())
    })
}

/// MPMC creation parameters. Start from `shmring_mpmc_config_init`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_mpmc_config_t {
    /// Number of slots: a power of two in 2..=2^24. Default 1024.
    pub slots: u64,
    /// Slot payload (largest message), 1..=2^24. Default 240.
    pub max_message: u64,
    /// Producers and consumers attached at once, 2..=1024. Default 16.
    pub max_peers: u32,
    /// How blocked calls wait: `SHMRING_WAIT_*`. Default `SHMRING_WAIT_SPIN_YIELD`.
    pub wait_strategy: u32,
    /// `SHMRING_FLAG_*` bits.
    pub flags: u32,
    /// Telemetry: stamp one message in this many (1 = every message); 0 (default) = off.
    pub telemetry: u32,
    /// Futex: nanoseconds to poll before sleeping. Default 20000.
    pub spin_ns: u64,
    /// Priority lanes, 1..=32 (priorities 0..lanes; each lane has `slots` slots). Default 1.
    pub lanes: u32,
}

/// Fills `*config` with the MPMC defaults. NULL is a no-op.
///
/// # Safety
/// `config` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_mpmc_config_init(config: *mut shmring_mpmc_config_t) {
    if config.is_null() {
        return;
    }
    let defaults = shmring_mpmc_config_t {
        slots: 1024,
        max_message: 240,
        max_peers: 16,
        wait_strategy: SHMRING_WAIT_SPIN_YIELD,
        flags: 0,
        telemetry: 0,
        spin_ns: 20_000,
        lanes: 1,
    };
    // SAFETY: non-NULL and writable (contract).
    unsafe { write_out(config, defaults) };
}

/// The MPMC configuration at `config` (NULL: the defaults).
///
/// # Safety
/// `config` is NULL or points at a readable `shmring_mpmc_config_t`.
unsafe fn mpmc_config_arg(config: *const shmring_mpmc_config_t) -> Result<Config, Fail> {
    if config.is_null() {
        return Ok(Config::new());
    }
    // SAFETY: per the contract.
    let cfg = unsafe { nonnull(config, "config") }?;
    Ok(
        common_config(cfg.wait_strategy, cfg.flags, cfg.spin_ns, cfg.telemetry)?
            .slots(size_field(cfg.slots, "slots")?)
            .max_message(size_field(cfg.max_message, "max_message")?)
            .max_peers(cfg.max_peers)
            .lanes(cfg.lanes),
    )
}

/// Creates the MPMC ring `name`: many producers and consumers, each message to exactly one
/// consumer. Ends are attached and used with the same calls as SPSC ends. `config` NULL
/// means defaults.
///
/// # Safety
/// `name` is a NUL-terminated string; `config` is NULL or valid; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_mpmc_create(
    name: *const c_char,
    config: *const shmring_mpmc_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's; `config` is NULL or valid.
    unsafe {
        make_ring(name, out, any::KindName::Mpmc, Make::Create, || {
            mpmc_config_arg(config)
        })
    }
}

/// Opens the existing MPMC ring `name` (`SHMRING_INCOMPATIBLE` for a ring of another kind).
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_mpmc_open(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's.
    unsafe { ring_out(name, out, |name| open_kind(name, any::KindName::Mpmc)) }
}

/// Creates the MPMC ring, or opens it if it exists (its parameters must match `config`).
///
/// # Safety
/// As `shmring_mpmc_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_mpmc_create_or_open(
    name: *const c_char,
    config: *const shmring_mpmc_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's; `config` is NULL or valid.
    unsafe {
        make_ring(name, out, any::KindName::Mpmc, Make::CreateOrOpen, || {
            mpmc_config_arg(config)
        })
    }
}

/// Broadcast overflow policy: the producer waits for the slowest live reader.
pub const SHMRING_LOSSLESS: u32 = 1;
/// Broadcast overflow policy: the producer overwrites; lapped readers get `SHMRING_LAGGED`.
pub const SHMRING_OVERWRITE: u32 = 2;
/// A new broadcast reader starts with the next message published.
pub const SHMRING_JOIN_LIVE: u32 = 0;
/// A new broadcast reader starts with the oldest message still in the ring.
pub const SHMRING_JOIN_OLDEST: u32 = 1;

fn policy_code(policy: Policy) -> u32 {
    match policy {
        Policy::Overwrite => SHMRING_OVERWRITE,
        _ => SHMRING_LOSSLESS,
    }
}

/// Broadcast creation parameters. Start from `shmring_broadcast_config_init`, then change
/// fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_broadcast_config_t {
    /// Bytes of the byte ring: a power of two in 256..=2^32. Default 1 MiB.
    pub capacity: u64,
    /// Largest message; 0 (default) = the most the capacity allows (a quarter, less 16).
    pub max_message: u64,
    /// Readers attached at once (named ones keep their record), 1..=1023. Default 16.
    pub max_readers: u32,
    /// `SHMRING_LOSSLESS` (default) or `SHMRING_OVERWRITE`.
    pub policy: u32,
    /// Lossless: bytes a reader may fall behind before it stops holding the producer back;
    /// 0 (default) = no limit.
    pub lag_limit: u64,
    /// How blocked calls wait: `SHMRING_WAIT_*`. Default `SHMRING_WAIT_SPIN_YIELD`.
    pub wait_strategy: u32,
    /// `SHMRING_FLAG_*` bits.
    pub flags: u32,
    /// Telemetry: stamp one message in this many (1 = every message); 0 (default) = off.
    pub telemetry: u32,
    /// Futex: nanoseconds to poll before sleeping. Default 20000.
    pub spin_ns: u64,
}

/// Fills `*config` with the broadcast defaults. NULL is a no-op.
///
/// # Safety
/// `config` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_broadcast_config_init(config: *mut shmring_broadcast_config_t) {
    if config.is_null() {
        return;
    }
    let defaults = shmring_broadcast_config_t {
        capacity: 1 << 20,
        max_message: 0,
        max_readers: 16,
        policy: SHMRING_LOSSLESS,
        lag_limit: 0,
        wait_strategy: SHMRING_WAIT_SPIN_YIELD,
        flags: 0,
        telemetry: 0,
        spin_ns: 20_000,
    };
    // SAFETY: non-NULL and writable (contract).
    unsafe { write_out(config, defaults) };
}

/// The broadcast configuration at `config` (NULL: the defaults).
///
/// # Safety
/// `config` is NULL or points at a readable `shmring_broadcast_config_t`.
unsafe fn broadcast_config_arg(config: *const shmring_broadcast_config_t) -> Result<Config, Fail> {
    if config.is_null() {
        return Ok(Config::new());
    }
    // SAFETY: per the contract.
    let cfg = unsafe { nonnull(config, "config") }?;
    let policy = match cfg.policy {
        SHMRING_LOSSLESS => Policy::Lossless,
        SHMRING_OVERWRITE => Policy::Overwrite,
        other => {
            return Err(Fail::Rust(Error::InvalidArgument {
                detail: format!(
                    "policy {other}: use SHMRING_LOSSLESS (1) or SHMRING_OVERWRITE (2)"
                ),
            }));
        }
    };
    let mut config = common_config(cfg.wait_strategy, cfg.flags, cfg.spin_ns, cfg.telemetry)?
        .capacity(size_field(cfg.capacity, "capacity")?)
        .max_readers(cfg.max_readers)
        .overflow(policy);
    if cfg.max_message != 0 {
        config = config.max_message(size_field(cfg.max_message, "max_message")?);
    }
    if cfg.lag_limit != 0 {
        config = config.lag_limit(cfg.lag_limit);
    }
    Ok(config)
}

/// Creates the broadcast ring `name`: one producer, many readers, each reading every
/// message at its own position. Attach the producer with `shmring_producer_create`,
/// readers with `shmring_consumer_create` (anonymous, from the live end) or
/// `shmring_broadcast_reader_create`; they use the same calls as any end. `config` NULL
/// means defaults.
///
/// # Safety
/// `name` is a NUL-terminated string; `config` is NULL or valid; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_broadcast_create(
    name: *const c_char,
    config: *const shmring_broadcast_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's; `config` is NULL or valid.
    unsafe {
        make_ring(name, out, any::KindName::Broadcast, Make::Create, || {
            broadcast_config_arg(config)
        })
    }
}

/// Opens the existing broadcast ring `name` (`SHMRING_INCOMPATIBLE` for another kind).
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_broadcast_open(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's.
    unsafe { ring_out(name, out, |name| open_kind(name, any::KindName::Broadcast)) }
}

/// Creates the broadcast ring, or opens it if it exists (parameters must match `config`).
///
/// # Safety
/// As `shmring_broadcast_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_broadcast_create_or_open(
    name: *const c_char,
    config: *const shmring_broadcast_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    // SAFETY: the caller's contract is this function's; `config` is NULL or valid.
    unsafe {
        make_ring(
            name,
            out,
            any::KindName::Broadcast,
            Make::CreateOrOpen,
            || broadcast_config_arg(config),
        )
    }
}

/// Attaches a reader to a broadcast ring: the durable reader `name` (1 to 32 of
/// `[A-Za-z0-9._-]`; it resumes after the last message its previous holder released,
/// `SHMRING_ALREADY_ATTACHED` while a live reader holds it), or an anonymous one if `name`
/// is NULL. A new reader starts at `join` (`SHMRING_JOIN_LIVE` or `SHMRING_JOIN_OLDEST`).
/// `SHMRING_INCOMPATIBLE` for a ring of another kind. Free it with `shmring_consumer_free`.
///
/// # Safety
/// `ring` is live; `name` is NULL or a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_broadcast_reader_create(
    ring: *const shmring_ring_t,
    name: *const c_char,
    join: u32,
    out: *mut *mut shmring_consumer_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let any::Ring::Broadcast(ring) = &ring.0 else {
            return Err(Fail::Rust(Error::Incompatible {
                detail: format!("a {} ring has no broadcast readers", ring.0.kind()),
            }));
        };
        let join = match join {
            SHMRING_JOIN_LIVE => JoinAt::Live,
            SHMRING_JOIN_OLDEST => JoinAt::Oldest,
            other => {
                return Err(Fail::Rust(Error::InvalidArgument {
                    detail: format!(
                        "join {other}: use SHMRING_JOIN_LIVE (0) or SHMRING_JOIN_OLDEST (1)"
                    ),
                }));
            }
        };
        let reader = if name.is_null() {
            ring.reader(join)?
        } else {
            // SAFETY: non-NULL and NUL-terminated (contract).
            let name = unsafe { CStr::from_ptr(name) }.to_str().map_err(|_| {
                Fail::Rust(Error::InvalidArgument {
                    detail: "reader name is not UTF-8".into(),
                })
            })?;
            ring.reader_named(name, join)?
        };
        // SAFETY: checked non-NULL above.
        unsafe { handle_out(out, shmring_consumer_t(any::Consumer::Broadcast(reader))) };
        Ok(())
    })
}

/// Forgets the durable reader `name` of a broadcast ring (frees its record and cursor):
/// `*out_found` says whether a record had the name. `SHMRING_ALREADY_ATTACHED` while a live
/// reader holds it.
///
/// # Safety
/// `ring` is live; `name` is a NUL-terminated string; `out_found` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_broadcast_forget_reader(
    ring: *const shmring_ring_t,
    name: *const c_char,
    out_found: *mut u32,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_found, "out_found") }?;
        // SAFETY: per the contract.
        let name = unsafe { name_arg(name) }?;
        let any::Ring::Broadcast(ring) = &ring.0 else {
            return Err(Fail::Rust(Error::Incompatible {
                detail: format!("a {} ring has no broadcast readers", ring.0.kind()),
            }));
        };
        let found = ring.forget_reader(name)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_found, u32::from(found)) };
        Ok(())
    })
}

/// One broadcast reader record, from `shmring_broadcast_readers`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_reader_t {
    /// Registry record (its `shmring_ring_peers` index).
    pub index: u32,
    /// The record's state.
    pub state: shmring_peer_state,
    /// Process id of the (last) holder.
    pub pid: u32,
    /// A durable reader's name, NUL-terminated; empty for an anonymous reader.
    pub name: [c_char; 33],
    /// Bytes published that it has not released.
    pub lag_bytes: u64,
    /// Messages published that it has not released.
    pub lag_messages: u64,
    /// Messages released by this record's holders.
    pub delivered: u64,
    /// Messages this record's holders lost to overwrites.
    pub missed: u64,
}

/// Writes up to `cap` reader records of a broadcast ring to `out` and their total number
/// to `*out_count` (which may exceed `cap`: call again with more room): name, state, pid,
/// lag, delivered and missed counts. `SHMRING_INCOMPATIBLE` for another kind. Thread-safe.
///
/// # Safety
/// `ring` is live; `out` has room for `cap` records (NULL if `cap` is 0); `out_count` is
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_broadcast_readers(
    ring: *const shmring_ring_t,
    out: *mut shmring_reader_t,
    cap: usize,
    out_count: *mut usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let ring = unsafe { nonnull(ring, "ring") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_count, "out_count") }?;
        if cap > 0 && out.is_null() {
            return Err(Fail::Null("out"));
        }
        let any::Ring::Broadcast(ring) = &ring.0 else {
            return Err(Fail::Rust(Error::Incompatible {
                detail: format!("a {} ring has no broadcast readers", ring.0.kind()),
            }));
        };
        let readers = ring.readers();
        for (i, r) in readers.iter().take(cap).enumerate() {
            let mut name = [0 as c_char; 33];
            if let Some(n) = &r.name {
                for (dst, &b) in name.iter_mut().zip(n.as_str().as_bytes()) {
                    *dst = b as c_char;
                }
            }
            let record = shmring_reader_t {
                index: r.index,
                state: peer_state(r.status),
                pid: r.pid,
                name,
                lag_bytes: r.lag_bytes,
                lag_messages: r.lag_messages,
                delivered: r.delivered,
                missed: r.missed,
            };
            // SAFETY: `out` has room for `cap` records and `i < cap` (contract).
            unsafe { out.add(i).write(record) };
        }
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_count, readers.len()) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_status() {
        for kind in shmring::ErrorKind::ALL {
            let status = status_of_code(kind.code());
            assert_ne!(status, SHMRING_UNKNOWN, "{kind:?} has no status");
            assert_eq!(status as i32, kind.code(), "{kind:?}");
            // SAFETY: the library's strings are static and NUL-terminated.
            let name = unsafe { CStr::from_ptr(shmring_status_str(status as i32)) };
            assert_ne!(
                name.to_str().unwrap(),
                "SHMRING_UNKNOWN",
                "{kind:?} has no name"
            );
        }
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = boundary(|| panic!("deliberate"));
        assert_eq!(status, SHMRING_PANIC);
        // SAFETY: the library's own NUL-terminated thread-local string.
        let msg = unsafe { CStr::from_ptr(shmring_last_error_message()) };
        assert!(msg.to_str().unwrap().contains("deliberate"));
    }
}

/// A request/reply server (opaque; `docs/rpc.md`). Used by one thread at a time.
pub struct shmring_rpc_server_t(shmring::rpc::Server);
/// A request/reply client: one connection to a service (opaque). Used by one thread at a
/// time.
pub struct shmring_rpc_client_t(shmring::rpc::Client);

/// A request received by `shmring_rpc_server_recv`: who sent it (credentials the kernel
/// recorded when the client connected) and where its reply goes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_rpc_request_t {
    /// The server's number for the client's connection.
    pub client: u64,
    /// The call's id within the connection.
    pub id: u64,
    /// The client's process id (in the server's PID namespace).
    pub pid: u32,
    /// The client's effective user id.
    pub uid: u32,
    /// The client's effective group id.
    pub gid: u32,
    /// Where the reply goes (opaque to C; pass the struct back to `shmring_rpc_server_reply`).
    pub reply_slot: u64,
}

/// Starts serving `service` (1 to 100 bytes). `ring_capacity`: bytes of each client's
/// request and reply rings (a power of two; 0 = 65536); `max_clients`: clients at once
/// (0 = 256). `SHMRING_ALREADY_EXISTS` if a live server has the service.
///
/// # Safety
/// `service` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_server_bind(
    service: *const c_char,
    ring_capacity: u64,
    max_clients: u32,
    out: *mut *mut shmring_rpc_server_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let service = unsafe { name_arg(service) }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let mut config = shmring::rpc::ServerConfig::new();
        if ring_capacity != 0 {
            config = config.ring_capacity(size_field(ring_capacity, "ring_capacity")?);
        }
        if max_clients != 0 {
            config = config.max_clients(max_clients as usize);
        }
        let server = shmring::rpc::Server::bind(service, &config)?;
        // SAFETY: checked non-NULL above.
        unsafe { handle_out(out, shmring_rpc_server_t(server)) };
        Ok(())
    })
}

/// Stops serving and frees the server: its clients' calls fail with `SHMRING_PEER_DEAD`.
/// NULL is a no-op.
///
/// # Safety
/// `server` is NULL or a handle from this library, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_server_free(server: *mut shmring_rpc_server_t) {
    // SAFETY: NULL or a handle from this library's `Box::into_raw`, freed once (contract).
    unsafe { free_handle(server) };
}

/// Receives the next request: copies its body into `buf` (capacity `cap`), its length to
/// `*out_len`, and who sent it and where the reply goes to `*out_request`; waits at most
/// `timeout_ns` (0: never waits, `SHMRING_WOULD_BLOCK`; `UINT64_MAX`: no limit;
/// `SHMRING_TIMEOUT`). `SHMRING_BUFFER_TOO_SMALL` if `cap` is short: the request is kept
/// for the next call, `*out_len` says what it needs. Reply with `shmring_rpc_server_reply`.
///
/// # Safety
/// `server` is live; `buf` has `cap` writable bytes; `out_len`, `out_request` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_server_recv(
    server: *mut shmring_rpc_server_t,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    out_request: *mut shmring_rpc_request_t,
    timeout_ns: u64,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let server = unsafe { nonnull_mut(server, "server") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_len, "out_len") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_request, "out_request") }?;
        // SAFETY: per the contract.
        let buf = unsafe { buf_arg(buf, cap) }?;
        let request = match timeout_ns {
            0 => server.0.try_recv()?,
            u64::MAX => server.0.recv()?,
            t => server.0.recv_timeout(Duration::from_nanos(t))?,
        };
        let len = request.body().len();
        if len > buf.len() {
            // SAFETY: checked non-NULL above.
            unsafe { write_out(out_len, len) };
            // Dropping the request keeps it for the next receive.
            return Err(Error::BufferTooSmall { needed: len }.into());
        }
        buf[..len].copy_from_slice(request.body());
        let caller = *request.caller();
        let to = request.defer()?;
        let [slot, client, id] = to.to_words();
        let info = shmring_rpc_request_t {
            client,
            id,
            pid: caller.pid,
            uid: caller.uid,
            gid: caller.gid,
            reply_slot: slot,
        };
        // SAFETY: checked non-NULL above.
        unsafe {
            write_out(out_len, len);
            write_out(out_request, info);
        }
        Ok(())
    })
}

/// Sends `len` bytes at `data` as the reply to `*request` (from `shmring_rpc_server_recv`).
/// `SHMRING_CLOSED` / `SHMRING_PEER_DEAD` if its client has gone, `SHMRING_TIMEOUT` if its
/// reply ring stays full (a client that stopped reading), `SHMRING_MESSAGE_TOO_LARGE`.
///
/// # Safety
/// `server` is live; `request` is readable; `data` has `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_server_reply(
    server: *mut shmring_rpc_server_t,
    request: *const shmring_rpc_request_t,
    data: *const c_void,
    len: usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let server = unsafe { nonnull_mut(server, "server") }?;
        // SAFETY: per the contract.
        let request = unsafe { nonnull(request, "request") }?;
        // SAFETY: per the contract.
        let body = unsafe { bytes_arg(data, len) }?;
        let to =
            shmring::rpc::ReplyTo::from_words([request.reply_slot, request.client, request.id]);
        server.0.reply(to, body)?;
        Ok(())
    })
}

/// Connects to `service`, waiting at most `timeout_ns` for the server's welcome
/// (`UINT64_MAX`: 5 s). `SHMRING_NOT_FOUND` if nobody serves it, `SHMRING_REGISTRY_FULL` if
/// the server has all the clients it takes.
///
/// # Safety
/// `service` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_client_connect(
    service: *const c_char,
    timeout_ns: u64,
    out: *mut *mut shmring_rpc_client_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let service = unsafe { name_arg(service) }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out, "out") }?;
        let timeout = timeout_of(timeout_ns).unwrap_or(Duration::from_secs(5));
        let client = shmring::rpc::Client::connect_timeout(service, timeout)?;
        // SAFETY: checked non-NULL above.
        unsafe { handle_out(out, shmring_rpc_client_t(client)) };
        Ok(())
    })
}

/// Disconnects and frees the client (the server drops the connection). NULL is a no-op.
///
/// # Safety
/// `client` is NULL or a handle from this library, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_client_free(client: *mut shmring_rpc_client_t) {
    // SAFETY: NULL or a handle from this library's `Box::into_raw`, freed once (contract).
    unsafe { free_handle(client) };
}

/// Connects the client to its service again (after `SHMRING_PEER_DEAD`: a restarted
/// server).
///
/// # Safety
/// `client` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_client_reconnect(
    client: *mut shmring_rpc_client_t,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let client = unsafe { nonnull_mut(client, "client") }?;
        client.0.reconnect()?;
        Ok(())
    })
}

/// Writes the largest request and reply bodies to `*out_request` and `*out_reply`.
///
/// # Safety
/// `client` is live; the outs are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_client_limits(
    client: *const shmring_rpc_client_t,
    out_request: *mut usize,
    out_reply: *mut usize,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let client = unsafe { nonnull(client, "client") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_request, "out_request") }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_reply, "out_reply") }?;
        // SAFETY: checked non-NULL above.
        unsafe {
            write_out(out_request, client.0.max_request());
            write_out(out_reply, client.0.max_reply());
        }
        Ok(())
    })
}

/// Sends `req_len` bytes at `req` and waits at most `timeout_ns` (`UINT64_MAX`: no limit)
/// for the reply, copied into `buf` (capacity `cap`, at least the largest reply from
/// `shmring_rpc_client_limits`, so no reply is ever lost: `SHMRING_INVALID_ARGUMENT`
/// otherwise, before anything is sent) with its length in `*out_len`.
/// `SHMRING_PEER_DEAD` if the server died before or during the call, `SHMRING_TIMEOUT`.
///
/// # Safety
/// `client` is live; `req` has `req_len` readable bytes; `buf` has `cap` writable bytes;
/// `out_len` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_rpc_call(
    client: *mut shmring_rpc_client_t,
    req: *const c_void,
    req_len: usize,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    timeout_ns: u64,
) -> shmring_status {
    boundary(|| {
        // SAFETY: per the contract.
        let client = unsafe { nonnull_mut(client, "client") }?;
        // SAFETY: per the contract.
        let request = unsafe { bytes_arg(req, req_len) }?;
        // SAFETY: per the contract.
        unsafe { nonnull_mut(out_len, "out_len") }?;
        // SAFETY: per the contract.
        let buf = unsafe { buf_arg(buf, cap) }?;
        let max = client.0.max_reply();
        if buf.len() < max {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "a reply buffer of {cap} bytes is shorter than the largest reply ({max}); \
                     nothing was sent"
                ),
            }
            .into());
        }
        let deadline = timeout_of(timeout_ns).map(|t| std::time::Instant::now() + t);
        let id = client.0.start_deadline(request, deadline)?;
        let len = client.0.reply(id, deadline, |body| {
            buf[..body.len()].copy_from_slice(body);
            body.len()
        })?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_len, len) };
        Ok(())
    })
}
