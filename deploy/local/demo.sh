#!/usr/bin/env bash
# Weir's main job in one command: the clean-events example (deploy/examples/clean-events.toml)
# running on a local Kafka and etcd, one driver and two executors.
#
# It installs and starts the services if needed, builds the release binaries, creates this run's
# topics (names end in a run id, so runs never meet), produces sample events (every 50th one is
# not JSON, to show dead letters), starts the processes, keeps a trickle of new events flowing
# and prints one line per committed batch. Ctrl-C (or WEIR_DEMO_SECONDS=N) stops everything in
# order and prints a summary read back from Kafka. Services it started are stopped at the end.
#
#   deploy/local/demo.sh                      # until Ctrl-C
#   WEIR_DEMO_SECONDS=20 deploy/local/demo.sh # stops by itself after 20 s
#
# Logs and the job config of each run: target/demo/<run id>/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
services="$root/deploy/local/services.sh"
bin="$root/target/release"

seconds="${WEIR_DEMO_SECONDS:-0}"
initial="${WEIR_DEMO_RECORDS:-10000}"     # records produced before the job starts
per_second="${WEIR_DEMO_RATE:-200}"       # records produced every second while it runs
grpc_port="${WEIR_DEMO_GRPC_PORT:-7070}"
http_port="${WEIR_DEMO_HTTP_PORT:-7071}"
case "$seconds$initial$per_second" in
  *[!0-9]*) echo "error: WEIR_DEMO_SECONDS, WEIR_DEMO_RECORDS and WEIR_DEMO_RATE take whole numbers" >&2; exit 2 ;;
esac

step() { printf '\n== %s\n' "$*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# --- children and cleanup -----------------------------------------------------------------------
# Every child runs under setsid, in its own process group: Ctrl-C at the terminal reaches only this
# script, which then stops the children in order (driver first, so it can commit what is in
# flight while the executors still run). `pids` holds the children still to stop.
pids=()
names=()
stopping=0
started_services=0

# stop_child NAME PID TIMEOUT: SIGTERM the process group, wait up to TIMEOUT s, then SIGKILL.
stop_child() {
  local name="$1" pid="$2" timeout="$3" waited=0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge $((timeout * 10)) ]; then
      echo "warning: $name (pid $pid) still runs after ${timeout}s; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1 || true
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
}

# Stops every child still running, newest first except that the driver goes before executors.
stop_all() {
  local i
  for i in "${!pids[@]}"; do
    case "${names[$i]}" in trickle | driver) stop_child "${names[$i]}" "${pids[$i]}" 70 ;; esac
  done
  for i in "${!pids[@]}"; do
    case "${names[$i]}" in trickle | driver) ;; *) stop_child "${names[$i]}" "${pids[$i]}" 30 ;; esac
  done
  pids=()
  names=()
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stop_all
  if [ "$started_services" = 1 ]; then
    step "stopping the services this script started"
    bash "$services" stop || true
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'stopping=1' INT TERM HUP

# start NAME LOG CMD...: runs CMD in its own session, output to LOG; remembers its pid.
start() {
  local name="$1" log="$2"
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  pids+=("$!")
  names+=("$name")
}

pid_of() {
  local i
  for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && { echo "${pids[$i]}"; return 0; }; done
  return 1
}

# wait_for_log NAME LOG PATTERN SECONDS: until LOG has PATTERN; fails if NAME exits first.
wait_for_log() {
  local name="$1" log="$2" pattern="$3" limit="$4" t=0 pid
  pid="$(pid_of "$name")"
  until grep -q -- "$pattern" "$log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "$name exited before logging \"$pattern\" (log: $log)"
    fi
    if [ "$t" -ge $((limit * 10)) ]; then
      tail -n 20 "$log" >&2
      die "$name did not log \"$pattern\" within ${limit}s (log: $log)"
    fi
    [ "$stopping" = 1 ] && exit 130
    sleep 0.1 || true
    t=$((t + 1))
  done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- services and build -------------------------------------------------------------------------
step "install (apt packages, Kafka jars; cached after the first run) and services"
# An assignment, so that a failed install or start stops this script (set -e).
services_state="$(bash "$services" up)"
if [ "$services_state" = started ]; then
  started_services=1
else
  echo "services already running; leaving them running afterwards" >&2
fi
eval "$(bash "$services" env)"
export WEIR_KAFKA_BROKERS WEIR_ETCD_ENDPOINTS

step "build (release; a second run only checks)"
cargo build --release --bins --locked

for port in "$grpc_port" "$http_port"; do
  if port_in_use "$port"; then
    pgrep -af 'weir-driver' >&2 || true
    die "port $port is in use (another weir-driver?); stop it, or set WEIR_DEMO_GRPC_PORT / WEIR_DEMO_HTTP_PORT"
  fi
done

# --- this run's job -----------------------------------------------------------------------------
run_id="demo-$(date +%Y%m%d-%H%M%S)-$$"
job="clean-events-$run_id"
raw="raw-events-$run_id"
clean="clean-events-$run_id"
dead="raw-events-dead-letters-$run_id"
dir="$root/target/demo/$run_id"
mkdir -p "$dir"
config="$dir/job.toml"

step "job $job (config and logs in ${dir#"$root"/})"
# The example with this run's names and the local services' addresses. Each substitution is
# checked, so a change to the example fails here rather than running the wrong job.
example="$root/deploy/examples/clean-events.toml"
sed -e "s|^name = \"clean-events\"$|name = \"$job\"|" \
    -e "s|^topics = \[\"raw-events\"\]$|topics = [\"$raw\"]|" \
    -e "s|^dead_letter_topic = \"raw-events-dead-letters\"$|dead_letter_topic = \"$dead\"|" \
    -e "s|^topic = \"clean-events\"$|topic = \"$clean\"|" \
    -e "s|^brokers = \"127.0.0.1:9092\"$|brokers = \"$WEIR_KAFKA_BROKERS\"|" \
    -e "s|^etcd = \[\"http://127.0.0.1:2379\"\]$|etcd = [\"${WEIR_ETCD_ENDPOINTS//,/\", \"}\"]|" \
    -e "s|^grpc_listen = \"127.0.0.1:7070\"$|grpc_listen = \"127.0.0.1:$grpc_port\"|" \
    -e "s|^http_listen = \"127.0.0.1:7071\"|http_listen = \"127.0.0.1:$http_port\"|" \
    "$example" >"$config"
for want in "name = \"$job\"" "topics = [\"$raw\"]" "dead_letter_topic = \"$dead\"" \
  "topic = \"$clean\"" "grpc_listen = \"127.0.0.1:$grpc_port\"" "http_listen = \"127.0.0.1:$http_port\""; do
  grep -qF -- "$want" "$config" || die "could not set '$want' in $config (did $example change?)"
done

"$bin/weir-kafka" create-topic "$raw" 4
"$bin/weir-kafka" create-topic "$clean" 4
"$bin/weir-kafka" create-topic "$dead" 1
"$bin/weir-kafka" produce "$raw" "$initial" --events --malformed-every 50

step "starting one driver and two executors"
start driver "$dir/driver.log" "$bin/weir-driver" --config "$config"
wait_for_log driver "$dir/driver.log" "Leading the job" 60
etcd_flag="--etcd=$WEIR_ETCD_ENDPOINTS"
for n in 1 2; do
  start "executor-$n" "$dir/executor-$n.log" "$bin/weir-executor" --job "$job" "$etcd_flag" --id "executor-$n"
done
for n in 1 2; do
  wait_for_log "executor-$n" "$dir/executor-$n.log" "Attached to the driver" 60
done
echo "driver pid $(pid_of driver), executors $(pid_of executor-1) and $(pid_of executor-2)" >&2

# A trickle of new events every second, so batches keep coming.
start trickle "$dir/trickle.log" bash -c \
  'while :; do "$0" produce "$1" "$2" --events --malformed-every 50 || exit 1; sleep 1; done' \
  "$bin/weir-kafka" "$raw" "$per_second"

if [ "$seconds" -gt 0 ]; then how="for ${seconds}s"; else how="until Ctrl-C"; fi
step "running $how: $per_second new events a second; one line per committed batch"
echo "status page: http://127.0.0.1:$http_port/   (also /api/status and /metrics; $bin/weirctl --config $config status)" >&2
echo "logs:   tail -f ${dir#"$root"/}/driver.log" >&2

# One line per "Batch committed" log line of the driver.
seen=0
show_batches() {
  local total
  total="$(grep -c 'Batch committed' "$dir/driver.log" || true)"
  [ "$total" -gt "$seen" ] || return 0
  grep 'Batch committed' "$dir/driver.log" | tail -n "+$((seen + 1))" | head -n "$((total - seen))" |
    awk '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[2] != "") v[kv[1]] = kv[2] }
      printf "batch %4d  tasks %s  in %6d  out %6d  filtered %5d  dead letters %4d  %5d ms\n",
        v["batch"], v["tasks"], v["records_in"], v["records_out"], v["filtered"], v["rejected"],
        v["processing_ms"]
    }'
  seen="$total"
}

started_at=$SECONDS
while [ "$stopping" = 0 ]; do
  for name in driver executor-1 executor-2 trickle; do
    pid="$(pid_of "$name")"
    if ! kill -0 "$pid" 2>/dev/null; then
      show_batches
      tail -n 20 "$dir/$name.log" >&2
      die "$name stopped unexpectedly (log: $dir/$name.log)"
    fi
  done
  show_batches
  if [ "$seconds" -gt 0 ] && [ $((SECONDS - started_at)) -ge "$seconds" ]; then
    break
  fi
  sleep 1 || true
done

# --- orderly stop and summary -------------------------------------------------------------------
step "stopping: the trickle, then the driver (it commits what is in flight), then the executors"
# No records of an orderly stop should be left unread: stop producing, then give the driver a few
# batch intervals to plan and commit the last records before asking it to stop.
stop_child trickle "$(pid_of trickle)" 10
produced="$("$bin/weir-kafka" count "$raw")"
status_in() { # records the driver has committed, from /metrics (the demo reads one topic)
  curl -s --max-time 2 "127.0.0.1:$http_port/metrics" | awk '/^weir_driver_records_in_total\{/ { print $2 }'
}
for _ in $(seq 1 30); do
  [ "$(status_in || true)" = "$produced" ] && break
  sleep 0.5 || true
done
stop_child driver "$(pid_of driver)" 70
stop_child executor-1 "$(pid_of executor-1)" 30
stop_child executor-2 "$(pid_of executor-2)" 30
pids=()
names=()
show_batches
grep -q "All batches committed" "$dir/driver.log" || echo "warning: the driver did not log \"All batches committed\"" >&2

sum() { grep 'Batch committed' "$dir/driver.log" | grep -o " $1=[0-9]*" | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }'; }
batches="$(grep -c 'Batch committed' "$dir/driver.log" || true)"
read_in="$(sum records_in)"
written="$(sum records_out)"
filtered="$(sum filtered)"
rejected="$(sum rejected)"
out_count="$("$bin/weir-kafka" count "$clean")"
dead_count="$("$bin/weir-kafka" count "$dead")"

step "summary of job $job ($((SECONDS - started_at))s)"
row() { printf '  %9d  %s\n' "$1" "$2"; }
row "$produced" "events produced to $raw"
row "$read_in" "records read by $batches committed batches, of which"
row "$filtered" "  filtered out (heartbeats)"
row "$rejected" "  rejected (not JSON), sent to the dead letters"
row "$written" "  cleaned and written"
row "$out_count" "records in $clean"
row "$dead_count" "records in $dead"
problems=0
if [ "$read_in" -ne "$produced" ]; then
  echo "  MISMATCH: $produced produced but $read_in read by committed batches" >&2; problems=1
fi
if [ $((written + filtered + rejected)) -ne "$read_in" ]; then
  echo "  MISMATCH: written + filtered + rejected != read" >&2; problems=1
fi
# Exactly-once (the example's guarantee): a read_committed reader finds each written record and
# each dead letter once, even if a task was retried.
if [ "$out_count" -ne "$written" ] || [ "$dead_count" -ne "$rejected" ]; then
  echo "  MISMATCH: Kafka holds other counts than the committed batches wrote" >&2; problems=1
fi
if [ "$problems" = 0 ]; then
  echo "  ok: every event produced was read once; every record read was written once, filtered, or dead-lettered once" >&2
fi
echo "  logs and config: ${dir#"$root"/}/" >&2
exit "$problems"
