#!/bin/bash
# Prints the path of a Docker Compose v2 binary, built once from its Go module (the machine's Go
# and module proxy; about 3 minutes on 2 cores) into the cache, so compose.sh can check the
# deployment with Compose v2 as well as with Debian's docker-compose 1.29. A second run prints
# the cached binary at once. `docker compose` (the plugin) is not used even when present, so
# every machine checks the same version.
#
#   WEIR_COMPOSE_V2_VERSION [v2.40.3]   the module version to build
#   WEIR_CACHE_DIR [~/.cache/weir]
set -euo pipefail

version="${WEIR_COMPOSE_V2_VERSION:-v2.40.3}"
cache="${WEIR_CACHE_DIR:-$HOME/.cache/weir}/compose-v2/$version"
bin="$cache/docker-compose"
say() { printf 'compose-v2: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null 2>&1 || die "Go is needed to build Compose v2 and was not found"
say "building Compose $version from its Go module (once; log: $cache/build.log)"
started=$SECONDS
mkdir -p "$cache"
# A private module and build cache, removed after the build: only the binary is kept.
export GOPATH="$cache/gopath" GOCACHE="$cache/gocache" GOFLAGS="-modcacherw" CGO_ENABLED=0
cleanup() { rm -rf "$cache/gopath" "$cache/gocache" "$cache/src"; }
trap cleanup EXIT
if ! (
  set -e
  module="$(go mod download -json "github.com/docker/compose/v2@$version")"
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$module")"
  [ -d "$dir" ] || { echo "no module directory in: $module"; exit 1; }
  # go install refuses a module whose go.mod has exclude directives: build in a copy instead.
  cp -r "$dir" "$cache/src"
  cd "$cache/src"
  nice -n 10 go build -trimpath -ldflags "-w -X github.com/docker/compose/v2/internal.Version=$version" \
    -o "$bin.tmp" ./cmd
) >"$cache/build.log" 2>&1; then
  tail -n 20 "$cache/build.log" >&2
  die "building Compose $version failed (log: $cache/build.log)"
fi
mv "$bin.tmp" "$bin"
say "built $("$bin" version) in $((SECONDS - started)) s"
echo "$bin"
