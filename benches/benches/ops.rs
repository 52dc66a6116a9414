//! In-process cost of one operation (criterion, `cargo bench -p shmring-benches`): the
//! instructions of send/recv and reserve/commit with both ends in one thread, so no cache
//! line crosses cores. The cross-process figures are `shmring-bench`'s.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shmring::{Config, WaitStrategy, spsc::Ring};

/// A ring with both ends attached in this thread; unlinked at once (the mapping stays).
fn pair(tag: &str) -> (shmring::spsc::Producer, shmring::spsc::Consumer) {
    let name = format!("/shmring-criterion-{tag}-{}", std::process::id());
    let _ = shmring::spsc::unlink(&name);
    let ring = Ring::create(
        &name,
        &Config::new()
            .capacity(1 << 20)
            .wait_strategy(WaitStrategy::Spin),
    )
    .expect("create ring");
    let ends = (ring.producer().unwrap(), ring.consumer().unwrap());
    ring.unlink().unwrap();
    ends
}

fn ops(c: &mut Criterion) {
    for size in [8usize, 64, 1024] {
        let mut group = c.benchmark_group(format!("{size}B"));
        group.throughput(Throughput::Elements(1));
        let msg = vec![7u8; size];

        let (mut tx, mut rx) = pair(&format!("copy{size}"));
        let mut buf = vec![0u8; size];
        group.bench_function("try_send+try_recv", |b| {
            b.iter(|| {
                tx.try_send(&msg).unwrap();
                rx.try_recv(&mut buf).unwrap()
            })
        });

        let (mut tx, mut rx) = pair(&format!("zc{size}"));
        group.bench_function("reserve+commit+read+release", |b| {
            b.iter(|| {
                let mut grant = tx.try_reserve(size).unwrap();
                grant.copy_from_slice(&msg);
                grant.commit().unwrap();
                let got = rx.try_read().unwrap();
                let first = got[0];
                got.release().unwrap();
                first
            })
        });

        let (mut tx, mut rx) = pair(&format!("batch{size}"));
        group.throughput(Throughput::Elements(32));
        group.bench_function("batch of 32 each way", |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut batch = tx.batch();
                    for _ in 0..32 {
                        batch.try_push(&msg).unwrap();
                    }
                    batch.publish();
                    rx.try_recv_batch(32, |m| {
                        std::hint::black_box(m);
                    })
                    .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, ops);
criterion_main!(benches);
