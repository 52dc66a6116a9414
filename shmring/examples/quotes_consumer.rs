//! The README's first example, process B: open the ring by name, print until end of stream.
//! `tests/readme.rs` checks that the README shows exactly this code, and runs it.

use shmring::{Error, spsc::Ring};

fn main() -> shmring::Result<()> {
    let ring = Ring::open("/quotes")?;
    let mut rx = ring.consumer()?;
    let mut msg = Vec::new();
    loop {
        match rx.recv_vec(&mut msg) {
            Ok(_) => println!("{}", String::from_utf8_lossy(&msg)),
            Err(Error::Closed) => break, // the producer closed and everything was received
            Err(e) => return Err(e),
        }
    }
    ring.unlink() // remove the name; mappings stay valid until dropped
}
