#!/bin/sh
# A Weir container's health check (the image's HEALTHCHECK): asks the process running as pid 1
# through its own `health` sub-command, so the image needs no curl.
#   weir-driver:   `weir-driver health` asks /readyz at $WEIR_DRIVER_HTTP [127.0.0.1:7071]
#                  (ready when it leads, or stands by behind a leader)
#   weir-executor: `weir-executor health` asks /readyz at $WEIR_EXECUTOR_HTTP_LISTEN, the address
#                  its --http-listen takes from the same variable (ready when attached)
# Any other command (a one-shot, weirctl, the demo producer) counts as healthy while it runs.
# `--live` as first argument only checks that the process answers.
set -eu
cmd="$(tr '\0' ' ' </proc/1/cmdline)"
case "$cmd" in
  *weir-driver\ *health*|*weir-executor\ *health*) exit 0 ;;
  *weir-driver*) exec weir-driver health "$@" ;;
  *weir-executor*) exec weir-executor health "$@" ;;
  *) exit 0 ;;
esac
