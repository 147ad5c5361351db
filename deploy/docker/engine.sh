#!/usr/bin/env bash
# The container engine and the clean Debian base every Weir image and container starts from.
#
# No container registry is reachable from the machines Weir is built on, so nothing is pulled:
# the engine is Debian's `docker.io`, and the base image is a Debian 12 root file system made
# here with `debootstrap` from the Debian archive this machine's apt already uses, imported as a
# local image. Both steps are cached: the second run takes seconds.
#
#   deploy/docker/engine.sh up       install docker.io and debootstrap if missing, start dockerd
#                                    unless a daemon answers; prints "started" or "running"
#   deploy/docker/engine.sh base     build the base image unless it exists (tag below)
#   deploy/docker/engine.sh rebase   build the base image again, replacing the old one
#   deploy/docker/engine.sh stop     stop the dockerd that `up` started (by recorded pid)
#   deploy/docker/engine.sh docker ARGS...   the Docker client that suits the daemon
#
# The base is tagged `weir-base:bookworm`, and also `debian:bookworm-slim` when no image of
# that name exists yet, so Dockerfiles that name the official base build here unchanged.
#
# Environment (defaults in brackets):
#   WEIR_CACHE_DIR [~/.cache/weir]   logs and the dockerd pid file go to $WEIR_CACHE_DIR/docker
set -euo pipefail

cache_dir="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
state_dir="$cache_dir/docker"
base_image="weir-base:bookworm"
official_alias="debian:bookworm-slim"
suite="bookworm"

say() { printf 'engine: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root or sudo to run: $*"; fi
}

# ---------------------------------------------------------------------------------------------
# install and start

install_engine() {
  local missing=() pkg
  for pkg in docker.io debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "apt packages: docker.io and debootstrap already installed"
    return
  fi
  say "apt packages: installing ${missing[*]}"
  as_root apt-get update -qq >"$state_dir/apt.log" 2>&1 \
    || { tail -20 "$state_dir/apt.log" >&2; die "apt packages: 'apt-get update' failed (log: $state_dir/apt.log)"; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$state_dir/apt.log" 2>&1 \
    || { tail -20 "$state_dir/apt.log" >&2; die "apt packages: 'apt-get install ${missing[*]}' failed (log: $state_dir/apt.log)"; }
}

# Debian's package puts the daemon in /usr/sbin and its client in /usr/bin; a machine may have
# another client earlier on PATH, which the daemon's API version may not suit, so use the pair.
docker_cli() {
  if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi
}

daemon_answers() { docker_cli info >/dev/null 2>&1; }

# dockerd writes its own pid file; `ours` marks a daemon this script started, the only kind
# `stop` ever stops.
daemon_pid_file=/var/run/docker.pid
ours="$state_dir/dockerd.started"

start_daemon() {
  if daemon_answers; then
    say "dockerd: a daemon already answers"
    echo running
    return
  fi
  command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"
  say "dockerd: starting (log: $state_dir/dockerd.log)"
  # setsid: the daemon outlives this script and is not hit by the caller's Ctrl-C.
  as_root setsid nohup dockerd --pidfile "$daemon_pid_file" >"$state_dir/dockerd.log" 2>&1 </dev/null &
  local launcher=$! waited=0
  until daemon_answers; do
    if ! kill -0 "$launcher" 2>/dev/null || ((waited >= 120)); then
      tail -30 "$state_dir/dockerd.log" >&2
      die "dockerd: did not answer within 60 s (log: $state_dir/dockerd.log)"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  cp "$daemon_pid_file" "$ours"
  say "dockerd: ready after $((waited / 2)) s (pid $(cat "$ours"))"
  echo started
}

cmd_up() {
  install_engine
  start_daemon
}

cmd_stop() {
  local pid
  if [ ! -f "$ours" ] || ! pid="$(cat "$ours")" \
      || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^dockerd'; then
    say "dockerd: none started by this script is running"
    rm -f "$ours"
    return
  fi
  as_root kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null && ((waited < 60)); do
    sleep 0.5
    waited=$((waited + 1))
  done
  kill -0 "$pid" 2>/dev/null && { say "dockerd: still running after 30 s; killing pid $pid"; as_root kill -KILL "$pid" || true; }
  rm -f "$ours"
  say "dockerd: stopped (pid $pid)"
}

# ---------------------------------------------------------------------------------------------
# base image

# The Debian archive lines (URI and suite) this machine's apt uses for bookworm and its updates
# and security suites, so the base fetches from the same mirrors the host does.
host_debian_sources() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null \
    | awk -v s="$suite" '($2 == s || $2 == s "-updates" || $2 == s "-security") && $3 == "main" { print $1, $2 }' \
    | sort -u
}

build_base() {
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found; run '$0 up' first"
  local sources mirror rootfs
  sources="$(host_debian_sources)"
  mirror="$(awk -v s="$suite" '$2 == s { print $1; exit }' <<<"$sources")"
  [ -n "$mirror" ] || say "base: this machine's apt names no $suite archive; debootstrap uses its default mirror"
  rootfs="$(mktemp -d "$state_dir/rootfs.XXXXXX")"
  # A failed build leaves no half-made root file system behind.
  trap 'as_root rm -rf "$rootfs"' EXIT
  say "base: debootstrap --variant=minbase $suite ${mirror:-(default mirror)} (log: $state_dir/debootstrap.log)"
  as_root debootstrap --variant=minbase "$suite" "$rootfs" ${mirror:+"$mirror"} >"$state_dir/debootstrap.log" 2>&1 \
    || { tail -30 "$state_dir/debootstrap.log" >&2; die "base: debootstrap failed (log: $state_dir/debootstrap.log)"; }
  if [ -n "$sources" ]; then
    awk '{ print "deb " $1 " " $2 " main" }' <<<"$sources" | as_root tee "$rootfs/etc/apt/sources.list" >/dev/null
  fi
  # What a container image needs and a machine does not: no package caches in the image.
  as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  say "base: importing as $base_image"
  as_root tar -C "$rootfs" -c . | docker_cli import --change 'CMD ["bash"]' \
    --message "Debian $suite minbase, debootstrap on $(date -u +%F)" - "$base_image" >/dev/null \
    || die "base: 'docker import' failed"
  as_root rm -rf "$rootfs"
  trap - EXIT
  if ! docker_cli image inspect "$official_alias" >/dev/null 2>&1; then
    docker_cli tag "$base_image" "$official_alias"
  fi
  say "base: $base_image ready ($(docker_cli image inspect -f '{{.Size}}' "$base_image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

cmd_base() {
  daemon_answers || die "no container engine answers; run '$0 up' first"
  if docker_cli image inspect "$base_image" >/dev/null 2>&1; then
    say "base: $base_image cached (built $(docker_cli image inspect -f '{{.Created}}' "$base_image" | cut -c1-10))"
    return
  fi
  build_base
}

cmd_rebase() {
  daemon_answers || die "no container engine answers; run '$0 up' first"
  build_base
}

mkdir -p "$state_dir"
case "${1:-}" in
  up) cmd_up ;;
  base) cmd_base ;;
  rebase) cmd_rebase ;;
  stop) cmd_stop ;;
  docker) shift; docker_cli "$@" ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
    ;;
esac
