//! Request/reply between processes: a [`Server`] answers [`Client`]s, each call one request
//! and its reply, like doors or Sun RPC without the kernel in the data path.
//!
//! A client connects to the service's Unix socket (abstract namespace, so nothing is left
//! in the file system); the server learns the client's pid, uid and gid from the kernel
//! (`SO_PEERCRED`), creates two anonymous SPSC rings for it (requests, replies) and passes
//! them over the socket. From then on calls go through the rings only: no system call on
//! either side while both are busy. Because each client has rings of its own, nobody else
//! can write into them (short of ptrace-level access to the client), so [`Caller`] —
//! taken by the kernel at connect time — holds for every request of the connection, and a
//! hostile client can damage only its own connection. Rings are anonymous memory files:
//! when either process dies they go with its descriptors, nothing stays in `/dev/shm`.
//!
//! Failure: a server that dies fails pending and later calls with `PeerDead` (its end of
//! each ring is gone; the waiting client is woken as for any ring); [`Client::reconnect`]
//! connects to the service again (a restarted server). A client that dies is dropped by
//! the server the next time it looks (its request ring reports the death, its socket
//! closes), and its rings are freed. `docs/rpc.md` has the failure table.
//!
//! ```
//! use shmring::rpc::{Client, Server, ServerConfig};
//! let service = format!("doc-rpc-{}", std::process::id());
//! let mut server = Server::bind(&service, &ServerConfig::new())?;
//! let handle = std::thread::spawn(move || -> shmring::Result<()> {
//!     let request = server.recv()?;
//!     let answer = request.body().to_ascii_uppercase();
//!     request.reply(&answer)
//! });
//! let mut client = Client::connect(&service)?;
//! let mut reply = Vec::new();
//! client.call(b"hello", &mut reply)?;
//! assert_eq!(reply, b"HELLO");
//! handle.join().unwrap()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use crate::channel::{Consumer, Producer, ReadGrant, Readiness, Ring};
use crate::config::{Config, OpenOptions};
use crate::error::{Error, Result};
use crate::spsc::Spsc;
use crate::wait::WaitStrategy;

/// First word of a welcome: the protocol and its version.
const MAGIC: u64 = u64::from_le_bytes(*b"SHMRPC01");
/// Bytes of a welcome: magic, status, client number, largest request, largest reply.
const WELCOME: usize = 40;
/// Welcome status: connected.
const STATUS_OK: u32 = 0;
/// Welcome status: the server has `max_clients` connections.
const STATUS_FULL: u32 = 1;
/// Bytes before each request's and reply's body: the call's id.
const ID_BYTES: usize = 8;
/// Poller token of the listening socket; connection `i` has `2i` (its request ring's
/// readiness) and `2i + 1` (its socket).
const LISTENER: u64 = u64::MAX;
/// Requests found between two looks at the sockets (new clients, closed connections)
/// while the server is never idle.
const SOCKETS_EVERY: u32 = 4096;
/// Longest a server sleeps without looking at its connections.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// How a [`Server`] sizes and serves its connections.
///
/// ```
/// use std::time::Duration;
/// let config = shmring::rpc::ServerConfig::new()
///     .ring_capacity(1 << 20)
///     .max_clients(64)
///     .spin(Duration::from_micros(50));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    ring_capacity: usize,
    max_clients: usize,
    spin: Duration,
    reply_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ring_capacity: 64 * 1024,
            max_clients: 256,
            spin: Duration::from_micros(50),
            reply_timeout: Duration::from_secs(1),
        }
    }
}

impl ServerConfig {
    /// Defaults: 64 KiB request and reply rings per client (requests and replies up to
    /// 32 KiB less 16 bytes), 256 clients, 50 µs of polling before sleeping, replies wait
    /// at most 1 s for room in a client's ring.
    pub fn new() -> Self {
        ServerConfig::default()
    }

    /// Bytes of each client's request ring and reply ring (a power of two, 256 to 2^30);
    /// the largest request or reply is half of it less 16 bytes.
    pub fn ring_capacity(mut self, bytes: usize) -> Self {
        self.ring_capacity = bytes;
        self
    }

    /// Clients connected at once; more are refused (`RegistryFull` at their connect).
    pub fn max_clients(mut self, clients: usize) -> Self {
        self.max_clients = clients;
        self
    }

    /// How long a server with nothing to do polls its rings before it sleeps (and clients
    /// poll for their reply before sleeping).
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// How long a reply waits for room in a client's reply ring (a client that stopped
    /// reading) before the reply fails with `Timeout`.
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    fn ring_config(&self) -> Config {
        Config::new()
            .capacity(self.ring_capacity)
            .wait_strategy(WaitStrategy::Futex)
            .spin_before_sleep(self.spin)
    }
}

/// Who sent a request: the connection's number and the credentials the kernel recorded for
/// the client's socket when it connected (`SO_PEERCRED`). A client cannot choose them; the
/// pid is the client's at connect time (in the server's PID namespace), and belongs to it
/// while the connection lasts, since a client that exits ends its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The server's number for the connection (never reused by one server).
    pub client: u64,
    /// The client's process id.
    pub pid: u32,
    /// The client's effective user id.
    pub uid: u32,
    /// The client's effective group id.
    pub gid: u32,
}

/// Where a deferred reply goes ([`Request::defer`], [`Server::reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyTo {
    slot: usize,
    client: u64,
    id: u64,
}

impl ReplyTo {
    /// The caller's connection number.
    pub fn client(&self) -> u64 {
        self.client
    }

    /// The call's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The destination as three words, for carrying it where a Rust value cannot go (the
    /// C ABI): `[connection slot, client number, call id]`. A made-up value is refused by
    /// [`Server::reply`] unless it names a live connection (`Closed`).
    pub fn to_words(&self) -> [u64; 3] {
        [self.slot as u64, self.client, self.id]
    }

    /// A destination from [`to_words`](ReplyTo::to_words).
    pub fn from_words(words: [u64; 3]) -> ReplyTo {
        ReplyTo {
            slot: usize::try_from(words[0]).unwrap_or(usize::MAX),
            client: words[1],
            id: words[2],
        }
    }
}

/// One client's connection, on the server's side.
struct Connection {
    caller: Caller,
    socket: UnixStream,
    requests: Consumer<Spsc>,
    replies: Producer<Spsc>,
    readiness: Readiness,
}

/// The serving end of a service: accepts clients and hands out their requests one at a
/// time, fairly (each receive starts looking after the connection served last). Not
/// `Sync`: one thread serves; several server processes can each serve their own service.
pub struct Server {
    service: String,
    listener: UnixListener,
    poller: crate::os::Poller,
    connections: Vec<Option<Connection>>,
    /// Where the next look for a request starts.
    next: usize,
    clients_ever: u64,
    config: ServerConfig,
    ready: Vec<u64>,
    /// Requests found since the sockets were last looked at.
    since_sockets: u32,
}

impl Server {
    /// Starts serving `service` (a name of 1 to 100 bytes without NUL). `AlreadyExists` if
    /// a live server has it.
    pub fn bind(service: &str, config: &ServerConfig) -> Result<Server> {
        check_service(service)?;
        if config.max_clients == 0 {
            return Err(Error::invalid_argument("max_clients must be at least 1"));
        }
        // The rings' parameters are checked now, not at the first client.
        Ring::<Spsc>::create_anonymous(&config.ring_config())?;
        // A server killed with -9 leaves its armed doorbells (files in /dev/shm) behind;
        // its successor removes them.
        crate::os::remove_dead_doorbells(true);
        let listener = crate::os::rpc_listen(service).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => Error::AlreadyExists {
                name: format!("rpc service {service}"),
            },
            _ => Error::Io {
                op: "bind the service socket",
                source: e,
            },
        })?;
        let poller = crate::os::Poller::new().map_err(|source| Error::Io {
            op: "epoll",
            source,
        })?;
        poller
            .add(listener.as_fd(), LISTENER)
            .map_err(|source| Error::Io {
                op: "epoll_ctl",
                source,
            })?;
        Ok(Server {
            service: service.to_owned(),
            listener,
            poller,
            connections: Vec::new(),
            next: 0,
            clients_ever: 0,
            config: config.clone(),
            ready: Vec::new(),
            since_sockets: 0,
        })
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Clients connected now (the dead and departed are counted until the server next
    /// looks at its connections: any receive).
    pub fn clients(&self) -> usize {
        self.connections.iter().flatten().count()
    }

    /// The next request if one is waiting, or `WouldBlock`. Accepts waiting clients and
    /// drops departed ones on the way.
    pub fn try_recv(&mut self) -> Result<Request<'_>> {
        self.since_sockets += 1;
        if self.since_sockets >= SOCKETS_EVERY {
            self.look_at_sockets(Some(Duration::ZERO))?;
        }
        if let Some(index) = self.find_request() {
            return self.request_at(index);
        }
        self.look_at_sockets(Some(Duration::ZERO))?;
        match self.find_request() {
            Some(index) => self.request_at(index),
            None => Err(Error::WouldBlock),
        }
    }

    /// The next request, waiting for one: polls for [`ServerConfig::spin`], then sleeps
    /// until a client sends, connects or leaves.
    pub fn recv(&mut self) -> Result<Request<'_>> {
        self.recv_until(None)
    }

    /// Like [`recv`](Server::recv), giving up with `Timeout` after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Request<'_>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Like [`recv`](Server::recv), giving up with `Timeout` at `deadline`.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<Request<'_>> {
        self.recv_until(Some(deadline))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Request<'_>> {
        loop {
            let spin_until = Instant::now() + self.config.spin;
            let mut polls = 0u32;
            let found = loop {
                if let Some(index) = self.find_request() {
                    break Some(index);
                }
                polls += 1;
                if polls % 64 == 0 && Instant::now() >= spin_until {
                    break None;
                }
                std::hint::spin_loop();
            };
            if let Some(index) = found {
                self.since_sockets += 1;
                if self.since_sockets >= SOCKETS_EVERY {
                    self.look_at_sockets(Some(Duration::ZERO))?;
                }
                return self.request_at(index);
            }
            self.look_at_sockets(Some(Duration::ZERO))?;
            if !self.arm_all() {
                continue;
            }
            let now = Instant::now();
            let sleep = match deadline {
                Some(d) if d <= now => {
                    return match self.find_request() {
                        Some(index) => self.request_at(index),
                        None => Err(Error::Timeout),
                    };
                }
                Some(d) => (d - now).min(IDLE_LOOK),
                None => IDLE_LOOK,
            };
            self.look_at_sockets(Some(sleep))?;
        }
    }

    /// Arms every connection's request ring for its readiness descriptor; `false` if one
    /// has something to receive (or an end to report) now. A connection that cannot be
    /// armed is dropped (it could never wake the server).
    fn arm_all(&mut self) -> bool {
        let mut all = true;
        for index in 0..self.connections.len() {
            let Some(conn) = self.connections[index].as_mut() else {
                continue;
            };
            match conn.requests.arm() {
                Ok(true) => {}
                // Something to receive, or an end the next look reports.
                Ok(false) => all = false,
                Err(_) => {
                    self.drop_connection(index);
                    all = false;
                }
            }
        }
        all
    }

    /// Index of a connection with a request waiting, looking round from `next`; drops
    /// connections whose client has gone or damaged its ring.
    fn find_request(&mut self) -> Option<usize> {
        let count = self.connections.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            let Some(conn) = self.connections[index].as_mut() else {
                continue;
            };
            let usable = match conn.requests.try_read() {
                // Dropping the grant keeps the request for `request_at`.
                Ok(grant) if grant.len() >= ID_BYTES => Some(true),
                Ok(grant) => {
                    // Shorter than an id: not a request this protocol sends.
                    let _ = grant.release();
                    Some(false)
                }
                Err(Error::WouldBlock) => None,
                // Closed, PeerDead, Corrupted, ...: the client is gone or hostile.
                Err(_) => Some(false),
            };
            match usable {
                Some(true) => return Some(index),
                Some(false) => self.drop_connection(index),
                None => {}
            }
        }
        None
    }

    fn request_at(&mut self, index: usize) -> Result<Request<'_>> {
        self.next = index + 1;
        let reply_timeout = self.config.reply_timeout;
        let conn = self.connections[index]
            .as_mut()
            .expect("find_request returned a live connection");
        let Connection {
            caller,
            requests,
            replies,
            ..
        } = conn;
        let grant = requests.try_read()?;
        let id = u64::from_le_bytes(grant[..ID_BYTES].try_into().expect("8 bytes"));
        Ok(Request {
            grant,
            replies,
            caller: *caller,
            slot: index,
            id,
            reply_timeout,
        })
    }

    /// Sends the reply to a request deferred with [`Request::defer`]. `PeerDead` / `Closed`
    /// if its client has gone, `Timeout` if its reply ring stays full for
    /// [`ServerConfig::reply_timeout`].
    pub fn reply(&mut self, to: ReplyTo, body: &[u8]) -> Result<()> {
        let timeout = self.config.reply_timeout;
        let conn = self
            .connections
            .get_mut(to.slot)
            .and_then(Option::as_mut)
            .filter(|c| c.caller.client == to.client)
            .ok_or(Error::Closed)?;
        send_reply(
            &mut conn.replies,
            to.id,
            timeout,
            |out| {
                out[..body.len()].copy_from_slice(body);
                body.len()
            },
            body.len(),
        )
    }

    /// Accepts waiting clients and drops connections whose socket closed, waiting up to
    /// `timeout` for something to happen (a request ring's readiness counts).
    fn look_at_sockets(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.since_sockets = 0;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        let waited = self.poller.wait(timeout, &mut ready);
        for &token in &ready {
            if token == LISTENER {
                self.accept_all();
            } else if token & 1 == 1 {
                self.socket_event((token >> 1) as usize);
            }
        }
        self.ready = ready;
        waited.map_err(|source| Error::Io {
            op: "epoll_wait",
            source,
        })
    }

    /// A client's socket is readable: it closed (the client left or died), or the client
    /// sent something this protocol never sends. Either ends the connection.
    fn socket_event(&mut self, index: usize) {
        if self.connections.get(index).is_some_and(Option::is_some) {
            self.drop_connection(index);
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                // A client that cannot be welcomed is told so or simply closed.
                Ok((stream, _)) => {
                    let _ = self.welcome(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // WouldBlock: none left. Other errors (out of descriptors) are retried at
                // the next look, the client waiting in the backlog meanwhile.
                Err(_) => return,
            }
        }
    }

    /// Sets a new client up: its credentials, its two rings, and the welcome that hands
    /// the rings over.
    fn welcome(&mut self, stream: UnixStream) -> Result<()> {
        let os_err = |op| move |source| Error::Io { op, source };
        let (pid, uid, gid) =
            crate::os::peer_credentials(&stream).map_err(os_err("getsockopt(SO_PEERCRED)"))?;
        let free = self.connections.iter().position(Option::is_none);
        let index = match free {
            Some(index) => index,
            None if self.connections.len() < self.config.max_clients => {
                self.connections.push(None);
                self.connections.len() - 1
            }
            None => {
                let refusal = welcome_bytes(STATUS_FULL, 0, 0, 0);
                return crate::os::send_with_fds(&stream, &refusal, &[])
                    .map_err(os_err("send the welcome"));
            }
        };
        let config = self.config.ring_config();
        let request_ring = Ring::<Spsc>::create_anonymous(&config)?;
        let reply_ring = Ring::<Spsc>::create_anonymous(&config)?;
        let mut requests = request_ring.consumer()?;
        let replies = reply_ring.producer()?;
        let readiness = requests.readiness()?;
        self.clients_ever += 1;
        let caller = Caller {
            client: self.clients_ever,
            pid,
            uid,
            gid,
        };
        let max_request = requests.max_message() - ID_BYTES;
        let max_reply = replies.max_message() - ID_BYTES;
        let bytes = welcome_bytes(STATUS_OK, caller.client, max_request, max_reply);
        let fds = [request_ring.share_fd()?, reply_ring.share_fd()?];
        crate::os::send_with_fds(&stream, &bytes, &[fds[0].as_fd(), fds[1].as_fd()])
            .map_err(os_err("send the welcome"))?;
        stream
            .set_nonblocking(true)
            .map_err(os_err("fcntl(O_NONBLOCK)"))?;
        let token = (index as u64) << 1;
        self.poller
            .add(readiness.as_fd(), token)
            .and_then(|()| self.poller.add(stream.as_fd(), token | 1))
            .map_err(os_err("epoll_ctl"))?;
        self.connections[index] = Some(Connection {
            caller,
            socket: stream,
            requests,
            replies,
            readiness,
        });
        Ok(())
    }

    /// Ends connection `index`: its descriptors leave the poller, its ends close, and its
    /// rings are freed once the client's side is gone too.
    fn drop_connection(&mut self, index: usize) {
        if let Some(conn) = self.connections[index].take() {
            self.poller.remove(conn.readiness.as_fd());
            self.poller.remove(conn.socket.as_fd());
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("service", &self.service)
            .field("clients", &self.clients())
            .finish_non_exhaustive()
    }
}

/// A request, in place in its client's ring. Reply with [`reply`](Request::reply) or
/// [`reply_with`](Request::reply_with) (in place, zero copy), or
/// [`defer`](Request::defer) and answer later with [`Server::reply`]. Dropping a request
/// without any of these keeps it: the next receive returns it again.
pub struct Request<'s> {
    grant: ReadGrant<'s, Spsc>,
    replies: &'s mut Producer<Spsc>,
    caller: Caller,
    slot: usize,
    id: u64,
    reply_timeout: Duration,
}

impl Request<'_> {
    /// Who sent it (verified by the kernel at connect time).
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The call's id (unique within its connection).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The request's bytes, in place.
    pub fn body(&self) -> &[u8] {
        &self.grant[ID_BYTES..]
    }

    /// Sends `body` as the reply, then frees the request. `PeerDead` / `Closed` if the
    /// client has gone; `MessageTooLarge` above the largest reply (the request is kept).
    pub fn reply(self, body: &[u8]) -> Result<()> {
        let len = body.len();
        self.reply_with(len, |_, out| {
            out.copy_from_slice(body);
            len
        })
    }

    /// Replies in place: `fill` gets the request's bytes and room for `len` reply bytes in
    /// the client's reply ring, and returns how many it wrote (at most `len`). No copy
    /// besides what `fill` does.
    pub fn reply_with(
        self,
        len: usize,
        fill: impl FnOnce(&[u8], &mut [u8]) -> usize,
    ) -> Result<()> {
        let Request {
            grant,
            replies,
            id,
            reply_timeout,
            ..
        } = self;
        let request = &grant[ID_BYTES..];
        send_reply(replies, id, reply_timeout, |out| fill(request, out), len)?;
        grant.release()
    }

    /// Frees the request now and returns where its reply goes, for [`Server::reply`]
    /// (a server that answers later, or from what other requests bring).
    pub fn defer(self) -> Result<ReplyTo> {
        let to = ReplyTo {
            slot: self.slot,
            client: self.caller.client,
            id: self.id,
        };
        self.grant.release()?;
        Ok(to)
    }
}

/// Writes reply `id` with up to `len` body bytes (what `fill` says it wrote) into
/// `replies`, waiting up to `timeout` for room.
fn send_reply(
    replies: &mut Producer<Spsc>,
    id: u64,
    timeout: Duration,
    fill: impl FnOnce(&mut [u8]) -> usize,
    len: usize,
) -> Result<()> {
    let max = replies.max_message() - ID_BYTES;
    if len > max {
        return Err(Error::MessageTooLarge { len, max });
    }
    // The first attempt is made at once; only a full ring waits.
    let mut grant = replies.reserve_timeout(ID_BYTES + len, timeout)?;
    grant[..ID_BYTES].copy_from_slice(&id.to_le_bytes());
    let written = fill(&mut grant[ID_BYTES..]).min(len);
    grant.commit_prefix(ID_BYTES + written)
}

fn welcome_bytes(status: u32, client: u64, max_request: usize, max_reply: usize) -> [u8; WELCOME] {
    let mut bytes = [0u8; WELCOME];
    bytes[..8].copy_from_slice(&MAGIC.to_le_bytes());
    bytes[8..12].copy_from_slice(&status.to_le_bytes());
    bytes[16..24].copy_from_slice(&client.to_le_bytes());
    bytes[24..32].copy_from_slice(&(max_request as u64).to_le_bytes());
    bytes[32..40].copy_from_slice(&(max_reply as u64).to_le_bytes());
    bytes
}

fn check_service(service: &str) -> Result<()> {
    if service.is_empty() || service.len() > 100 || service.contains('\0') {
        return Err(Error::invalid_argument(format!(
            "service name {service:?} must be 1 to 100 bytes without NUL"
        )));
    }
    Ok(())
}

/// The calling end of a service: one connection, its two rings, and the ids of its calls.
/// Calls go one at a time ([`call`](Client::call)), or several in flight
/// ([`start`](Client::start), then [`reply`](Client::reply) in the same order).
pub struct Client {
    service: String,
    /// Kept open: the server sees it close when this client goes.
    _socket: UnixStream,
    requests: Producer<Spsc>,
    replies: Consumer<Spsc>,
    client: u64,
    next_id: u64,
    max_request: usize,
    max_reply: usize,
}

impl Client {
    /// Connects to `service`: `NotFound` if no server has it, `RegistryFull` if it has all
    /// the clients it takes; waits at most 5 s for the server's welcome.
    pub fn connect(service: &str) -> Result<Client> {
        Client::connect_timeout(service, Duration::from_secs(5))
    }

    /// Like [`connect`](Client::connect), waiting at most `timeout` for the welcome.
    pub fn connect_timeout(service: &str, timeout: Duration) -> Result<Client> {
        check_service(service)?;
        let os_err = |op| move |source| Error::Io { op, source };
        let socket = crate::os::rpc_connect(service).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                Error::NotFound {
                    name: format!("rpc service {service}"),
                }
            }
            _ => Error::Io {
                op: "connect to the service socket",
                source: e,
            },
        })?;
        socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(os_err("setsockopt(SO_RCVTIMEO)"))?;
        let mut bytes = [0u8; WELCOME];
        let (got, mut fds) =
            crate::os::recv_with_fds(&socket, &mut bytes).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
                _ => Error::Io {
                    op: "receive the welcome",
                    source: e,
                },
            })?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        if got != WELCOME || word(0) != MAGIC {
            return Err(Error::incompatible(format!(
                "rpc service {service} answered with {got} bytes that are not a shmring \
                 welcome (another program, or another protocol version)"
            )));
        }
        let status = u32::from_le_bytes(bytes[8..12].try_into().expect("4"));
        if status == STATUS_FULL {
            return Err(Error::RegistryFull { max_peers: 0 });
        }
        if status != STATUS_OK || fds.len() != 2 {
            return Err(Error::incompatible(format!(
                "rpc service {service} sent status {status} with {} descriptors",
                fds.len()
            )));
        }
        let reply_fd = fds.pop().expect("two");
        let request_fd = fds.pop().expect("two");
        // The rings come from the server: still checked like any segment.
        let options = OpenOptions::new();
        let requests = Ring::<Spsc>::open_fd(request_fd, &options)?.producer()?;
        let replies = Ring::<Spsc>::open_fd(reply_fd, &options)?.consumer()?;
        let max_request = requests.max_message().saturating_sub(ID_BYTES);
        let max_reply = replies.max_message().saturating_sub(ID_BYTES);
        if word(24) as usize != max_request || word(32) as usize != max_reply {
            return Err(Error::incompatible(
                "the welcome's sizes disagree with the rings it sent",
            ));
        }
        Ok(Client {
            service: service.to_owned(),
            _socket: socket,
            requests,
            replies,
            client: word(16),
            next_id: 1,
            max_request,
            max_reply,
        })
    }

    /// Connects to the service again (after `PeerDead`: a restarted server), dropping
    /// this connection and its calls in flight.
    pub fn reconnect(&mut self) -> Result<()> {
        *self = Client::connect(&self.service)?;
        Ok(())
    }

    /// The server's number for this connection (what it sees as [`Caller::client`]).
    pub fn client_number(&self) -> u64 {
        self.client
    }

    /// Largest request body.
    pub fn max_request(&self) -> usize {
        self.max_request
    }

    /// Largest reply body.
    pub fn max_reply(&self) -> usize {
        self.max_reply
    }

    /// Sends `request` and waits for its reply, copied into `reply`; returns its length.
    /// `PeerDead` if the server died (before or during the call).
    pub fn call(&mut self, request: &[u8], reply: &mut Vec<u8>) -> Result<usize> {
        self.call_until(request, reply, None)
    }

    /// Like [`call`](Client::call), giving up with `Timeout` after `timeout` (a late
    /// reply is dropped when it comes).
    pub fn call_timeout(
        &mut self,
        request: &[u8],
        reply: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize> {
        self.call_until(request, reply, Some(Instant::now() + timeout))
    }

    /// Like [`call`](Client::call), giving up with `Timeout` at `deadline`.
    pub fn call_deadline(
        &mut self,
        request: &[u8],
        reply: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize> {
        self.call_until(request, reply, Some(deadline))
    }

    fn call_until(
        &mut self,
        request: &[u8],
        reply: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize> {
        let id = self.send_request(request.len(), deadline, |out| out.copy_from_slice(request))?;
        self.reply_until(id, deadline, |body| {
            reply.clear();
            reply.extend_from_slice(body);
            body.len()
        })
    }

    /// Sends a request without waiting (`WouldBlock` if the request ring is full) and
    /// returns its id; collect the reply with [`try_reply`](Client::try_reply) or
    /// [`reply`](Client::reply). Replies come in the order of the requests.
    pub fn start(&mut self, request: &[u8]) -> Result<u64> {
        self.start_with(request.len(), |out| out.copy_from_slice(request))
    }

    /// Like [`start`](Client::start), waiting while the request ring is full until
    /// `deadline` (`None`: no limit; `Timeout`).
    pub fn start_deadline(&mut self, request: &[u8], deadline: Option<Instant>) -> Result<u64> {
        self.send_request(request.len(), deadline, |out| out.copy_from_slice(request))
    }

    /// Like [`start`](Client::start), writing the request in place: `fill` gets room for
    /// `len` bytes in the request ring (zero copy).
    pub fn start_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<u64> {
        self.send_request(len, Some(Instant::now()), fill)
            .map_err(|e| match e {
                Error::Timeout => Error::WouldBlock,
                e => e,
            })
    }

    fn send_request(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        if len > self.max_request {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_request,
            });
        }
        // The first attempt is made at once; only a full ring waits.
        let mut grant = match deadline {
            None => self.requests.reserve(ID_BYTES + len)?,
            Some(d) => self
                .requests
                .reserve_timeout(ID_BYTES + len, d.saturating_duration_since(Instant::now()))?,
        };
        let id = self.next_id;
        grant[..ID_BYTES].copy_from_slice(&id.to_le_bytes());
        fill(&mut grant[ID_BYTES..]);
        grant.commit()?;
        self.next_id += 1;
        Ok(id)
    }

    /// The reply to call `id` if it has come (copied into `out`; its length), or
    /// `WouldBlock`.
    pub fn try_reply(&mut self, id: u64, out: &mut Vec<u8>) -> Result<usize> {
        self.reply_until(id, Some(Instant::now()), |body| {
            out.clear();
            out.extend_from_slice(body);
            body.len()
        })
        .map_err(|e| match e {
            Error::Timeout => Error::WouldBlock,
            e => e,
        })
    }

    /// Waits for the reply to call `id` until `deadline` (`None`: no limit) and hands it to
    /// `f` in place (zero copy); returns what `f` returns.
    pub fn reply<R>(
        &mut self,
        id: u64,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        self.reply_until(id, deadline, f)
    }

    fn reply_until<R>(
        &mut self,
        id: u64,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        loop {
            let grant = match deadline {
                None => self.replies.read(),
                Some(d) => self
                    .replies
                    .read_timeout(d.saturating_duration_since(Instant::now())),
            }
            .map_err(|e| match e {
                Error::Closed => Error::PeerDead {
                    detail: "the server closed this connection",
                },
                e => e,
            })?;
            if grant.len() < ID_BYTES {
                return Err(Error::corrupted("a reply shorter than its id"));
            }
            let got = u64::from_le_bytes(grant[..ID_BYTES].try_into().expect("8 bytes"));
            if got < id {
                // The reply to a call that timed out: nobody waits for it any more.
                grant.release()?;
                continue;
            }
            if got > id {
                return Err(Error::invalid_argument(format!(
                    "call {id} has no reply coming: the next reply is for call {got} (ids \
                     come from start() and are answered in order)"
                )));
            }
            let result = f(&grant[ID_BYTES..]);
            grant.release()?;
            return Ok(result);
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("service", &self.service)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}
