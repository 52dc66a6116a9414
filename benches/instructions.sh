#!/usr/bin/env bash
# Instructions per send + receive pair, for every kind and API, in one process under
# callgrind (the repeatable cost figure: this VM has no hardware counters). Each cell runs
# the harness with 102,400 and with 1,024 pairs and divides the difference by 101,376, so
# set-up costs cancel out. Prints the table of docs/benchmarks.md. Needs valgrind.
# Usage: benches/instructions.sh [SIZE]   (default 64 bytes)
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-64}"
cargo build --release --locked -p shmring-benches --example pairs --quiet
bin=target/release/examples/pairs
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$size" "$3" 0 "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '| %s B pair | copy | zero-copy | batch32 |\n|---|--:|--:|--:|\n' "$size"
for kind in spsc mpmc broadcast; do
    row="| $kind"
    for api in copy zero-copy batch32; do
        big=$(count "$kind" "$api" 102400)
        small=$(count "$kind" "$api" 1024)
        row="$row | $(( (big - small) / 101376 ))"
    done
    echo "$row |"
done
