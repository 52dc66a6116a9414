//! The MPMC ring over a data region (registry records and slots) whose words the fuzzer
//! chooses (offset, then value) while a producer and a consumer exist: every operation,
//! including the dead-holder recovery scans, may only succeed or give a typed error, never
//! read out of bounds (ASan), panic or loop. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run mpmc`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::Config;
use shmring::mpmc::Mpmc;
use shmring::testing::{HeapRing, Maintain};

fuzz_target!(|data: &[u8]| {
    let config = Config::new().slots(8).max_message(48).max_peers(4);
    let Ok(ring) = HeapRing::<Mpmc>::new(&config) else {
        return;
    };
    let (Ok(mut tx), Ok(mut rx)) = (ring.producer(1), ring.consumer(2)) else {
        return;
    };
    // Honest traffic first, so slots hold sequence words and lengths of every kind.
    for i in 0..6u8 {
        let _ = tx.try_send(&[i; 20]);
    }
    let mut out = Vec::new();
    let _ = rx.try_recv_vec(&mut out);
    for chunk in data.chunks_exact(10) {
        let offset = u64::from(u16::from_le_bytes([chunk[0], chunk[1]]));
        let value = u64::from_le_bytes(chunk[2..10].try_into().unwrap());
        ring.poke_word(offset, value);
    }
    ring.mark_dead(3);
    for round in 0..32u8 {
        let _ = tx.try_send(&[round; 30]);
        let _ = tx.try_send_batch(&[&[round; 3][..], &[round; 48][..]]);
        if let Ok(n) = rx.try_recv_vec(&mut out) {
            assert!(n <= 48);
        }
        let _ = rx.try_recv_batch(8, |m| assert!(m.len() <= 48));
        rx.maintain();
        tx.maintain();
    }
});
