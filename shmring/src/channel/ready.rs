//! Readiness for event loops, for either end: its doorbell, the wait set behind its
//! readiness descriptor, the periodic look for dead peers, and (feature `tokio`) its
//! registration with tokio's reactor. `docs/waiting.md` has the design.

use std::time::{Duration, Instant};

use crate::error::{Error, Result, Role};
use crate::shm::ShmMemory;
use crate::wait::WaitStrategy;

/// How often a readiness descriptor becomes readable with nothing to do, so that a dead
/// peer no pidfd watches (another PID namespace's) is still found by the next arming.
const READINESS_TICK: Duration = Duration::from_secs(1);

/// A readiness descriptor ([`Consumer::readiness`](crate::Consumer::readiness),
/// [`Producer::readiness`](crate::Producer::readiness)): readable when its end, armed, may
/// be able to proceed. Spurious readiness is possible; what the end was armed for always
/// makes it readable.
#[derive(Debug)]
pub struct Readiness {
    fd: std::os::fd::OwnedFd,
}

impl std::os::fd::AsFd for Readiness {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<Readiness> for std::os::fd::OwnedFd {
    fn from(readiness: Readiness) -> Self {
        readiness.fd
    }
}

impl std::os::fd::AsRawFd for Readiness {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

/// One end's readiness state (empty until its descriptor is asked for).
#[derive(Debug, Default)]
pub(crate) struct EndReadiness {
    doorbell: Option<crate::os::Doorbell>,
    /// The descriptor's set: the doorbell, a tick, the other role's pidfds.
    waitset: Option<crate::os::Waitset>,
    /// When the end last looked for dead peers while arming.
    looked: Option<Instant>,
    /// The descriptor registered with tokio's reactor.
    #[cfg(feature = "tokio")]
    reactor: Option<std::sync::Arc<tokio::io::unix::AsyncFd<Readiness>>>,
}

impl EndReadiness {
    /// `InvalidArgument` unless `strategy` sleeps: the other strategies' wakers never look
    /// for waiters.
    pub(crate) fn supported(strategy: WaitStrategy) -> Result<()> {
        if strategy.sleeps() {
            return Ok(());
        }
        Err(Error::invalid_argument(format!(
            "readiness needs a ring created with WaitStrategy::Futex; this one uses {strategy} \
             (its ends never look for waiters)"
        )))
    }

    /// Empties the descriptor before arming; whether it is time to look for dead peers
    /// (a watched one exited, or the last look is `RECOVERY_INTERVAL` old).
    pub(crate) fn drain(&self) -> bool {
        if let Some(doorbell) = &self.doorbell {
            doorbell.drain();
        }
        if let Some(set) = &self.waitset {
            set.drain();
        }
        let exited = self
            .waitset
            .as_ref()
            .is_some_and(crate::os::Waitset::exited);
        !cfg!(shmring_loom)
            && (exited
                || self
                    .looked
                    .is_none_or(|t| t.elapsed() >= crate::wait::RECOVERY_INTERVAL))
    }

    /// After a look for dead peers: watch `pids` (the other role's live holders), whose
    /// exits make the descriptor readable at once.
    pub(crate) fn looked(&mut self, pids: &[u32]) {
        self.looked = Some(Instant::now());
        if let Some(set) = &mut self.waitset {
            set.watch(pids);
        }
    }

    /// A new descriptor of this end's wait set, made on first use: the doorbell of
    /// `role`'s holder in `slot` of the ring in `memory`.
    pub(crate) fn descriptor(
        &mut self,
        memory: &ShmMemory,
        role: Role,
        slot: u32,
    ) -> Result<Readiness> {
        if self.waitset.is_none() {
            let bells = memory.segment().bells();
            let file = crate::shm::doorbell_file(role, slot);
            let doorbell =
                crate::os::Doorbell::bind(&bells.dir, &file, bells.mode).map_err(|e| {
                    Error::from_os("bind", &bells.dir.join(&file).display().to_string(), e)
                })?;
            let set = crate::os::Waitset::new(doorbell.fd(), READINESS_TICK).map_err(|source| {
                Error::Io {
                    op: "epoll",
                    source,
                }
            })?;
            self.doorbell = Some(doorbell);
            self.waitset = Some(set);
            // The next arming looks for peers to watch.
            self.looked = None;
        }
        let set = self.waitset.as_ref().expect("made above");
        let fd = set
            .fd()
            .try_clone_to_owned()
            .map_err(|source| Error::Io { op: "dup", source })?;
        Ok(Readiness { fd })
    }

    /// Drops the doorbell (its file goes) and the set; whether there was one. Called
    /// before the end gives up its slot, so a successor's doorbell is never removed.
    pub(crate) fn close(&mut self) -> bool {
        #[cfg(feature = "tokio")]
        {
            self.reactor = None;
        }
        self.waitset = None;
        self.doorbell.take().is_some()
    }

    /// The descriptor `make` returns, registered once with the current tokio runtime.
    #[cfg(feature = "tokio")]
    pub(crate) fn reactor(
        &mut self,
        make: impl FnOnce(&mut Self) -> Result<Readiness>,
    ) -> Result<std::sync::Arc<tokio::io::unix::AsyncFd<Readiness>>> {
        if let Some(reactor) = &self.reactor {
            return Ok(reactor.clone());
        }
        let readiness = make(self)?;
        // SAFETY: `Readiness` owns its descriptor (an `OwnedFd`), returns the same one from
        // every `as_raw_fd`, and closes it only when dropped, which the `AsyncFd` does after
        // deregistering it.
        let reactor = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                readiness,
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(|e| Error::Io {
            op: "register with the tokio reactor",
            source: e.into(),
        })?;
        let reactor = std::sync::Arc::new(reactor);
        self.reactor = Some(reactor.clone());
        Ok(reactor)
    }
}

/// Waits on `reactor` until it is readable, then clears that readiness (tokio).
#[cfg(feature = "tokio")]
pub(crate) async fn readable(reactor: &tokio::io::unix::AsyncFd<Readiness>) -> Result<()> {
    let mut guard = reactor.readable().await.map_err(|source| Error::Io {
        op: "wait for readiness",
        source,
    })?;
    guard.clear_ready();
    Ok(())
}
