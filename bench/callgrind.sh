#!/usr/bin/env bash
# Counts the instructions each side spends per message, whole process (its own
# loop and librdkafka's threads), with callgrind: repeatable where timings on a
# shared machine are not.
#
#   bench/callgrind.sh [consume|publish] [MESSAGES]   # default consume 20000; needs valgrind and the broker
#   BIN=path/to/kafkaesk-bench bench/callgrind.sh ... # runs an older build, for a before/after
#
# consume: each side drains, in a fresh process, a topic of MESSAGES records
# and one of 2 × MESSAGES (whole topics: librdkafka fetches ahead, so a drain
# of part of a topic would pay for fetching the rest).
# publish: each side publishes MESSAGES and then 2 × MESSAGES to a new topic,
# in a fresh process, awaiting every delivery (the benchmark's publish
# scenario); the baseline serialises its envelopes, kafkaesk serialises and
# validates them.
#
# The difference of the two totals, divided by MESSAGES, is the cost of one
# more message, free of start-up and shut-down. Each total is the median of
# three processes: one that waits (a slow group join, a slow metadata answer)
# spends instructions while it waits.
#
# Sides: the rdkafka baseline and kafkaesk at concurrency 1 (consume), or the
# baseline, kafkaesk and kafkaesk without idempotence (publish); every client
# at fetch.wait.max.ms=5 and fetch.queue.backoff.ms=10 as in the headline run.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=consume
if [[ ${1:-} == consume || ${1:-} == publish ]]; then
    mode=$1
    shift
fi
n=${1:-20000}
kafka=${KAFKA:-127.0.0.1:9092}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kafkaesk-ci/target}"
cargo build -q -p kafkaesk-bench --release --bin kafkaesk-bench
filler="$CARGO_TARGET_DIR/release/kafkaesk-bench"
bin=${BIN:-$filler}
out=$(mktemp -d)
prefix="callgrind-$$."
settings=(--setting fetch.wait.max.ms=5 --setting fetch.queue.backoff.ms=10)
if [[ $mode == consume ]]; then
    sides=(baseline kafkaesk)
    "$filler" fill --kafka "$kafka" --topic "${prefix}drain-$n" --messages "$n"
    "$filler" fill --kafka "$kafka" --topic "${prefix}drain-$((2 * n))" --messages $((2 * n))
else
    sides=(baseline kafkaesk kafkaesk-plain)
fi
run_side() { # side messages run -> runs one process under callgrind
    local side=$1 messages=$2 run=$3
    local args
    if [[ $mode == consume ]]; then
        args=(drain --side "$side" --stream "drain-$messages" --group "$prefix$side-$messages-$run")
    else
        args=(publish --side "${side%-plain}" --stream "publish-$side-$messages-$run")
        [[ $side == *-plain ]] && args+=(--plain)
    fi
    valgrind --tool=callgrind --callgrind-out-file="$out/$side-$messages-$run.%p" "$bin" \
        "${args[@]}" --kafka "$kafka" --prefix "$prefix" --messages "$messages" "${settings[@]}" \
        >/dev/null 2>"$out/$side-$messages-$run.log"
}
count() { # side messages -> median total instructions of three processes
    for run in 1 2 3; do
        run_side "$1" "$2" "$run"
        grep -h '^summary:' "$out/$1-$2-$run".* | awk '{s += $2} END {print s}'
    done | sort -n | sed -n 2p
}
declare -A per_message
for side in "${sides[@]}"; do
    once=$(count "$side" "$n")
    twice=$(count "$side" $((2 * n)))
    per_message[$side]=$(( (twice - once) / n ))
    printf '%-15s %12d instructions for %d, %12d for %d: %6d a message\n' \
        "$side" "$once" "$n" "$twice" $((2 * n)) "${per_message[$side]}"
done
for side in "${sides[@]:1}"; do
    awk -v s="$side" -v k="${per_message[$side]}" -v b="${per_message[baseline]}" \
        'BEGIN {printf "%s / baseline: %.3f ×\n", s, k / b}'
done
rm -rf "$out"
