//! Any ring kind's handles behind one type (`shmring::any`), so the fault tests drive every
//! cell of the kind × role matrix with one body.
#![allow(dead_code)]

use std::time::Duration;

use shmring::{Config, Error, OpenOptions, Role, WaitStrategy, any};

/// Largest message of the rings made by [`config`].
pub const MAX: usize = 32;

/// A ring kind.
pub type Kind = any::KindName;

pub fn config(kind: Kind, strategy: WaitStrategy) -> Config {
    config_lanes(kind, strategy, 1)
}

/// As [`config`], an MPMC ring with `lanes` priority lanes (the fault tests' traffic is
/// priority 0, so sleepers wait in lane 0 while the ring has other lanes to look at).
pub fn config_lanes(kind: Kind, strategy: WaitStrategy, lanes: u32) -> Config {
    let config = Config::new()
        .wait_strategy(strategy)
        .spin_before_sleep(Duration::ZERO)
        .max_message(MAX);
    match kind {
        Kind::Spsc => config.capacity(256),
        Kind::Mpmc => config.slots(2).max_peers(4).lanes(lanes),
        // Readers join at the live end: each sees what was sent after it attached.
        _ => config.capacity(256).max_readers(3),
    }
}

pub fn open_options() -> OpenOptions {
    OpenOptions::new().spin_before_sleep(Duration::ZERO)
}

/// A handle of any kind and role (the survivor's, and the sleepers').
pub enum AnyEnd {
    Producer(any::Producer),
    Consumer(any::Consumer),
}

impl AnyEnd {
    /// Sends until the ring is full (a producer).
    pub fn fill(&mut self) {
        match self {
            AnyEnd::Producer(tx) => while tx.try_send(b"filler").is_ok() {},
            _ => panic!("not a producer"),
        }
    }

    /// Receives until the ring is empty (a consumer).
    pub fn drain(&mut self) {
        let mut buf = [0u8; MAX];
        while self.try_recv(&mut buf).is_ok() {}
    }

    /// One blocking call: a send that waits for room, or a receive that waits for data.
    pub fn block_once(&mut self, timeout: Duration) -> Result<(), Error> {
        let mut buf = [0u8; MAX];
        match self {
            AnyEnd::Producer(tx) => tx.send(b"last", Some(timeout)),
            AnyEnd::Consumer(rx) => rx.recv(&mut buf, Some(timeout)).map(drop),
        }
    }

    /// One non-blocking call: it must make progress (room for a message, or messages).
    /// A consumer takes up to two: in a broadcast ring (24-byte records in a 256-byte
    /// ring) one record freed is not always room for the next, which may need padding
    /// to the end of the lap as well.
    pub fn progress(&mut self) -> Result<(), Error> {
        match self {
            AnyEnd::Producer(tx) => tx.try_send(b"x"),
            AnyEnd::Consumer(rx) => rx.try_recv_batch(2, |_| {}).map(drop),
        }
    }

    /// One non-blocking call and one timed call; each outcome must be a value or a typed
    /// error (which ones depends on the moment), never a hang.
    pub fn calls(&mut self) -> Vec<Result<(), Error>> {
        let short = Duration::from_millis(100);
        let mut buf = [0u8; MAX];
        match self {
            AnyEnd::Producer(tx) => vec![tx.try_send(b"x"), tx.send(b"y", Some(short))],
            AnyEnd::Consumer(rx) => vec![
                rx.try_recv(&mut buf).map(drop),
                rx.recv(&mut buf, Some(short)).map(drop),
            ],
        }
    }

    /// Empties the ring (a consumer), then sends one message with `producer` and receives
    /// it: one exchange with nobody asleep.
    pub fn exchange_with(&mut self, producer: &mut AnyEnd) {
        let mut buf = [0u8; MAX];
        while self.try_recv(&mut buf).is_ok() {}
        producer.block_once(Duration::from_secs(10)).unwrap();
        self.block_once(Duration::from_secs(10)).unwrap();
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match self {
            AnyEnd::Consumer(rx) => rx.try_recv(buf),
            _ => panic!("not a consumer"),
        }
    }

    pub fn wake_syscalls(&self) -> u64 {
        match self {
            AnyEnd::Producer(h) => h.wake_syscalls(),
            AnyEnd::Consumer(h) => h.wake_syscalls(),
        }
    }
}

/// The ring of a case, of any kind.
pub struct AnyRing(pub any::Ring);

impl AnyRing {
    pub fn open(kind: Kind, name: &str) -> AnyRing {
        let ring = any::Ring::open(name, &open_options()).unwrap();
        assert_eq!(ring.kind(), kind);
        AnyRing(ring)
    }

    pub fn create(kind: Kind, name: &str, config: &Config) -> AnyRing {
        AnyRing(any::Ring::create(kind, name, config).unwrap())
    }

    /// Attaches `role`, or says why not.
    pub fn try_attach(&self, role: Role) -> Result<AnyEnd, Error> {
        Ok(match role {
            Role::Producer => AnyEnd::Producer(self.0.producer()?),
            Role::Consumer => AnyEnd::Consumer(self.0.consumer()?),
        })
    }

    pub fn attach(&self, role: Role) -> AnyEnd {
        self.try_attach(role).unwrap()
    }

    /// Processes asleep in `role` as the segment counts them.
    pub fn sleeping(&self, role: Role) -> u32 {
        let stats = self.0.stats();
        match role {
            Role::Consumer => stats.consumers_waiting,
            Role::Producer => stats.producers_waiting,
        }
    }
}
