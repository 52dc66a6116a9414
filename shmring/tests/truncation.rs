//! Truncation under a mapping. A named segment can be shrunk by anyone who may write it, and
//! a process touching the lost pages gets SIGBUS (shown here, in a child). Anonymous rings
//! avoid it by construction: a memfd sealed against shrinking and growing at creation, so no
//! holder of the descriptor can resize it, and an unsealed descriptor is refused.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{RING_VAR, ROLE_VAR, ShmName, message, role, wait_bounded};
use shmring::{Config, Error, OpenOptions, mpmc, spsc};

const MESSAGES: u64 = 100_000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// `ftruncate` through a raw descriptor, as a hostile holder would; the errno on failure.
fn truncate(fd: &impl AsRawFd, len: i64) -> Result<(), i32> {
    // SAFETY: plain system call on a descriptor we hold.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// Entry point of the child processes; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some((role, arg)) = role() else { return };
    match role.as_str() {
        // Inherited descriptor of an anonymous ring: try to shrink it, then produce.
        "anonymous-producer" => {
            // SAFETY: the parent passed this descriptor number, open and not close-on-exec.
            let fd = unsafe { OwnedFd::from_raw_fd(arg.parse().unwrap()) };
            assert_eq!(
                truncate(&fd, 0),
                Err(libc::EPERM),
                "the seal holds in the child"
            );
            let ring = spsc::Ring::open_fd(fd, &OpenOptions::new()).unwrap();
            let mut tx = ring.producer().unwrap();
            let mut msg = Vec::new();
            for seq in 0..MESSAGES {
                message(seq, 1 + (seq % 200) as usize, &mut msg);
                tx.send_timeout(&msg, TIMEOUT).unwrap();
            }
        }
        // A consumer of a named ring that the parent will truncate.
        "named-consumer" => {
            // The SIGBUS below is expected: no core file for it.
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain system call with a valid struct.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
            let ring = spsc::Ring::open(&arg).unwrap();
            let mut rx = ring.consumer().unwrap();
            let mut buf = [0u8; 64];
            loop {
                // Polls the ring's memory until the truncation takes it away.
                let _ = rx.recv_timeout(&mut buf, Duration::from_millis(10));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn anonymous_rings_cannot_be_resized_by_any_holder() {
    for ring_fd in [
        spsc::Ring::create_anonymous(&Config::new().capacity(4096))
            .unwrap()
            .share_fd()
            .unwrap(),
        mpmc::Ring::create_anonymous(&Config::new().slots(16))
            .unwrap()
            .share_fd()
            .unwrap(),
    ] {
        assert_eq!(truncate(&ring_fd, 0), Err(libc::EPERM));
        assert_eq!(truncate(&ring_fd, 1 << 30), Err(libc::EPERM));
        // SAFETY: plain fcntl on a descriptor we hold; F_SEAL_SEAL forbids any change.
        let rc = unsafe { libc::fcntl(ring_fd.as_raw_fd(), libc::F_ADD_SEALS, 0) };
        assert_eq!(rc, -1, "seals are themselves sealed");
    }
    // A named ring has no descriptor to share.
    let name = ShmName::new("share");
    let named = spsc::Ring::create(name.as_str(), &Config::new().capacity(4096)).unwrap();
    assert!(matches!(
        named.share_fd(),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn an_unsealed_descriptor_is_refused() {
    // A memfd without seals, and a plain file, both the size of a ring.
    // SAFETY: plain system call with a NUL-terminated name.
    let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(raw >= 0);
    // SAFETY: a fresh descriptor we own.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    truncate(&memfd, 8192).unwrap();
    let path = std::env::temp_dir().join(format!("shmring-unsealed-{}", std::process::id()));
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let file: OwnedFd = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap()
        .into();
    std::fs::remove_file(&path).unwrap();
    for fd in [memfd, file] {
        let opened = spsc::Ring::open_fd(fd, &OpenOptions::new());
        assert!(
            matches!(opened, Err(Error::PermissionDenied { .. })),
            "{opened:?}"
        );
    }
}

#[test]
fn an_anonymous_ring_passed_to_a_child_carries_every_message() {
    let ring = spsc::Ring::create_anonymous(&Config::new().capacity(1 << 14)).unwrap();
    let shared = ring.share_fd().unwrap();
    // A duplicate without close-on-exec, for the child to inherit.
    // SAFETY: plain system call on a descriptor we hold.
    let inherit = unsafe { libc::dup(shared.as_raw_fd()) };
    assert!(inherit >= 0);
    // SAFETY: `dup` returned a fresh descriptor we own.
    let inherit = unsafe { OwnedFd::from_raw_fd(inherit) };
    let mut rx = ring.consumer().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, "anonymous-producer")
        .env(RING_VAR, inherit.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    drop(inherit);
    let (mut buf, mut want) = (vec![0u8; 256], Vec::new());
    for seq in 0..MESSAGES {
        let n = rx.recv_timeout(&mut buf, TIMEOUT).unwrap();
        message(seq, 1 + (seq % 200) as usize, &mut want);
        assert_eq!(&buf[..n], &want[..], "message {seq}");
    }
    assert!(matches!(
        rx.recv_timeout(&mut buf, TIMEOUT),
        Err(Error::Closed)
    ));
    assert!(wait_bounded(&mut child, TIMEOUT).success());
}

#[test]
fn a_named_segment_truncated_under_a_reader_raises_sigbus() {
    use std::os::unix::process::ExitStatusExt;
    let name = ShmName::new("truncate");
    let ring = spsc::Ring::create(name.as_str(), &Config::new().capacity(1 << 16)).unwrap();
    // Under AddressSanitizer (reliability/asan.sh) the SIGBUS would be caught and reported;
    // let it kill the child as it would any process.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, "named-consumer")
        .env(RING_VAR, name.as_str())
        .env("ASAN_OPTIONS", "handle_sigbus=0")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child is attached, then shrink the segment to nothing.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while ring.stats().consumers == 0 {
        assert!(std::time::Instant::now() < deadline, "child never attached");
        std::thread::sleep(Duration::from_millis(1));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    file.set_len(0).unwrap();
    let status = wait_bounded(&mut child, TIMEOUT);
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}");
}
