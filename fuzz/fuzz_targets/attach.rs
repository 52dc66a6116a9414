//! Arbitrary bytes as a whole segment file: open / validate / attach / receive / send may
//! only return typed errors. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run attach` (from the repo
//! root; see docs/reliability.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::{OpenOptions, spsc::Ring};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let path = format!("/dev/shm/shmring-fuzz-attach-{}", std::process::id());
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.write_all(data).unwrap();
    drop(file);
    let options = OpenOptions::new().init_timeout(Duration::ZERO);
    let opened = Ring::open_at(&path, &options);
    // Unlinked at once (the mapping outlives the name): libFuzzer's time limit may end the
    // process in the middle of an iteration, which must not leave a file in /dev/shm.
    let _ = std::fs::remove_file(&path);
    if let Ok(ring) = opened {
        if let Ok(mut rx) = ring.consumer() {
            let mut buf = [0u8; 512];
            for _ in 0..16 {
                if rx.try_recv(&mut buf).is_err() {
                    break;
                }
            }
        }
        if let Ok(mut tx) = ring.producer() {
            for _ in 0..16 {
                if tx.try_send(&[7; 40]).is_err() {
                    break;
                }
            }
        }
    }
});
