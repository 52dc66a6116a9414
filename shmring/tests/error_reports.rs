//! Errors a user can act on: said in words, with the variant a program can match on
//! (`Error::kind`, whose numbers the C statuses share), and damage reported as `Corrupted`
//! where it is detectable instead of a stall into `WouldBlock` or `Timeout`.

mod common;

use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::ShmName;
use shmring::layout::{CONTROL_SIZE, registry};
use shmring::{Config, Error, ErrorKind, OpenOptions, WaitStrategy, mpmc, spsc};

/// Writes `bytes` at `offset` of the segment's file.
fn scribble(name: &ShmName, offset: u64, bytes: &[u8]) {
    let file = File::options().write(true).open(name.path()).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// A file in /dev/shm that shmring did not make, mode 0600.
fn foreign_file(name: &ShmName, contents: &[u8]) {
    std::fs::write(name.path(), contents).unwrap();
    std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn create_or_open_with_other_parameters_says_which_in_words() {
    let name = ShmName::new("words-geometry");
    let _ring = spsc::Ring::create(name.as_str(), &Config::new().capacity(4096)).unwrap();
    let err = spsc::Ring::create_or_open(name.as_str(), &Config::new().capacity(8192))
        .expect_err("other capacity");
    assert_eq!(err.kind(), ErrorKind::Incompatible);
    let text = err.to_string();
    assert!(
        text.contains("capacity 4096 bytes and max_message 2040")
            && text.contains("capacity 8192 bytes and max_message 4088"),
        "{text}"
    );
    assert!(!text.contains('{'), "Debug output in a message: {text}");

    let name = ShmName::new("words-mpmc-geometry");
    let _ring = mpmc::Ring::create(name.as_str(), &Config::new().slots(16)).unwrap();
    let text = mpmc::Ring::create_or_open(name.as_str(), &Config::new().slots(32))
        .expect_err("other slot count")
        .to_string();
    assert!(
        text.contains("16 slots, max_message 240 and max_peers 16") && text.contains("32 slots"),
        "{text}"
    );
}

/// A configuration field the ring kind has no use for is refused in words, not ignored,
/// and nothing is created.
#[test]
fn a_field_that_does_not_apply_to_the_kind_is_refused() {
    let cases: [(&str, Config, &str); 4] = [
        (
            "spsc",
            Config::new().slots(64),
            "Config::slots does not apply to SPSC",
        ),
        (
            "spsc",
            Config::new().max_peers(4),
            "Config::max_peers does not apply to SPSC",
        ),
        (
            "mpmc",
            Config::new().capacity(1 << 16),
            "Config::capacity does not apply to MPMC",
        ),
        (
            "spsc",
            Config::new().initial_position(12),
            "not a multiple of 8",
        ),
    ];
    for (kind, config, expected) in cases {
        let name = ShmName::new("words-inapplicable");
        let err = match kind {
            "spsc" => spsc::Ring::create(name.as_str(), &config).map(drop),
            _ => mpmc::Ring::create(name.as_str(), &config).map(drop),
        }
        .expect_err(expected);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(expected), "{kind}: {err}");
        assert!(
            !std::path::Path::new(&name.path()).exists(),
            "{kind}: a refused ring was created"
        );
    }
    // What applies is accepted.
    let name = ShmName::new("words-applicable");
    mpmc::Ring::create(
        name.as_str(),
        &Config::new().slots(64).max_peers(4).max_message(8),
    )
    .unwrap();
}

#[test]
fn create_or_open_with_another_wait_strategy_says_what_to_do() {
    let name = ShmName::new("words-strategy");
    let config = Config::new()
        .capacity(4096)
        .wait_strategy(WaitStrategy::Futex);
    let _ring = spsc::Ring::create(name.as_str(), &config).unwrap();
    let err = spsc::Ring::create_or_open(
        name.as_str(),
        &config.clone().wait_strategy(WaitStrategy::SpinYield),
    )
    .expect_err("other strategy");
    assert_eq!(err.kind(), ErrorKind::Incompatible);
    let text = err.to_string();
    assert!(
        text.contains("waits with the futex strategy")
            && text.contains("asked for spin-then-yield")
            && text.contains("Ring::open"),
        "{text}"
    );
    assert!(!text.contains("insists"), "{text}");
}

#[test]
fn a_file_shmring_did_not_make_is_not_a_shmring_segment() {
    for (label, contents) in [
        ("text", b"[server]\nport = 8080\n".repeat(200)),
        ("short", b"twelve bytes".to_vec()),
        (
            "random",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
    ] {
        let name = ShmName::new(&format!("foreign-{label}"));
        foreign_file(&name, &contents);
        let err = spsc::Ring::open(name.as_str()).expect_err(label);
        assert_eq!(err.kind(), ErrorKind::Incompatible, "{label}: {err}");
        assert!(
            err.to_string().contains("is not a shmring segment"),
            "{label}: {err}"
        );
    }
}

#[test]
fn an_empty_file_older_than_the_timeout_is_uninitialized_at_once() {
    let name = ShmName::new("empty-old");
    foreign_file(&name, b"");
    let options = OpenOptions::new().init_timeout(Duration::from_millis(500));
    // Young: someone may be about to size it, so the open waits the timeout.
    let started = Instant::now();
    let err = spsc::Ring::open_with(name.as_str(), &options).expect_err("empty");
    assert_eq!(err.kind(), ErrorKind::Uninitialized, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Older than the timeout, and no creator holds it: said at once, every time.
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..3 {
        let started = Instant::now();
        let err = spsc::Ring::open_with(name.as_str(), &options).expect_err("empty");
        assert!(
            matches!(
                err,
                Error::Uninitialized {
                    creator_pid: None,
                    creator_alive: false
                }
            ),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "waited {:?} for a file that will never be a ring",
            started.elapsed()
        );
    }
}

#[test]
fn a_registry_of_words_shmring_never_writes_is_corrupted_not_full() {
    let name = ShmName::new("registry-words");
    let config = Config::new().slots(8).max_message(48).max_peers(4);
    let ring = mpmc::Ring::create(name.as_str(), &config).unwrap();
    // Every record's state byte (the low byte of its first word) set to 0xef.
    for index in 0..4u64 {
        let at = CONTROL_SIZE + index * registry::RECORD_SIZE;
        scribble(&name, at, &0xdead_beef_dead_beef_u64.to_le_bytes());
    }
    let err = ring.producer().expect_err("no usable record");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.to_string().contains("never writes"), "{err}");
}

#[test]
fn a_sequence_word_no_state_allows_is_corrupted_not_would_block() {
    let name = ShmName::new("bad-seq");
    let config = Config::new().slots(8).max_message(48).max_peers(4);
    let ring = mpmc::Ring::create(name.as_str(), &config).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let slots_at = CONTROL_SIZE + 4 * registry::RECORD_SIZE;
    let mut buf = [0u8; 48];
    // Position 0's slot claims to be ten laps ahead (the cursors have not moved).
    scribble(&name, slots_at, &80u64.to_le_bytes());
    assert_eq!(
        rx.try_recv(&mut buf).expect_err("damaged").kind(),
        ErrorKind::Corrupted
    );
    assert_eq!(
        tx.try_send(b"x").expect_err("damaged").kind(),
        ErrorKind::Corrupted
    );
    // ... or far behind.
    scribble(&name, slots_at, &u64::MAX.wrapping_sub(40).to_le_bytes());
    assert_eq!(
        rx.try_recv(&mut buf).expect_err("damaged").kind(),
        ErrorKind::Corrupted
    );
    let started = Instant::now();
    assert_eq!(
        rx.recv_timeout(&mut buf, Duration::from_secs(30))
            .expect_err("damaged")
            .kind(),
        ErrorKind::Corrupted
    );
    assert!(started.elapsed() < Duration::from_secs(5), "stalled first");
    // Repaired, the ring works again (nothing else was touched).
    scribble(&name, slots_at, &0u64.to_le_bytes());
    tx.try_send(b"ok").unwrap();
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 2);
}

#[test]
fn every_error_has_a_kind_with_a_stable_number() {
    let err = spsc::Ring::open("/shmring-test-never-created-kind").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!err.kind().is_end_of_stream());
    assert!(ErrorKind::PeerDead.is_end_of_stream() && ErrorKind::Closed.is_end_of_stream());
    // The numbers are the C statuses (shmring.h): stable, never reused.
    let numbered = [
        (ErrorKind::NotFound, 1),
        (ErrorKind::Timeout, 13),
        (ErrorKind::Closed, 14),
        (ErrorKind::PeerDead, 15),
        (ErrorKind::RegistryFull, 17),
        (ErrorKind::NoSpace, 18),
        (ErrorKind::Revoked, 19),
        (ErrorKind::Lagged, 20),
    ];
    for (kind, code) in numbered {
        assert_eq!(kind.code(), code, "{kind:?}");
        assert_eq!(ErrorKind::from_code(code), Some(kind));
    }
    let mut codes: Vec<i32> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
    codes.dedup();
    assert_eq!(codes, (1..=20).collect::<Vec<_>>());
    // `?` into io::Result keeps the kind's meaning and the message.
    let io: std::io::Error = Error::Timeout.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert!(io.to_string().contains("timed out"));
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}
