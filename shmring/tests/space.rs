//! A ring larger than the free space of its filesystem is refused at creation with an
//! error that says how much was needed and how much is free, instead of killing its users
//! with SIGBUS at the first send past the free space (tmpfs allocates pages on first
//! touch). Anonymous rings have their memory allocated at creation too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use shmring::{Config, Error, ErrorKind, OpenOptions, mpmc, spsc};

/// A tmpfs of `size` mounted for this test in a fresh directory, unmounted on drop.
struct SmallTmpfs {
    dir: PathBuf,
}

impl SmallTmpfs {
    /// `None` (after saying why) where this process may not mount.
    fn mount(size: &str) -> Option<SmallTmpfs> {
        let dir = std::env::temp_dir().join(format!(
            "shmring-small-tmpfs-{}-{}",
            std::process::id(),
            size
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            eprintln!("SKIPPED: mounting a tmpfs is not permitted here");
            return None;
        }
        Some(SmallTmpfs { dir })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn assert_no_space(err: Error, path: &Path, what: &str) {
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{what}: {err}");
    let text = err.to_string();
    // Names the place, what was needed (64 MiB) and what is free (under 16 MiB).
    assert!(text.contains(&path.display().to_string()), "{what}: {text}");
    assert!(text.contains("64.0 MiB"), "{what}: {text}");
    assert!(text.contains("MiB free"), "{what}: {text}");
    assert!(text.contains("--shm-size"), "{what}: {text}");
    // Nothing is left behind.
    assert!(
        !path.exists(),
        "{what}: a refused ring left {path:?} behind"
    );
}

#[test]
fn a_ring_larger_than_its_tmpfs_is_refused_at_creation() {
    let Some(fs) = SmallTmpfs::mount("16m") else {
        return;
    };
    for populate in [true, false] {
        let path = fs.path("big-spsc");
        let config = Config::new().capacity(64 << 20).populate(populate);
        let err = spsc::Ring::create_at(&path, &config).expect_err("64 MiB on a 16 MiB tmpfs");
        assert_no_space(err, &path, "spsc");

        let path = fs.path("big-mpmc");
        let config = Config::new()
            .slots(1 << 16)
            .max_message(1008)
            .populate(populate);
        let err = mpmc::Ring::create_at(&path, &config).expect_err("64 MiB on a 16 MiB tmpfs");
        assert_no_space(err, &path, "mpmc");
    }
    // What fits is created, its space reserved, and usable to the last byte.
    let path = fs.path("fits");
    let config = Config::new().capacity(8 << 20).populate(false);
    let ring = spsc::Ring::create_at(&path, &config).unwrap();
    let blocks = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(blocks >= 8 << 20, "only {blocks} bytes reserved");
    let mut tx = ring.producer().unwrap();
    let mut rx = spsc::Ring::open_at(&path, &OpenOptions::new())
        .unwrap()
        .consumer()
        .unwrap();
    let msg = vec![7u8; 1 << 20];
    let mut out = Vec::new();
    for _ in 0..40 {
        tx.send(&msg).unwrap();
        rx.recv_vec(&mut out).unwrap();
        assert_eq!(out, msg);
    }
    // A second ring no longer fits in what is left.
    let err = spsc::Ring::create_at(fs.path("second"), &Config::new().capacity(16 << 20))
        .expect_err("8 MiB used of 16");
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
}

#[test]
fn anonymous_rings_have_their_memory_at_creation() {
    for populate in [true, false] {
        let ring =
            spsc::Ring::create_anonymous(&Config::new().capacity(16 << 20).populate(populate))
                .unwrap();
        let fd = ring.share_fd().unwrap();
        let file = std::fs::File::from(fd);
        let meta = file.metadata().unwrap();
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "populate={populate}: {} of {} bytes allocated",
            meta.blocks() * 512,
            meta.len()
        );
        let ring = mpmc::Ring::create_anonymous(
            &Config::new()
                .slots(1 << 14)
                .max_message(1008)
                .populate(populate),
        )
        .unwrap();
        let file = std::fs::File::from(ring.share_fd().unwrap());
        let meta = file.metadata().unwrap();
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "mpmc populate={populate}: {} of {} bytes allocated",
            meta.blocks() * 512,
            meta.len()
        );
    }
}
