#!/usr/bin/env bash
# Installs, starts and stops the real services Weir runs against on one machine:
# a single-node Apache Kafka 4.x broker (KRaft, combined broker + controller) and an etcd server,
# both on 127.0.0.1. Besides its PLAINTEXT listener the broker has an SSL listener and a SASL_SSL
# listener (SCRAM-SHA-256 and SCRAM-SHA-512, user `weir`; OAUTHBEARER with unsigned test tokens),
# with a CA, a broker certificate for 127.0.0.1/localhost and the user's password generated once
# into WEIR_DATA_DIR/kafka-tls/.
#
#   deploy/local/services.sh install   apt packages + Kafka jars (cached; seconds the second time)
#   deploy/local/services.sh start     start both (installs first if needed); returns when both answer;
#                                      a broker running with an older config is restarted
#   deploy/local/services.sh up        install, then start unless both run (a broker with an older
#                                      config is restarted); prints "started" or "running"
#   deploy/local/services.sh stop      stop what `start` started, by recorded pid
#   deploy/local/services.sh status    say what runs; exit 0 only when both run
#   deploy/local/services.sh reset     stop, then delete all Kafka and etcd data
#   deploy/local/services.sh env       print the addresses, the CA file and the SCRAM user as shell
#                                      variables
#   deploy/local/services.sh kafka-tool CLASS ARGS...   run a Kafka tool from the cached jars
#   deploy/local/services.sh kafka-foreground   run a broker in the foreground on the ports and
#                                      WEIR_DATA_DIR of its environment (a test's own broker); the
#                                      SSL and SASL_SSL listeners only when their ports are given
#   deploy/local/services.sh browser   install Debian's chromium (headless) for the status-page test;
#                                      prints its path
#
# Environment (defaults in brackets):
#   WEIR_KAFKA_PORT [9092]  WEIR_KAFKA_CONTROLLER_PORT [9093]  WEIR_ETCD_PORT [2379]
#   WEIR_KAFKA_SSL_PORT [9094]  WEIR_KAFKA_SASL_SSL_PORT [9095]  ("off" for none)
#   WEIR_ETCD_PEER_PORT [2380]  WEIR_CACHE_DIR [~/.cache/weir]  WEIR_DATA_DIR [$WEIR_CACHE_DIR/services]
#   WEIR_KAFKA_HEAP [512m]  WEIR_START_TIMEOUT [90] seconds
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

kafka_port="${WEIR_KAFKA_PORT:-9092}"
controller_port="${WEIR_KAFKA_CONTROLLER_PORT:-9093}"
ssl_port="${WEIR_KAFKA_SSL_PORT:-9094}"
sasl_ssl_port="${WEIR_KAFKA_SASL_SSL_PORT:-9095}"
etcd_port="${WEIR_ETCD_PORT:-2379}"
etcd_peer_port="${WEIR_ETCD_PEER_PORT:-2380}"
cache_dir="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
data_dir="${WEIR_DATA_DIR:-$cache_dir/services}"
kafka_heap="${WEIR_KAFKA_HEAP:-512m}"
start_timeout="${WEIR_START_TIMEOUT:-90}"

log_dir="$data_dir/logs"
run_dir="$data_dir/run"
kafka_data="$data_dir/kafka"
# The local CA, the broker's key and certificate, and the SCRAM user's password: made once, kept
# by `reset` (clients may trust the CA), never committed.
tls_dir="$data_dir/kafka-tls"
scram_user=weir
etcd_data="$data_dir/etcd"

pom="$here/kafka/pom.xml"
# The jar cache is keyed by the pom's content, so changing the Kafka version installs afresh.
kafka_key="$(sha256sum "$pom" | cut -c1-16)"
kafka_libs="$cache_dir/kafka/$kafka_key/libs"

# Debian packages Weir's build, tests, demo and services need; each is checked first, so a machine
# that has them already never touches apt. deploy/docker/fresh-machine.sh proves on a clean
# Debian 12 that nothing is missing. libprotobuf-dev: the well-known .proto files
# (google/protobuf/*.proto) that etcd-client's build compiles; protobuf-compiler only recommends
# it. procps: pgrep in demo.sh. libssl-dev and pkg-config: librdkafka is built with SSL (SASL
# SCRAM and OAUTHBEARER come with it) against the system OpenSSL. openssl: the test certificates
# (tests/src/certs.rs) and the local broker's (make_kafka_tls).
apt_packages=(protobuf-compiler libprotobuf-dev etcd-server build-essential pkg-config zlib1g-dev libssl-dev curl procps openssl openjdk-17-jre-headless maven)

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# install

missing_packages() {
  local pkg
  for pkg in "${apt_packages[@]}"; do
    case "$pkg" in
      # Any JDK 17+ and any Maven will do; only ask apt when the commands are missing.
      openjdk-17-jre-headless) command -v java >/dev/null 2>&1 && continue ;;
      maven) command -v mvn >/dev/null 2>&1 && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$pkg"
  done
}

install_packages() {
  local missing
  missing="$(missing_packages | tr '\n' ' ')"
  if [ -z "${missing// /}" ]; then
    say "apt packages: already installed"
    return
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "apt packages: need root or sudo to install: $missing"
    sudo="sudo"
  fi
  say "apt packages: installing $missing"
  $sudo apt-get update -qq >"$log_dir/apt.log" 2>&1 \
    || { tail -20 "$log_dir/apt.log" >&2; die "apt packages: 'apt-get update' failed (log: $log_dir/apt.log)"; }
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >>"$log_dir/apt.log" 2>&1 \
    || { tail -20 "$log_dir/apt.log" >&2; die "apt packages: 'apt-get install $missing' failed (log: $log_dir/apt.log)"; }
}

# The status page is tested in a real browser. Not part of `install`: the build and the services
# do not need it, and it is large.
browser_packages=(chromium fonts-dejavu-core)

install_browser() {
  local missing="" pkg
  for pkg in "${browser_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "browser: installing$missing"
    $sudo apt-get update -qq >"$log_dir/apt.log" 2>&1 || true
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >>"$log_dir/apt.log" 2>&1 \
      || { tail -20 "$log_dir/apt.log" >&2; die "browser: 'apt-get install$missing' failed (log: $log_dir/apt.log)"; }
  fi
  command -v chromium || die "browser: chromium is installed but not on PATH"
}

install_kafka() {
  if [ -f "$kafka_libs/.complete" ]; then
    say "kafka jars: cached in $kafka_libs"
    return
  fi
  command -v mvn >/dev/null 2>&1 || die "kafka jars: mvn not found (the apt step should have installed maven)"
  say "kafka jars: resolving $(kafka_version) with Maven into $kafka_libs"
  local tmp="$kafka_libs.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$tmp" >"$log_dir/maven.log" 2>&1; then
    tail -30 "$log_dir/maven.log" >&2
    rm -rf "$tmp"
    die "kafka jars: Maven could not resolve $pom (is the Maven registry reachable? log: $log_dir/maven.log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka jars: Maven ran but no kafka_2.13 jar arrived in $tmp"
  touch "$tmp/.complete"
  rm -rf "$kafka_libs"
  mv "$tmp" "$kafka_libs"
}

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom"
}

cmd_install() {
  mkdir -p "$log_dir"
  install_packages
  install_kafka
  command -v cargo >/dev/null 2>&1 || die "rust: cargo not found; install a Rust toolchain (rustup) first"
  command -v protoc >/dev/null 2>&1 || die "protoc not found after the apt step"
  command -v etcd >/dev/null 2>&1 || die "etcd not found after the apt step"
  say "install: done"
}

installed() {
  [ -f "$kafka_libs/.complete" ] && command -v etcd >/dev/null 2>&1 && command -v protoc >/dev/null 2>&1 \
    && command -v java >/dev/null 2>&1 && [ -z "$(missing_packages)" ]
}

# ---------------------------------------------------------------------------------------------
# process bookkeeping: a service is "ours" when its pid file names a live process whose command
# line still matches, so a recycled pid is never mistaken for it (and never killed).

pid_of() { # name pattern
  local file="$run_dir/$1.pid" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

etcd_healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'
}

kafka_answers() {
  # A real metadata request (ListTopics), not just an open port.
  timeout 30 java -Xmx128m -cp "$kafka_libs/*" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -Dweir.log.file="$log_dir/kafka-probe.log" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$kafka_port" --list >/dev/null 2>&1
}

wait_until() { # description timeout-seconds command...
  local what="$1" limit="$2" start
  shift 2
  start=$SECONDS
  until "$@"; do
    if ((SECONDS - start >= limit)); then
      return 1
    fi
    sleep 0.5
  done
  say "$what: ready after $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------------------------
# etcd

start_etcd() {
  if pid="$(pid_of etcd "etcd --name weir-local")"; then
    say "etcd: already running (pid $pid) on 127.0.0.1:$etcd_port"
    return
  fi
  port_open "$etcd_port" && die "etcd: port $etcd_port is in use by a process this script did not start; set WEIR_ETCD_PORT"
  mkdir -p "$etcd_data"
  setsid nohup etcd --name weir-local --data-dir "$etcd_data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "weir-local=http://127.0.0.1:$etcd_peer_port" \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    >"$log_dir/etcd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$run_dir/etcd.pid"
  if ! wait_until "etcd on 127.0.0.1:$etcd_port" "$start_timeout" etcd_healthy; then
    tail -30 "$log_dir/etcd.log" >&2
    die "etcd: not healthy after ${start_timeout}s (log: $log_dir/etcd.log)"
  fi
}

# ---------------------------------------------------------------------------------------------
# kafka

# A port variable set to a port, not empty or "off".
port_on() { [ -n "$1" ] && [ "$1" != off ]; }
secure_listeners() { port_on "$ssl_port" || port_on "$sasl_ssl_port"; }

# The local CA, the broker's key and certificate for 127.0.0.1 and localhost (PEM, as Kafka reads
# them with ssl.keystore.type=PEM) and the SCRAM user's password, made once. Sets tls_made=1 when
# it made them now (a running broker still holds the old ones).
tls_made=0
make_kafka_tls() {
  if [ -s "$tls_dir/ca.pem" ] && [ -s "$tls_dir/broker.pem" ] && [ -s "$tls_dir/scram-password" ]; then
    return
  fi
  command -v openssl >/dev/null 2>&1 || die "kafka tls: openssl not found (the install step installs it)"
  mkdir -p "$log_dir"
  local tmp="$tls_dir.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  chmod 700 "$tmp"
  if ! (
    set -e
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=Weir local Kafka CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout broker.key -out broker.csr
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
      "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >broker.ext
    openssl x509 -req -sha256 -days 3650 -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -extfile broker.ext -out broker.crt
    cat broker.key broker.crt >broker.pem
    openssl rand -hex 16 >scram-password
    rm -f broker.csr broker.ext ca.srl
    chmod 600 ca.key broker.key broker.pem scram-password
    chmod 644 ca.pem broker.crt
  ) >"$log_dir/kafka-tls.log" 2>&1; then
    cat "$log_dir/kafka-tls.log" >&2
    rm -rf "$tmp"
    die "kafka tls: making the local CA and broker certificate failed (log: $log_dir/kafka-tls.log)"
  fi
  rm -rf "$tls_dir"
  mv "$tmp" "$tls_dir"
  tls_made=1
  say "kafka tls: made a local CA ($tls_dir/ca.pem), a broker certificate for 127.0.0.1/localhost and a SCRAM password"
}

kafka_config() {
  local listeners="PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port"
  local advertised="PLAINTEXT://127.0.0.1:$kafka_port"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if port_on "$ssl_port"; then
    listeners="$listeners,SSL://127.0.0.1:$ssl_port"
    advertised="$advertised,SSL://127.0.0.1:$ssl_port"
    protocols="$protocols,SSL:SSL"
  fi
  if port_on "$sasl_ssl_port"; then
    listeners="$listeners,SASL_SSL://127.0.0.1:$sasl_ssl_port"
    advertised="$advertised,SASL_SSL://127.0.0.1:$sasl_ssl_port"
    protocols="$protocols,SASL_SSL:SASL_SSL"
  fi
  cat <<EOF
# Written by deploy/local/services.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
# Inter-broker and controller traffic stays PLAINTEXT on loopback.
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$kafka_data
num.partitions=1
# Tests and jobs create their topics explicitly; a typo must not create a topic silently.
auto.create.topics.enable=false
# One broker: every internal topic has one replica, or groups and transactions never start.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  if secure_listeners; then
    cat <<EOF
# SSL and SASL_SSL: the broker's key and certificate, signed by the local CA ($tls_dir/ca.pem).
# Clients present no certificate.
ssl.keystore.type=PEM
ssl.keystore.location=$tls_dir/broker.pem
ssl.client.auth=none
EOF
  fi
  if port_on "$sasl_ssl_port"; then
    cat <<EOF
# SASL_SSL: SCRAM users stored in the cluster metadata (user $scram_user, added by this script),
# and OAUTHBEARER with Kafka's default validator, which takes unsigned tokens: for development
# only, as the PLAINTEXT listener beside it is.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
EOF
  fi
}

write_kafka_config() {
  kafka_config >"$data_dir/server.properties"
}

# Whether the config a running broker was started with is the one this script writes now.
kafka_config_current() {
  [ -f "$data_dir/server.properties" ] && [ "$(kafka_config)" = "$(cat "$data_dir/server.properties")" ]
}

# The SCRAM credentials of the user, for the storage's cluster id: what the marker file records
# once the broker holds them.
scram_marker() {
  local cluster
  cluster="$(sed -n 's/^cluster.id=//p' "$kafka_data/meta.properties" 2>/dev/null)"
  printf '%s %s %s\n' "$cluster" "$scram_user" "$(sha256sum <"$tls_dir/scram-password" | cut -c1-16)"
}

# Adds (or updates) the SCRAM-SHA-256 and SCRAM-SHA-512 credentials of the user through the
# PLAINTEXT listener, once per storage and password; quick when done.
ensure_scram_user() {
  port_on "$sasl_ssl_port" || return 0
  local marker="$data_dir/kafka-scram.done"
  [ -f "$marker" ] && [ "$(cat "$marker")" = "$(scram_marker)" ] && return
  local password mechanism
  password="$(cat "$tls_dir/scram-password")"
  # One mechanism per request: Kafka refuses a user's credentials altered twice in one.
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    timeout 60 java -Xmx128m -cp "$kafka_libs/*" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
      -Dweir.log.file="$log_dir/kafka-tool.log" kafka.admin.ConfigCommand \
      --bootstrap-server "127.0.0.1:$kafka_port" --alter --entity-type users --entity-name "$scram_user" \
      --add-config "$mechanism=[password=$password]" >"$log_dir/kafka-scram.out" 2>&1 \
      || { cat "$log_dir/kafka-scram.out" >&2; die "kafka: adding the $mechanism user $scram_user failed"; }
  done
  scram_marker >"$marker"
  say "kafka: SCRAM-SHA-256/512 user $scram_user added (password in $tls_dir/scram-password)"
}

kafka_java_opts=(-Xms"$kafka_heap" -Xmx"$kafka_heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/kafka/log4j2.properties")

# Writes the broker's config and formats its storage on the first start.
prepare_kafka() {
  mkdir -p "$kafka_data" "$log_dir"
  secure_listeners && make_kafka_tls
  write_kafka_config
  if [ ! -f "$kafka_data/meta.properties" ]; then
    # Static quorum (controller.quorum.voters): format without --standalone.
    local cluster_id
    local out
    out="$(java -cp "$kafka_libs/*" "${kafka_java_opts[@]}" -Dweir.log.file="$log_dir/kafka-format.log" \
      kafka.tools.StorageTool random-uuid 2>&1)" \
      || { echo "$out" >&2; die "kafka: 'StorageTool random-uuid' failed (java: $(command -v java))"; }
    cluster_id="$(tail -n 1 <<<"$out")"
    # The SCRAM user goes into the new storage's metadata (a broker that is not started by
    # `start`, such as a test's own, gets it only this way).
    local scram=()
    if port_on "$sasl_ssl_port"; then
      local password
      password="$(cat "$tls_dir/scram-password")"
      scram=(--add-scram "SCRAM-SHA-256=[name=$scram_user,password=$password]"
        --add-scram "SCRAM-SHA-512=[name=$scram_user,password=$password]")
    fi
    java -cp "$kafka_libs/*" "${kafka_java_opts[@]}" -Dweir.log.file="$log_dir/kafka-format.log" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$data_dir/server.properties" "${scram[@]}" \
      >"$log_dir/kafka-format.out" 2>&1 \
      || { cat "$log_dir/kafka-format.out" >&2; die "kafka: formatting storage in $kafka_data failed"; }
    port_on "$sasl_ssl_port" && scram_marker >"$data_dir/kafka-scram.done"
    say "kafka: storage formatted (cluster $cluster_id)"
  fi
}

start_kafka() {
  secure_listeners && make_kafka_tls
  if pid="$(pid_of kafka "kafka.Kafka")"; then
    if kafka_config_current && [ "$tls_made" = 0 ]; then
      say "kafka: already running (pid $pid) on 127.0.0.1:$kafka_port"
      ensure_scram_user
      return
    fi
    say "kafka: running (pid $pid) with an older config or certificate; restarting it"
    stop_one kafka "kafka.Kafka"
  fi
  port_open "$kafka_port" && die "kafka: port $kafka_port is in use by a process this script did not start; set WEIR_KAFKA_PORT"
  port_open "$controller_port" && die "kafka: controller port $controller_port is in use; set WEIR_KAFKA_CONTROLLER_PORT"
  if port_on "$ssl_port" && port_open "$ssl_port"; then
    die "kafka: SSL port $ssl_port is in use; set WEIR_KAFKA_SSL_PORT (or off)"
  fi
  if port_on "$sasl_ssl_port" && port_open "$sasl_ssl_port"; then
    die "kafka: SASL_SSL port $sasl_ssl_port is in use; set WEIR_KAFKA_SASL_SSL_PORT (or off)"
  fi
  prepare_kafka
  setsid nohup java -cp "$kafka_libs/*" "${kafka_java_opts[@]}" -Dweir.log.file="$log_dir/kafka.log" \
    kafka.Kafka "$data_dir/server.properties" >"$log_dir/kafka.out" 2>&1 </dev/null 9>&- &
  kafka_pid=$!
  echo "$kafka_pid" >"$run_dir/kafka.pid"
  if ! wait_until "kafka port 127.0.0.1:$kafka_port" "$start_timeout" kafka_port_or_dead \
      || ! kill -0 "$kafka_pid" 2>/dev/null \
      || ! wait_until "kafka metadata" 60 kafka_answers; then
    tail -30 "$log_dir/kafka.log" "$log_dir/kafka.out" >&2 2>/dev/null || true
    die "kafka: no answer on 127.0.0.1:$kafka_port after start (logs: $log_dir/kafka.log, $log_dir/kafka.out)"
  fi
  ensure_scram_user
}

# A broker in the foreground, as a child of the caller (who kills it): a test's own broker, on
# the ports and data directory its environment names. The jars must be installed already.
cmd_kafka_foreground() {
  [ -f "$kafka_libs/.complete" ] || die "kafka jars: not installed; run $0 install first"
  # A test's own broker: the secure listeners only on the ports given, never the shared defaults.
  ssl_port="${WEIR_KAFKA_SSL_PORT:-off}"
  sasl_ssl_port="${WEIR_KAFKA_SASL_SSL_PORT:-off}"
  prepare_kafka
  exec java -cp "$kafka_libs/*" "${kafka_java_opts[@]}" -Dweir.log.file="$log_dir/kafka.log" \
    kafka.Kafka "$data_dir/server.properties"
}

# True when the port is open, or when the broker process already died (no point waiting).
kafka_port_or_dead() {
  port_open "$kafka_port" || ! kill -0 "$kafka_pid" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# stop / status

stop_one() { # name pattern
  local pid
  if ! pid="$(pid_of "$1" "$2")"; then
    say "$1: not running"
    rm -f "$run_dir/$1.pid"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null && ((waited < 60)); do
    sleep 0.5
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$1: did not stop within 30s; killing pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$run_dir/$1.pid"
  say "$1: stopped (pid $pid)"
}

cmd_status() {
  local rc=0 pid
  if pid="$(pid_of etcd "etcd --name weir-local")"; then
    if etcd_healthy; then say "etcd: running (pid $pid), healthy on http://127.0.0.1:$etcd_port"
    else say "etcd: running (pid $pid) but not healthy on http://127.0.0.1:$etcd_port"; rc=1; fi
  else
    say "etcd: not running"; rc=1
  fi
  if pid="$(pid_of kafka "kafka.Kafka")"; then
    if port_open "$kafka_port"; then say "kafka: running (pid $pid), listening on 127.0.0.1:$kafka_port$(secure_ports)"
    else say "kafka: running (pid $pid) but not listening on 127.0.0.1:$kafka_port"; rc=1; fi
    kafka_config_current \
      || say "kafka: started with an older config; 'start' or 'up' restarts it with the current one"
  else
    say "kafka: not running"; rc=1
  fi
  say "data and logs: $data_dir"
  return $rc
}

# Serialise start/stop/reset: two test binaries may ask for the services at the same time.
with_lock() {
  mkdir -p "$data_dir" "$log_dir" "$run_dir"
  exec 9>"$data_dir/.lock"
  flock -w 300 9 || die "another services.sh holds $data_dir/.lock"
  "$@"
}

secure_ports() {
  port_on "$ssl_port" && printf ', SSL %s' "$ssl_port"
  port_on "$sasl_ssl_port" && printf ', SASL_SSL %s' "$sasl_ssl_port"
  true
}

cmd_start() {
  installed || cmd_install
  start_etcd
  start_kafka
  say "up: kafka 127.0.0.1:$kafka_port$(secure_ports), etcd http://127.0.0.1:$etcd_port (logs in $log_dir)"
}

# For scripts that stop afterwards only what they started: the one word on stdout says which.
cmd_up() {
  cmd_install >&2
  if cmd_status >&2; then
    # Quick when the broker is current; restarts one started with an older config.
    start_kafka >&2
    echo running
  else
    cmd_start >&2
    echo started
  fi
}

cmd_stop() {
  stop_one kafka "kafka.Kafka"
  stop_one etcd "etcd --name weir-local"
}

cmd_reset() {
  cmd_stop
  rm -rf "$kafka_data" "$etcd_data" "$log_dir" "$data_dir/server.properties"
  say "reset: deleted Kafka and etcd data under $data_dir"
}

cmd_env() {
  echo "WEIR_KAFKA_BROKERS=127.0.0.1:$kafka_port"
  if port_on "$ssl_port"; then echo "WEIR_KAFKA_SSL_BROKERS=127.0.0.1:$ssl_port"; fi
  if port_on "$sasl_ssl_port"; then
    echo "WEIR_KAFKA_SASL_SSL_BROKERS=127.0.0.1:$sasl_ssl_port"
    echo "WEIR_KAFKA_SCRAM_USER=$scram_user"
    echo "WEIR_KAFKA_SCRAM_PASSWORD_FILE=$tls_dir/scram-password"
  fi
  if secure_listeners; then echo "WEIR_KAFKA_CA_FILE=$tls_dir/ca.pem"; fi
  echo "WEIR_ETCD_ENDPOINTS=http://127.0.0.1:$etcd_port"
}

# Runs one of Kafka's own tools (a main class from the cached jars) against the local broker.
cmd_kafka_tool() {
  [ -f "$kafka_libs/.complete" ] || die "kafka jars not installed; run '$0 install'"
  [ $# -ge 1 ] || die "usage: $0 kafka-tool MAIN_CLASS [ARGS...]"
  exec java -Xmx256m -cp "$kafka_libs/*" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -Dweir.log.file="$log_dir/kafka-tool.log" "$@"
}

case "${1:-}" in
  install) with_lock cmd_install ;;
  start) with_lock cmd_start ;;
  up) with_lock cmd_up ;;
  stop) with_lock cmd_stop ;;
  reset) with_lock cmd_reset ;;
  status) mkdir -p "$run_dir"; cmd_status ;;
  env) cmd_env ;;
  kafka-tool) shift; mkdir -p "$log_dir"; cmd_kafka_tool "$@" ;;
  kafka-foreground) cmd_kafka_foreground ;;
  browser) mkdir -p "$log_dir"; with_lock install_browser ;;
  *)
    # The usage is the comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
    ;;
esac
