#!/usr/bin/env bash
# The test command of the README: installs what the build and the tests need,
# makes sure a broker runs on $KAFKA (default 127.0.0.1:9092), and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# librdkafka is compiled from source by rdkafka-sys: it needs make, a C
# compiler, and the OpenSSL and zlib headers.
missing=()
for pkg in make pkg-config libssl-dev zlib1g-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "test: installing ${missing[*]}"
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# Apache Kafka on 127.0.0.1:9092 and the listeners beside it (SASL, TLS),
# from Maven Central's jars, cached outside the clone (about 15 s the first
# time, 3 to 5 s to start). Tests that stop, kill or freeze a broker start
# their own with `scripts/broker.sh run`.
scripts/broker.sh

# kafkaesk-cli's schemas_export_validates checks asyncapi.json with the
# official AsyncAPI parser: node, npm (from apt) and @asyncapi/parser (from
# npm, cached in ~/.cache/kafkaesk-ci/node; 15 to 20 s the first time).
KAFKAESK_NODE_DIR="$(scripts/asyncapi-parser.sh)"
export KAFKAESK_NODE_DIR

# The cluster fault tests (tests/cluster/) start three brokers of their own
# with scripts/cluster.sh, each in a network namespace: they need root and
# `ip` (iproute2), and take about 6 minutes. KAFKAESK_CLUSTER_TESTS=0 skips them.
command -v ip >/dev/null || [[ "${KAFKAESK_CLUSTER_TESTS:-1}" == 0 ]] || {
    echo "test: installing iproute2 (ip netns, for the cluster tests)"
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2
}

cargo test --workspace "$@"
