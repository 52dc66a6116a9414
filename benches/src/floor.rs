//! The physical floor and ceiling: two cache lines ping-ponged by busy-spin in shared
//! memory (the least a cross-process round trip can cost), and one-core memcpy bandwidth
//! (the most a one-copy transport can move).
// The floor is deliberately raw atomics on mapped memory, outside shmring.
#![allow(clippy::disallowed_types)]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use memmap2::{MmapOptions, MmapRaw};

use crate::transport::Endpoint;
use crate::{Kind, Plan, Sample};

/// Two 128-byte lines: the parent writes line 0, the child line 1.
pub(crate) struct Floor {
    map: MmapRaw,
    /// Which line this end writes.
    mine: usize,
    seq: u64,
}

const LINE: usize = 128;

impl Floor {
    pub(crate) fn create(name: &str) -> io::Result<Floor> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(format!("/dev/shm{name}"))?;
        file.set_len(4096)?;
        Ok(Floor {
            map: MmapOptions::new().len(4096).populate().map_raw(&file)?,
            mine: 0,
            seq: 0,
        })
    }

    pub(crate) fn open(name: &str) -> io::Result<Floor> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm{name}"))?;
        Ok(Floor {
            map: MmapOptions::new().len(4096).populate().map_raw(&file)?,
            mine: 1,
            seq: 0,
        })
    }

    fn line(&self, which: usize) -> &AtomicU64 {
        // SAFETY: the mapping is 4096 bytes, page-aligned; lines 0 and 1 are in bounds and
        // 8-aligned; both processes access them only atomically.
        unsafe { &*self.map.as_mut_ptr().add(which * LINE).cast::<AtomicU64>() }
    }
}

impl Endpoint for Floor {
    /// Writes the next sequence number to our line.
    fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
        self.seq += 1;
        self.line(self.mine).store(self.seq, Ordering::Release);
        Ok(())
    }

    /// Spins until the other line shows our sequence number.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let other = self.line(1 - self.mine);
        // The child receives before it sends: it expects one more than it has sent.
        let want = if self.mine == 1 {
            self.seq + 1
        } else {
            self.seq
        };
        let start = Instant::now();
        while other.load(Ordering::Acquire) < want {
            std::hint::spin_loop();
            if start.elapsed().as_secs() > 60 {
                return Err(io::Error::other("floor peer stalled"));
            }
        }
        buf[..8].fill(0);
        Ok(8)
    }
}

/// Stands in for an endpoint that is connected after the child starts (FIFO, TCP).
pub(crate) struct Pending;

impl Endpoint for Pending {
    fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
        Err(io::Error::other("not connected"))
    }
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("not connected"))
    }
}

/// One-core copy bandwidth at `plan.size`, source and destination reused (cache-resident
/// up to the cache size, as a ring's hot region is).
pub(crate) fn memcpy(plan: &Plan) -> Sample {
    let Kind::Stream(budget) = plan.kind else {
        return Sample::default();
    };
    // One allocation, destination 2 KiB (mod 4 KiB) past the source: two separate
    // allocations often land 16 bytes apart mod 4 KiB, where `rep movsb` on AMD Zen runs at
    // a twentieth of its speed (measured: 2.9 vs 43.6 GB/s at 64 KiB). The ceiling is the
    // good case.
    let mut buf = vec![0x5Au8; 2 * plan.size + 2048];
    let (src, dst) = buf.split_at_mut(plan.size + 2048);
    let (src, dst) = (&src[..plan.size], &mut dst[..plan.size]);
    let start = Instant::now();
    let mut copies = 0u64;
    while start.elapsed() < budget {
        for _ in 0..256 {
            dst.copy_from_slice(std::hint::black_box(src));
            std::hint::black_box(&mut *dst);
        }
        copies += 256;
    }
    let secs = start.elapsed().as_secs_f64();
    Sample {
        msgs_per_s: Some(copies as f64 / secs),
        bytes_per_s: Some((copies * plan.size as u64) as f64 / secs),
        ..Sample::default()
    }
}
