//! The README's first example, process A: create a ring and send ten quotes.
//! `tests/readme.rs` checks that the README shows exactly this code, and runs it.

use shmring::{Config, spsc::Ring};

fn main() -> shmring::Result<()> {
    let ring = Ring::create("/quotes", &Config::new().capacity(1 << 20))?;
    let mut tx = ring.producer()?;
    for i in 0..10u32 {
        tx.send(format!("quote {i}").as_bytes())?; // waits while the ring is full
    }
    Ok(()) // dropping `tx` ends the stream; the segment stays until unlinked
}
