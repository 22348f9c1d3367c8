#!/usr/bin/env bash
# Install the project into .venv and run the main job end to end on an embedded sandbox:
# launch instances through the EC2 API, then the `install-tomcat` flow on a process pool
# (a local Prefect server is started for the run unless PREFECT_API_URL is set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e .
exec python -m flows.install_tomcat --sandbox --instances "${INSTANCES:-100}" \
    --install-latency "${INSTALL_LATENCY:-1}" "$@"
