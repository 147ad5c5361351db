#!/usr/bin/env bash
# The README test command: first proves in a clean Debian 12 container that the install step is
# enough to build Weir (deploy/docker/fresh-machine.sh), then installs what Weir needs here (apt
# packages, Kafka jars, chromium for the status-page test), starts the local Kafka and etcd unless
# they already run, lints, builds once and runs every test against the real services. Services
# this script started are stopped when it ends, pass or fail.
#
# Extra arguments go to `cargo test`, e.g. `deploy/local/test.sh -p weir-tests smoke`.
# WEIR_SKIP_FRESH_MACHINE=1 skips the container check (for a quick local loop; CI never sets it),
# and with it the compose check (deploy/compose/compose.sh check) and the compose fault suite
# (tests/tests/compose/); WEIR_SKIP_COMPOSE=1 skips only those two.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
services="$root/deploy/local/services.sh"

step() { printf '\n== %s\n' "$*" >&2; }

if [ "${WEIR_SKIP_FRESH_MACHINE:-0}" = 1 ]; then
  step "fresh machine: skipped (WEIR_SKIP_FRESH_MACHINE=1)"
else
  step "fresh machine: the install step and the release build in a clean Debian 12 container"
  bash "$root/deploy/docker/fresh-machine.sh"
fi

# The images carry the release binaries the fresh-machine check just built; with that check
# skipped, so is this one unless WEIR_SKIP_COMPOSE=0.
if [ "${WEIR_SKIP_COMPOSE:-${WEIR_SKIP_FRESH_MACHINE:-0}}" = 1 ]; then
  step "compose: skipped (WEIR_SKIP_COMPOSE=1 or WEIR_SKIP_FRESH_MACHINE=1)"
else
  step "compose: the images, and deploy/compose/compose.yaml up, the demo job flowing, scaled, down"
  bash "$root/deploy/compose/compose.sh" check
  step "compose: the same with Compose v2 (built from its Go module once, then cached)"
  WEIR_COMPOSE_V2=1 bash "$root/deploy/compose/compose.sh" check
fi

step "install (apt packages, Kafka jars; cached after the first run) and services"
# An assignment, so that a failed install or start stops this script (set -e).
services_state="$(bash "$services" up)"
if [ "$services_state" = started ]; then
  trap 'bash "$services" stop' EXIT
else
  echo "services already running; leaving them running afterwards" >&2
fi
# The tests must use these services; if one dies mid-run they fail instead of starting another.
export WEIR_TEST_NO_START=1

step "browser (Debian's headless chromium, for the status-page test; cached after the first run)"
bash "$services" browser >/dev/null

for tool in rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found; add it with 'rustup component add ${tool#cargo-}'" >&2; exit 1; }
done

step "format"
cargo fmt --all --check

step "one tonic and one prost in the tree (the versions etcd-client is built on)"
versions="$(cargo tree --workspace --locked -e normal,build --prefix none \
  | sed -n -E 's/^(tonic|prost) (v[0-9.]+).*/\1 \2/p' | sort -u)"
echo "$versions" >&2
if [ "$(echo "$versions" | cut -d' ' -f1 | uniq -d)" != "" ]; then
  echo "error: more than one version of tonic or prost in the dependency tree" >&2
  exit 1
fi

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (binaries and the custom-executor example are started as child processes by the tests)"
cargo build --workspace --bins --examples --locked

step "tests"
# Unit and integration test targets (doc tests: none yet). The summary line totals every target.
log="$root/target/test-output.log"
cargo test --workspace --all-targets --locked "$@" 2>&1 | tee "$log"

# The compose fault suite needs the container engine and the images the compose check built, so
# plain `cargo test` skips it (#[ignore]); here it runs whenever the compose check ran, and when
# no test filter was given.
if [ "${WEIR_SKIP_COMPOSE:-${WEIR_SKIP_FRESH_MACHINE:-0}}" = 1 ] || [ "$#" -gt 0 ]; then
  step "compose fault suite: skipped (with the compose check, or a test filter given)"
else
  step "compose fault suite: faults across containers on compose.ha.yaml, judged by the oracle"
  # The suite removes its containers, networks and volumes; the engine it leaves to us: stopped
  # afterwards when this script started it, pass or fail.
  engine_state="$(bash "$root/deploy/docker/engine.sh" up)"
  suite_status=0
  cargo test -p weir-tests --test compose --locked -- --ignored --nocapture 2>&1 | tee -a "$log" || suite_status=$?
  if [ "$engine_state" = started ]; then bash "$root/deploy/docker/engine.sh" stop; fi
  [ "$suite_status" = 0 ] || exit "$suite_status"
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
