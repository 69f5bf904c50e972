#!/bin/sh
# The container's start step (Dockerfile ENTRYPOINT). tests/deploy/test_container.py runs this
# same script against a real server process.
#
# Configuration is by environment: every `specguard serve` option has a SPECGUARD_* variable
# (`specguard serve --help` lists them; flags given as arguments win). In a container the server
# listens on 0.0.0.0:8000 unless SPECGUARD_HOST / SPECGUARD_PORT say otherwise.
#
#   docker-entrypoint.sh                 -> specguard serve
#   docker-entrypoint.sh --workers 2     -> specguard serve --workers 2
#   docker-entrypoint.sh admin users     -> specguard admin users (any other command)
#
# `exec`: the server is the container's main process, so `docker stop`'s SIGTERM reaches it:
# it stops taking connections, finishes requests and streams in flight (up to
# SPECGUARD_SHUTDOWN_GRACE_S, 30 s by default) and exits.
set -eu
: "${SPECGUARD_HOST:=0.0.0.0}"
: "${SPECGUARD_PORT:=8000}"
export SPECGUARD_HOST SPECGUARD_PORT
bin="${SPECGUARD_BIN:-specguard}"
case "${1:-}" in
    ""|-*) exec "$bin" serve "$@" ;;
    *) exec "$bin" "$@" ;;
esac
