#!/usr/bin/env bash
# Installs the tansu broker if it is missing and starts it on 127.0.0.1 if
# nothing listens there yet. Used by .ci/run and by developers alike:
#
#   scripts/broker.sh            # install if needed, start if not running
#   scripts/broker.sh stop       # stop the broker this script started
#
# tansu is an Apache-Kafka-compatible broker from crates.io; Apache Kafka
# itself is not installable on our machines. With Docker, `docker compose up`
# starts a real single-node Kafka on the same port instead.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
KAFKA="${KAFKA:-127.0.0.1:9092}"
HOST="${KAFKA%:*}"
PORT="${KAFKA##*:}"
STATE_DIR="${KAFKAESK_BROKER_DIR:-${TMPDIR:-/tmp}/kafkaesk-broker}"
STORAGE="${KAFKAESK_BROKER_STORAGE:-memory://tansu/}"
mkdir -p "$STATE_DIR"

listening() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

if [[ "${1:-}" == "stop" ]]; then
    if [[ -f "$STATE_DIR/pid" ]]; then
        kill "$(cat "$STATE_DIR/pid")" 2>/dev/null || true
        rm -f "$STATE_DIR/pid"
    fi
    exit 0
fi

if listening; then
    echo "broker: something already listens on $KAFKA; using it"
    exit 0
fi

TANSU="$(command -v tansu || true)"
if [[ -z "$TANSU" && -x "$HOME/.cargo/bin/tansu" ]]; then
    TANSU="$HOME/.cargo/bin/tansu"
fi
if [[ -z "$TANSU" ]] || ! "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "broker: installing tansu $TANSU_VERSION from crates.io (about 15 minutes the first time)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
    TANSU="$HOME/.cargo/bin/tansu"
fi

echo "broker: starting tansu on $KAFKA (storage $STORAGE, log $STATE_DIR/tansu.log)"
nohup "$TANSU" broker \
    --listener-url "tcp://$HOST:$PORT" \
    --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine "$STORAGE" \
    >"$STATE_DIR/tansu.log" 2>&1 &
echo $! >"$STATE_DIR/pid"

for _ in $(seq 1 100); do
    if listening; then
        echo "broker: ready on $KAFKA"
        exit 0
    fi
    sleep 0.2
done
echo "broker: tansu did not start listening on $KAFKA; its log follows" >&2
cat "$STATE_DIR/tansu.log" >&2
exit 1
