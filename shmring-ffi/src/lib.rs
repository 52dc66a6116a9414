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
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use shmring::{Config, Error, OpenOptions, PeerState, WaitStrategy, mpmc, spsc};

/// ABI major version: bumped on any incompatible change.
pub const SHMRING_ABI_VERSION_MAJOR: u32 = 0;
/// ABI minor version: bumped when functions are added.
pub const SHMRING_ABI_VERSION_MINOR: u32 = 3;
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
        _ => SHMRING_UNKNOWN,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
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

fn nonnull<'a, T>(ptr: *const T, what: &'static str) -> Result<&'a T, Fail> {
    // SAFETY: non-NULL pointers come from this library's `_create`/`_open` functions or
    // point at caller-owned objects of the declared type (the documented contract).
    unsafe { ptr.as_ref() }.ok_or(Fail::Null(what))
}

fn nonnull_mut<'a, T>(ptr: *mut T, what: &'static str) -> Result<&'a mut T, Fail> {
    // SAFETY: as in `nonnull`; the handle is not used from two threads at once (documented).
    unsafe { ptr.as_mut() }.ok_or(Fail::Null(what))
}

fn name_arg<'a>(name: *const c_char) -> Result<&'a str, Fail> {
    if name.is_null() {
        return Err(Fail::Null("name"));
    }
    // SAFETY: non-NULL and documented as a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str().map_err(|_| {
        Fail::Rust(Error::InvalidName {
            name: name.to_string_lossy().into_owned(),
            reason: "is not valid UTF-8",
        })
    })
}

fn bytes_arg<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Fail::Null("data"));
    }
    // SAFETY: the caller passes `len` readable bytes at `data` (documented).
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

fn buf_arg<'a>(buf: *mut c_void, cap: usize) -> Result<&'a mut [u8], Fail> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(Fail::Null("buf"));
    }
    // SAFETY: the caller passes `cap` writable bytes at `buf` (documented).
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) })
}

fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: checked non-NULL by the caller of this helper before any work was done.
    unsafe { out.write(value) };
}

fn timeout_of(timeout_ns: u64) -> Duration {
    Duration::from_nanos(timeout_ns)
}

/// Either kind of ring or end. Every call below that both kinds support works on both.
enum Kind<S, M> {
    Spsc(S),
    Mpmc(M),
}

/// Runs `$body` with `$x` bound to whichever kind `$handle` holds (both kinds have the
/// method `$body` calls, with the same signature).
macro_rules! either {
    ($handle:expr, $x:ident => $body:expr) => {
        match $handle {
            Kind::Spsc($x) => $body,
            Kind::Mpmc($x) => $body,
        }
    };
}

/// An open ring segment, SPSC or MPMC (opaque).
pub struct shmring_ring_t(Kind<spsc::Ring, mpmc::Ring>);
/// A producing end of a ring (opaque).
pub struct shmring_producer_t(Kind<spsc::Producer, mpmc::Producer>);
/// A consuming end of a ring (opaque).
pub struct shmring_consumer_t(Kind<spsc::Consumer, mpmc::Consumer>);

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
    /// Futex: nanoseconds to poll before sleeping. Default 20000.
    pub spin_ns: u64,
}

/// The settings both kinds of ring share.
fn common_config(wait_strategy: u32, flags: u32, spin_ns: u64) -> Result<Config, Fail> {
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
        .spin_before_sleep(Duration::from_nanos(spin_ns)))
}

fn config_of(cfg: &shmring_config_t) -> Result<Config, Fail> {
    let mut config =
        common_config(cfg.wait_strategy, cfg.flags, cfg.spin_ns)?.capacity(cfg.capacity);
    if cfg.max_message != 0 {
        config = config.max_message(cfg.max_message);
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
    write_out(
        config,
        shmring_config_t {
            capacity: 1 << 20,
            max_message: 0,
            wait_strategy: SHMRING_WAIT_SPIN_YIELD,
            flags: 0,
            spin_ns: 20_000,
        },
    );
}

/// NULL means the defaults.
fn config_arg(config: *const shmring_config_t) -> Result<Config, Fail> {
    if config.is_null() {
        return Ok(Config::new());
    }
    config_of(nonnull(config, "config")?)
}

/// Hands a new handle to C through `out`.
fn handle_out<T>(out: *mut *mut T, handle: T) {
    write_out(out, Box::into_raw(Box::new(handle)));
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

/// Creates the ring `name` (e.g. "/quotes"); fails with `SHMRING_ALREADY_EXISTS` if it exists.
/// `config` NULL means defaults. On success `*out` receives a handle to free with
/// `shmring_ring_free`. The segment persists until `shmring_unlink`.
///
/// # Safety
/// `name` is a NUL-terminated string; `config` is NULL or valid; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_create(
    name: *const c_char,
    config: *const shmring_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    boundary(|| {
        let name = name_arg(name)?;
        nonnull_mut(out, "out")?;
        let config = config_arg(config)?;
        handle_out(
            out,
            shmring_ring_t(Kind::Spsc(spsc::Ring::create(name, &config)?)),
        );
        Ok(())
    })
}

/// Opens the existing ring `name` (owner must be this user, not writable by others).
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_open(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    boundary(|| {
        let name = name_arg(name)?;
        nonnull_mut(out, "out")?;
        handle_out(
            out,
            shmring_ring_t(Kind::Spsc(spsc::Ring::open_with(
                name,
                &OpenOptions::new(),
            )?)),
        );
        Ok(())
    })
}

/// Creates the ring, or opens it if it exists (then its parameters must match `config`).
/// Exactly one of several racing processes creates it.
///
/// # Safety
/// As `shmring_ring_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_create_or_open(
    name: *const c_char,
    config: *const shmring_config_t,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    boundary(|| {
        let name = name_arg(name)?;
        nonnull_mut(out, "out")?;
        let config = config_arg(config)?;
        handle_out(
            out,
            shmring_ring_t(Kind::Spsc(spsc::Ring::create_or_open(name, &config)?)),
        );
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

/// Removes the ring `name`; attached handles keep working.
///
/// # Safety
/// `name` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_unlink(name: *const c_char) -> shmring_status {
    boundary(|| {
        shmring::spsc::unlink(name_arg(name)?)?;
        Ok(())
    })
}

/// Attaches the producing end (`SHMRING_ALREADY_ATTACHED` if another holds it). Free it with
/// `shmring_producer_free`, which also ends the stream. A producer is used from one thread
/// at a time.
///
/// # Safety
/// `ring` is a live ring handle; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_producer_create(
    ring: *const shmring_ring_t,
    out: *mut *mut shmring_producer_t,
) -> shmring_status {
    boundary(|| {
        let ring = nonnull(ring, "ring")?;
        nonnull_mut(out, "out")?;
        let producer = match &ring.0 {
            Kind::Spsc(r) => Kind::Spsc(r.producer()?),
            Kind::Mpmc(r) => Kind::Mpmc(r.producer()?),
        };
        handle_out(out, shmring_producer_t(producer));
        Ok(())
    })
}

/// Attaches the consuming end. Free it with `shmring_consumer_free`. One thread at a time.
///
/// # Safety
/// `ring` is a live ring handle; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_consumer_create(
    ring: *const shmring_ring_t,
    out: *mut *mut shmring_consumer_t,
) -> shmring_status {
    boundary(|| {
        let ring = nonnull(ring, "ring")?;
        nonnull_mut(out, "out")?;
        let consumer = match &ring.0 {
            Kind::Spsc(r) => Kind::Spsc(r.consumer()?),
            Kind::Mpmc(r) => Kind::Mpmc(r.consumer()?),
        };
        handle_out(out, shmring_consumer_t(consumer));
        Ok(())
    })
}

/// Publishes anything pending, ends the stream (the consumer drains, then gets
/// `SHMRING_CLOSED`) and frees the producer. NULL is a no-op.
///
/// # Safety
/// `producer` is NULL or a handle from this library, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_producer_free(producer: *mut shmring_producer_t) {
    // SAFETY: NULL or a handle from this library's `Box::into_raw`, freed once (contract).
    unsafe { free_handle(producer) };
}

/// Closes the consumer (the producer's next send gets `SHMRING_CLOSED`) and frees it.
/// NULL is a no-op.
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
        let p = nonnull_mut(producer, "producer")?;
        let msg = bytes_arg(data, len)?;
        either!(&mut p.0, p => p.try_send(msg))?;
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
        let p = nonnull_mut(producer, "producer")?;
        let msg = bytes_arg(data, len)?;
        if timeout_ns == u64::MAX {
            either!(&mut p.0, p => p.send(msg))?;
        } else {
            either!(&mut p.0, p => p.send_timeout(msg, timeout_of(timeout_ns)))?;
        }
        Ok(())
    })
}

/// Copies the next message into `buf` (capacity `cap`) and writes its length to `*out_len`.
/// Never blocks: `SHMRING_WOULD_BLOCK` when empty, `SHMRING_CLOSED` at end of stream,
/// `SHMRING_BUFFER_TOO_SMALL` if `cap` is short (the message stays; `shmring_try_read`
/// tells its length).
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
    boundary(|| {
        let c = nonnull_mut(consumer, "consumer")?;
        nonnull_mut(out_len, "out_len")?;
        let buf = buf_arg(buf, cap)?;
        let n = either!(&mut c.0, c => c.try_recv(buf))?;
        write_out(out_len, n);
        Ok(())
    })
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
    boundary(|| {
        let c = nonnull_mut(consumer, "consumer")?;
        nonnull_mut(out_len, "out_len")?;
        let buf = buf_arg(buf, cap)?;
        let n = if timeout_ns == u64::MAX {
            either!(&mut c.0, c => c.recv(buf))?
        } else {
            either!(&mut c.0, c => c.recv_timeout(buf, timeout_of(timeout_ns)))?
        };
        write_out(out_len, n);
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
        let p = nonnull_mut(producer, "producer")?;
        nonnull_mut(out_ptr, "out_ptr")?;
        let ptr = match timeout_ns {
            0 => either!(&mut p.0, p => p.try_reserve_detached(len))?,
            u64::MAX => either!(&mut p.0, p => p.reserve_detached(len, None))?,
            ns => either!(&mut p.0, p => p.reserve_detached(len, Some(timeout_of(ns))))?,
        };
        write_out(out_ptr, ptr.as_ptr().cast());
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
        either!(&mut nonnull_mut(producer, "producer")?.0, p => p.commit_detached(len))?;
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
        either!(&mut nonnull_mut(producer, "producer")?.0, p => p.cancel_detached());
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
        let c = nonnull_mut(consumer, "consumer")?;
        nonnull_mut(out_ptr, "out_ptr")?;
        nonnull_mut(out_len, "out_len")?;
        let (ptr, len) = match timeout_ns {
            0 => either!(&mut c.0, c => c.try_read_detached())?,
            u64::MAX => either!(&mut c.0, c => c.read_detached(None))?,
            ns => either!(&mut c.0, c => c.read_detached(Some(timeout_of(ns))))?,
        };
        write_out(out_ptr, ptr.as_ptr().cast_const().cast());
        write_out(out_len, len);
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
        either!(&mut nonnull_mut(consumer, "consumer")?.0, c => c.release_detached())?;
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

/// Copies as many of the `count` messages at `msgs` as fit, in order, and publishes them
/// (SPSC: with one store; MPMC: taking up to 64 slots per atomic operation); `*out_sent` receives how many (possibly 0: then the status is
/// `SHMRING_WOULD_BLOCK`). Never blocks.
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
        let p = nonnull_mut(producer, "producer")?;
        nonnull_mut(out_sent, "out_sent")?;
        if count > 0 && msgs.is_null() {
            return Err(Fail::Null("msgs"));
        }
        let msgs = if count == 0 {
            &[][..]
        } else {
            // SAFETY: non-NULL, `count` elements (documented contract).
            unsafe { std::slice::from_raw_parts(msgs, count) }
        };
        let (sent, outcome) = match &mut p.0 {
            Kind::Spsc(p) => spsc_batch(p, msgs)?,
            Kind::Mpmc(p) => mpmc_batch(p, msgs)?,
        };
        if sent == 0 {
            outcome?;
            return Err(Fail::Rust(Error::WouldBlock));
        }
        write_out(out_sent, sent);
        Ok(())
    })
}

/// Pushes `msgs` into one SPSC batch until the ring is full; (sent, error that stopped it).
fn spsc_batch(
    p: &mut spsc::Producer,
    msgs: &[shmring_msg_t],
) -> Result<(usize, Result<(), Error>), Fail> {
    let mut batch = p.batch();
    let mut outcome = Ok(());
    for m in msgs {
        match batch.try_push(bytes_arg(m.data, m.len)?) {
            Ok(()) => {}
            Err(Error::WouldBlock) => break,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    Ok((batch.publish(), outcome))
}

/// Slices handed to one MPMC batch call (a stack array: no allocation per call).
const MPMC_BATCH_CHUNK: usize = 64;

/// Sends `msgs` to an MPMC ring in chunks, one claim per chunk, until the ring is full.
fn mpmc_batch(
    p: &mut mpmc::Producer,
    msgs: &[shmring_msg_t],
) -> Result<(usize, Result<(), Error>), Fail> {
    let mut sent = 0;
    for chunk in msgs.chunks(MPMC_BATCH_CHUNK) {
        let mut slices: [&[u8]; MPMC_BATCH_CHUNK] = [&[]; MPMC_BATCH_CHUNK];
        for (slot, m) in slices.iter_mut().zip(chunk) {
            *slot = bytes_arg(m.data, m.len)?;
        }
        match p.try_send_batch(&slices[..chunk.len()]) {
            Ok(n) => {
                sent += n;
                if n < chunk.len() {
                    break;
                }
            }
            Err(Error::WouldBlock) => break,
            Err(e) => return Ok((sent, Err(e))),
        }
    }
    Ok((sent, Ok(())))
}

/// Called by `shmring_try_recv_batch` once per message, in order; `data` is valid only
/// during the call.
pub type shmring_msg_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, data: *const c_void, len: usize)>;

/// Hands up to `max` waiting messages to `fn` in place, then releases them all with one
/// store; `*out_count` receives how many. `SHMRING_WOULD_BLOCK` if none was waiting,
/// `SHMRING_CLOSED` at end of stream. Never blocks. `fn` must not call into this consumer.
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
        let c = nonnull_mut(consumer, "consumer")?;
        nonnull_mut(out_count, "out_count")?;
        let callback = callback.ok_or(Fail::Null("callback"))?;
        let each = |m: &[u8]| {
            // SAFETY: a C function pointer supplied by the caller; the slice is valid for
            // the duration of the call, as documented.
            unsafe { callback(ctx, m.as_ptr().cast(), m.len()) }
        };
        let n = either!(&mut c.0, c => c.try_recv_batch(max, each))?;
        write_out(out_count, n);
        Ok(())
    })
}

/// A role's state in `shmring_stats_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmring_peer_state {
    /// Nobody attached yet.
    SHMRING_PEER_FREE = 0,
    /// Attached.
    SHMRING_PEER_ATTACHED = 1,
    /// Closed.
    SHMRING_PEER_CLOSED = 2,
    /// A value shmring never writes.
    SHMRING_PEER_UNKNOWN = 3,
    /// The holder died without closing, and another process found out.
    SHMRING_PEER_DIED = 4,
}

/// A snapshot of a ring (like `mq_getattr`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_stats_t {
    /// Data region bytes.
    pub capacity: u64,
    /// Largest message.
    pub max_message: u64,
    /// Bytes of published, unreleased records.
    pub used_bytes: u64,
    /// Messages published, not yet released.
    pub messages_in_flight: u64,
    /// Messages published since creation.
    pub messages_sent: u64,
    /// Payload bytes published since creation.
    pub bytes_sent: u64,
    /// Messages released since creation.
    pub messages_received: u64,
    /// Payload bytes released since creation.
    pub bytes_received: u64,
    /// Producer role.
    pub producer_state: shmring_peer_state,
    /// Producer's pid (0 if none).
    pub producer_pid: u32,
    /// Consumer role.
    pub consumer_state: shmring_peer_state,
    /// Consumer's pid (0 if none).
    pub consumer_pid: u32,
}

fn peer_of(state: PeerState) -> (shmring_peer_state, u32) {
    match state {
        PeerState::Free => (shmring_peer_state::SHMRING_PEER_FREE, 0),
        PeerState::Attached { pid } => (shmring_peer_state::SHMRING_PEER_ATTACHED, pid),
        PeerState::Closed { pid } => (shmring_peer_state::SHMRING_PEER_CLOSED, pid),
        PeerState::Dead { pid } => (shmring_peer_state::SHMRING_PEER_DIED, pid),
        _ => (shmring_peer_state::SHMRING_PEER_UNKNOWN, 0),
    }
}

/// Reads the ring's counters and roles into `*out`. Thread-safe with respect to the ends.
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_ring_stats(
    ring: *const shmring_ring_t,
    out: *mut shmring_stats_t,
) -> shmring_status {
    boundary(|| {
        let ring = nonnull(ring, "ring")?;
        nonnull_mut(out, "out")?;
        let Kind::Spsc(ring) = &ring.0 else {
            return Err(Fail::Rust(Error::InvalidArgument {
                detail: "an MPMC ring: use shmring_mpmc_stats".into(),
            }));
        };
        let s = ring.stats();
        let (producer_state, producer_pid) = peer_of(s.producer);
        let (consumer_state, consumer_pid) = peer_of(s.consumer);
        write_out(
            out,
            shmring_stats_t {
                capacity: s.capacity,
                max_message: s.max_message,
                used_bytes: s.used_bytes,
                messages_in_flight: s.messages_in_flight,
                messages_sent: s.messages_sent,
                bytes_sent: s.bytes_sent,
                messages_received: s.messages_received,
                bytes_received: s.bytes_received,
                producer_state,
                producer_pid,
                consumer_state,
                consumer_pid,
            },
        );
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
    /// Futex: nanoseconds to poll before sleeping. Default 20000.
    pub spin_ns: u64,
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
    write_out(
        config,
        shmring_mpmc_config_t {
            slots: 1024,
            max_message: 240,
            max_peers: 16,
            wait_strategy: SHMRING_WAIT_SPIN_YIELD,
            flags: 0,
            spin_ns: 20_000,
        },
    );
}

/// NULL means the defaults.
fn mpmc_config_arg(config: *const shmring_mpmc_config_t) -> Result<Config, Fail> {
    if config.is_null() {
        return Ok(Config::new());
    }
    let cfg = nonnull(config, "config")?;
    Ok(common_config(cfg.wait_strategy, cfg.flags, cfg.spin_ns)?
        .slots(cfg.slots)
        .max_message(cfg.max_message)
        .max_peers(cfg.max_peers))
}

/// Creates the MPMC ring `name`: many producers and consumers, each message to exactly one
/// consumer. Ends are attached and used with the same calls as SPSC ends
/// (`shmring_producer_create`, `shmring_try_send`, `shmring_read`, ...). `config` NULL
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
    boundary(|| {
        let name = name_arg(name)?;
        nonnull_mut(out, "out")?;
        let config = mpmc_config_arg(config)?;
        handle_out(
            out,
            shmring_ring_t(Kind::Mpmc(mpmc::Ring::create(name, &config)?)),
        );
        Ok(())
    })
}

/// Opens the existing MPMC ring `name` (`SHMRING_INCOMPATIBLE` for an SPSC ring).
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_mpmc_open(
    name: *const c_char,
    out: *mut *mut shmring_ring_t,
) -> shmring_status {
    boundary(|| {
        let name = name_arg(name)?;
        nonnull_mut(out, "out")?;
        handle_out(out, shmring_ring_t(Kind::Mpmc(mpmc::Ring::open(name)?)));
        Ok(())
    })
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
    boundary(|| {
        let name = name_arg(name)?;
        nonnull_mut(out, "out")?;
        let config = mpmc_config_arg(config)?;
        handle_out(
            out,
            shmring_ring_t(Kind::Mpmc(mpmc::Ring::create_or_open(name, &config)?)),
        );
        Ok(())
    })
}

/// A snapshot of an MPMC ring.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmring_mpmc_stats_t {
    /// Number of slots.
    pub slots: u64,
    /// Largest message.
    pub max_message: u64,
    /// Positions taken by producers, not yet by consumers.
    pub messages_in_flight: u64,
    /// Messages published since creation.
    pub messages_sent: u64,
    /// Payload bytes published since creation.
    pub bytes_sent: u64,
    /// Messages released since creation.
    pub messages_received: u64,
    /// Payload bytes released since creation.
    pub bytes_received: u64,
    /// Claims of dead producers that consumers skipped.
    pub claims_skipped: u64,
    /// Messages dead consumers had taken and not released.
    pub messages_dropped: u64,
    /// Producers attached now.
    pub producers: u32,
    /// Consumers attached now.
    pub consumers: u32,
}

/// Reads an MPMC ring's counters into `*out` (`SHMRING_INVALID_ARGUMENT` for an SPSC ring:
/// use `shmring_ring_stats`).
///
/// # Safety
/// `ring` is live; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmring_mpmc_stats(
    ring: *const shmring_ring_t,
    out: *mut shmring_mpmc_stats_t,
) -> shmring_status {
    boundary(|| {
        let ring = nonnull(ring, "ring")?;
        nonnull_mut(out, "out")?;
        let Kind::Mpmc(ring) = &ring.0 else {
            return Err(Fail::Rust(Error::InvalidArgument {
                detail: "an SPSC ring: use shmring_ring_stats".into(),
            }));
        };
        let s = ring.stats();
        write_out(
            out,
            shmring_mpmc_stats_t {
                slots: s.slots,
                max_message: s.max_message,
                messages_in_flight: s.messages_in_flight,
                messages_sent: s.messages_sent,
                bytes_sent: s.bytes_sent,
                messages_received: s.messages_received,
                bytes_received: s.bytes_received,
                claims_skipped: s.claims_skipped,
                messages_dropped: s.messages_dropped,
                producers: s.producers,
                consumers: s.consumers,
            },
        );
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
