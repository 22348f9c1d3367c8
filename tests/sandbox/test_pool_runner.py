"""PreloadedProcessPoolTaskRunner: forkserver workers with preloaded modules, warm-up ahead
of the run, Prefect's context, logs and results across the process boundary (the session's
Prefect server from conftest; the install flow end to end is in test_install_flow.py)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import sys
import time
import uuid
from typing import Any

PRELOAD = ("paramiko", "tasks.install_chunk")
_AT_START: dict[str, Any] = {}


def record_worker_start() -> None:
    """The worker initialiser: what is already imported when the worker starts."""
    _AT_START["preloaded"] = sorted(m for m in PRELOAD if m in sys.modules)
    _AT_START["prefect_engine"] = "prefect.task_engine" in sys.modules
    _AT_START["process_class"] = type(multiprocessing.current_process()).__name__
    _AT_START["frozen"] = gc.get_freeze_count() > 0  # the fork server froze its heap


def test_warm_pool_runs_a_flow_with_logs_and_results() -> None:
    from prefect import flow, get_run_logger, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.context import get_run_context
    from prefect.logging.handlers import APILogHandler

    from tasks.pool_runner import PreloadedProcessPoolTaskRunner

    marker = f"pool-runner-{uuid.uuid4().hex[:8]}"

    @task
    def probe(i: int) -> dict[str, Any]:
        get_run_logger().warning("%s from task %d", marker, i)  # conftest: WARNING and up
        # this task is pickled by value; the initialiser ran in the real module
        at_start = sys.modules[record_worker_start.__module__]._AT_START
        return {"pid": os.getpid(), "i": i, **at_start}

    @flow
    def probe_flow(n: int) -> tuple[str, list[dict[str, Any]]]:
        futures = [probe.submit(i) for i in range(n)]
        return str(get_run_context().flow_run.id), [f.result() for f in futures]  # type: ignore[union-attr]

    def make() -> PreloadedProcessPoolTaskRunner:
        return PreloadedProcessPoolTaskRunner(
            max_workers=2, preload=PRELOAD, initializer=record_worker_start
        )

    warm = make().warm_up()
    try:
        warm_pids = warm.wait_warm(timeout=120)
        assert len(set(warm_pids)) == 2  # every worker started and initialised
        run_id, results = probe_flow.with_options(task_runner=make())(4)  # type: ignore[arg-type]
    finally:
        warm.shutdown()

    assert sorted(r["i"] for r in results) == [0, 1, 2, 3]
    assert {r["pid"] for r in results} <= set(warm_pids)  # the warm pool was adopted
    for r in results:
        assert r["process_class"] == "ForkServerProcess"
        assert r["preloaded"] == sorted(PRELOAD)  # imported before the worker started
        assert r["prefect_engine"] and r["frozen"]

    APILogHandler().flush()
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)]))
            )
            found = sorted(log.message for log in logs if marker in log.message)
            if len(found) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert found == [f"{marker} from task {i}" for i in range(4)]


def test_runner_pickles_without_its_pool_and_duplicates_its_config() -> None:
    from tasks.pool_runner import PreloadedProcessPoolTaskRunner

    runner = PreloadedProcessPoolTaskRunner(max_workers=3, preload=PRELOAD)
    dup = runner.duplicate()
    assert dup == runner and dup is not runner
    assert dup._preload == runner._preload and dup._start_method == "forkserver"
    with runner:  # entered but unused: no pool is started (Prefect enters one per task)
        assert runner._executor is None
        clone = pickle.loads(pickle.dumps(runner))
    assert clone == runner and clone._executor is None and not clone._started
    assert PreloadedProcessPoolTaskRunner(max_workers=2) != runner


def test_settings_are_shipped_only_when_the_workers_lack_them() -> None:
    """Warm workers report their settings; a task run whose caller runs with the same
    settings uses the worker's own (no `Settings` rebuilt per task run), one whose caller
    changed them gets the caller's."""
    from prefect import flow, task
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
    from prefect.settings.context import get_current_settings

    from tasks.pool_runner import PreloadedProcessPoolTaskRunner

    @task
    def probe() -> tuple[bool, int]:
        # imported here: names from the test's scope would be pickled by value
        from prefect import context
        from prefect.settings.context import get_current_settings

        process_wide = context.SettingsContext.get() is context.GLOBAL_SETTINGS_CONTEXT
        return process_wide, get_current_settings().client.max_retries

    @flow
    def probe_flow() -> tuple[tuple[bool, int], tuple[bool, int]]:
        same = probe.submit().result()
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 7}):
            changed = probe.submit().result()
        return same, changed

    def make() -> PreloadedProcessPoolTaskRunner:
        return PreloadedProcessPoolTaskRunner(max_workers=1, preload=PRELOAD)

    default = get_current_settings().client.max_retries
    warm = make().warm_up()
    try:
        warm.wait_warm(timeout=120)
        same, changed = probe_flow.with_options(task_runner=make())()  # type: ignore[arg-type]
    finally:
        warm.shutdown()
    assert same == (True, default)
    assert changed == (False, 7)
