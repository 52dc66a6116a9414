//! The broadcast ring over a data region (the producer's and readers' registry records,
//! with cursors and names, then the byte ring) whose words the fuzzer chooses (offset, then
//! value) while a producer and two readers exist, in either policy: every operation,
//! including resynchronising after a lap and the dead-holder scans, may only succeed or
//! give a typed error, never read out of bounds (ASan), panic or loop. Run:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run broadcast`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::Config;
use shmring::broadcast::{Broadcast, JoinAt, Policy};
use shmring::testing::{HeapRing, Maintain};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let policy = if first & 1 == 0 {
        Policy::Lossless
    } else {
        Policy::Overwrite
    };
    let config = Config::new()
        .capacity(512)
        .max_message(48)
        .max_readers(3)
        .overflow(policy);
    let Ok(ring) = HeapRing::<Broadcast>::new(&config) else {
        return;
    };
    let Ok(mut tx) = ring.producer(1) else { return };
    let (Ok(mut live), Ok(mut named)) = (
        ring.reader(2, JoinAt::Live, None),
        ring.reader(3, JoinAt::Oldest, Some("durable")),
    ) else {
        return;
    };
    // Honest traffic first, so the ring holds records, padding and cursors of every kind.
    for i in 0..12u8 {
        let _ = tx.try_send(&[i; 40]);
    }
    let mut out = Vec::new();
    let _ = live.try_recv_vec(&mut out);
    for chunk in data.chunks_exact(10) {
        let offset = u64::from(u16::from_le_bytes([chunk[0], chunk[1]]));
        let value = u64::from_le_bytes(chunk[2..10].try_into().unwrap());
        ring.poke_word(offset, value);
    }
    for round in 0..32u8 {
        let _ = tx.try_send(&[round; 30]);
        let _ = tx.try_send_batch(&[&[round; 3][..], &[round; 48][..]]);
        for rx in [&mut live, &mut named] {
            if let Ok(n) = rx.try_recv_vec(&mut out) {
                assert!(n <= 48);
            }
            let _ = rx.try_recv_batch(8, |m| assert!(m.len() <= 48));
            if let Ok(grant) = rx.try_read() {
                assert!(grant.len() <= 48);
                let _ = grant.release();
            }
            rx.maintain();
        }
        tx.maintain();
    }
    let _ = ring.stats();
    let _ = ring.peers();
    drop(named);
    let _ = ring.reader(4, JoinAt::Oldest, Some("durable"));
});
