//! Squatting by another user: a process running as another uid pre-creates the name (a real
//! ring, and a bare segment with mode 0666). `create` never adopts it, `open` refuses it as
//! `PermissionDenied`, and only an explicit `any_owner` opens the real ring. Needs root to
//! switch the child to uid/gid 65534 ("nobody"); skipped with a message otherwise.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::{ShmName, role, spawn_role, wait_bounded};
use shmring::{Config, Error, OpenOptions, mpmc, spsc};

/// The uid and gid the squatter runs as.
const OTHER: u32 = 65534;

/// Entry point of the squatter process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    // SAFETY: plain system calls; this child does nothing else as root.
    unsafe {
        assert_eq!(libc::setgid(OTHER), 0, "setgid");
        assert_eq!(libc::setuid(OTHER), 0, "setuid");
    }
    match role.as_str() {
        "ring" => drop(spsc::Ring::create(&name, &Config::new().capacity(4096)).unwrap()),
        "bare" => {
            let path = format!("/dev/shm{name}");
            std::fs::write(&path, vec![0u8; 8192]).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn names_squatted_by_another_user_are_never_adopted() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: switching a child to another uid needs root");
        return;
    }
    for role in ["ring", "bare"] {
        let name = ShmName::new("squat");
        let mut child = spawn_role("child_entry", role, name.as_str());
        assert!(wait_bounded(&mut child, Duration::from_secs(30)).success());
        let before = std::fs::metadata(name.path()).unwrap();
        assert_eq!(before.uid(), OTHER, "{role}: the squatter owns the name");

        let create = spsc::Ring::create(name.as_str(), &Config::new().capacity(4096));
        assert!(
            matches!(create, Err(Error::AlreadyExists { .. })),
            "{role}: {create:?}"
        );
        let create = mpmc::Ring::create(name.as_str(), &Config::new().slots(16));
        assert!(
            matches!(create, Err(Error::AlreadyExists { .. })),
            "{role}: {create:?}"
        );
        for open in [
            spsc::Ring::open(name.as_str()).map(drop),
            mpmc::Ring::open(name.as_str()).map(drop),
            spsc::Ring::create_or_open(name.as_str(), &Config::new().capacity(4096)).map(drop),
        ] {
            assert!(
                matches!(open, Err(Error::PermissionDenied { .. })),
                "{role}: {open:?}"
            );
        }
        // Nothing was written: same size, owner and mode.
        let after = std::fs::metadata(name.path()).unwrap();
        assert_eq!(
            (after.len(), after.uid(), after.mode()),
            (before.len(), before.uid(), before.mode())
        );
        if role == "ring" {
            // Trusting another owner is an explicit choice.
            let trusting = OpenOptions::new().any_owner(true);
            spsc::Ring::open_with(name.as_str(), &trusting).unwrap();
        }
    }
}
