#!/usr/bin/env bash
# Install the project into .venv (from nothing) and run lint, types and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e '.[dev]'
# gitlab-ci-local runs the pipeline's deploy job in tests/e2e/test_gitlab_ci.py (which
# installs it too, and is skipped without npm); 4.62.0 is the last one for Node 20
if command -v npm >/dev/null && [ ! -x .tools/node_modules/.bin/gitlab-ci-local ]; then
  npm install --silent --no-audit --no-fund --prefix .tools gitlab-ci-local@4.62.0 >/dev/null
fi
# gitlab-ci-local copies the checkout with rsync: install it where we may (root + apt)
if ! command -v rsync >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get install -y -q rsync || { apt-get update -q && apt-get install -y -q rsync; }; } \
    >/dev/null 2>&1 || echo "test.sh: rsync not installed; the GitLab CI job test will skip" >&2
fi
ruff check .
ruff format --check .
mypy
python -m pytest -q "$@"
