#!/usr/bin/env bash
# Builds the C examples against the release library and runs producer and consumer as two
# processes, printing what they exchanged. Exits non-zero on any error.
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
shmring-ffi/install.sh "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
flags=(-std=c11 -Wall -Wextra -Werror -pedantic -O2)
for example in producer consumer zero_copy checksummed poll_consumer; do
    # shellcheck disable=SC2046
    cc "${flags[@]}" "shmring-ffi/examples/$example.c" -o "$prefix/$example" \
        $(pkg-config --cflags --libs shmring) -Wl,-rpath,"$prefix/lib"
done
name="/shmring-c-example-$$"
"$prefix/consumer" "$name" &
consumer=$!
"$prefix/producer" "$name" 100000
wait "$consumer"
"$prefix/zero_copy" "$name-zc"
# One poll(2) loop over a ring and a pipe: the ring's messages and two lines of input.
(sleep 0.2; printf 'one\ntwo\n') | "$prefix/poll_consumer" "$name-poll" &
poller=$!
"$prefix/producer" "$name-poll" 100000
wait "$poller"
