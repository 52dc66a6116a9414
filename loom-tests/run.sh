#!/usr/bin/env bash
# Runs every loom model in release with stated bounds, and the negative controls, printing
# each one's interleavings and time. Called by .ci/run; about three to five minutes here
# (2 vCPUs), most of it two models (see their lines below).
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
models=(wrap_with_padding_then_close full_ring_reuses_released_space batch_published_by_its_first_header mixed_sizes_over_two_laps futex_wakeups_are_never_lost chunked_releases_never_strand_a_waiting_producer armed_consumers_are_always_rung a_producer_takes_over_from_a_dead_one)

RUSTFLAGS="--cfg shmring_loom" CARGO_TARGET_DIR=target/loom \
    cargo build --release --locked -p loom-tests --tests --quiet
elapsed() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }

# run_models TEST MODEL...: runs each model of loom-tests/tests/TEST.rs in its own process,
# printing its interleavings and time.
run_models() {
    local test=$1 model start log iterations
    shift
    for model in "$@"; do
        start=$(date +%s%N)
        log=$(LOOM_LOG=info RUSTFLAGS="--cfg shmring_loom" CARGO_TARGET_DIR=target/loom \
            cargo test --release --locked -p loom-tests --test "$test" --quiet -- --exact "$model" --nocapture 2>&1) \
            || { echo "$log" | tail -30 >&2; echo "loom model $test::$model FAILED" >&2; exit 1; }
        iterations=$(grep -o 'Completed in [0-9]* iterations' <<<"$log" | grep -o '[0-9]*' || echo '?')
        printf 'loom model %-50s ok  %8s interleavings  %s (LOOM_MAX_PREEMPTIONS=%s)\n' \
            "$test::$model" "$iterations" "$(elapsed "$start")" "$LOOM_MAX_PREEMPTIONS"
    done
}

run_models spsc "${models[@]}"
run_models mpmc a_dead_producers_claim_is_skipped a_slow_producer_is_never_skipped \
    attach_and_close_race_for_a_reused_record closed_comes_after_every_message \
    a_death_is_seen_by_every_consumer_at_the_end two_armed_consumers_are_both_rung \
    a_higher_priority_committed_first_is_received_first a_dead_claim_in_a_high_lane_is_skipped
# Five threads: bound 1 here (712,924 interleavings, ~80 s alone on 2 vCPUs; the handles'
# close-on-drop is in the model since the heap rings run the shipped handles). Bound 2 is
# for a long run by hand: LOOM_MAX_PREEMPTIONS=2 and the command in loom-tests/tests/mpmc.rs.
LOOM_MAX_PREEMPTIONS=1 run_models mpmc two_producers_two_consumers
run_models broadcast an_overwritten_record_is_never_delivered a_joining_reader_is_never_overrun

# negative_control CFG TARGET_DIR TEST MODEL EXPECTED LABEL: with `--cfg CFG` (an ordering
# deliberately weakened in the shipped code) loom must fail MODEL with a message containing
# EXPECTED. A deadlock can abort the test process, so each runs in its own `cargo test`
# process and only the message is checked.
negative_control() {
    local cfg=$1 dir=$2 test=$3 model=$4 expected=$5 label=$6 start output
    start=$(date +%s%N)
    if output=$(RUSTFLAGS="--cfg shmring_loom --cfg $cfg" CARGO_TARGET_DIR="$dir" \
        cargo test --release --locked -p loom-tests --test "$test" --quiet -- --exact "$model" 2>&1); then
        echo "negative control FAILED: loom accepted the model with $cfg" >&2
        exit 1
    fi
    if ! grep -q "$expected" <<<"$output"; then
        echo "negative control $cfg failed for another reason than \"$expected\":" >&2
        echo "$output" | tail -20 >&2
        exit 1
    fi
    printf 'loom negative control (%s): %s, %s (incl. build)\n' "$label" "$expected" "$(elapsed "$start")"
}

# The publishing store (P1) weakened to Relaxed: the consumer reads payload bytes that were
# not made visible to it.
negative_control shmring_weaken_publish target/loom-weak spsc wrap_with_padding_then_close \
    "Causality violation" "P1 weakened to Relaxed"
# The same for the MPMC slot publish (one `--cfg` weakens both rings' P1): a consumer sees
# the slot published but not its length word.
LOOM_MAX_PREEMPTIONS=1 negative_control shmring_weaken_publish target/loom-weak mpmc \
    two_producers_two_consumers "torn message" "MPMC P1 weakened to Relaxed"
# The waker's SeqCst fence (N1) removed: the Dekker pair is broken and the consumer sleeps
# through the last wake-up.
negative_control shmring_weaken_dekker target/loom-dekker spsc futex_wakeups_are_never_lost \
    "deadlock" "N1 fence removed"
# The same fence removed under the readiness protocol: an armed consumer waits for a
# doorbell that no publish rings (loom stops the endless wait).
negative_control shmring_keep_releases_when_dry target/loom-dry spsc \
    chunked_releases_never_strand_a_waiting_producer "deadlock" "nothing given back on catching up"
negative_control shmring_weaken_dekker target/loom-dekker spsc armed_consumers_are_always_rung \
    "maximum number of branches" "N1 fence removed, readiness"
LOOM_MAX_PREEMPTIONS=3 negative_control shmring_weaken_dekker target/loom-dekker mpmc \
    two_armed_consumers_are_both_rung "armed and was never rung" "N1 fence removed, MPMC readiness"
# The death counted after the dead producer's present bit clears (D1 swapped): a consumer
# can find no producer and no death, and end the stream with Closed.
negative_control shmring_weaken_death_order target/loom-death mpmc \
    a_death_is_seen_by_every_consumer_at_the_end "stream ended with Closed" "D1 swapped"
# A new stream forgets deaths nobody was told of (the pre-fix rule, stream_start = deaths):
# a producer that takes over after the consumer reaped the dead one, and before the
# consumer saw the end, hides the death.
negative_control shmring_forget_unreported_deaths target/loom-forget spsc \
    a_producer_takes_over_from_a_dead_one "saw \[Message(0), Message(1), Closed\]" \
    "unreported deaths forgotten"
# The R1/R2 fences removed: a reporter and a joiner can miss each other, and the death is
# told twice (once for the dead producer's stream, again at the end of its successor's).
negative_control shmring_weaken_report_fence target/loom-report spsc \
    a_producer_takes_over_from_a_dead_one "saw \[Message(0), PeerDead, Message(1), PeerDead\]" \
    "R1/R2 fences removed"
# Priority lanes looked at lowest first: a receive returns priority 0 while priority 1
# was committed before it began.
negative_control shmring_lanes_low_first target/loom-lanes mpmc \
    a_higher_priority_committed_first_is_received_first "while priority 1 was committed" \
    "lanes looked at lowest first"
# Broadcast: `oldest` announced after the record is written instead of before (B1 broken):
# a lapped reader's check passes on bytes the producer was overwriting.
negative_control shmring_weaken_reclaim target/loom-reclaim broadcast \
    an_overwritten_record_is_never_delivered "torn message" "B1 reversed"
# Broadcast: the producer's SeqCst fence between its reclaim intent and its look at the
# cursors removed (B3 broken): it overwrites a record a joining reader is reading.
negative_control shmring_weaken_join_fence target/loom-join broadcast \
    a_joining_reader_is_never_overrun "Causality violation" "B3 fence removed"
