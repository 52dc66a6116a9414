#!/usr/bin/env bash
# Builds the Python wheel and runs the pytest suite against it, in a virtual environment
# under target/ (made on first use). Needs python3 (3.11+) with venv and pip.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd .. && pwd)
venv="$repo/target/pyenv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade "maturin>=1.5,<2" "pytest>=7"
rm -rf "$repo/target/wheels"
"$venv/bin/maturin" build --release --out "$repo/target/wheels"
"$venv/bin/pip" install -q --force-reinstall --no-deps "$repo"/target/wheels/shmring-*.whl
# The Rust and C peers of the cross-language tests.
(cd "$repo" && cargo build --release -p shmring --example checksummed)
prefix="$repo/target/c-peer"
"$repo/shmring-ffi/install.sh" "$prefix" >/dev/null
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -O2 "$repo/shmring-ffi/examples/checksummed.c" \
    -o "$prefix/checksummed" $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs shmring) \
    -Wl,-rpath,"$prefix/lib"
SHMRING_CHECKSUMMED="$repo/target/release/examples/checksummed" \
SHMRING_C_CHECKSUMMED="$prefix/checksummed" \
    "$venv/bin/python" -m pytest -q -s tests "$@"
