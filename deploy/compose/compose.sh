#!/usr/bin/env bash
# Weir on several containers with one command: builds the images (deploy/docker/images.sh, on
# the clean Debian base; cached) and starts deploy/compose/compose.yaml, or compose.ha.yaml with
# --ha. docs/deployment.md describes every service, variable and port.
#
#   deploy/compose/compose.sh up [--ha]      build the images, start the stack, wait until the
#                                            driver leads; prints the status page's address
#   deploy/compose/compose.sh down [--ha] [ARGS]   stop and remove the containers and network
#                                            (add -v to delete Kafka's and etcd's data too)
#   deploy/compose/compose.sh dc [--ha] ARGS...    docker-compose on the stack's files, e.g.
#                                            dc up -d --no-deps --scale executor=5 executor
#                                            dc exec driver-1 weirctl status
#   deploy/compose/compose.sh check          CI: on a project of its own and free ports, up,
#                                            the demo job flows, executors scaled 2 -> 3 -> 1,
#                                            the producer stopped and every record accounted
#                                            for, down; removes everything it made, pass or fail
#
# Environment (defaults in brackets):
#   WEIR_COMPOSE_PROJECT [weir]         the Compose project name (prefix of containers, volumes)
#   WEIR_COMPOSE_STATUS_PORT [17071]    the leading driver's status page on 127.0.0.1
#   WEIR_COMPOSE_STANDBY_STATUS_PORT [17072]   WEIR_COMPOSE_KAFKA_PORT [19092]
#   WEIR_COMPOSE_ETCD_PORT [12379]      WEIR_DEMO_RATE [200] events a second from the producer
#   WEIR_COMPOSE_V2 [0]                 1: use Compose v2, built once by compose-v2.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/deploy/compose"
engine="$root/deploy/docker/engine.sh"
project="${WEIR_COMPOSE_PROJECT:-weir}"
file="$here/compose.yaml"

say() { printf 'compose: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- the Compose client -------------------------------------------------------------------------
# Debian's docker-compose 1.29, or the v2 plugin (`docker compose`) where that is what exists.
compose_cmd=()
find_compose() {
  if [ "${WEIR_COMPOSE_V2:-0}" = 1 ]; then
    local v2
    v2="$(bash "$here/compose-v2.sh")" || die "no Compose v2"
    compose_cmd=("$v2")
  elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
  elif bash "$engine" docker compose version >/dev/null 2>&1; then
    compose_cmd=(bash "$engine" docker compose)
  else
    say "installing Debian's docker-compose"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 \
      || { $sudo apt-get update -qq >/dev/null 2>&1 \
        && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } \
      || die "could not install docker-compose with apt"
    compose_cmd=(docker-compose)
  fi
}
dc() { "${compose_cmd[@]}" -f "$file" -p "$project" "$@"; }

engine_state=""
engine_up() {
  local err
  err="$(mktemp)"
  engine_state="$(bash "$engine" up 2>"$err")" || { cat "$err" >&2; rm -f "$err"; die "no container engine"; }
  rm -f "$err"
  find_compose
}

# --- small probes ---------------------------------------------------------------------------------
# http_get PORT PATH: the body of a GET on 127.0.0.1:PORT (bash's /dev/tcp; no curl needed).
http_get() {
  local answer
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  answer="$(timeout 5 cat <&3)" || { exec 3<&-; return 1; }
  exec 3<&-
  printf '%s\n' "${answer#*$'\r\n\r\n'}"
}

# metric PORT NAME: the sum of a metric's series on the driver at 127.0.0.1:PORT ("" if none).
metric() {
  http_get "$1" /metrics 2>/dev/null | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { if (f) printf "%d\n", s }'
}

# wait_until SECONDS WHAT CMD...: polls CMD every half second.
wait_until() {
  local limit="$1" what="$2" started=$SECONDS
  shift 2
  until "$@"; do
    ((SECONDS - started < limit)) || { say "gave up after ${limit}s waiting for: $what"; return 1; }
    sleep 0.5
  done
}

driver_leads() { http_get "$status_port" /readyz 2>/dev/null | grep -q '^leading job'; }

# --- up / down --------------------------------------------------------------------------------
status_port="${WEIR_COMPOSE_STATUS_PORT:-17071}"

ha=""
pick_file() {
  if [ "${1:-}" = --ha ]; then file="$here/compose.ha.yaml"; ha=" --ha"; return 0; fi
  return 1
}

cmd_up() {
  local started=$SECONDS
  engine_up
  bash "$root/deploy/docker/images.sh" build
  say "starting ${file#"$root"/} as project $project"
  dc up -d
  wait_until 180 "the driver to lead (http://127.0.0.1:$status_port/readyz)" driver_leads \
    || { dc ps >&2; die "the driver does not lead; see: $0 dc logs driver-1"; }
  dc ps
  say "up in $((SECONDS - started)) s. Status page: http://127.0.0.1:$status_port/"
  say "  status:  $0 dc$ha exec driver-1 weirctl status"
  say "  scale:   $0 dc$ha up -d --no-deps --scale executor=5 executor"
  say "  stop:    $0 down$ha     (-v also deletes the data)"
}

# --- check (CI) ---------------------------------------------------------------------------------
free_port() { # a port nothing listens on, from a range away from the local services
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  die "no free port found"
}

count_topic() { # records a read_committed reader finds in TOPIC, read inside the stack's network
  # The driver's environment names the broker and the SASL_SSL client properties.
  dc exec -T driver-1 weir-kafka count "$1" | tail -n 1
}

clean_has_records() { [ "$(count_topic clean-events)" -gt 0 ] 2>/dev/null; }
attached() { [ "$(metric "$status_port" weir_driver_executors)" = "$1" ]; }
committed_at_least() { [ "$(metric "$status_port" weir_driver_batches_committed_total || true)" -ge "$1" ] 2>/dev/null; }
flowing() { [ "$(metric "$status_port" weir_driver_records_out_total || true)" -gt 0 ] 2>/dev/null; }
drained() {
  local lag raw
  lag="$(metric "$status_port" weir_driver_lag_records)"
  [ "$lag" = 0 ] || return 1
  raw="$(count_topic raw-events)"
  [ "$(metric "$status_port" weir_driver_records_in_total)" = "$raw" ]
}

# Inside the stack: etcd refuses a client without a user and the executors' user outside the
# leader key; the driver's gRPC port refuses a TLS client without a certificate; and no log of
# any service holds one of the passwords.
check_refusals() {
  local etcdctl='etcdctl --endpoints https://etcd:2379 --cacert /run/weir/secrets/ca.pem'
  local offsets="/weir/jobs/${WEIR_COMPOSE_JOB:-clean-events}/offsets" out
  out="$(dc exec -T etcd sh -c "$etcdctl get $offsets" 2>&1)" && die "etcd served $offsets to a client without a user"
  grep -q 'user name is empty' <<<"$out" || die "etcd refused a client without a user, but not for that: $out"
  out="$(dc exec -T -u 0 etcd sh -c "$etcdctl --user weir-executor:\$(cat /run/weir/secrets/weir/etcd-executor-password) get $offsets" 2>&1)" \
    && die "etcd served $offsets to the executors' user"
  grep -q 'permission denied' <<<"$out" || die "etcd refused the executors' user, but not for that: $out"
  out="$(dc exec -T etcd sh -c '(printf "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"; sleep 2) | timeout 10 openssl s_client -connect driver-1:7070 -CAfile /run/weir/secrets/ca.pem -alpn h2 -quiet' 2>&1)" || true
  grep -q 'alert certificate required' <<<"$out" || die "the driver's gRPC port did not refuse a client without a certificate: $out"
  local secret logs
  logs="$(dc logs --no-color 2>&1)"
  for secret in weir/kafka-password weir/etcd-driver-password weir/etcd-executor-password root/etcd-root-password; do
    if grep -qF "$(dc exec -T -u 0 etcd cat "/run/weir/secrets/$secret")" <<<"$logs"; then
      die "a service logged the password in $secret"
    fi
  done
  say "  etcd: no user -> 'user name is empty'; executors' user on the offsets -> 'permission denied'"
  say "  driver gRPC without a client certificate -> 'alert certificate required'; no password in any log"
}

cmd_check() {
  project="weir-check-$$"
  export WEIR_COMPOSE_STATUS_PORT WEIR_COMPOSE_STANDBY_STATUS_PORT WEIR_COMPOSE_KAFKA_PORT WEIR_COMPOSE_ETCD_PORT
  WEIR_COMPOSE_STATUS_PORT="$(free_port)"
  WEIR_COMPOSE_STANDBY_STATUS_PORT="$(free_port)"
  WEIR_COMPOSE_KAFKA_PORT="$(free_port)"
  WEIR_COMPOSE_ETCD_PORT="$(free_port)"
  status_port="$WEIR_COMPOSE_STATUS_PORT"
  local logs="${WEIR_CACHE_DIR:-$HOME/.cache/weir}/compose-check"
  mkdir -p "$logs"
  engine_up
  cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$rc" -ne 0 ]; then
      dc ps >&2 || true
      dc logs --no-color >"$logs/$project.log" 2>&1 || true
      say "FAILED; the containers' logs: $logs/$project.log"
    fi
    dc down -v --remove-orphans -t 10 >/dev/null 2>&1 || true
    if [ "$engine_state" = started ]; then bash "$engine" stop; fi
    exit "$rc"
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  local t started=$SECONDS
  bash "$root/deploy/docker/images.sh" build
  local images=$((SECONDS - started))

  say "project $project: up (status page on 127.0.0.1:$status_port)"
  t=$SECONDS
  dc up -d 2>&1 | sed 's/^/  /' >&2
  wait_until 180 "the driver to lead" driver_leads
  local up=$((SECONDS - t))
  wait_until 120 "the first records written" flowing
  local flow=$((SECONDS - t))
  wait_until 60 "records in clean-events" clean_has_records || die "no record reached clean-events"

  say "security: what a peer without credentials gets"
  check_refusals

  say "scale executors 2 -> 3"
  t=$SECONDS
  dc up -d --no-deps --scale executor=3 executor 2>&1 | sed 's/^/  /' >&2
  wait_until 60 "3 executors attached" attached 3
  local scale_up=$((SECONDS - t))

  say "scale executors 3 -> 1"
  t=$SECONDS
  dc up -d --no-deps --scale executor=1 executor 2>&1 | sed 's/^/  /' >&2
  wait_until 60 "1 executor attached" attached 1
  local scale_down=$((SECONDS - t))
  local now
  now="$(metric "$status_port" weir_driver_batches_committed_total)"
  wait_until 30 "batches committed on one executor" committed_at_least $((now + 3))

  say "stop the producer; every record read once"
  dc stop -t 10 producer 2>&1 | sed 's/^/  /' >&2
  wait_until 60 "the job to drain" drained
  local raw clean dead read out rejected filtered
  raw="$(count_topic raw-events)"
  clean="$(count_topic clean-events)"
  dead="$(count_topic raw-events-dead-letters)"
  read="$(metric "$status_port" weir_driver_records_in_total)"
  out="$(metric "$status_port" weir_driver_records_out_total)"
  rejected="$(metric "$status_port" weir_driver_records_rejected_total)"
  filtered="$(metric "$status_port" weir_driver_records_filtered_total)"
  say "produced $raw; read $read: written $out (clean-events holds $clean), filtered $filtered, dead letters $rejected (topic holds $dead)"
  [ "$read" = "$raw" ] && [ "$out" = "$clean" ] && [ "$rejected" = "$dead" ] && [ $((out + filtered + rejected)) = "$read" ] \
    || die "the counts disagree: exactly-once needs read = produced, written = clean-events, rejected = dead letters"

  say "down"
  t=$SECONDS
  dc down -v --remove-orphans 2>&1 | sed 's/^/  /' >&2
  local down=$((SECONDS - t))
  local left
  left="$(bash "$engine" docker ps -aq --filter "label=com.docker.compose.project=$project")$(bash "$engine" docker volume ls -q --filter "label=com.docker.compose.project=$project")"
  [ -z "$left" ] || die "containers or volumes of $project left after down: $left"
  say "passed with Compose $("${compose_cmd[@]}" version --short 2>/dev/null || echo "(version unknown)") in $((SECONDS - started)) s: images ${images} s, up to leading ${up} s, first records written ${flow} s," \
    "scale 2->3 ${scale_up} s, 3->1 ${scale_down} s, down ${down} s; $raw records, each accounted for once"
}

# --- main ---------------------------------------------------------------------------------------
case "${1:-}" in
  up) shift; pick_file "${1:-}" && shift; cmd_up ;;
  down) shift; pick_file "${1:-}" && shift; engine_up; dc down "$@" ;;
  dc) shift; pick_file "${1:-}" && shift; engine_up; dc "$@" ;;
  check) cmd_check ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
    ;;
esac
