//! Removing rings nobody uses (`any::remove_unused`): a ring a live process holds — even one
//! opening or attaching at that very moment — is never removed; what crashed processes left
//! behind is.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{KillOnDrop, ShmName, expect_line, role, spawn_piped, wait_bounded};
use shmring::any::{self, Removal};
use shmring::{Config, Error, mpmc, spsc};

const CALL: Duration = Duration::from_secs(10);

/// Child roles: `hold:<kind>` opens the ring, attaches a producer, says `held`, then waits
/// for stdin to close and exits cleanly; `die:<kind>` attaches a producer, says `held` and
/// SIGKILLs itself.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    let (what, kind) = role.split_once(':').unwrap();
    let ring = any::Ring::open(&name, &shmring::OpenOptions::new()).unwrap();
    assert_eq!(ring.kind().as_str(), kind);
    let producer = ring.producer().unwrap();
    println!("held");
    match what {
        "hold" => {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(producer);
        }
        "die" => {
            // SAFETY: plain signal to this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        other => panic!("unknown role {other}"),
    }
}

fn create(kind: &str, name: &str) {
    match kind {
        "spsc" => drop(spsc::Ring::create(name, &Config::new().capacity(4096)).unwrap()),
        _ => drop(mpmc::Ring::create(name, &Config::new().slots(8)).unwrap()),
    }
}

/// A child that holds a producer of the ring until its stdin closes (it has said `held`).
fn holder(kind: &str, name: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(common::ROLE_VAR, format!("hold:{kind}"))
        .env(common::RING_VAR, name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let said = common::bounded(CALL, move || {
        let held = lines.any(|line| line.is_ok_and(|l| l.ends_with("held")));
        // Keep reading, so the child can still write its last lines.
        std::thread::spawn(move || lines.for_each(drop));
        held
    });
    assert_eq!(said, Some(true), "the holder never said it held the ring");
    child
}

fn exists(name: &ShmName) -> bool {
    std::path::Path::new(&name.path()).exists()
}

#[test]
fn a_ring_held_by_a_live_process_is_kept_and_a_cleanly_closed_one_only_on_request() {
    for kind in ["spsc", "mpmc"] {
        let name = ShmName::new("rm-live");
        create(kind, name.as_str());
        let mut child = KillOnDrop(holder(kind, name.as_str()));
        for only_if_dead in [true, false] {
            assert_eq!(
                any::remove_unused(name.as_str(), only_if_dead).unwrap(),
                Removal::InUse,
                "{kind}: a live holder's ring"
            );
        }
        assert!(exists(&name));
        // Closing stdin lets the child close its producer and exit.
        drop(child.0.stdin.take());
        assert!(wait_bounded(&mut child.0, CALL).success());
        assert_eq!(
            any::remove_unused(name.as_str(), true).unwrap(),
            Removal::Clean,
            "{kind}: every end closed cleanly: kept on request"
        );
        assert!(exists(&name));
        assert!(matches!(
            any::remove_unused(name.as_str(), false).unwrap(),
            Removal::Removed { dead_holders: 0 }
        ));
        assert!(!exists(&name), "{kind}: still there");
    }
}

#[test]
fn what_a_killed_process_left_is_removed() {
    for kind in ["spsc", "mpmc"] {
        let name = ShmName::new("rm-dead");
        create(kind, name.as_str());
        let (child, lines) = spawn_piped("child_entry", &format!("die:{kind}"), name.as_str());
        let mut child = KillOnDrop(child);
        expect_line(&lines, "held", CALL);
        assert!(!wait_bounded(&mut child.0, CALL).success());
        assert_eq!(
            any::remove_unused(name.as_str(), true).unwrap(),
            Removal::Removed { dead_holders: 1 },
            "{kind}"
        );
        assert!(!exists(&name));
        assert!(matches!(
            any::remove_unused(name.as_str(), true),
            Err(Error::NotFound { .. })
        ));
    }
}

#[test]
fn a_ring_whose_creator_died_before_finishing_it_is_removed() {
    let name = ShmName::new("rm-unfinished");
    // What a creator killed between creating the name and sizing it leaves: an empty file.
    std::fs::write(name.path(), b"").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(
        any::remove_unused(name.as_str(), true).unwrap(),
        Removal::Removed { dead_holders: 0 }
    );
    assert!(!exists(&name));
}

/// The race the lock is for: one thread opens the ring and attaches while another tries to
/// remove it, many times over (a third of the rounds give the remover a head start, a third
/// the opener, the rest race freely), the opener holding what it got until the remover has
/// decided. Either the remover kept the ring and the opener holds it, name and all, or the
/// remover removed it and the opener was told `NotFound`; never both.
#[test]
fn an_opener_racing_a_remover_never_holds_a_removed_ring() {
    let rounds = common::rounds(300);
    let (mut removed, mut kept) = (0, 0);
    for round in 0..rounds {
        let name = Arc::new(ShmName::new("rm-race"));
        create(if round % 2 == 0 { "spsc" } else { "mpmc" }, name.as_str());
        let start = Arc::new(Barrier::new(2));
        let decided = Arc::new(Barrier::new(2));
        let opener = {
            let (name, start, decided) = (name.clone(), start.clone(), decided.clone());
            std::thread::spawn(move || {
                start.wait();
                if round % 3 == 0 {
                    // Let the remover go first in a third of the rounds.
                    std::thread::sleep(Duration::from_millis(2));
                }
                let held = any::Ring::open(name.as_str(), &shmring::OpenOptions::new())
                    .and_then(|ring| ring.producer().map(|p| (ring, p)));
                let outcome = match &held {
                    // Holding a producer: the name must still be there.
                    Ok(_) => Some(exists(&name)),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => panic!("round {round}: open: {e}"),
                };
                // Keep holding until the remover has decided.
                decided.wait();
                drop(held);
                outcome
            })
        };
        start.wait();
        if round % 3 == 1 {
            // And the opener in another third; the rest race freely.
            std::thread::sleep(Duration::from_millis(2));
        }
        let outcome = any::remove_unused(name.as_str(), false);
        decided.wait();
        let opened = opener.join().unwrap();
        match (outcome, opened) {
            (Ok(Removal::Removed { .. }), Some(there)) => {
                panic!("round {round}: removed while the opener held it (name there: {there})")
            }
            (_, Some(false)) => panic!("round {round}: the opener held a ring with no name"),
            (Ok(Removal::Removed { .. }), None) => removed += 1,
            (Ok(Removal::InUse), Some(true)) => kept += 1,
            (outcome, opened) => {
                panic!("round {round}: remover {outcome:?}, opener {opened:?}")
            }
        }
    }
    println!("{rounds} rounds: removed first {removed}, opener first {kept}");
    // Both orders happened (the head starts make sure), or the test proved nothing.
    assert!(removed > 0 && kept > 0, "removed {removed}, kept {kept}");
}
