//! Benchmarks of shmring against pipes, sockets and message queues. A skeleton: the
//! benchmark issue adds the `shmring-bench` binary. Until then the two-process demo is
//! `cargo run --release -p shmring --example pingpong`.
