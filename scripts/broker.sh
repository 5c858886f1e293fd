#!/usr/bin/env bash
# Installs Apache Kafka (the real broker, from Maven Central's jars; no Docker)
# and runs it on 127.0.0.1 for the tests. Used by .ci/run and by developers:
#
#   scripts/broker.sh             # download if needed, start in the background
#                                 # unless something listens on $KAFKA already
#   scripts/broker.sh stop        # stop the broker this script started
#                                 # (SIGTERM; SIGKILL after 10 s)
#   scripts/broker.sh run DIR     # a broker of a test's own, in the foreground:
#                                 # prepares DIR (TLS files, format) if needed,
#                                 # then execs the JVM, so the caller's child
#                                 # pid is the broker's; logs to stdout. Run it
#                                 # again on the same DIR to restart on the same
#                                 # data (after SIGTERM, SIGKILL or SIGSTOP).
#   scripts/broker.sh checksums   # re-resolve the jars and rewrite
#                                 # scripts/kafka/jars.sha256
#   scripts/broker.sh classpath   # print the classpath of the Kafka jars, for
#                                 # the CLI tools: java -cp "$(scripts/broker.sh
#                                 # classpath)" org.apache.kafka.tools.TopicCommand
#
#   KAFKAESK_TEST_BROKER=tansu scripts/broker.sh [stop]   # the former tansu broker
#
# The broker: Kafka (version in scripts/kafka/pom.xml) in KRaft mode, broker
# and controller in one JVM (node.id=1), data in $KAFKAESK_BROKER_DIR (default
# ${TMPDIR:-/tmp}/kafkaesk-broker), formatted at each start of the shared
# broker and kept across restarts of `run DIR`.
# Each data directory has a cluster id of its own. Topics: 1 partition by
# default, never created automatically; internal topics 1 replica, 1 partition.
# Listeners, all on the host of $KAFKA, each on a port of its own; the defaults
# count up from the PLAINTEXT port (so KAFKA=127.0.0.1:P alone means P..P+5):
#
#   PLAINTEXT       $KAFKA                     127.0.0.1:9092  no authentication
#   SASL_PLAINTEXT  $KAFKAESK_SASL_PORT        9093  PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
#   SSL             $KAFKAESK_SSL_PORT         9094  TLS, server certificate only
#   SASL_SSL        $KAFKAESK_SASL_SSL_PORT    9095  TLS + the same three SASL mechanisms
#   MTLS            $KAFKAESK_MTLS_PORT        9096  TLS, client certificate required
#   CONTROLLER      $KAFKAESK_CONTROLLER_PORT  9097  KRaft controller (not for clients)
#
# Test credentials (fixed; never use them anywhere else):
#   SASL PLAIN                    user kafkaesk, password kafkaesk-secret
#   SASL SCRAM-SHA-256 and -512   user kafkaesk, password kafkaesk-secret
#                                 (SCRAM users are added when DIR is formatted)
# TLS files, made with openssl once per data directory, in <dir>/tls/:
#   ca.pem, ca.key                the test CA (trust ca.pem; ca.key can sign more)
#   server.pem, server.key        server certificate: CN=localhost, SAN
#                                 IP:127.0.0.1, IP:::1, DNS:localhost
#   server-keystore.pem           server.key + server.pem (the broker's keystore)
#   client.pem, client.key        client certificate for MTLS: CN=kafkaesk-client
#   client-keystore.pem           client.key + client.pem in one file (Java clients)
#   (RSA 2048, keys unencrypted PKCS#8 PEM, valid 10 years)
# <dir>/broker.env lists addresses, credentials and files as KEY=VALUE lines
# (no quotes; the value is the rest of the line), for tests to read:
#   KAFKAESK_BOOTSTRAP_{PLAINTEXT,SASL_PLAINTEXT,SSL,SASL_SSL,MTLS}=host:port,
#   KAFKAESK_SASL_{PLAIN,SCRAM}_{USERNAME,PASSWORD}, KAFKAESK_TLS_CA,
#   KAFKAESK_TLS_CLIENT_{CERT,KEY,KEYSTORE_PEM}, KAFKAESK_KAFKA_CLASSPATH, ...
# The background broker's pid is in <dir>/pid, its log in <dir>/kafka.log.
#
# Environment: KAFKA (127.0.0.1:9092) and the port variables above;
# KAFKAESK_BROKER_DIR; KAFKAESK_KAFKA_CACHE (where the jars go, default
# ~/.cache/kafkaesk-ci/kafka-<version>, outside the clone); KAFKAESK_JAVA or
# JAVA_HOME (a Java 17 or newer; else `java`, else Temurin 25);
# KAFKA_HEAP_OPTS (-Xms256m -Xmx1g), KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS;
# KAFKAESK_BROKER_LOG_LEVEL (INFO); KAFKAESK_BROKER_START_TIMEOUT (60 s);
# KAFKAESK_BROKER_KEEP_DATA=1 (keep the shared broker's topics across starts);
# KAFKAESK_BROKER_CDS=0 (no class-data-sharing archive).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/kafka/pom.xml"
SUMS="$HERE/kafka/jars.sha256"
LOG4J="$HERE/kafka/log4j2.properties"

# The old broker, kept as it was: tansu from crates.io, on $KAFKA only.
tansu_broker() {
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
}

case "${KAFKAESK_TEST_BROKER:-kafka}" in
    tansu) tansu_broker "$@" ;; # it exits itself
    kafka) ;;
    *) echo "broker: KAFKAESK_TEST_BROKER must be kafka or tansu, not '$KAFKAESK_TEST_BROKER'" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- Apache Kafka

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
CACHE="${KAFKAESK_KAFKA_CACHE:-$HOME/.cache/kafkaesk-ci/kafka-$KAFKA_VERSION}"
KAFKA="${KAFKA:-127.0.0.1:9092}"
HOST="${KAFKA%:*}"
PORT="${KAFKA##*:}"
SASL_PORT="${KAFKAESK_SASL_PORT:-$((PORT + 1))}"
SSL_PORT="${KAFKAESK_SSL_PORT:-$((PORT + 2))}"
SASL_SSL_PORT="${KAFKAESK_SASL_SSL_PORT:-$((PORT + 3))}"
MTLS_PORT="${KAFKAESK_MTLS_PORT:-$((PORT + 4))}"
CONTROLLER_PORT="${KAFKAESK_CONTROLLER_PORT:-$((PORT + 5))}"
STATE_DIR="${KAFKAESK_BROKER_DIR:-${TMPDIR:-/tmp}/kafkaesk-broker}"
START_TIMEOUT="${KAFKAESK_BROKER_START_TIMEOUT:-60}"

TEST_USER=kafkaesk
TEST_PASSWORD=kafkaesk-secret
SASL_MECHANISMS=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512

die() {
    echo "broker: $*" >&2
    exit 1
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

listening() { # PORT
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Sends a Kafka ApiVersions v0 request to the PLAINTEXT listener and checks the
# answer's correlation id and error code: the broker answers requests only
# once it has started, caught up with the metadata log and been unfenced.
answers() {
    local reply
    # shellcheck disable=SC2016 # expanded by the inner bash
    reply="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        # size 24, ApiVersions (18) v0, correlation id 42, client id "kafkaesk-probe"
        printf "\x00\x00\x00\x18\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x0ekafkaesk-probe" >&3
        head -c 10 <&3' _ "$HOST" "$PORT" 2>/dev/null | od -An -tx1 | tr -d ' \n')" || true
    [[ "${reply:8:12}" == 0000002a0000 ]]
}

# Runs a command, showing its output only if it fails.
quietly() {
    local out
    if ! out="$("$@" 2>&1)"; then
        echo "$out" >&2
        return 1
    fi
}

need_tools() { # COMMAND:DEBIAN_PACKAGE...
    local missing=() t
    for t in "$@"; do
        command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
    done
    if ((${#missing[@]})); then
        echo "broker: installing ${missing[*]}"
        local sudo=""
        [[ "$(id -u)" == 0 ]] || sudo="sudo"
        $sudo apt-get update -qq
        $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

JAVA_MAJOR=""
JAVA_VERSION_TEXT=""

pick_java() {
    local candidates=() j major
    [[ -n "${KAFKAESK_JAVA:-}" ]] && candidates+=("$KAFKAESK_JAVA")
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
    candidates+=("$(command -v java || true)" /usr/lib/jvm/temurin-25-jdk-amd64/bin/java)
    for j in "${candidates[@]}"; do
        [[ -n "$j" && -x "$j" ]] || continue
        JAVA_VERSION_TEXT="$("$j" -version 2>&1 || true)"
        major="$(sed -n 's/.* version "\([0-9]*\).*/\1/p' <<<"$JAVA_VERSION_TEXT" | head -n1)"
        if [[ -n "$major" ]] && ((major >= 17)); then
            JAVA="$j"
            JAVA_MAJOR="$major"
            return
        fi
    done
    if [[ -z "${JAVA_INSTALLED:-}" ]]; then
        # A machine without Java: Debian's 17 runs this Kafka.
        JAVA_INSTALLED=1
        need_tools java:openjdk-17-jre-headless
        hash -r
        pick_java
        return
    fi
    die "Kafka $KAFKA_VERSION needs Java 17 or newer; none found (set KAFKAESK_JAVA or JAVA_HOME, or apt-get install openjdk-17-jre-headless)"
}

# Checks that DIR holds exactly the jars of jars.sha256, with their checksums.
verify_jars() { # DIR [quiet]
    local dir="$1" quiet="${2:-}" want have ok=0
    [[ -d "$dir" ]] || return 1
    want="$(awk '{ sub(/^\*/, "", $2); print $2 }' "$SUMS" | sort)"
    have="$(cd "$dir" && find . -maxdepth 1 -name '*.jar' -printf '%f\n' | sort)"
    if [[ "$want" != "$have" ]]; then
        ok=1
        if [[ -z "$quiet" ]]; then
            echo "broker: the jars in $dir are not those of $SUMS" >&2
            comm -23 <(echo "$want") <(echo "$have") | sed 's/^/broker:   missing: /' >&2
            comm -13 <(echo "$want") <(echo "$have") | sed 's/^/broker:   not listed: /' >&2
        fi
    fi
    if [[ -n "$quiet" ]]; then
        ((ok == 0)) || return 1
        (cd "$dir" && sha256sum --quiet --strict -c "$SUMS") >/dev/null 2>&1
    else
        (cd "$dir" && sha256sum --quiet --strict --ignore-missing -c "$SUMS" 2>&1 |
            sed 's/^/broker:   checksum: /') >&2 || ok=1
        return "$ok"
    fi
}

mvn_copy() { # DEST
    rm -rf "$1"
    # (Debian's Maven 3.8 prints colour resets even in batch mode: strip them)
    mvn -B -q -f "$POM" dependency:copy-dependencies -DoutputDirectory="$1" 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g'
}

download_jars() { # DEST
    local t0
    t0="$(now)"
    echo "broker: downloading Apache Kafka $KAFKA_VERSION from Maven Central (mvn, $POM)"
    if ! mvn_copy "$1"; then
        echo "broker: mvn failed; trying once more" >&2
        sleep 3
        mvn_copy "$1" || die "mvn could not resolve $POM"
    fi
    echo "broker: download took $(since "$t0") s ($(du -sh "$1" | cut -f1), $(find "$1" -name '*.jar' | wc -l) jars)"
}

# Fills the cache unless it already holds exactly the pinned jars.
ensure_jars() {
    [[ -f "$SUMS" ]] || die "$SUMS is missing: run scripts/broker.sh checksums"
    local t0
    t0="$(now)"
    if verify_jars "$CACHE" quiet; then
        echo "broker: Kafka $KAFKA_VERSION jars verified in $CACHE ($(since "$t0") s; no download)"
        return
    fi
    need_tools mvn:maven
    mkdir -p "$(dirname "$CACHE")"
    exec 9>"$CACHE.lock"
    flock 9
    if ! verify_jars "$CACHE" quiet; then # else another run filled it meanwhile
        [[ -d "$CACHE" ]] && echo "broker: $CACHE does not match $SUMS; downloading again"
        local tmp="$CACHE.tmp.$$"
        download_jars "$tmp"
        if ! verify_jars "$tmp"; then
            rm -rf "$tmp"
            die "the downloaded jars do not match $SUMS (see above). If the pom changed on purpose, run scripts/broker.sh checksums"
        fi
        rm -rf "$CACHE"
        mv "$tmp" "$CACHE"
    fi
    flock -u 9
    exec 9>&-
}

checksums() {
    need_tools mvn:maven
    local tmp
    tmp="$(mktemp -d)"
    download_jars "$tmp/jars"
    (cd "$tmp/jars" && sha256sum -- *.jar) | sort -k2 >"$tmp/sums"
    if [[ -f "$SUMS" ]] && ! diff -u "$SUMS" "$tmp/sums"; then
        echo "broker: $SUMS changed (diff above)"
    fi
    mv "$tmp/sums" "$SUMS"
    mkdir -p "$(dirname "$CACHE")"
    rm -rf "$CACHE"
    mv "$tmp/jars" "$CACHE"
    rm -rf "$tmp"
    echo "broker: wrote $SUMS ($(wc -l <"$SUMS") jars); cache $CACHE"
}

# A CA, a server certificate for 127.0.0.1/localhost and a client certificate.
make_tls() { # DIR
    local dir="$1" tmp="$1/tls.tmp.$$" who cn
    [[ -f "$dir/tls/ca.pem" && -f "$dir/tls/server-keystore.pem" && -f "$dir/tls/client-keystore.pem" ]] && return
    need_tools openssl:openssl
    rm -rf "$tmp" "$dir/tls"
    mkdir -p "$tmp"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
        "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$tmp/server.ext"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=clientAuth" \
        "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$tmp/client.ext"
    quietly openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -subj "/CN=kafkaesk test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" ||
        die "openssl could not make the test CA"
    for who in server client; do
        cn=localhost
        [[ "$who" == client ]] && cn=kafkaesk-client
        # shellcheck disable=SC2015 # either failing is fatal
        quietly openssl req -newkey rsa:2048 -nodes -sha256 \
            -keyout "$tmp/$who.key" -out "$tmp/$who.csr" -subj "/CN=$cn" &&
            quietly openssl x509 -req -sha256 -days 3650 -in "$tmp/$who.csr" \
                -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
                -set_serial "0x$(openssl rand -hex 16)" \
                -extfile "$tmp/$who.ext" -out "$tmp/$who.pem" ||
            die "openssl could not make the $who certificate"
        cat "$tmp/$who.key" "$tmp/$who.pem" >"$tmp/$who-keystore.pem"
        rm "$tmp/$who.csr" "$tmp/$who.ext"
    done
    chmod 600 "$tmp"/*.key "$tmp"/*-keystore.pem
    mv "$tmp" "$dir/tls"
}

write_config() { # DIR
    local dir="$1" l
    local listeners="PLAINTEXT://$HOST:$PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT,SSL://$HOST:$SSL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT,MTLS://$HOST:$MTLS_PORT"
    {
        echo "# Written by scripts/broker.sh on every start; edits are lost."
        echo "node.id=1"
        echo "process.roles=broker,controller"
        echo "controller.quorum.voters=1@$HOST:$CONTROLLER_PORT"
        echo "controller.listener.names=CONTROLLER"
        echo "listeners=$listeners,CONTROLLER://$HOST:$CONTROLLER_PORT"
        echo "advertised.listeners=$listeners"
        echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL,CONTROLLER:PLAINTEXT"
        echo "inter.broker.listener.name=PLAINTEXT"
        echo "log.dirs=$dir/data"
        echo
        echo "# SASL: PLAIN users in the JAAS line, SCRAM users in the metadata (added at format time)"
        echo "sasl.enabled.mechanisms=$SASL_MECHANISMS"
        for l in sasl_plaintext sasl_ssl; do
            echo "listener.name.$l.sasl.enabled.mechanisms=$SASL_MECHANISMS"
            echo "listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$TEST_USER=\"$TEST_PASSWORD\";"
            echo "listener.name.$l.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
            echo "listener.name.$l.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
        done
        echo
        echo "# TLS: PEM files from $dir/tls; MTLS requires a client certificate"
        echo "ssl.keystore.type=PEM"
        echo "ssl.keystore.location=$dir/tls/server-keystore.pem"
        echo "ssl.truststore.type=PEM"
        echo "ssl.truststore.location=$dir/tls/ca.pem"
        echo "ssl.client.auth=none"
        echo "listener.name.mtls.ssl.client.auth=required"
        echo
        echo "# One node: every internal topic with one replica (and one partition)"
        echo "num.partitions=1"
        echo "default.replication.factor=1"
        echo "min.insync.replicas=1"
        echo "offsets.topic.replication.factor=1"
        echo "offsets.topic.num.partitions=1"
        echo "transaction.state.log.replication.factor=1"
        echo "transaction.state.log.min.isr=1"
        echo "transaction.state.log.num.partitions=1"
        echo "share.coordinator.state.topic.replication.factor=1"
        echo "share.coordinator.state.topic.min.isr=1"
        echo "share.coordinator.state.topic.num.partitions=1"
        echo "group.initial.rebalance.delay.ms=0"
        echo "auto.create.topics.enable=false"
        echo
        echo "# After a SIGKILL, the restarted broker may register only once the"
        echo "# controller has timed out its previous session (default 9 s)"
        echo "broker.session.timeout.ms=3000"
        echo "broker.heartbeat.interval.ms=500"
        echo
        echo "# Small files and buffers for tests"
        echo "log.segment.bytes=16777216"
        echo "log.index.size.max.bytes=1048576"
        echo "log.cleaner.dedupe.buffer.size=16777216"
        echo "metadata.log.segment.bytes=16777216"
    } >"$dir/server.properties"
}

write_env() { # DIR
    local dir="$1"
    cat >"$dir/broker.env" <<EOF
KAFKAESK_BROKER_KIND=apache-kafka
KAFKAESK_KAFKA_VERSION=$KAFKA_VERSION
KAFKAESK_BROKER_DIR=$dir
KAFKAESK_BOOTSTRAP_PLAINTEXT=$HOST:$PORT
KAFKAESK_BOOTSTRAP_SASL_PLAINTEXT=$HOST:$SASL_PORT
KAFKAESK_BOOTSTRAP_SSL=$HOST:$SSL_PORT
KAFKAESK_BOOTSTRAP_SASL_SSL=$HOST:$SASL_SSL_PORT
KAFKAESK_BOOTSTRAP_MTLS=$HOST:$MTLS_PORT
KAFKAESK_CONTROLLER=$HOST:$CONTROLLER_PORT
KAFKAESK_SASL_MECHANISMS=$SASL_MECHANISMS
KAFKAESK_SASL_PLAIN_USERNAME=$TEST_USER
KAFKAESK_SASL_PLAIN_PASSWORD=$TEST_PASSWORD
KAFKAESK_SASL_SCRAM_USERNAME=$TEST_USER
KAFKAESK_SASL_SCRAM_PASSWORD=$TEST_PASSWORD
KAFKAESK_TLS_CA=$dir/tls/ca.pem
KAFKAESK_TLS_CLIENT_CERT=$dir/tls/client.pem
KAFKAESK_TLS_CLIENT_KEY=$dir/tls/client.key
KAFKAESK_TLS_CLIENT_KEYSTORE_PEM=$dir/tls/client-keystore.pem
KAFKAESK_KAFKA_CLASSPATH=$CACHE/*
KAFKAESK_JAVA=$JAVA
EOF
}

new_cluster_id() { # 16 random bytes, base64url without padding, as Kafka's Uuid
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" == -* ]] || break
    done
    echo "$id"
}

# Measured on 2 cores: the serial collector and C1 alone start Kafka in 5.5 s
# instead of 6.6 s (G1/C2: slower still) and, for the short bursts of tests,
# even produce faster (85k against 68k records/s of 200 bytes).
JVM_FAST=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.awt.headless=true)

# Class data sharing (AppCDS) for Kafka's classes starts the broker in about
# 3.5 s instead of 5.5 s. The first broker started in the background records
# the classes it loads; once it answers, an archive of them is made in the
# background (nice, 10 to 20 s of one core) into $CACHE/cds/, for every later
# start, foreground or background, with the same jars and the same Java.
# KAFKAESK_BROKER_CDS=0 turns it off.
CDS_OPTS=()   # for every JVM on the cache's classpath: the archive, if made
CDS_RECORD=() # for the broker that records its classes
CDS_LIVE_LIST=""
cds_setup() { # [record]: sets CDS_OPTS or CDS_RECORD
    [[ "${KAFKAESK_BROKER_CDS:-1}" != 0 ]] || return 0
    local key
    key="$(cksum <<<"$JAVA:$JAVA_VERSION_TEXT" | cut -d' ' -f1)"
    CDS_DIR="$CACHE/cds"
    CDS_JSA="$CDS_DIR/kafka-$key.jsa"
    CDS_LIST="$CDS_DIR/classes-$key.lst"
    CDS_FAILED="$CDS_DIR/failed-$key.log"
    if [[ -f "$CDS_JSA" ]]; then
        CDS_OPTS=(-XX:SharedArchiveFile="$CDS_JSA")
    elif [[ -n "${1:-}" && ! -f "$CDS_FAILED" ]]; then
        mkdir -p "$CDS_DIR"
        CDS_LIVE_LIST="$CDS_DIR/classes-$key.lst.$$"
        CDS_RECORD=(-XX:DumpLoadedClassList="$CDS_LIVE_LIST")
    fi
}

cds_archive_in_background() { # once the recording broker answers
    [[ -n "$CDS_LIVE_LIST" && -s "$CDS_LIVE_LIST" ]] || return 0
    head -n -1 "$CDS_LIVE_LIST" >"$CDS_LIST" # its last line may be half written
    rm -f "$CDS_LIVE_LIST"                   # the broker writes on, unlinked
    echo "broker: making a class-data-sharing archive in the background for faster starts ($CDS_JSA)"
    # shellcheck disable=SC2016
    nohup nice -n 19 bash -c '
        tmp="$3.tmp.$$"
        if "$1" -Xshare:dump -XX:SharedClassListFile="$2" -XX:SharedArchiveFile="$tmp" \
                -cp "$4" >"$5.tmp" 2>&1 &&
            "$1" -Xshare:on -XX:SharedArchiveFile="$tmp" -cp "$4" -version >>"$5.tmp" 2>&1; then
            mv "$tmp" "$3"
            rm -f "$5.tmp"
        else
            rm -f "$tmp"
            mv "$5.tmp" "$5"
        fi' _ "$JAVA" "$CDS_LIST" "$CDS_JSA" "$CACHE/*" "$CDS_FAILED" \
        </dev/null >/dev/null 2>&1 8>&- 9>&- &
}

# Makes DIR ready to run a broker: TLS files, config, formatted log directory.
prepare() { # DIR
    local dir="$1" t0
    mkdir -p "$dir"
    make_tls "$dir"
    write_config "$dir"
    write_env "$dir"
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        t0="$(now)"
        [[ -s "$dir/cluster.id" ]] || new_cluster_id >"$dir/cluster.id"
        quietly "$JAVA" -Xmx256m "${JVM_FAST[@]}" "${CDS_OPTS[@]}" -Dlog4j2.configurationFile="$LOG4J" \
            -cp "$CACHE/*" kafka.tools.StorageTool format \
            --config "$dir/server.properties" --cluster-id "$(cat "$dir/cluster.id")" \
            --add-scram "SCRAM-SHA-256=[name=$TEST_USER,password=$TEST_PASSWORD]" \
            --add-scram "SCRAM-SHA-512=[name=$TEST_USER,password=$TEST_PASSWORD]" \
            --ignore-formatted ||
            die "kafka-storage format failed for $dir/data"
        echo "broker: formatted $dir/data (cluster $(cat "$dir/cluster.id")) in $(since "$t0") s" >&2
    fi
}

broker_command() { # DIR -> BROKER_CMD
    # shellcheck disable=SC2206 # word splitting, as in Kafka's own scripts
    BROKER_CMD=("$JAVA" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
        ${KAFKA_JVM_PERFORMANCE_OPTS:-${JVM_FAST[*]}} "${CDS_OPTS[@]}" "${CDS_RECORD[@]}" ${KAFKA_OPTS:-}
        -Dlog4j2.configurationFile="$LOG4J" -cp "$CACHE/*"
        kafka.Kafka "$1/server.properties")
}

ours() { # PID: is it the broker of $STATE_DIR?
    [[ -r "/proc/$1/cmdline" ]] &&
        tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "kafka.Kafka $STATE_DIR/server.properties"
}

alive() { # PID: exists and is not a zombie
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

stop() {
    local pid
    [[ -d "$STATE_DIR" ]] && STATE_DIR="$(cd "$STATE_DIR" && pwd)"
    if [[ ! -f "$STATE_DIR/pid" ]]; then
        echo "broker: no $STATE_DIR/pid; nothing to stop"
        return
    fi
    pid="$(cat "$STATE_DIR/pid")"
    if ! ours "$pid"; then
        echo "broker: process $pid is not this script's Kafka (gone already?)"
        rm -f "$STATE_DIR/pid"
        return
    fi
    local t0
    t0="$(now)"
    terminate "$pid" 10 "broker: Kafka (pid $pid)"
    rm -f "$STATE_DIR/pid"
    echo "broker: stopped Kafka (pid $pid) in $(since "$t0") s"
}

# SIGTERM, then SIGKILL if PID still runs SECONDS later; waits until it is gone.
terminate() { # PID SECONDS WHO
    local pid="$1"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $(($2 * 10))); do
        alive "$pid" || return 0
        sleep 0.1
    done
    echo "$3 still runs $2 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive "$pid" || return 0
        sleep 0.1
    done
}

wait_ready() { # PID T0
    local pid="$1" t0="$2" deadline p
    deadline=$(($(date +%s) + START_TIMEOUT))
    while (($(date +%s) < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "broker: Kafka exited while starting; the end of $STATE_DIR/kafka.log follows" >&2
            tail -n 300 "$STATE_DIR/kafka.log" >&2
            rm -f "$STATE_DIR/pid"
            exit 1
        fi
        if answers; then
            for p in "$SASL_PORT" "$SSL_PORT" "$SASL_SSL_PORT" "$MTLS_PORT"; do
                listening "$p" || continue 2
            done
            echo "broker: Kafka $KAFKA_VERSION ready on $KAFKA after $(since "$t0") s (pid $pid, log $STATE_DIR/kafka.log, env $STATE_DIR/broker.env)"
            return
        fi
        sleep 0.2
    done
    echo "broker: Kafka did not answer on $KAFKA within $START_TIMEOUT s; the end of $STATE_DIR/kafka.log follows" >&2
    tail -n 300 "$STATE_DIR/kafka.log" >&2
    exit 1
}

start() {
    if listening "$PORT"; then
        echo "broker: something already listens on $KAFKA; using it"
        exit 0
    fi
    pick_java
    ensure_jars
    cds_setup record
    mkdir -p "$STATE_DIR"
    STATE_DIR="$(cd "$STATE_DIR" && pwd)"
    exec 8>"$STATE_DIR/.lock"
    flock 8
    local pid t0
    t0="$(now)"
    if [[ -f "$STATE_DIR/pid" ]] && ours "$(cat "$STATE_DIR/pid")"; then
        pid="$(cat "$STATE_DIR/pid")" # started by another run a moment ago
    else
        # The shared broker's topics are throwaway test topics, and every
        # partition left by earlier runs is one more log to load at start
        # (9,000 of them took over a minute): start from empty data.
        if [[ "${KAFKAESK_BROKER_KEEP_DATA:-0}" != 1 && -d "$STATE_DIR/data" ]]; then
            rm -rf "$STATE_DIR/data"
            echo "broker: cleared the topics of earlier runs ($STATE_DIR/data; KAFKAESK_BROKER_KEEP_DATA=1 keeps them)"
        fi
        prepare "$STATE_DIR"
        t0="$(now)"
        broker_command "$STATE_DIR"
        echo "broker: starting Apache Kafka $KAFKA_VERSION (Java $JAVA_MAJOR) on $KAFKA, data in $STATE_DIR"
        nohup "${BROKER_CMD[@]}" >"$STATE_DIR/kafka.log" 2>&1 8>&- &
        pid=$!
        echo "$pid" >"$STATE_DIR/pid"
    fi
    wait_ready "$pid" "$t0"
    ensure_scram_users
    cds_archive_in_background
}

# Kafka 4.4.0 keeps only one SCRAM mechanism of a user when it starts again
# from a metadata snapshot (seen here: after a restart, the test user had
# SCRAM-SHA-512 and no SCRAM-SHA-256 any more, though the log replayed both
# records), so the test credentials are written again at every start.
ensure_scram_users() {
    local t0 out mechanism
    t0="$(now)"
    # One mechanism a call: Kafka refuses two changes of one user in a request.
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
        if ! out="$("$JAVA" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$CACHE/*" \
            org.apache.kafka.tools.ConfigCommand --bootstrap-server "$KAFKA" --alter \
            --add-config "$mechanism=[password=$TEST_PASSWORD]" \
            --entity-type users --entity-name "$TEST_USER" 2>&1)"; then
            echo "$out" >&2
            die "could not store the $mechanism credential of $TEST_USER"
        fi
    done
    echo "broker: SCRAM credentials of $TEST_USER stored ($(since "$t0") s)"
}

run() { # DIR
    [[ -n "${1:-}" ]] || die "usage: scripts/broker.sh run DIR"
    mkdir -p "$1"
    local dir
    dir="$(cd "$1" && pwd)"
    pick_java
    ensure_jars
    cds_setup
    prepare "$dir"
    broker_command "$dir"
    echo "broker: running Apache Kafka $KAFKA_VERSION in the foreground on $KAFKA, data in $dir (env $dir/broker.env)" >&2
    exec "${BROKER_CMD[@]}"
}

# scripts/cluster.sh sources this file for its functions (Java, jars,
# class-data sharing) and runs its own commands.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    run) run "${2:-}" ;;
    checksums) checksums ;;
    classpath)
        ensure_jars >&2
        echo "$CACHE/*"
        ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (start, stop, run DIR, checksums, classpath)" ;;
esac
