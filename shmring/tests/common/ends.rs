//! Either ring kind's handles behind one enum, so the fault tests drive every cell of the
//! kind × role matrix with one body. (The library's own handle layer becomes generic in a
//! later change; then this goes.)
#![allow(dead_code)]

use std::time::Duration;

use shmring::{Config, Error, OpenOptions, Role, WaitStrategy, mpmc, spsc};

/// Largest message of the rings made by [`config`].
pub const MAX: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `shmring::spsc`.
    Spsc,
    /// `shmring::mpmc`.
    Mpmc,
}

pub fn config(kind: Kind, strategy: WaitStrategy) -> Config {
    let config = Config::new()
        .wait_strategy(strategy)
        .spin_before_sleep(Duration::ZERO)
        .max_message(MAX);
    match kind {
        Kind::Spsc => config.capacity(256),
        Kind::Mpmc => config.slots(2).max_peers(4),
    }
}

pub fn open_options() -> OpenOptions {
    OpenOptions::new().spin_before_sleep(Duration::ZERO)
}

/// A handle of either kind and role (the survivor's, and the sleepers').
pub enum AnyEnd {
    SpscProducer(spsc::Producer),
    SpscConsumer(spsc::Consumer),
    MpmcProducer(mpmc::Producer),
    MpmcConsumer(mpmc::Consumer),
}

impl AnyEnd {
    /// Sends until the ring is full (a producer).
    pub fn fill(&mut self) {
        match self {
            AnyEnd::SpscProducer(tx) => while tx.try_send(b"filler").is_ok() {},
            AnyEnd::MpmcProducer(tx) => while tx.try_send(b"filler").is_ok() {},
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
            AnyEnd::SpscProducer(tx) => tx.send_timeout(b"last", timeout),
            AnyEnd::MpmcProducer(tx) => tx.send_timeout(b"last", timeout),
            AnyEnd::SpscConsumer(rx) => rx.recv_timeout(&mut buf, timeout).map(drop),
            AnyEnd::MpmcConsumer(rx) => rx.recv_timeout(&mut buf, timeout).map(drop),
        }
    }

    /// One non-blocking call: it must make progress (room for a message, or a message).
    pub fn progress(&mut self) -> Result<(), Error> {
        let mut buf = [0u8; MAX];
        match self {
            AnyEnd::SpscProducer(tx) => tx.try_send(b"x"),
            AnyEnd::MpmcProducer(tx) => tx.try_send(b"x"),
            AnyEnd::SpscConsumer(rx) => rx.try_recv(&mut buf).map(drop),
            AnyEnd::MpmcConsumer(rx) => rx.try_recv(&mut buf).map(drop),
        }
    }

    /// One non-blocking call and one timed call; each outcome must be a value or a typed
    /// error (which ones depends on the moment), never a hang.
    pub fn calls(&mut self) -> Vec<Result<(), Error>> {
        let short = Duration::from_millis(100);
        let mut buf = [0u8; MAX];
        match self {
            AnyEnd::SpscProducer(tx) => vec![tx.try_send(b"x"), tx.send_timeout(b"y", short)],
            AnyEnd::MpmcProducer(tx) => vec![tx.try_send(b"x"), tx.send_timeout(b"y", short)],
            AnyEnd::SpscConsumer(rx) => vec![
                rx.try_recv(&mut buf).map(drop),
                rx.recv_timeout(&mut buf, short).map(drop),
            ],
            AnyEnd::MpmcConsumer(rx) => vec![
                rx.try_recv(&mut buf).map(drop),
                rx.recv_timeout(&mut buf, short).map(drop),
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
            AnyEnd::SpscConsumer(rx) => rx.try_recv(buf),
            AnyEnd::MpmcConsumer(rx) => rx.try_recv(buf),
            _ => panic!("not a consumer"),
        }
    }

    pub fn wake_syscalls(&self) -> u64 {
        match self {
            AnyEnd::SpscProducer(h) => h.wake_syscalls(),
            AnyEnd::SpscConsumer(h) => h.wake_syscalls(),
            AnyEnd::MpmcProducer(h) => h.wake_syscalls(),
            AnyEnd::MpmcConsumer(h) => h.wake_syscalls(),
        }
    }
}

/// The ring of a case, of either kind.
pub enum AnyRing {
    Spsc(spsc::Ring),
    Mpmc(mpmc::Ring),
}

impl AnyRing {
    pub fn open(kind: Kind, name: &str) -> AnyRing {
        match kind {
            Kind::Spsc => AnyRing::Spsc(spsc::Ring::open_with(name, &open_options()).unwrap()),
            Kind::Mpmc => AnyRing::Mpmc(mpmc::Ring::open_with(name, &open_options()).unwrap()),
        }
    }

    pub fn create(kind: Kind, name: &str, config: &Config) -> AnyRing {
        match kind {
            Kind::Spsc => AnyRing::Spsc(spsc::Ring::create(name, config).unwrap()),
            Kind::Mpmc => AnyRing::Mpmc(mpmc::Ring::create(name, config).unwrap()),
        }
    }

    /// Attaches `role`, or says why not.
    pub fn try_attach(&self, role: Role) -> Result<AnyEnd, Error> {
        Ok(match (self, role) {
            (AnyRing::Spsc(r), Role::Producer) => AnyEnd::SpscProducer(r.producer()?),
            (AnyRing::Spsc(r), Role::Consumer) => AnyEnd::SpscConsumer(r.consumer()?),
            (AnyRing::Mpmc(r), Role::Producer) => AnyEnd::MpmcProducer(r.producer()?),
            (AnyRing::Mpmc(r), Role::Consumer) => AnyEnd::MpmcConsumer(r.consumer()?),
        })
    }

    pub fn attach(&self, role: Role) -> AnyEnd {
        match (self, role) {
            (AnyRing::Spsc(r), Role::Producer) => AnyEnd::SpscProducer(r.producer().unwrap()),
            (AnyRing::Spsc(r), Role::Consumer) => AnyEnd::SpscConsumer(r.consumer().unwrap()),
            (AnyRing::Mpmc(r), Role::Producer) => AnyEnd::MpmcProducer(r.producer().unwrap()),
            (AnyRing::Mpmc(r), Role::Consumer) => AnyEnd::MpmcConsumer(r.consumer().unwrap()),
        }
    }

    /// Processes asleep in `role` as the segment counts them.
    pub fn sleeping(&self, role: Role) -> u32 {
        match (self, role) {
            (AnyRing::Spsc(r), Role::Consumer) => r.stats().consumers_waiting,
            (AnyRing::Spsc(r), Role::Producer) => r.stats().producers_waiting,
            (AnyRing::Mpmc(r), Role::Consumer) => r.stats().consumers_waiting,
            (AnyRing::Mpmc(r), Role::Producer) => r.stats().producers_waiting,
        }
    }
}
