#!/usr/bin/env bash
# A three-broker Apache Kafka cluster on this machine, each broker on an
# address of its own in a network namespace, for the cluster fault tests
# (tests/cluster/). Same jars as scripts/broker.sh. Needs root (ip netns).
#
#   scripts/cluster.sh up        # fresh cluster: 3 brokers, wait until all answer
#   scripts/cluster.sh down      # SIGKILL every broker; remove namespaces, links, data
#   scripts/cluster.sh kill N    # SIGKILL broker N (1..3), as a crash would
#   scripts/cluster.sh stop N    # SIGTERM broker N: a controlled shutdown, as a
#                                # rolling restart does (SIGKILL after 30 s)
#   scripts/cluster.sh start N   # start broker N again on its data; wait until it answers
#   scripts/cluster.sh cut N     # pull broker N's cable: nothing reaches it or
#                                # leaves it, from the other brokers or the clients
#   scripts/cluster.sh heal N    # plug it back in
#   scripts/cluster.sh freeze N  # SIGSTOP broker N: it holds its connections and
#                                # answers nothing, as in a long pause
#   scripts/cluster.sh thaw N    # SIGCONT
#   scripts/cluster.sh status    # each broker: running or not, cut or not
#   scripts/cluster.sh env       # KEY=VALUE lines: bootstrap servers, each broker's address
#
# The network: a bridge `${NAME}0` with 10.77.0.254/24 in this namespace (the
# clients' side), and per broker N a namespace `${NAME}-bN` holding `eth0` with
# 10.77.0.N/24, linked to the bridge by the veth `${NAME}N`. Broker N listens
# on 10.77.0.N:9092 (clients and replication) and 10.77.0.N:9093 (KRaft).
# `cut` takes the veth's bridge end down: packets to and from the broker are
# dropped without a reset or an error at the other end, as a pulled cable or a
# partitioned switch does; established connections hang until they time out.
#
# Each node is broker and controller (a quorum of three voters), so losing any
# one leaves a majority. Replication: every topic 3 replicas by default,
# min.insync.replicas=2, the group and transaction logs too; a replica that
# has not fetched for 5 s leaves the in-sync set (replica.lag.time.max.ms),
# and a broker whose heartbeats stop for 3 s is fenced by the controller.
#
# Environment: KAFKAESK_CLUSTER_NAME (kafkaesk; at most 12 characters),
# KAFKAESK_CLUSTER_NET (10.77.0: the first three bytes of the /24),
# KAFKAESK_CLUSTER_DIR (${TMPDIR:-/tmp}/kafkaesk-cluster-$NAME: data, logs
# <dir>/bN/kafka.log, pids <dir>/bN/pid), KAFKA_HEAP_OPTS (-Xms128m -Xmx512m
# each), KAFKAESK_BROKER_START_TIMEOUT (90 s), and scripts/broker.sh's Java
# and cache variables.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/broker.sh
KAFKAESK_TEST_BROKER=kafka source "$HERE/broker.sh"

NAME="${KAFKAESK_CLUSTER_NAME:-kafkaesk}"
NET="${KAFKAESK_CLUSTER_NET:-10.77.0}"
DIR="${KAFKAESK_CLUSTER_DIR:-${TMPDIR:-/tmp}/kafkaesk-cluster-$NAME}"
START_TIMEOUT="${KAFKAESK_BROKER_START_TIMEOUT:-90}"
NODES=(1 2 3)
CLIENT_PORT=9092
CONTROLLER_PORT=9093
BRIDGE="${NAME}0"

die() {
    echo "cluster: $*" >&2
    exit 1
}

((${#NAME} <= 12)) || die "KAFKAESK_CLUSTER_NAME '$NAME' is longer than 12 characters (interface names are at most 15)"
[[ "$NET" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KAFKAESK_CLUSTER_NET must be three bytes like 10.77.0, not '$NET'"

netns() { echo "$NAME-b$1"; }
veth() { echo "$NAME$1"; }
address() { echo "$NET.$1"; }
node_dir() { echo "$DIR/b$1"; }
bootstrap() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("$(address "$n"):$CLIENT_PORT"); done
    (IFS=,; echo "${out[*]}")
}

node() { # N: checks it names a broker
    [[ "${1:-}" =~ ^[123]$ ]] || die "name a broker: 1, 2 or 3 (not '${1:-}')"
}

need_root() {
    [[ "$(id -u)" == 0 ]] || die "needs root for ip netns and veth links (this is uid $(id -u))"
    command -v ip >/dev/null || need_tools ip:iproute2
    ip netns list >/dev/null 2>&1 || die "ip netns does not work here: $(ip netns list 2>&1)"
}

network_up() {
    local n ns
    ip link show "$BRIDGE" >/dev/null 2>&1 || {
        ip link add "$BRIDGE" type bridge
        ip addr add "$NET.254/24" dev "$BRIDGE"
    }
    ip link set "$BRIDGE" up
    for n in "${NODES[@]}"; do
        ns="$(netns "$n")"
        ip netns list | grep -qx "$ns\( .*\)\?" || ip netns add "$ns"
        ip -n "$ns" link set lo up
        if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
            ip link add "$(veth "$n")" type veth peer name eth0 netns "$ns"
            ip -n "$ns" addr add "$(address "$n")/24" dev eth0
        fi
        ip link set "$(veth "$n")" master "$BRIDGE" up
        ip -n "$ns" link set eth0 up
    done
}

network_down() {
    local n
    for n in "${NODES[@]}"; do
        ip link del "$(veth "$n")" 2>/dev/null || true
        ip netns del "$(netns "$n")" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

write_node_config() { # N
    local n="$1" d voters="" v
    d="$(node_dir "$n")"
    for v in "${NODES[@]}"; do voters+="${voters:+,}$v@$(address "$v"):$CONTROLLER_PORT"; done
    mkdir -p "$d"
    cat >"$d/server.properties" <<EOF
# Written by scripts/cluster.sh on every start; edits are lost.
node.id=$n
process.roles=broker,controller
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$(address "$n"):$CLIENT_PORT,CONTROLLER://$(address "$n"):$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$(address "$n"):$CLIENT_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/data

# Production's durability: three replicas, two of them in sync to acknowledge
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false

# Faults show within seconds, not the defaults' tens of seconds: a replica
# that stopped fetching leaves the in-sync set after 5 s, a broker whose
# heartbeats stopped is fenced (and loses its leaderships) after 3 s.
replica.lag.time.max.ms=5000
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500

# Small files and buffers: three brokers share 2 cores and the tests' memory
log.segment.bytes=16777216
log.index.size.max.bytes=1048576
log.cleaner.dedupe.buffer.size=16777216
metadata.log.segment.bytes=16777216
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
EOF
}

format_node() { # N CLUSTER_ID
    local d
    d="$(node_dir "$1")"
    [[ -f "$d/data/meta.properties" ]] && return
    quietly "$JAVA" -Xmx256m "${JVM_FAST[@]}" "${CDS_OPTS[@]}" -Dlog4j2.configurationFile="$LOG4J" \
        -cp "$CACHE/*" kafka.tools.StorageTool format \
        --config "$d/server.properties" --cluster-id "$2" --ignore-formatted ||
        die "kafka-storage format failed for $d/data"
}

pid_of() { # N: the pid of broker N if it runs
    local f pid
    f="$(node_dir "$1")/pid"
    [[ -f "$f" ]] || return 1
    pid="$(cat "$f")"
    alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
        grep -qF "kafka.Kafka $(node_dir "$1")/server.properties" && echo "$pid"
}

answers_at() { # N
    HOST="$(address "$1")" PORT="$CLIENT_PORT" answers
}

launch() { # N: starts broker N in its namespace, in the background
    local n="$1" d pid
    d="$(node_dir "$n")"
    if pid_of "$n" >/dev/null; then
        echo "cluster: broker $n already runs (pid $(pid_of "$n"))"
        return
    fi
    write_node_config "$n"
    # shellcheck disable=SC2206 # word splitting, as in Kafka's own scripts
    local cmd=(ip netns exec "$(netns "$n")" "$JAVA" ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
        ${KAFKA_JVM_PERFORMANCE_OPTS:-${JVM_FAST[*]}} "${CDS_OPTS[@]}" ${KAFKA_OPTS:-}
        -Dlog4j2.configurationFile="$LOG4J" -cp "$CACHE/*" kafka.Kafka "$d/server.properties")
    echo "=== start $(date -u +%FT%T.%3NZ)" >>"$d/kafka.log"
    # `ip netns exec` execs the JVM: the pid is the broker's.
    nohup "${cmd[@]}" >>"$d/kafka.log" 2>&1 </dev/null 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$d/pid"
}

wait_answers() { # N...
    local deadline n pid pending
    deadline=$(($(date +%s) + START_TIMEOUT))
    while :; do
        pending=()
        for n in "$@"; do
            pid="$(cat "$(node_dir "$n")/pid")"
            if ! alive "$pid"; then
                echo "cluster: broker $n exited while starting; the end of $(node_dir "$n")/kafka.log follows" >&2
                tail -n 100 "$(node_dir "$n")/kafka.log" >&2
                exit 1
            fi
            answers_at "$n" || pending+=("$n")
        done
        ((${#pending[@]})) || return 0
        if (($(date +%s) >= deadline)); then
            for n in "${pending[@]}"; do
                echo "cluster: broker $n did not answer on $(address "$n"):$CLIENT_PORT within $START_TIMEOUT s; the end of its log follows" >&2
                tail -n 60 "$(node_dir "$n")/kafka.log" >&2
            done
            exit 1
        fi
        sleep 0.3
    done
}

up() {
    need_root
    pick_java
    ensure_jars
    cds_setup
    down quiet
    local t0 id n
    t0="$(now)"
    network_up
    mkdir -p "$DIR"
    # `down` removes only a directory with this mark in it.
    touch "$DIR/.kafkaesk-cluster"
    id="$(new_cluster_id)"
    for n in "${NODES[@]}"; do
        write_node_config "$n"
        format_node "$n" "$id" &
    done
    wait
    for n in "${NODES[@]}"; do
        [[ -f "$(node_dir "$n")/data/meta.properties" ]] || die "could not format broker $n's log directory (see above)"
    done
    for n in "${NODES[@]}"; do launch "$n"; done
    wait_answers "${NODES[@]}"
    echo "cluster: Apache Kafka $KAFKA_VERSION, 3 brokers ready on $(bootstrap) after $(since "$t0") s (data and logs in $DIR)"
}

down() { # [quiet]
    local n pid
    for n in "${NODES[@]}"; do
        if pid="$(pid_of "$n")"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for n in "${NODES[@]}"; do
        pid="$(cat "$(node_dir "$n")/pid" 2>/dev/null)" || continue
        for _ in $(seq 1 50); do
            alive "$pid" || break
            sleep 0.1
        done
    done
    network_down
    if [[ -f "$DIR/.kafkaesk-cluster" ]]; then
        rm -rf "$DIR"
    elif [[ -e "$DIR" ]]; then
        echo "cluster: $DIR was not made by scripts/cluster.sh up; left in place" >&2
    fi
    [[ -n "${1:-}" ]] || echo "cluster: down (brokers killed, namespaces and data removed)"
}

kill_node() { # N
    local pid
    pid="$(pid_of "$1")" || die "broker $1 is not running"
    kill -KILL "$pid"
    for _ in $(seq 1 50); do
        alive "$pid" || break
        sleep 0.1
    done
    echo "cluster: killed broker $1 (SIGKILL, pid $pid)"
}

stop_node() { # N
    local pid t0
    pid="$(pid_of "$1")" || die "broker $1 is not running"
    t0="$(now)"
    terminate "$pid" 30 "cluster: broker $1"
    echo "cluster: stopped broker $1 (SIGTERM, controlled shutdown) in $(since "$t0") s"
}

start_node() { # N
    need_root
    pick_java
    ensure_jars
    cds_setup
    [[ -f "$(node_dir "$1")/data/meta.properties" ]] || die "broker $1 has no data in $(node_dir "$1"); run scripts/cluster.sh up first"
    local t0
    t0="$(now)"
    launch "$1"
    wait_answers "$1"
    echo "cluster: broker $1 answers again after $(since "$t0") s"
}

cut_node() { # N
    ip link set "$(veth "$1")" down || die "no link $(veth "$1"): is the cluster up?"
    echo "cluster: cut broker $1 off the network ($(address "$1"))"
}

heal_node() { # N
    ip link set "$(veth "$1")" up || die "no link $(veth "$1"): is the cluster up?"
    echo "cluster: broker $1 is back on the network"
}

signal_node() { # N SIGNAL WHAT
    local pid
    pid="$(pid_of "$1")" || die "broker $1 is not running"
    kill "-$2" "$pid"
    echo "cluster: broker $1 $3 (SIG$2, pid $pid)"
}

status() {
    local n state link
    for n in "${NODES[@]}"; do
        state="stopped"
        pid_of "$n" >/dev/null && state="running (pid $(pid_of "$n"))"
        link="$(ip -br link show "$(veth "$n")" 2>/dev/null | awk '{ print $2 }')"
        [[ "$link" == DOWN ]] && link="cut" || link="${link:+connected}"
        echo "broker $n $(address "$n"):$CLIENT_PORT ${state}, network ${link:-absent}"
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    kill) node "${2:-}" && kill_node "$2" ;;
    stop) node "${2:-}" && stop_node "$2" ;;
    start) node "${2:-}" && start_node "$2" ;;
    cut) node "${2:-}" && cut_node "$2" ;;
    heal) node "${2:-}" && heal_node "$2" ;;
    freeze) node "${2:-}" && signal_node "$2" STOP frozen ;;
    thaw) node "${2:-}" && signal_node "$2" CONT thawed ;;
    status) status ;;
    env)
        echo "KAFKAESK_CLUSTER_BOOTSTRAP=$(bootstrap)"
        for n in "${NODES[@]}"; do echo "KAFKAESK_CLUSTER_BROKER_$n=$(address "$n"):$CLIENT_PORT"; done
        echo "KAFKAESK_CLUSTER_DIR=$DIR"
        ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '${1:-}' (up, down, kill N, stop N, start N, cut N, heal N, freeze N, thaw N, status, env)" ;;
esac
