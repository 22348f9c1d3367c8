"""The private Prefect names this project touches still exist with the shape it expects.

Prefect is pinned to one minor version (pyproject.toml); these are the names
docs/design/process-pool.md lists. When an upgrade changes one, this test says which,
and the adjustment that uses it turns itself off (tasks/runtime/prefect_adjustments.py)
rather than failing runs."""

from __future__ import annotations

import importlib
import inspect
import ssl
from importlib.metadata import version

import pytest

pytest.importorskip("prefect")


def test_prefect_is_the_pinned_minor() -> None:
    major, minor = version("prefect").split(".")[:2]
    assert (major, minor) == ("3", "9"), "update the pin and this list together"


def test_the_sync_flow_engine_sends_heartbeats_with_join_on_exit() -> None:
    from prefect import flow_engine

    fn = getattr(flow_engine, "_send_heartbeats", None)
    assert fn is not None
    fn = getattr(fn, "__wrapped__", fn)  # installed or not
    params = inspect.signature(fn).parameters
    assert list(params)[:1] == ["engine"] and "join_on_exit" in params


@pytest.mark.parametrize(
    "module", ["prefect.client.orchestration", "prefect._internal.version_checking"]
)
def test_client_modules_build_their_context_through_their_ssl_name(module: str) -> None:
    mod = importlib.import_module(module)
    current = getattr(mod, "ssl", None)
    assert current is ssl or type(current).__name__ == "_SharedDefaultContext"
    assert "create_default_context" in inspect.getsource(mod)


def test_the_runner_uses_only_public_task_runner_api() -> None:
    """ForkedWorkerTaskRunner subclasses ThreadPoolTaskRunner and overrides only public
    methods (and duplicate, which Prefect documents for task runners)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from tasks.forked_runner import ForkedWorkerTaskRunner

    overridden = {
        name
        for name, value in vars(ForkedWorkerTaskRunner).items()
        if callable(value) and hasattr(ThreadPoolTaskRunner, name)
    }
    assert overridden <= {"__init__", "__enter__", "__exit__", "duplicate"}, overridden
