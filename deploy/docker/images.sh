#!/usr/bin/env bash
# Builds Weir's three images, on the clean Debian base (deploy/docker/engine.sh; no registry):
#
#   weir:local        weir-driver, weir-executor, weirctl, weir-kafka      (deploy/docker/weir/)
#   weir-kafka:local  Apache Kafka 4.x, KRaft, configured by environment   (deploy/docker/kafka/)
#   weir-etcd:local   Debian's etcd-server                                 (deploy/docker/etcd/)
#
#   deploy/docker/images.sh build     start the engine if needed, build all three (cached layers:
#                                     seconds when nothing changed), print their sizes
#   deploy/docker/images.sh sizes     print the sizes of the built images
#
# The Weir image carries the release binaries deploy/docker/fresh-machine.sh built on the same
# base (run first when they are missing; WEIR_BIN_DIR names another directory). The Kafka image
# takes the jars `deploy/local/services.sh install` resolved with Maven (run first when missing).
# Both are copied into build contexts under $WEIR_CACHE_DIR/images, never into the repository.
# Package installs in the Kafka and etcd builds reach Debian's archive through the host network;
# nothing is fetched over HTTPS, and no CA certificate goes into an image.
#
# Environment (defaults in brackets):
#   WEIR_CACHE_DIR [~/.cache/weir]   WEIR_BIN_DIR [$WEIR_CACHE_DIR/fresh-machine/bin]
#   WEIR_IMAGE_TAG [local]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/deploy/docker"
engine="$here/engine.sh"
cache_dir="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
bin_dir="${WEIR_BIN_DIR:-$cache_dir/fresh-machine/bin}"
contexts="$cache_dir/images"
tag="${WEIR_IMAGE_TAG:-local}"
binaries=(weir-driver weir-executor weirctl weir-kafka)

say() { printf 'images: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
docker_cli() { bash "$engine" docker "$@"; }

kafka_libs() {
  local key
  key="$(sha256sum "$root/deploy/local/kafka/pom.xml" | cut -c1-16)"
  echo "$cache_dir/kafka/$key/libs"
}

# context NAME: a fresh build context with the files of deploy/docker/NAME/.
context() {
  local dir="$contexts/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -p "$here/$1"/* "$dir/"
  echo "$dir"
}

build_one() { # NAME IMAGE CONTEXT
  local log="$contexts/$1.build.log" started=$SECONDS
  say "$2: building (log: $log)"
  # --network host: the apt steps reach Debian's archive as the host's apt does.
  if ! docker_cli build --network host -t "$2" "$3" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "$2: 'docker build' failed (log: $log)"
  fi
  say "$2: built in $((SECONDS - started)) s"
}

cmd_sizes() {
  local image
  for image in "weir:$tag" "weir-kafka:$tag" "weir-etcd:$tag"; do
    docker_cli image inspect -f '{{.Size}}' "$image" 2>/dev/null \
      | awk -v i="$image" '{ printf "%-18s %4.0f MB\n", i, $1 / 1e6 }' \
      || echo "$image not built"
  done
}

cmd_build() {
  bash "$engine" up >/dev/null
  bash "$engine" base
  mkdir -p "$contexts"

  local b missing=0
  for b in "${binaries[@]}"; do [ -x "$bin_dir/$b" ] || missing=1; done
  if [ "$missing" = 1 ]; then
    [ -z "${WEIR_BIN_DIR:-}" ] || die "WEIR_BIN_DIR=$bin_dir lacks one of: ${binaries[*]}"
    say "release binaries missing in $bin_dir: building them on the clean base (deploy/docker/fresh-machine.sh)"
    bash "$here/fresh-machine.sh"
  fi
  local libs
  libs="$(kafka_libs)"
  if [ ! -f "$libs/.complete" ]; then
    say "Kafka jars missing: resolving them (deploy/local/services.sh install)"
    bash "$root/deploy/local/services.sh" install
  fi

  local ctx
  ctx="$(context weir)"
  mkdir -p "$ctx/bin"
  for b in "${binaries[@]}"; do cp "$bin_dir/$b" "$ctx/bin/"; done
  build_one weir "weir:$tag" "$ctx"

  ctx="$(context kafka)"
  cp -r "$libs" "$ctx/libs"
  rm -f "$ctx/libs/.complete"
  build_one kafka "weir-kafka:$tag" "$ctx"

  build_one etcd "weir-etcd:$tag" "$(context etcd)"
  cmd_sizes
}

case "${1:-}" in
  build) cmd_build ;;
  sizes) cmd_sizes ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
    ;;
esac
