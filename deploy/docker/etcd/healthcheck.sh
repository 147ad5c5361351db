#!/bin/bash
# etcd's health check without curl: GET /health on the client port over bash's /dev/tcp; healthy
# when this member answers {"health":"true"} (it has a leader and serves reads).
set -eu
port="${ETCD_HEALTH_PORT:-2379}"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
answer="$(timeout 3 cat <&3)"
case "$answer" in
  *'"health":"true"'*) exit 0 ;;
  *) printf '%s\n' "${answer##*$'\r\n\r\n'}"; exit 1 ;;
esac
