//! Many processes `create_or_open` one name at the same instant, repeatedly: exactly one
//! creates it, every other one opens the finished ring (nobody sees a half-built header).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ShmName, role, wait_bounded};
use shmring::{Config, spsc::Ring};

const RACERS: usize = 6;
const ROUNDS: usize = 10;

fn config() -> Config {
    Config::new().capacity(1 << 16)
}

/// A racer: sleeps until the agreed instant, then create_or_open, and says which it did.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    let start: u128 = role.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    if start > now {
        std::thread::sleep(Duration::from_nanos((start - now) as u64));
    }
    let ring = Ring::create_or_open(&name, &config()).unwrap();
    assert_eq!(ring.capacity(), 1 << 16);
    assert!(matches!(
        ring.stats().kind,
        shmring::KindStats::Spsc {
            capacity: 65536,
            ..
        }
    ));
    println!(
        "{}",
        if ring.was_created() {
            "created"
        } else {
            "opened"
        }
    );
}

#[test]
fn exactly_one_process_creates() {
    for round in 0..ROUNDS {
        let name = ShmName::new("initrace");
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            + Duration::from_millis(150).as_nanos();
        let children: Vec<_> = (0..RACERS)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
                    .env(common::ROLE_VAR, start.to_string())
                    .env(common::RING_VAR, name.as_str())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut created = 0;
        for mut child in children {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            let status = wait_bounded(&mut child, Duration::from_secs(60));
            assert!(status.success(), "round {round}: a racer failed: {status}");
            created += out.matches("created").count();
            assert!(out.contains("created") || out.contains("opened"), "{out}");
        }
        assert_eq!(created, 1, "round {round}");
    }
}
