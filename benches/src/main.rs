//! `shmring-bench`: see the library's documentation and `docs/benchmarks.md`.

fn main() -> std::process::ExitCode {
    shmring_benches::run(std::env::args_os(), &[])
}
