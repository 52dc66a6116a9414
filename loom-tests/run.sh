#!/usr/bin/env bash
# Runs every loom model in release with stated bounds, and the negative control, printing
# each one's interleavings and time. Called by .ci/run; about a minute here (2 vCPUs), most
# of it building the two loom configurations.
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
models=(wrap_with_padding_then_close full_ring_reuses_released_space batch_published_by_its_first_header mixed_sizes_over_two_laps futex_wakeups_are_never_lost)

RUSTFLAGS="--cfg shmring_loom" CARGO_TARGET_DIR=target/loom \
    cargo build --release --locked -p loom-tests --tests --quiet
elapsed() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }

for model in "${models[@]}"; do
    start=$(date +%s%N)
    log=$(LOOM_LOG=info RUSTFLAGS="--cfg shmring_loom" CARGO_TARGET_DIR=target/loom \
        cargo test --release --locked -p loom-tests --test spsc --quiet -- --exact "$model" --nocapture 2>&1) \
        || { echo "$log" | tail -30 >&2; echo "loom model $model FAILED" >&2; exit 1; }
    iterations=$(grep -o 'Completed in [0-9]* iterations' <<<"$log" | grep -o '[0-9]*' || echo '?')
    printf 'loom model %-38s ok  %8s interleavings  %s (LOOM_MAX_PREEMPTIONS=%s)\n' \
        "$model" "$iterations" "$(elapsed "$start")" "$LOOM_MAX_PREEMPTIONS"
done

# Negative control: with the publishing store (P1) weakened to Relaxed, loom must report
# the consumer reading payload bytes that were not made visible to it.
start=$(date +%s%N)
if output=$(RUSTFLAGS="--cfg shmring_loom --cfg shmring_weaken_publish" \
    CARGO_TARGET_DIR=target/loom-weak \
    cargo test --release --locked -p loom-tests --test spsc --quiet -- --exact wrap_with_padding_then_close 2>&1); then
    echo "negative control FAILED: loom accepted a Relaxed publish" >&2
    exit 1
fi
if ! grep -q "Causality violation" <<<"$output"; then
    echo "negative control failed for another reason than the expected causality violation:" >&2
    echo "$output" | tail -20 >&2
    exit 1
fi
printf 'loom negative control (P1 weakened to Relaxed): causality violation reported, %s (incl. build)\n' "$(elapsed "$start")"

# Negative control: without the waker's SeqCst fence (N1) the Dekker pair is broken, and loom
# must find the execution where the consumer sleeps through the last wake-up. A deadlock
# can abort the test process, so it runs in its own `cargo test` process and only the
# message is checked.
start=$(date +%s%N)
if output=$(RUSTFLAGS="--cfg shmring_loom --cfg shmring_weaken_dekker" \
    CARGO_TARGET_DIR=target/loom-dekker \
    cargo test --release --locked -p loom-tests --test spsc --quiet -- --exact futex_wakeups_are_never_lost 2>&1); then
    echo "negative control FAILED: loom accepted a wake protocol without the waker's fence" >&2
    exit 1
fi
if ! grep -q "deadlock" <<<"$output"; then
    echo "negative control failed for another reason than the expected deadlock:" >&2
    echo "$output" | tail -20 >&2
    exit 1
fi
printf 'loom negative control (N1 fence removed): lost wake-up found as a deadlock, %s (incl. build)\n' "$(elapsed "$start")"
