#!/usr/bin/env bash
# The main job, the way users run it: install the project into .venv, then start a local
# Prefect server (SQLite) and the sandbox, register the blocks, apply the deployments of
# prefect.yaml, start a worker, run `prefect deployment run deploy/full` and follow it to
# the end, print the UI / flow run / ALB URLs, and keep everything up until Ctrl-C.
#
#   ./scripts/run.sh [--instances N] [--no-run] [--detach]   # see: tomcat-fleet local up -h
#   ./scripts/run.sh stop                                    # from another shell
#   ./scripts/run.sh status
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
case "${1:-up}" in
  stop|status)
    [ -x .venv/bin/python ] || { echo "local: nothing running (no .venv)"; exit 0; }
    exec .venv/bin/python -m flows local "$@" ;;
esac
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e '.[sandbox,bench]'
[ "${1:-}" = "up" ] && shift
exec tomcat-fleet local up "$@"
