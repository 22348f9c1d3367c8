"""The test session's one Prefect server (started before any test module imports Prefect,
so every process, thread and pool worker reports to it; none starts a temporary server of
its own), and the folder markers. The server is started only when the run may collect a
test outside tests/unit: `pytest tests/unit` needs no server and no network. Helpers for
integration tests (`make_sandbox`, `client`, `ssh`, ...) live in tests/support.py."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

_prefect: contextlib.AbstractContextManager[Any] | None = None
_HERE = Path(__file__).resolve().parent
_UNIT = _HERE / "unit"
KINDS = ("unit", "integration", "e2e")  # one folder and one marker each


def _only_unit(config: pytest.Config) -> bool:
    """True when every path this run collects from is inside tests/unit."""
    paths = [Path(str(a).split("::", 1)[0]) for a in config.args]
    root = Path(str(config.invocation_params.dir))
    return bool(paths) and all(
        (p if p.is_absolute() else root / p).resolve().is_relative_to(_UNIT) for p in paths
    )


def pytest_configure(config: pytest.Config) -> None:
    global _prefect
    from tasks.runtime.prefect_api import prefect_api  # imports no Prefect

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if _only_unit(config):
        # no server: a unit test reaching for the Prefect API fails instead of starting one
        os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
        return
    _prefect = prefect_api()
    _prefect.__enter__()


def pytest_unconfigure(config: pytest.Config) -> None:
    import sys

    if "prefect.logging.handlers" in sys.modules:  # send buffered logs while the API is up
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    if _prefect is not None:
        _prefect.__exit__(None, None, None)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its folder's kind: `-m unit`, `-m 'not e2e'`, ..."""
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(_HERE).parts
        if rel and rel[0] in KINDS:
            item.add_marker(rel[0])


@pytest.fixture
def tmp_env_file(tmp_path: Any) -> str:
    return str(tmp_path / "sandbox.env")
