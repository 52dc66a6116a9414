//! A peer for cross-language tests: sends or receives numbered, checksummed messages on a
//! ring another program created (the Python tests use it; any kind).
//!
//! ```sh
//! checksummed send /name COUNT   # messages 0..COUNT, then closes
//! checksummed recv /name COUNT   # checks COUNT messages in order, prints "ok COUNT"
//! ```
//!
//! Message `seq`: `seq` as 8 little-endian bytes, a body of `seq * 7919 % 120` bytes cut
//! from the repeating pattern 0, 1, …, 250 starting at `seq % 251`, then the CRC-32 of
//! all that as 4 little-endian bytes.

use std::process::ExitCode;
use std::time::Duration;

use shmring::{OpenOptions, any};

const PATTERN_PERIOD: usize = 251;

/// Message `seq` as the format above says.
fn message(seq: u64, pattern: &[u8]) -> Vec<u8> {
    let len = (seq * 7919 % 120) as usize;
    let start = (seq % PATTERN_PERIOD as u64) as usize;
    let mut msg = seq.to_le_bytes().to_vec();
    msg.extend_from_slice(&pattern[start..start + len]);
    let crc = crc32fast::hash(&msg);
    msg.extend_from_slice(&crc.to_le_bytes());
    msg
}

fn run(mode: &str, name: &str, count: u64) -> Result<(), String> {
    let pattern: Vec<u8> = (0..2 * PATTERN_PERIOD).map(|i| (i % 251) as u8).collect();
    let ring = any::Ring::open(name, &OpenOptions::new()).map_err(|e| e.to_string())?;
    let patience = Some(Duration::from_secs(30));
    match mode {
        "send" => {
            let mut tx = ring.producer().map_err(|e| e.to_string())?;
            for seq in 0..count {
                tx.send(&message(seq, &pattern), patience)
                    .map_err(|e| format!("send {seq}: {e}"))?;
            }
            Ok(())
        }
        "recv" => {
            let mut rx = ring.consumer().map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; ring.max_message()];
            for seq in 0..count {
                let n = rx
                    .recv(&mut buf, patience)
                    .map_err(|e| format!("recv {seq}: {e}"))?;
                if buf[..n] != message(seq, &pattern)[..] {
                    return Err(format!("message {seq} differs: {:?}", &buf[..n.min(16)]));
                }
            }
            println!("ok {count}");
            Ok(())
        }
        other => Err(format!("unknown mode {other:?}: send or recv")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, name, count] = args.as_slice() else {
        eprintln!("usage: checksummed send|recv NAME COUNT");
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse() else {
        eprintln!("COUNT must be a number, not {count:?}");
        return ExitCode::from(2);
    };
    match run(mode, name, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checksummed: {e}");
            ExitCode::FAILURE
        }
    }
}
