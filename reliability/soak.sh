#!/usr/bin/env bash
# Soak: runs the kill, stop, crash-point (data path, and every moment of the peer and wait
# protocols), killed-while-asleep, end-of-stream, liveness (fork, PID namespaces),
# hostile-peer and MPMC fault tests over and over for
# a while (default 10 minutes; `reliability/soak.sh 3600` for an hour), each with
# SHMRING_SOAK_SCALE times their CI rounds. Passes only if every iteration passed, no
# /dev/shm entry was left behind, and the test processes' peak memory stayed flat (last
# iteration within 20% + 8 MiB of the first). Prints one line per iteration.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-600}
export SHMRING_SOAK_SCALE=${SHMRING_SOAK_SCALE:-4}
tests=(peers crash_points crash_moments killed_sleepers end_of_stream liveness hostile mpmc init_race)

cargo build --release --locked -p shmring --tests --quiet
# The test binaries themselves (not cargo) so that /usr/bin/time measures them.
mapfile -t binaries < <(
    for t in "${tests[@]}"; do
        cargo test --release --locked -p shmring --test "$t" --no-run --message-format=json 2>/dev/null |
            grep -o '"executable":"[^"]*"' | cut -d'"' -f4
    done
)

shm_entries() { ls /dev/shm | grep -c '^shmring-' || true; }
before=$(shm_entries)
end=$(( $(date +%s) + duration ))
iteration=0
first_peak=
while (( $(date +%s) < end )); do
    iteration=$((iteration + 1))
    peak=0
    for bin in "${binaries[@]}"; do
        log=$(mktemp)
        if ! /usr/bin/time -f '%M' -o "$log.rss" "$bin" --test-threads=1 --nocapture >"$log" 2>&1; then
            tail -40 "$log" >&2
            echo "soak: $(basename "$bin") FAILED in iteration $iteration" >&2
            exit 1
        fi
        rss=$(tail -1 "$log.rss")
        (( rss > peak )) && peak=$rss
        rm -f "$log" "$log.rss"
    done
    first_peak=${first_peak:-$peak}
    leftover=$(( $(shm_entries) - before ))
    printf 'soak iteration %d ok: peak RSS %d KiB, leftover /dev/shm entries %d\n' \
        "$iteration" "$peak" "$leftover"
    if (( leftover != 0 )); then
        echo "soak: /dev/shm entries leaked" >&2
        exit 1
    fi
done
if (( peak > first_peak * 12 / 10 + 8192 )); then
    echo "soak: peak RSS grew from $first_peak KiB to $peak KiB" >&2
    exit 1
fi
echo "soak: $iteration iterations in ${duration} s, scale $SHMRING_SOAK_SCALE, all passed"
