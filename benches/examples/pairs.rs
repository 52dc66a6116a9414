//! Send + receive pairs in one thread, for instruction counts under callgrind: run it with
//! N and with a small M pairs and subtract, so set-up costs cancel out
//! (`benches/instructions.sh` does it for every kind and API and prints the table of
//! `docs/benchmarks.md`).
//!
//! ```sh
//! cargo build --release -p shmring-benches --example pairs
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/pairs spsc 64 100000 0 copy
//! ```
//!
//! Arguments: kind (`spsc`, `mpmc` or `broadcast`, one reader), message size in bytes,
//! pairs, telemetry (stamp one message in this many; 0: off), and the API (`copy`:
//! `try_send` / `try_recv`; `zero-copy`: `try_reserve` → commit / `try_read` → release;
//! `batch32`: `try_send_batch` / `try_recv_batch` of 32, counted as 32 pairs).

use shmring::{Config, Kind, Ring, broadcast::Broadcast, mpmc::Mpmc, spsc::Spsc};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, size, pairs, telemetry, api) = match args.as_slice() {
        [kind, size, pairs, telemetry] => (kind, size, pairs, telemetry, "copy"),
        [kind, size, pairs, telemetry, api] => (kind, size, pairs, telemetry, api.as_str()),
        _ => {
            return Err(
                "usage: pairs spsc|mpmc|broadcast SIZE PAIRS TELEMETRY [copy|zero-copy|batch32]"
                    .into(),
            );
        }
    };
    let (size, pairs, telemetry): (usize, u64, u32) =
        (size.parse()?, pairs.parse()?, telemetry.parse()?);
    match kind.as_str() {
        "spsc" => run::<Spsc>(Config::new().capacity(1 << 16), size, pairs, telemetry, api),
        "mpmc" => run::<Mpmc>(Config::new().slots(1024), size, pairs, telemetry, api),
        "broadcast" => {
            run::<Broadcast>(Config::new().capacity(1 << 16), size, pairs, telemetry, api)
        }
        other => Err(format!("unknown kind {other:?}").into()),
    }
}

fn run<K: Kind>(
    config: Config,
    size: usize,
    pairs: u64,
    telemetry: u32,
    api: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    if api == "batch32" && pairs % 32 != 0 {
        return Err("batch32 needs a multiple of 32 pairs".into());
    }
    let config = config.max_message(size.max(8)).telemetry(telemetry);
    let msg = vec![7u8; size];
    let sum = match api {
        "copy" => copy_pairs::<K>(&config, &msg, pairs)?,
        "zero-copy" => zero_copy_pairs::<K>(&config, &msg, pairs)?,
        "batch32" => batch_pairs::<K>(&config, &msg, pairs)?,
        other => return Err(format!("unknown API {other:?}").into()),
    };
    assert_eq!(sum, pairs * size as u64, "every byte came back");
    Ok(())
}

// One function per API, each with its ring and handles as locals of the loop's function
// (the compiler keeps what it can of them in registers, as in a program's own loop).

fn copy_pairs<K: Kind>(config: &Config, msg: &[u8], pairs: u64) -> shmring::Result<u64> {
    let ring = Ring::<K>::create_anonymous(config)?;
    let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    let mut buf = vec![0u8; msg.len().max(8)];
    let mut sum = 0u64;
    for _ in 0..pairs {
        tx.try_send(msg)?;
        sum += rx.try_recv(&mut buf)? as u64;
    }
    Ok(sum)
}

fn zero_copy_pairs<K: Kind>(config: &Config, msg: &[u8], pairs: u64) -> shmring::Result<u64> {
    let ring = Ring::<K>::create_anonymous(config)?;
    let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    let mut sum = 0u64;
    for _ in 0..pairs {
        let mut grant = tx.try_reserve(msg.len())?;
        grant.copy_from_slice(msg);
        grant.commit()?;
        let read = rx.try_read()?;
        sum += std::hint::black_box(read.len()) as u64;
        read.release()?;
    }
    Ok(sum)
}

fn batch_pairs<K: Kind>(config: &Config, msg: &[u8], pairs: u64) -> shmring::Result<u64> {
    let ring = Ring::<K>::create_anonymous(config)?;
    let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    let batch = vec![msg; 32];
    let mut sum = 0u64;
    for _ in 0..pairs / 32 {
        let sent = tx.try_send_batch(&batch)?;
        let got = rx.try_recv_batch(32, |m| sum += std::hint::black_box(m.len()) as u64)?;
        assert_eq!((sent, got), (32, 32));
    }
    Ok(sum)
}
