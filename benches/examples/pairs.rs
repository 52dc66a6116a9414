//! `try_send` + `try_recv` pairs in one thread, for instruction counts under callgrind:
//! run it with N and with a small M pairs and subtract, so set-up costs cancel out.
//!
//! ```sh
//! cargo build --release -p shmring-benches --example pairs
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/pairs spsc 64 100000 0
//! ```
//!
//! Arguments: kind (`spsc`, `mpmc` or `broadcast`, one reader), message size in bytes,
//! pairs, telemetry (stamp one message in this many; 0: off).

use shmring::{Config, Kind, Ring, broadcast::Broadcast, mpmc::Mpmc, spsc::Spsc};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, size, pairs, telemetry] = args.as_slice() else {
        return Err("usage: pairs spsc|mpmc|broadcast SIZE PAIRS TELEMETRY".into());
    };
    let (size, pairs, telemetry): (usize, u64, u32) =
        (size.parse()?, pairs.parse()?, telemetry.parse()?);
    match kind.as_str() {
        "spsc" => run::<Spsc>(Config::new().capacity(1 << 16), size, pairs, telemetry),
        "mpmc" => run::<Mpmc>(Config::new().slots(1024), size, pairs, telemetry),
        "broadcast" => run::<Broadcast>(Config::new().capacity(1 << 16), size, pairs, telemetry),
        other => Err(format!("unknown kind {other:?}").into()),
    }
}

fn run<K: Kind>(
    config: Config,
    size: usize,
    pairs: u64,
    telemetry: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = config.max_message(size.max(8)).telemetry(telemetry);
    let ring = Ring::<K>::create_anonymous(&config)?;
    let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    let msg = vec![7u8; size];
    let mut buf = vec![0u8; size.max(8)];
    let mut sum = 0u64;
    for _ in 0..pairs {
        tx.try_send(&msg)?;
        sum += rx.try_recv(&mut buf)? as u64;
    }
    assert_eq!(sum, pairs * size as u64, "every byte came back");
    Ok(())
}
