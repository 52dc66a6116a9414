//! Telemetry kept in the segment (`Config::telemetry`): every stamped message received is
//! counted once in the latency histogram, across processes and for every API; the stamp
//! costs the user 8 bytes of `max_message` and nothing else; a damaged telemetry line
//! misleads the numbers, never the program; rings without telemetry keep none.

mod common;

use std::time::Duration;

use common::{KillOnDrop, ShmName, expect_line, role, spawn_piped, wait_bounded};
use shmring::{Config, Error, Stats, mpmc, spsc};

const CALL: Duration = Duration::from_secs(10);
const N: u64 = 20_000;

fn telemetry(stats: &Stats) -> shmring::Telemetry {
    stats.telemetry.expect("the ring keeps telemetry")
}

/// Child role `send:<kind>`: sends N messages through every send API in turn, then closes.
#[test]
fn child_entry() {
    let Some((role, name)) = role() else { return };
    macro_rules! send_all {
        ($kind:ident) => {{
            let mut tx = $kind::Ring::open(&name).unwrap().producer().unwrap();
            println!("attached");
            for seq in 0..N {
                let msg = seq.to_le_bytes();
                match seq % 3 {
                    0 => tx.send_timeout(&msg, CALL).unwrap(),
                    1 => {
                        let mut grant = tx.reserve_timeout(8, CALL).unwrap();
                        grant.copy_from_slice(&msg);
                        grant.commit().unwrap();
                    }
                    _ => loop {
                        match tx.try_send_batch(&[msg]) {
                            Ok(1) => break,
                            Err(Error::WouldBlock) => std::thread::yield_now(),
                            other => panic!("batch send: {other:?}"),
                        }
                    },
                }
            }
        }};
    }
    match role.as_str() {
        "send:spsc" => send_all!(spsc),
        "send:mpmc" => send_all!(mpmc),
        other => panic!("unknown role {other}"),
    }
}

/// Receives N messages through every receive API in turn, checking each.
fn receive_all(mut recv: impl FnMut(u64) -> u64) {
    for seq in 0..N {
        assert_eq!(recv(seq), seq, "message {seq}");
    }
}

#[test]
fn every_message_received_across_processes_is_timed_once() {
    for kind in ["spsc", "mpmc"] {
        let name = ShmName::new("telemetry");
        let config = Config::new()
            .telemetry(1)
            .wait_strategy(shmring::WaitStrategy::Futex);
        let stats = match kind {
            "spsc" => {
                let ring = spsc::Ring::create(name.as_str(), &config.capacity(1 << 12)).unwrap();
                assert_eq!(ring.max_message(), 2040 - 8, "the stamp takes 8 bytes");
                let mut rx = ring.consumer().unwrap();
                let (child, lines) = spawn_piped("child_entry", "send:spsc", name.as_str());
                let mut child = KillOnDrop(child);
                expect_line(&lines, "attached", CALL);
                let mut buf = [0u8; 64];
                receive_all(|seq| match seq % 3 {
                    0 => {
                        let n = rx.recv_timeout(&mut buf, CALL).unwrap();
                        u64::from_le_bytes(buf[..n].try_into().unwrap())
                    }
                    1 => {
                        let grant = rx.read_timeout(CALL).unwrap();
                        let v = u64::from_le_bytes(grant[..].try_into().unwrap());
                        grant.release().unwrap();
                        v
                    }
                    _ => loop {
                        let mut got = None;
                        match rx.try_recv_batch(1, |m| got = Some(m.try_into().unwrap())) {
                            Ok(1) => break u64::from_le_bytes(got.unwrap()),
                            Err(Error::WouldBlock) => std::thread::yield_now(),
                            other => panic!("batch receive: {other:?}"),
                        }
                    },
                });
                assert!(wait_bounded(&mut child.0, CALL).success());
                ring.stats()
            }
            _ => {
                let ring =
                    mpmc::Ring::create(name.as_str(), &config.slots(64).max_message(8)).unwrap();
                assert_eq!(ring.max_message(), 8, "asked for 8, the stamp comes on top");
                let mut rx = ring.consumer().unwrap();
                let (child, lines) = spawn_piped("child_entry", "send:mpmc", name.as_str());
                let mut child = KillOnDrop(child);
                expect_line(&lines, "attached", CALL);
                let mut buf = [0u8; 8];
                receive_all(|_| {
                    let n = rx.recv_timeout(&mut buf, CALL).unwrap();
                    u64::from_le_bytes(buf[..n].try_into().unwrap())
                });
                assert!(wait_bounded(&mut child.0, CALL).success());
                ring.stats()
            }
        };
        let t = telemetry(&stats);
        assert_eq!(stats.messages_received, N, "{kind}");
        assert_eq!(t.stamped, N, "{kind}: every message stamped");
        assert_eq!(
            t.timed(),
            N,
            "{kind}: the histogram counts every message received"
        );
        let p50 = t.latency_quantile(0.5).unwrap();
        let max = t.latency_quantile(1.0).unwrap();
        assert!(p50 <= max && max < Duration::from_secs(10), "{kind}: {t:?}");
        assert!(t.in_flight_high_water >= 1, "{kind}");
        assert!(
            t.last_send_ns > 0 && t.last_receive_ns >= t.last_send_ns / 2,
            "{kind}"
        );
        println!(
            "{kind}: {N} timed, p50 <= {p50:?}, max <= {max:?}, most in flight {}",
            t.in_flight_high_water
        );
    }
}

#[test]
fn one_in_n_is_stamped_and_a_ring_without_telemetry_keeps_none() {
    let name = ShmName::new("telemetry-every");
    let ring = spsc::Ring::create(
        name.as_str(),
        &Config::new().capacity(1 << 16).telemetry(10),
    )
    .unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let mut buf = [0u8; 16];
    for i in 0..1000u32 {
        tx.try_send(&i.to_le_bytes()).unwrap();
        assert_eq!(rx.try_recv(&mut buf).unwrap(), 4);
    }
    let stats = ring.stats();
    let t = telemetry(&stats);
    assert_eq!((t.stamp_every, t.stamped, t.timed()), (10, 100, 100));
    // Byte counts are payload bytes: the stamps are not counted.
    assert_eq!((stats.bytes_sent, stats.bytes_received), (4000, 4000));
    assert!(
        ring.peers().iter().all(|p| p.bytes == 4000),
        "{:?}",
        ring.peers()
    );

    let plain = ShmName::new("telemetry-off");
    let ring = spsc::Ring::create(plain.as_str(), &Config::new().capacity(4096)).unwrap();
    assert_eq!(ring.max_message(), 2040);
    let mut tx = ring.producer().unwrap();
    tx.try_send(b"x").unwrap();
    assert_eq!(ring.stats().telemetry, None);
}

#[test]
fn the_high_water_mark_sees_a_backlog_within_one_sampling_interval() {
    // Occupancy is sampled at most once in 64 messages (it costs a cache miss on the
    // consumers' line), so a backlog of 500 shows as at least 500 - 63.
    for kind in ["spsc", "mpmc"] {
        let name = ShmName::new("telemetry-backlog");
        let config = Config::new().telemetry(1).max_message(8);
        let stats = if kind == "spsc" {
            let ring = spsc::Ring::create(name.as_str(), &config.capacity(1 << 16)).unwrap();
            let mut tx = ring.producer().unwrap();
            (0..500u64).for_each(|i| tx.try_send(&i.to_le_bytes()).unwrap());
            ring.stats()
        } else {
            let ring = mpmc::Ring::create(name.as_str(), &config.slots(512)).unwrap();
            let mut tx = ring.producer().unwrap();
            (0..500u64).for_each(|i| tx.try_send(&i.to_le_bytes()).unwrap());
            ring.stats()
        };
        let t = telemetry(&stats);
        assert_eq!(stats.messages_in_flight, 500, "{kind}");
        assert!(
            (437..=500).contains(&t.in_flight_high_water),
            "{kind}: {}",
            t.in_flight_high_water
        );
    }
}

#[test]
fn the_largest_message_is_what_max_message_says() {
    let name = ShmName::new("telemetry-max");
    let ring = mpmc::Ring::create(
        name.as_str(),
        &Config::new().slots(8).max_message(100).telemetry(1),
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    assert_eq!(tx.max_message(), 100);
    tx.try_send(&[7; 100]).unwrap();
    assert!(matches!(
        tx.try_send(&[7; 101]),
        Err(Error::MessageTooLarge { len: 101, max: 100 })
    ));
    assert!(matches!(
        tx.try_reserve(101),
        Err(Error::MessageTooLarge { len: 101, max: 100 })
    ));
    let mut rx = ring.consumer().unwrap();
    let mut buf = [0u8; 100];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 100);
    assert_eq!(buf, [7; 100]);
    // create_or_open insists on the same telemetry setting.
    let err = mpmc::Ring::create_or_open(name.as_str(), &Config::new().slots(8).max_message(100))
        .unwrap_err();
    assert!(err.to_string().contains("telemetry on"), "{err}");
}

#[test]
fn a_scribbled_telemetry_line_misleads_the_numbers_never_the_program() {
    use shmring::layout::{CONTROL_SIZE, ControlBlock};
    use std::os::unix::fs::FileExt;
    let name = ShmName::new("telemetry-scribbled");
    let ring =
        spsc::Ring::create(name.as_str(), &Config::new().capacity(4096).telemetry(1)).unwrap();
    let at = std::mem::offset_of!(ControlBlock, telemetry) as u64;
    assert!(at + 384 <= CONTROL_SIZE);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    // Every byte of the line set: a clock no creator writes, every counter at its largest.
    file.write_all_at(&[0xFF; 384], at).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let mut buf = [0u8; 16];
    for i in 0..100u32 {
        tx.try_send(&i.to_le_bytes()).unwrap();
        assert_eq!(rx.try_recv(&mut buf).unwrap(), 4);
        assert_eq!(buf[..4], i.to_le_bytes(), "the payload still arrives whole");
    }
    let t = telemetry(&ring.stats());
    assert_eq!(t.timed(), u64::MAX, "saturated, not overflowed");
    assert_eq!(t.stamped, u64::MAX, "nothing stamped with a garbage clock");
    assert!(t.latency_quantile(0.99).is_some());
}
