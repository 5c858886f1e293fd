#!/usr/bin/env bash
# Counts the instructions each side spends per consumed message, whole process
# (its consumer loop and librdkafka's threads), with callgrind: repeatable where
# timings on a shared machine are not.
#
#   bench/callgrind.sh [MESSAGES]      # default 20000; needs valgrind and the broker
#   BIN=path/to/kafkaesk-bench bench/callgrind.sh   # drains by an older build, for a before/after
#
# Each side drains, in a fresh process, a topic of MESSAGES records and one
# of 2 × MESSAGES (whole topics: librdkafka fetches ahead, so a drain of part
# of a topic would pay for fetching the rest). The difference of the two
# totals, divided by MESSAGES, is the cost of one more message, free of
# start-up and shut-down. Each total is the median of three drains: a drain
# that waits (a slow group join) spends instructions while it waits.
#
# Sides: the rdkafka baseline and kafkaesk at concurrency 1, every client at
# fetch.wait.max.ms=5 and fetch.queue.backoff.ms=10 as in the headline run.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
kafka=${KAFKA:-127.0.0.1:9092}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kafkaesk-ci/target}"
cargo build -q -p kafkaesk-bench --release --bin kafkaesk-bench
filler="$CARGO_TARGET_DIR/release/kafkaesk-bench"
bin=${BIN:-$filler}
out=$(mktemp -d)
prefix="callgrind-$$."
"$filler" fill --kafka "$kafka" --topic "${prefix}drain-$n" --messages "$n"
"$filler" fill --kafka "$kafka" --topic "${prefix}drain-$((2 * n))" --messages $((2 * n))
settings=(--setting fetch.wait.max.ms=5 --setting fetch.queue.backoff.ms=10)
count() { # side messages -> median total instructions of three drain processes
    for run in 1 2 3; do
        valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2-$run.%p" "$bin" drain \
            --side "$1" --kafka "$kafka" --prefix "$prefix" --stream "drain-$2" \
            --group "$prefix$1-$2-$run" --messages "$2" "${settings[@]}" \
            >/dev/null 2>"$out/$1-$2-$run.log"
        grep -h '^summary:' "$out/$1-$2-$run".* | awk '{s += $2} END {print s}'
    done | sort -n | sed -n 2p
}
declare -A per_message
for side in baseline kafkaesk; do
    once=$(count "$side" "$n")
    twice=$(count "$side" $((2 * n)))
    per_message[$side]=$(( (twice - once) / n ))
    printf '%-9s %12d instructions for %d, %12d for %d: %6d a message\n' \
        "$side" "$once" "$n" "$twice" $((2 * n)) "${per_message[$side]}"
done
awk -v k="${per_message[kafkaesk]}" -v b="${per_message[baseline]}" \
    'BEGIN {printf "kafkaesk / baseline: %.3f ×\n", k / b}'
rm -rf "$out"
