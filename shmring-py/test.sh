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
(cd "$repo" && cargo build --release -p shmring --example checksummed)
SHMRING_CHECKSUMMED="$repo/target/release/examples/checksummed" \
    "$venv/bin/python" -m pytest -q -s tests "$@"
