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
if [ $# -gt 0 ]; then  # what you name, in one run
  exec python -m pytest -q "$@"
fi
# The end-to-end tests (their own servers, sandboxes and workers, across processes) mostly
# wait on them: they run beside the other tests, each run on its own Prefect server and
# half of the sandboxes' loopback pool, and print once both have ended.
e2e_log=$(mktemp)
TESTS_LOOPBACK_SLICE=1 python -m pytest -q -p no:cacheprovider tests/e2e >"$e2e_log" 2>&1 &
e2e=$!
rc=0
TESTS_LOOPBACK_SLICE=0 python -m pytest -q tests/unit tests/integration || rc=$?
e2e_rc=0
wait "$e2e" || e2e_rc=$?
echo "---- tests/e2e (run beside the tests above): exit $e2e_rc ----"
cat "$e2e_log"
rm -f "$e2e_log"
[ "$rc" -eq 0 ] && exit "$e2e_rc"
exit "$rc"
