#!/usr/bin/env bash
# The whole shmring test suite (unit, integration, multi-process, kill and fault tests)
# under AddressSanitizer + LeakSanitizer. Needs nightly compiler flags; on a stable
# toolchain they are unlocked with RUSTC_BOOTSTRAP=1. The standard library itself is not
# instrumented (no -Zbuild-std), the crate and its tests are; child processes are the same
# instrumented test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="$PWD/target/asan" \
    cargo test --locked -p shmring --target "$target" --lib --tests "$@"
