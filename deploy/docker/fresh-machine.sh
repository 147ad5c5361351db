#!/usr/bin/env bash
# The fresh-machine check: proves that the project's own install step is enough to build Weir on
# a clean Debian 12, so a package missing from the install list can never land again.
#
# In a container from the clean base (deploy/docker/engine.sh: debootstrap, never a registry),
# with this repository mounted read-only and the host's Rust toolchain mounted (a toolchain
# cannot come from a registry here), it runs
#   1. install: deploy/local/services.sh install (apt packages, the Kafka jars)
#   2. build:   cargo build --release --locked --workspace --bins
#   3. start:   every binary's shared libraries resolve, and the driver and executor start
# and fails naming the step. The container uses the host network only to reach the package
# registries, as the host's own clients do, and trusts what the host trusts: the host's CA
# bundle and Java trust store are mounted read-only, never copied into an image.
#
# Caches (under $WEIR_CACHE_DIR/fresh-machine, default ~/.cache/weir/fresh-machine) keep the
# second run quick without making it less honest: downloaded .deb files (apt still installs each
# package into the clean container), the Maven and crate downloads, and the container's own
# cargo target directory, keyed by the exact set of packages installed. The release binaries
# copied to bin/ there were built on the clean base, and are the ones Weir's images carry.
#
#   deploy/docker/fresh-machine.sh        run the check (starts dockerd if needed, stops it after)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
engine="$root/deploy/docker/engine.sh"
cache_dir="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
work="$cache_dir/fresh-machine"
log="$work/check.log"
container="weir-fresh-machine-$$"
binaries=(weir-driver weir-executor weirctl weir-kafka weir-bench)

say() { printf 'fresh-machine: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

docker_cli() { bash "$engine" docker "$@"; }

mkdir -p "$work"/{targets,cargo-home,apt-archives,m2}

# --- the engine and the base ----------------------------------------------------------------
engine_state="$(bash "$engine" up)"
cleanup() {
  docker_cli rm -f "$container" >/dev/null 2>&1 || true
  if [ "$engine_state" = started ]; then bash "$engine" stop; fi
}
trap cleanup EXIT
bash "$engine" base

# --- what the container borrows from the host, read-only --------------------------------------
sysroot="$(rustc --print sysroot 2>/dev/null)" || die "rustc not found on the host; install a Rust toolchain (rustup) first"
[ -x "$sysroot/bin/cargo" ] || die "no cargo in the host toolchain $sysroot/bin"
mounts=(
  -v "$root:/src:ro"
  -v "$sysroot:/opt/rust:ro"
  -v "$work:/cache"
  -v "$work/apt-archives:/var/cache/apt/archives"
  -v "$work/m2:/root/.m2"
)
trust_env=()
# The host's trust store: these machines reach the registries through a CA a clean Debian lacks.
for bundle in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$bundle" ] && [ -f "$bundle" ]; then
    mounts+=(-v "$(readlink -f "$bundle"):/run/host-trust/ca-certificates.crt:ro")
    trust_env+=(-e SSL_CERT_FILE=/run/host-trust/ca-certificates.crt
      -e CARGO_HTTP_CAINFO=/run/host-trust/ca-certificates.crt
      -e CURL_CA_BUNDLE=/run/host-trust/ca-certificates.crt)
    break
  fi
done
if java_bin="$(readlink -f "$(command -v java 2>/dev/null)" 2>/dev/null)" \
    && java_store="$(readlink -f "$(dirname "$java_bin")/../lib/security/cacerts")" && [ -f "$java_store" ]; then
  mounts+=(-v "$java_store:/run/host-trust/java-cacerts:ro")
  # "changeit" is the JDK's published default password of every cacerts file, not a secret.
  trust_env+=(-e "MAVEN_OPTS=-Djavax.net.ssl.trustStore=/run/host-trust/java-cacerts -Djavax.net.ssl.trustStorePassword=changeit")
fi

# --- the check, inside the container -------------------------------------------------------------
# Each step prints a marker line; on failure the host names the last step that began.
# Each step prints a marker line; on failure the host names the last step that began.
# The build's target directory is keyed by the exact set of packages installed: cached build
# outputs are reused only over the same packages, so a package dropped from the install list
# (or changed by Debian) always means a build from scratch that would fail without it.
inside='
set -uo pipefail
step() { echo "@@step $1"; }
step install;  bash /src/deploy/local/services.sh install || exit 1
packages="$(dpkg-query -W -f="\${Package}=\${Version}\n" | sort | sha256sum | cut -c1-16)"
export CARGO_TARGET_DIR="/cache/targets/$packages"
echo "target directory for this package set: $CARGO_TARGET_DIR"
step build;    cd /src && cargo build --release --locked --workspace --bins || exit 1
step start
for b in '"${binaries[*]}"'; do
  missing="$(ldd "$CARGO_TARGET_DIR/release/$b" | grep "not found")"
  [ -z "$missing" ] || { echo "$b needs libraries a clean Debian 12 lacks: $missing"; exit 1; }
done
for b in weir-driver weir-executor; do
  "$CARGO_TARGET_DIR/release/$b" --version || { echo "$b does not start on a clean Debian 12"; exit 1; }
done
mkdir -p /cache/bin.new && for b in '"${binaries[*]}"'; do cp "$CARGO_TARGET_DIR/release/$b" /cache/bin.new/; done
rm -rf /cache/bin && mv /cache/bin.new /cache/bin
# Only the target directory of the current package set is worth keeping.
find /cache/targets -mindepth 1 -maxdepth 1 ! -name "$packages" -exec rm -rf {} +
step done
'
say "clean Debian 12 container $container: install, release build, start (log: $log)"
: >"$log"
started=$SECONDS
set +e
docker_cli run --rm --name "$container" --network host \
  "${mounts[@]}" "${trust_env[@]}" \
  -e HOME=/root -e CARGO_HOME=/cache/cargo-home \
  -e PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  -e CARGO_TERM_COLOR=never \
  weir-base:bookworm bash -c "$inside" 2>&1 \
  | while IFS= read -r line; do
      case "$line" in
        "@@step "*) printf '%s\n' "$line" >>"$log"; say "step ${line#@@step } (after $((SECONDS - started)) s)" ;;
        *) printf '%s\n' "$line" >>"$log" ;;
      esac
    done
status=("${PIPESTATUS[@]}")
set -e
last_step="$(sed -n 's/^@@step //p' "$log" | tail -n 1)"
if [ "${status[0]}" -ne 0 ] || [ "$last_step" != done ]; then
  tail -n 40 "$log" >&2
  case "$last_step" in
    install) hint="the install step itself failed on a clean Debian 12" ;;
    build) hint="the install step left out something the build needs: add its Debian package to apt_packages in deploy/local/services.sh" ;;
    start) hint="a binary does not start: a runtime library is missing from apt_packages in deploy/local/services.sh" ;;
    *) hint="the container did not start (engine or base image)" ;;
  esac
  die "step '${last_step:-container}' failed (exit ${status[0]}): $hint (full log: $log)"
fi
say "passed in $((SECONDS - started)) s; release binaries built on the clean base: $work/bin/"
