#!/bin/bash
# Turns on etcd's authentication for the compose deployment, once: the root user, and for the
# job $WEIR_JOB under $WEIR_PREFIX the roles docs/security.md gives (the driver reads and writes
# the job's keys; executors only read its leader key). Run by the one-shot `etcd-users` service
# in the etcd image, with the secrets volume at /run/weir/secrets. A second run, once
# authentication is on, changes nothing.
set -euo pipefail

secrets=/run/weir/secrets
job="${WEIR_JOB:?set WEIR_JOB}"
prefix="${WEIR_PREFIX:-/weir}"
# (Not ETCDCTL_ENDPOINTS: etcdctl refuses that variable beside the --endpoints flag.)
endpoints="${WEIR_ETCD_ENDPOINTS:-https://etcd:2379}"
export ETCDCTL_API=3
ctl() { etcdctl --endpoints "$endpoints" --cacert "$secrets/ca.pem" "$@"; }

# With authentication off, listing users needs no credentials; with it on, etcd refuses a
# client without a user. Any other failure (etcd unreachable, a bad CA) is an error.
if ! answer="$(ctl user list 2>&1)"; then
  case "$answer" in
    *'user name is empty'*|*'permission denied'*) ;;
    *) echo "etcd-users: cannot ask etcd at $endpoints whether authentication is on: $answer" >&2; exit 1 ;;
  esac
  ctl --user "root:$(cat "$secrets/root/etcd-root-password")" user get root >/dev/null \
    || { echo "etcd-users: authentication is on, but not with this deployment's root password" >&2; exit 1; }
  echo "etcd-users: authentication is already on"
  exit 0
fi

add_user() { # NAME PASSWORD_FILE
  ctl user get "$1" >/dev/null 2>&1 && ctl user delete "$1" >/dev/null
  ctl user add "$1" --new-user-password="$(cat "$2")" >/dev/null
}
add_role() { ctl role get "$1" >/dev/null 2>&1 || ctl role add "$1" >/dev/null; }

add_user root "$secrets/root/etcd-root-password"
ctl user grant-role root root >/dev/null
add_role weir-driver
ctl role grant-permission weir-driver readwrite --prefix=true "$prefix/jobs/$job/" >/dev/null
add_role weir-executor
ctl role grant-permission weir-executor read "$prefix/jobs/$job/leader" >/dev/null
add_user weir-driver "$secrets/root/etcd-driver-password"
ctl user grant-role weir-driver weir-driver >/dev/null
add_user weir-executor "$secrets/root/etcd-executor-password"
ctl user grant-role weir-executor weir-executor >/dev/null
ctl auth enable
echo "etcd-users: authentication on; users weir-driver and weir-executor for job $job under $prefix"
