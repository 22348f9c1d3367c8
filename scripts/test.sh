#!/usr/bin/env bash
# Install the project into .venv (from nothing) and run lint, types and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e '.[dev]'
ruff check .
ruff format --check .
mypy
python -m pytest -q "$@"
