//! The reader over a ring whose record words the fuzzer chooses (position, then value):
//! receiving may only give messages or typed errors, never read out of bounds (ASan) or
//! loop. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmring::Config;
use shmring::spsc::Spsc;
use shmring::testing::HeapRing;

fuzz_target!(|data: &[u8]| {
    let Ok(ring) = HeapRing::<Spsc>::new(&Config::new().capacity(1024).max_message(504)) else {
        return;
    };
    let (Ok(mut tx), Ok(mut rx)) = (ring.producer(1), ring.consumer(2)) else {
        return;
    };
    // A few honest messages first, so headers and terminators exist.
    for i in 0..6u8 {
        let _ = tx.try_send(&[i; 33]);
    }
    for chunk in data.chunks_exact(9) {
        let offset = u64::from(chunk[0]) * 8 % 1024;
        let value = u64::from_le_bytes(chunk[1..9].try_into().unwrap());
        ring.poke_word(offset, value);
    }
    let mut out = Vec::new();
    for _ in 0..64 {
        if rx.try_recv_vec(&mut out).is_err() {
            break;
        }
        assert!(out.len() <= 504);
    }
});
