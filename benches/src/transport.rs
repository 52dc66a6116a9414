//! Every transport behind one interface: the parent sets a transport up, hands the child a
//! description (inherited file descriptors, names, a port), and both ends get an
//! [`Endpoint`]. Messages within one measurement all have the same size, so byte-stream
//! transports read exactly that many bytes per message.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

use shmring::{Config, Error, Kind, OpenOptions, WaitStrategy, mpmc, spsc};

/// First byte of the message that ends a throughput stream.
pub(crate) const END: u8 = 0xFF;
/// First byte of an ordinary message.
pub(crate) const DATA: u8 = 0x00;
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Names as the issue and the JSON use them.
pub(crate) const ALL: &[&str] = &[
    "shmring-spsc-spin",
    "shmring-spsc-futex",
    "shmring-mpmc-spin",
    "shmring-mpmc-futex",
    "shmring-broadcast-spin",
    "shmring-broadcast-futex",
    "shmring-spsc-telemetry",
    "shmring-spsc-telemetry64",
    "shmring-spsc-fd",
    "shmring-spsc-tokio",
    "pipe",
    "fifo",
    "uds-stream",
    "uds-seqpacket",
    "tokio-uds",
    "posix-mq",
    "sysv-mq",
    "tcp-loopback",
    #[cfg(feature = "peers")]
    "ringfire-spin",
    #[cfg(feature = "peers")]
    "ringfire-futex",
    #[cfg(feature = "peers")]
    "iceoryx2-spin",
    #[cfg(feature = "peers")]
    "iceoryx2-event",
    "floor-spin",
    "memcpy",
];

/// How a shmring endpoint moves bytes (kernel transports have one way only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// `try_send` / `recv` into a buffer.
    Copy,
    /// `reserve` → write → `commit`; `read` → read every byte → `release`.
    ZeroCopy,
    /// Batches of 32 on both sides (copy in, in-place read out).
    Batch32,
}

impl Api {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::Copy => "copy",
            Api::ZeroCopy => "zero-copy",
            Api::Batch32 => "batch32",
        }
    }

    pub(crate) fn parse(s: &str) -> Api {
        match s {
            "zero-copy" => Api::ZeroCopy,
            "batch32" => Api::Batch32,
            _ => Api::Copy,
        }
    }
}

/// One end of a transport.
pub(crate) trait Endpoint {
    /// Sends one message.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receives one message into `buf`, returning its length.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Sends `count` copies of `msg` (batched where the transport and API allow).
    fn send_burst(&mut self, msg: &[u8], count: usize) -> io::Result<()> {
        for _ in 0..count {
            self.send(msg)?;
        }
        Ok(())
    }
    /// Receives until a message starting with [`END`]; returns how many came before it.
    fn recv_until_end(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        let mut count = 0;
        loop {
            let n = self.recv(buf)?;
            if n > 0 && buf[0] == END {
                return Ok(count);
            }
            count += 1;
        }
    }
    /// Sleep/wake system calls made by this end (shmring's own counter; 0 elsewhere).
    fn wake_syscalls(&self) -> u64 {
        0
    }
}

fn to_io(e: Error) -> io::Error {
    io::Error::other(e)
}

/// A shmring pair of any kind: one ring each way, one producer and one consumer on each
/// (for MPMC: what a single pair pays for the multi-peer protocol).
pub(crate) struct Shmring<K: BenchKind> {
    tx: shmring::Producer<K>,
    rx: shmring::Consumer<K>,
    api: Api,
    /// `-fd` transports: the receiver waits in `poll` on its readiness descriptor.
    readiness: Option<shmring::Readiness>,
    /// `-tokio` transports: both ends wait through tokio (`send_async`, `recv_async`) on a
    /// current-thread runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

/// How the benchmark sizes a ring of each kind for messages of `size` bytes.
pub(crate) trait BenchKind: Kind {
    /// The creation parameters.
    fn config(size: usize) -> Config;
    /// Attaches the child's consumer (after the parent may have sent the handshake).
    fn attach_consumer(ring: &shmring::Ring<Self>) -> shmring::Result<shmring::Consumer<Self>> {
        ring.consumer()
    }
}

impl BenchKind for spsc::Spsc {
    fn config(size: usize) -> Config {
        Config::new().capacity(ring_capacity(size))
    }
}

impl BenchKind for mpmc::Mpmc {
    /// Slots of `size` bytes, as many as the SPSC ring of that size holds bytes for (at
    /// least 64).
    fn config(size: usize) -> Config {
        let slots = (ring_capacity(size) / (size + 16).next_power_of_two())
            .next_power_of_two()
            .clamp(64, 1 << 14);
        Config::new()
            .slots(slots)
            .max_message(size.max(1))
            .max_peers(2)
    }
}

impl BenchKind for shmring::broadcast::Broadcast {
    /// The SPSC ring's byte ring, one reader, Lossless (the producer waits for it, as an
    /// SPSC producer waits for its consumer).
    fn config(size: usize) -> Config {
        Config::new()
            .capacity(ring_capacity(size))
            .max_message(size.max(1))
            .max_readers(1)
    }
    /// From the oldest record: the parent's handshake may already be in the ring.
    fn attach_consumer(ring: &shmring::Ring<Self>) -> shmring::Result<shmring::Consumer<Self>> {
        ring.reader(shmring::broadcast::JoinAt::Oldest)
    }
}

/// The wait strategy a shmring transport name selects (`shmring-<kind>-<strategy>`).
pub(crate) fn strategy(transport: &str) -> WaitStrategy {
    if transport.ends_with("-futex") || transport.ends_with("-fd") || transport.ends_with("-tokio")
    {
        WaitStrategy::Futex
    } else {
        WaitStrategy::Spin
    }
}

/// Telemetry a shmring transport name asks for: `-telemetry` stamps every message,
/// `-telemetry<N>` one in N; 0 (off) without the suffix.
pub(crate) fn telemetry(transport: &str) -> u32 {
    match transport.rsplit_once("-telemetry") {
        Some((_, "")) => 1,
        Some((_, every)) => every.parse().unwrap_or(1),
        None => 0,
    }
}

/// Whether a transport's receiver may sleep in shmring's wait (futex).
pub(crate) fn sleeps(transport: &str) -> bool {
    (transport.starts_with("shmring") && strategy(transport) != WaitStrategy::Spin)
        || transport == "ringfire-futex"
}

impl<K: BenchKind> Shmring<K> {
    /// Creates both rings (parent side). `spin`: the futex strategy's spin window;
    /// `telemetry`: stamp one message in this many (0: off).
    pub(crate) fn create(
        names: (&str, &str),
        strategy: WaitStrategy,
        spin: Duration,
        telemetry: u32,
        size: usize,
        api: Api,
    ) -> shmring::Result<Shmring<K>> {
        let config = K::config(size)
            .wait_strategy(strategy)
            .spin_before_sleep(spin)
            .telemetry(telemetry);
        let out = shmring::Ring::<K>::create(names.0, &config)?;
        let back = shmring::Ring::<K>::create(names.1, &config)?;
        Ok(Shmring {
            tx: out.producer()?,
            rx: back.consumer()?,
            api,
            readiness: None,
            runtime: None,
        })
    }

    /// For a `-fd` transport, receive through the readiness descriptor (arm, then `poll`).
    pub(crate) fn waiting_as(mut self, transport: &str) -> shmring::Result<Shmring<K>> {
        if transport.ends_with("-fd") {
            self.readiness = Some(self.rx.readiness()?);
        }
        if transport.ends_with("-tokio") {
            self.runtime = Some(
                current_thread_runtime().map_err(|source| shmring::Error::Io {
                    op: "start a tokio runtime",
                    source,
                })?,
            );
        }
        Ok(self)
    }

    /// The next message through the readiness loop: receive, else arm and `poll`.
    fn recv_polling(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = self.readiness.as_ref().map_or(-1, |r| r.as_raw_fd());
        loop {
            match self.rx.try_recv(buf) {
                Err(Error::WouldBlock) => {}
                done => return done.map_err(to_io),
            }
            if self.rx.arm().map_err(to_io)? {
                let mut fds = [libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                let ms = CALL_TIMEOUT.as_millis() as i32;
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) } == 0 {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no readiness"));
                }
            }
        }
    }

    /// Opens both rings (child side), crossed over.
    pub(crate) fn open(
        names: (&str, &str),
        spin: Duration,
        api: Api,
    ) -> shmring::Result<Shmring<K>> {
        let options = OpenOptions::new().spin_before_sleep(spin);
        let inbound = shmring::Ring::<K>::open_with(names.0, &options)?;
        let outbound = shmring::Ring::<K>::open_with(names.1, &options)?;
        Ok(Shmring {
            tx: outbound.producer()?,
            rx: K::attach_consumer(&inbound)?,
            api,
            readiness: None,
            runtime: None,
        })
    }
}

/// Ring size for a message size: room for many messages, at least 1 MiB.
pub(crate) fn ring_capacity(size: usize) -> usize {
    ((size + 8) * 64).next_power_of_two().max(1 << 20)
}

/// Reads every byte of a received message (what a consumer does with data).
#[inline]
fn touch(bytes: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        sum = sum.wrapping_add(u64::from_le_bytes(c.try_into().unwrap()));
    }
    for &b in chunks.remainder() {
        sum = sum.wrapping_add(u64::from(b));
    }
    sum
}

impl<K: BenchKind> Endpoint for Shmring<K> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if let Some(runtime) = &self.runtime {
            return runtime.block_on(self.tx.send_async(msg)).map_err(to_io);
        }
        match self.api {
            Api::Copy | Api::Batch32 => self.tx.send_timeout(msg, CALL_TIMEOUT).map_err(to_io),
            Api::ZeroCopy => {
                let mut grant = self
                    .tx
                    .reserve_timeout(msg.len(), CALL_TIMEOUT)
                    .map_err(to_io)?;
                grant.copy_from_slice(msg);
                grant.commit().map_err(to_io)
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.readiness.is_some() {
            return self.recv_polling(buf);
        }
        if let Some(runtime) = &self.runtime {
            return runtime.block_on(self.rx.recv_async(buf)).map_err(to_io);
        }
        match self.api {
            Api::Copy => self.rx.recv_timeout(buf, CALL_TIMEOUT).map_err(to_io),
            Api::ZeroCopy | Api::Batch32 => {
                let grant = self.rx.read_timeout(CALL_TIMEOUT).map_err(to_io)?;
                let n = grant.len();
                buf[..n.min(8)].copy_from_slice(&grant[..n.min(8)]);
                std::hint::black_box(touch(&grant));
                grant.release().map_err(to_io)?;
                Ok(n)
            }
        }
    }

    fn send_burst(&mut self, msg: &[u8], count: usize) -> io::Result<()> {
        if self.api != Api::Batch32 {
            for _ in 0..count {
                self.send(msg)?;
            }
            return Ok(());
        }
        let batch = [msg; 32];
        let mut left = count;
        while left > 0 {
            match self.tx.try_send_batch(&batch[..32.min(left)]) {
                Ok(sent) => left -= sent,
                Err(Error::WouldBlock) => {
                    // Full: wait for room the ordinary way (one message).
                    self.tx.send_timeout(msg, CALL_TIMEOUT).map_err(to_io)?;
                    left -= 1;
                }
                Err(e) => return Err(to_io(e)),
            }
        }
        Ok(())
    }

    fn recv_until_end(&mut self, buf: &mut [u8]) -> io::Result<u64> {
        if self.api != Api::Batch32 {
            let mut count = 0;
            loop {
                let n = self.recv(buf)?;
                if n > 0 && buf[0] == END {
                    return Ok(count);
                }
                count += 1;
            }
        }
        let mut count = 0u64;
        let mut ended = false;
        while !ended {
            match self.rx.try_recv_batch(32, |m| {
                std::hint::black_box(touch(m));
                if m.first() == Some(&END) {
                    ended = true;
                } else {
                    count += 1;
                }
            }) {
                Ok(_) => {}
                Err(Error::WouldBlock) => {
                    // Wait with the ring's strategy for the next message, then batch again.
                    let grant = self.rx.read_timeout(CALL_TIMEOUT).map_err(to_io)?;
                    std::hint::black_box(touch(&grant));
                    if grant.first() == Some(&END) {
                        ended = true;
                    } else {
                        count += 1;
                    }
                    grant.release().map_err(to_io)?;
                }
                Err(e) => return Err(to_io(e)),
            }
        }
        Ok(count)
    }

    fn wake_syscalls(&self) -> u64 {
        self.tx.wake_syscalls() + self.rx.wake_syscalls()
    }
}

/// A byte-stream transport over two file descriptors (pipe, FIFO, stream socket, TCP):
/// messages are `size` bytes, read exactly.
pub(crate) struct Stream<R: Read, W: Write> {
    rd: R,
    wr: W,
    size: usize,
}

impl<R: Read, W: Write> Stream<R, W> {
    pub(crate) fn new(rd: R, wr: W, size: usize) -> Self {
        Stream { rd, wr, size }
    }
}

impl<R: Read, W: Write> Endpoint for Stream<R, W> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.wr.write_all(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rd.read_exact(&mut buf[..self.size])?;
        Ok(self.size)
    }
}

/// A tokio runtime on the calling thread only, with its reactor.
fn current_thread_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
}

/// A stream socket driven through tokio (`tokio-uds`): each call runs the socket's async
/// read or write to completion on a current-thread runtime; messages are `size` bytes.
pub(crate) struct TokioStream {
    runtime: tokio::runtime::Runtime,
    stream: tokio::net::UnixStream,
    size: usize,
}

impl TokioStream {
    /// Takes over the stream socket `fd` (inherited or fresh, owned by this process).
    ///
    /// # Safety
    /// `fd` is an open Unix stream socket this process owns and nothing else closes.
    pub(crate) unsafe fn from_fd(fd: RawFd, size: usize) -> io::Result<TokioStream> {
        use std::os::fd::FromRawFd;
        let runtime = current_thread_runtime()?;
        // SAFETY: per the caller's contract.
        let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
        std_stream.set_nonblocking(true)?;
        let stream = {
            let _context = runtime.enter();
            tokio::net::UnixStream::from_std(std_stream)?
        };
        Ok(TokioStream {
            runtime,
            stream,
            size,
        })
    }
}

impl Endpoint for TokioStream {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.runtime.block_on(self.stream.write_all(msg))
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        let size = self.size;
        self.runtime
            .block_on(self.stream.read_exact(&mut buf[..size]))?;
        Ok(size)
    }
}

/// A file from an inherited descriptor number.
///
/// # Safety
/// `fd` is an open descriptor this process owns and nothing else closes.
pub(crate) unsafe fn inherited(fd: RawFd) -> File {
    // SAFETY: per the caller's contract.
    unsafe { File::from_raw_fd(fd) }
}

/// Two pipes or socket pairs: (parent's fds, child's fds) as (read, write).
pub(crate) fn fd_pairs(kind: &str) -> io::Result<((RawFd, RawFd), (RawFd, RawFd))> {
    let pair = |seqpacket: bool, socket: bool| -> io::Result<(RawFd, RawFd)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors these calls write. No CLOEXEC: the
        // child inherits them.
        let rc = unsafe {
            if socket {
                let ty = if seqpacket {
                    libc::SOCK_SEQPACKET
                } else {
                    libc::SOCK_STREAM
                };
                libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr())
            } else {
                libc::pipe(fds.as_mut_ptr())
            }
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((fds[0], fds[1]))
    };
    match kind {
        "pipe" => {
            // a→b: parent writes a.1, child reads a.0; b→a: child writes b.1, parent reads b.0.
            let a = pair(false, false)?;
            let b = pair(false, false)?;
            Ok(((b.0, a.1), (a.0, b.1)))
        }
        "uds-stream" | "uds-seqpacket" => {
            let s = pair(kind == "uds-seqpacket", true)?;
            Ok(((s.0, s.0), (s.1, s.1)))
        }
        _ => Err(io::Error::other(format!("{kind} has no fd pair"))),
    }
}

/// A libc byte count, or the OS error it signals (negative).
fn check_len(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A libc status, or the OS error it signals (non-zero).
fn check_rc(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A message-preserving socket (seqpacket): one `recv` is one message.
pub(crate) struct Packet {
    fd: RawFd,
}

impl Packet {
    pub(crate) fn new(fd: RawFd) -> Self {
        Packet { fd }
    }
}

impl Endpoint for Packet {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is valid for `msg.len()` bytes; `fd` is an open socket.
        let n = unsafe { libc::send(self.fd, msg.as_ptr().cast(), msg.len(), 0) };
        check_len(n as isize)?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        check_len(n as isize)
    }
}

/// Two POSIX message queues, one each way.
pub(crate) struct PosixMq {
    tx: libc::mqd_t,
    rx: libc::mqd_t,
}

fn cstring(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

impl PosixMq {
    /// Creates (parent) or opens (child) the queues `out` (we send) and `back` (we receive).
    pub(crate) fn open(out: &str, back: &str, size: usize, create: bool) -> io::Result<PosixMq> {
        let open = |name: &str| -> io::Result<libc::mqd_t> {
            // SAFETY: a zeroed mq_attr is valid; the fields set are the documented ones.
            let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
            attr.mq_maxmsg = posix_mq_depth(size);
            attr.mq_msgsize = size as libc::c_long;
            let flags = if create {
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR
            } else {
                libc::O_RDWR
            };
            let name = cstring(name);
            // SAFETY: `name` is NUL-terminated, `attr` valid for the call.
            let q = unsafe { libc::mq_open(name.as_ptr(), flags, 0o600, &attr as *const _) };
            if q < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(q)
        };
        Ok(PosixMq {
            tx: open(out)?,
            rx: open(back)?,
        })
    }

    pub(crate) fn unlink(name: &str) {
        let name = cstring(name);
        // SAFETY: NUL-terminated name.
        unsafe { libc::mq_unlink(name.as_ptr()) };
    }
}

/// Queue depth: 10 (Linux's default `msg_max`), fewer if two queues of `size`-byte messages
/// would exceed RLIMIT_MSGQUEUE (each queue is charged about depth * (size + 64) bytes).
pub(crate) fn posix_mq_depth(size: usize) -> libc::c_long {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid out-parameter.
    let limit = if unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        800 * 1024
    };
    let per_message = size as u64 + 64;
    (limit / (2 * per_message)).clamp(1, 10) as libc::c_long
}

impl Drop for PosixMq {
    fn drop(&mut self) {
        // SAFETY: both descriptors are open queues owned by this value.
        unsafe {
            libc::mq_close(self.tx);
            libc::mq_close(self.rx);
        }
    }
}

impl Endpoint for PosixMq {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` valid for its length; `tx` an open queue.
        check_rc(unsafe { libc::mq_send(self.tx, msg.as_ptr().cast(), msg.len(), 0) })
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` valid for its length (>= the queue's message size).
        let n = unsafe {
            libc::mq_receive(
                self.rx,
                buf.as_mut_ptr().cast(),
                buf.len(),
                std::ptr::null_mut(),
            )
        };
        check_len(n as isize)
    }
}

/// One System V queue; message type 1 flows parent→child, type 2 child→parent.
pub(crate) struct SysvMq {
    id: libc::c_int,
    send_type: libc::c_long,
    recv_type: libc::c_long,
    buf: Vec<u8>,
}

impl SysvMq {
    pub(crate) fn create() -> io::Result<libc::c_int> {
        // SAFETY: plain system call.
        let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(id)
    }

    pub(crate) fn remove(id: libc::c_int) {
        // SAFETY: plain system call; a null buffer is allowed for IPC_RMID.
        unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    }

    pub(crate) fn new(id: libc::c_int, parent: bool, size: usize) -> SysvMq {
        let (send_type, recv_type) = if parent { (1, 2) } else { (2, 1) };
        SysvMq {
            id,
            send_type,
            recv_type,
            buf: vec![0; 8 + size.max(8)],
        }
    }
}

impl Endpoint for SysvMq {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.buf[..8].copy_from_slice(&self.send_type.to_ne_bytes());
        self.buf[8..8 + msg.len()].copy_from_slice(msg);
        // SAFETY: `buf` holds the mtype then `msg.len()` bytes of text.
        check_rc(unsafe { libc::msgsnd(self.id, self.buf.as_ptr().cast(), msg.len(), 0) })
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let cap = self.buf.len() - 8;
        // SAFETY: `self.buf` has room for the mtype and `cap` bytes.
        let n = unsafe {
            libc::msgrcv(
                self.id,
                self.buf.as_mut_ptr().cast(),
                cap,
                self.recv_type,
                0,
            )
        };
        let n = check_len(n as isize)?;
        buf[..n].copy_from_slice(&self.buf[8..8 + n]);
        Ok(n)
    }
}

/// TCP over loopback with Nagle off.
pub(crate) fn tcp_pair_parent() -> io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
}

pub(crate) fn tcp_stream(
    stream: TcpStream,
    size: usize,
) -> io::Result<Stream<TcpStream, TcpStream>> {
    stream.set_nodelay(true)?;
    let rd = stream.try_clone()?;
    Ok(Stream::new(rd, stream, size))
}

/// ringfire 0.5.2 (feature `peers`): its SPMC ring of fixed-size `Copy` slots, one each way,
/// in its fastest documented configuration for a lossless comparison: `LosslessBackpressure`
/// (the producer waits for the registered reader, as shmring's does), readers from the
/// oldest retained message, busy spinning. What favours it: a slot is a fixed `[u8; N]`
/// (no length, no variable-size records), and it has no end of stream and no dead-peer
/// detection in this mode. Sizes 8, 64 and 1024 (one type per size).
#[cfg(feature = "peers")]
pub(crate) struct Ringfire<const N: usize> {
    tx: ringfire::RingProducer<[u8; N]>,
    rx: Option<ringfire::RingConsumer<[u8; N]>>,
    rx_path: std::path::PathBuf,
    /// `None`: busy spin (`ringfire-spin`); else its futex strategy (`ringfire-futex`).
    futex: Option<ringfire::FutexWait>,
}

#[cfg(feature = "peers")]
impl<const N: usize> Ringfire<N> {
    /// Creates the ring this end writes (ringfire's writer creates its ring); the one it
    /// reads is attached on first use (the other end creates it).
    pub(crate) fn new(
        tx_path: &str,
        rx_path: &str,
        futex: Option<ringfire::FutexWait>,
    ) -> io::Result<Ringfire<N>> {
        let tx = ringfire::RingProducerBuilder::new(ring_capacity(N) as u64 / N.max(64) as u64)
            .flow_control(ringfire::FlowControl::LosslessBackpressure)
            .cleanup_mode(ringfire::CleanupMode::Persistent)
            .build::<[u8; N], _>(tx_path)
            .map_err(io::Error::other)?;
        Ok(Ringfire {
            tx,
            rx: None,
            rx_path: rx_path.into(),
            futex,
        })
    }

    fn reader(&mut self) -> io::Result<&mut ringfire::RingConsumer<[u8; N]>> {
        if self.rx.is_none() {
            let deadline = std::time::Instant::now() + CALL_TIMEOUT;
            let rx = loop {
                let attempt = ringfire::RingConsumerBuilder::<[u8; N]>::new()
                    .start_from_oldest()
                    .attach(&self.rx_path);
                match attempt {
                    Ok(rx) => break rx,
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
            };
            self.rx = Some(rx);
        }
        Ok(self.rx.as_mut().expect("attached above"))
    }
}

#[cfg(feature = "peers")]
impl<const N: usize> Endpoint for Ringfire<N> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let mut item = [0u8; N];
        item[..msg.len()].copy_from_slice(msg);
        self.tx.push(&item);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut futex = self.futex;
        let item = match &mut futex {
            Some(wait) => self.reader()?.recv_blocking(wait),
            None => self.reader()?.recv_blocking(&mut ringfire::BusySpin::new()),
        };
        buf[..N].copy_from_slice(&item);
        Ok(N)
    }
}

/// A ringfire endpoint for messages of `size` bytes (8, 64 or 1024). `futex`: wait with
/// its `FutexWait` (its default of 32 polls before sleeping, or none with `spin` zero:
/// "asleep") instead of busy spinning.
#[cfg(feature = "peers")]
pub(crate) fn ringfire(
    size: usize,
    tx: &str,
    rx: &str,
    futex: bool,
    spin: Duration,
) -> io::Result<Box<dyn Endpoint>> {
    let futex = futex.then(|| {
        let polls = if spin.is_zero() {
            0
        } else {
            RINGFIRE_FUTEX_POLLS
        };
        ringfire::FutexWait::new(polls, Some(Duration::from_millis(50)))
    });
    Ok(match size {
        8 => Box::new(Ringfire::<8>::new(tx, rx, futex)?),
        64 => Box::new(Ringfire::<64>::new(tx, rx, futex)?),
        1024 => Box::new(Ringfire::<1024>::new(tx, rx, futex)?),
        other => {
            return Err(io::Error::other(format!(
                "ringfire is built here for 8, 64 and 1024 bytes, not {other}"
            )));
        }
    })
}

/// Polls ringfire's `FutexWait` makes before it sleeps: its default.
#[cfg(feature = "peers")]
pub(crate) const RINGFIRE_FUTEX_POLLS: u32 = 32;

/// iceoryx2 0.10.0 (feature `peers`): publish-subscribe on `[u8]` slices, one service each
/// way, lossless (`enable_safe_overflow(false)`, publishers retry until delivered), the
/// subscriber polled in a busy loop (its fastest documented way to receive). Zero copy on
/// its side too: a loaned sample is written in place and sent. A send waits (once) until
/// the other side's subscriber is connected, since a sample sent before that is not kept.
/// `iceoryx2-event`: the same, plus its event service beside each publish-subscribe one
/// (the documented way to wait): every send notifies, and a receiver that finds nothing
/// waits on its listener (a blocking system call) instead of polling.
#[cfg(feature = "peers")]
pub(crate) struct Iceoryx2 {
    /// Event ports (`iceoryx2-event`): notify after each send, wait when empty.
    events: Option<(
        iceoryx2::port::notifier::Notifier<iceoryx2::prelude::ipc::Service>,
        iceoryx2::port::listener::Listener<iceoryx2::prelude::ipc::Service>,
    )>,
    publisher: iceoryx2::port::publisher::Publisher<iceoryx2::prelude::ipc::Service, [u8], ()>,
    subscriber: iceoryx2::port::subscriber::Subscriber<iceoryx2::prelude::ipc::Service, [u8], ()>,
    out: iceoryx2::service::port_factory::publish_subscribe::PortFactory<
        iceoryx2::prelude::ipc::Service,
        [u8],
        (),
    >,
    connected: bool,
    _node: iceoryx2::prelude::Node<iceoryx2::prelude::ipc::Service>,
}

#[cfg(feature = "peers")]
impl Iceoryx2 {
    /// Opens (or creates) both services: publishes on `tx`, subscribes to `rx`.
    pub(crate) fn new(tx: &str, rx: &str, size: usize, events: bool) -> io::Result<Iceoryx2> {
        use iceoryx2::prelude::*;
        let err = |e: &dyn core::fmt::Debug| io::Error::other(format!("iceoryx2: {e:?}"));
        let node = NodeBuilder::new()
            .create::<ipc::Service>()
            .map_err(|e| err(&e))?;
        let service = |name: &str| {
            let name: ServiceName = name.try_into().map_err(|e| err(&e))?;
            node.service_builder(&name)
                .publish_subscribe::<[u8]>()
                .enable_safe_overflow(false)
                .subscriber_max_buffer_size(256)
                .history_size(0)
                .max_publishers(1)
                .max_subscribers(1)
                .open_or_create()
                .map_err(|e| err(&e))
        };
        let out = service(tx)?;
        let inbound = service(rx)?;
        let publisher = out
            .publisher_builder()
            .initial_max_slice_len(size.max(1))
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(|e| err(&e))?;
        let subscriber = inbound.subscriber_builder().create().map_err(|e| err(&e))?;
        let events = if events {
            let event = |name: &str| {
                let name: ServiceName = format!("{name}-event")
                    .as_str()
                    .try_into()
                    .map_err(|e| err(&e))?;
                node.service_builder(&name)
                    .event()
                    .open_or_create()
                    .map_err(|e| err(&e))
            };
            let notifier = event(tx)?
                .notifier_builder()
                .create()
                .map_err(|e| err(&e))?;
            let listener = event(rx)?
                .listener_builder()
                .create()
                .map_err(|e| err(&e))?;
            Some((notifier, listener))
        } else {
            None
        };
        Ok(Iceoryx2 {
            events,
            publisher,
            subscriber,
            out,
            connected: false,
            _node: node,
        })
    }
}

#[cfg(feature = "peers")]
impl Endpoint for Iceoryx2 {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        use iceoryx2::port::update_connections::UpdateConnections;
        use iceoryx2::prelude::PortFactory;
        let err = |e: &dyn core::fmt::Debug| io::Error::other(format!("iceoryx2: {e:?}"));
        if !self.connected {
            let deadline = std::time::Instant::now() + CALL_TIMEOUT;
            while self.out.dynamic_config().number_of_subscribers() == 0 {
                if std::time::Instant::now() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no subscriber"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            self.publisher.update_connections().map_err(|e| err(&e))?;
            self.connected = true;
        }
        let sample = self
            .publisher
            .loan_slice_uninit(msg.len())
            .map_err(|e| err(&e))?;
        sample.write_from_slice(msg).send().map_err(|e| err(&e))?;
        if let Some((notifier, _)) = &self.events {
            notifier.notify().map_err(|e| err(&e))?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let err = |e: &dyn core::fmt::Debug| io::Error::other(format!("iceoryx2: {e:?}"));
        loop {
            match self.subscriber.receive() {
                Ok(Some(sample)) => {
                    let payload = sample.payload();
                    buf[..payload.len()].copy_from_slice(payload);
                    return Ok(payload.len());
                }
                Ok(None) => match &self.events {
                    // Notifications since the last wait are drained by it; the receive
                    // above is repeated after every wake-up.
                    Some((_, listener)) => {
                        listener
                            .timed_wait(|_| {}, CALL_TIMEOUT)
                            .map_err(|e| err(&e))?;
                    }
                    None => std::hint::spin_loop(),
                },
                Err(e) => return Err(err(&e)),
            }
        }
    }
}
