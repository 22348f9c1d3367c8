#!/usr/bin/env bash
# Install the project into .venv and run the main job end to end on an embedded sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e .
python -m benchmarks.sandbox_scale --instances "${INSTANCES:-100}" --install-latency 0.5 "$@"
