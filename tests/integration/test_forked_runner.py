"""ForkedWorkerTaskRunner: task runs driven by Prefect here, their work in forked workers
without Prefect; the work's lines reach the task run's log, its value the task's result;
warm workers are adopted; a worker SIGKILLed mid-task fails that task run alone (the
session's Prefect server from conftest)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from typing import Any

from tests.integration import forked_probe

PRELOAD = ("tests.integration.forked_probe", "tasks.forked_freeze")


def _logs(run_id: str, marker: str, want: int) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)]))
            )
            found = sorted(log.message for log in logs if marker in log.message)
            if len(found) >= want or time.monotonic() > deadline:
                return found


def test_work_runs_in_warm_workers_without_prefect() -> None:
    from prefect import flow, get_run_logger, task
    from prefect.context import get_run_context

    from tasks.forked_runner import ForkedWorkerTaskRunner, in_worker

    marker = f"forked-{uuid.uuid4().hex[:8]}"

    @task
    def probe(i: int) -> dict[str, Any]:
        log = get_run_logger()
        out: dict[str, Any] = in_worker(
            forked_probe.report, {"i": i, "marker": marker}, lambda lv, t: log.warning("%s", t)
        )
        return {**out, "task_pid": os.getpid()}

    @flow
    def probe_flow(n: int) -> tuple[str, list[dict[str, Any]]]:
        futures = [probe.submit(i) for i in range(n)]
        return str(get_run_context().flow_run.id), [f.result() for f in futures]  # type: ignore[union-attr]

    warm = ForkedWorkerTaskRunner(2, PRELOAD).warm_up()
    try:
        run_id, results = probe_flow.with_options(task_runner=ForkedWorkerTaskRunner(2, PRELOAD))(4)
    finally:
        warm.shutdown()  # a no-op: the run adopted and closed them
    assert sorted(r["i"] for r in results) == [0, 1, 2, 3]
    assert all(r["task_pid"] == os.getpid() for r in results)  # Prefect's engine: here
    workers = {r["pid"] for r in results}
    assert len(workers) <= 2 and os.getpid() not in workers
    for r in results:
        assert not r["prefect_imported"] and r["frozen"]  # no Prefect in a worker
        assert r["preloaded"]  # imported by the fork server, before the worker started
    assert _logs(run_id, marker, 4) == [f"{marker} from work {i}" for i in range(4)]


def test_a_killed_worker_fails_its_task_run_alone() -> None:
    from prefect import flow, get_run_logger, task
    from prefect.futures import wait

    from tasks.forked_runner import ForkedWorkerTaskRunner, in_worker

    seen: dict[str, int] = {}
    ready = threading.Event()

    @task(retries=0)
    def slow(name: str) -> str:
        log = get_run_logger()

        def emit(level: int, text: str) -> None:
            seen[name] = int(text.split()[-1])
            if len(seen) == 3:
                ready.set()
            log.info("%s", text)

        out: str = in_worker(forked_probe.sleep_then, {"seconds": 2.0, "value": name}, emit)
        return out

    @flow
    def three() -> dict[str, str]:
        futures = {n: slow.submit(n) for n in ("a", "b", "c")}
        assert ready.wait(30)
        os.kill(seen["b"], signal.SIGKILL)
        wait(list(futures.values()))
        return {n: f.state.type.value for n, f in futures.items()}

    states = three.with_options(task_runner=ForkedWorkerTaskRunner(3, PRELOAD))()
    assert states == {"a": "COMPLETED", "b": "FAILED", "c": "COMPLETED"}, states
    assert "prefect" not in sys.modules["tests.integration.forked_probe"].__dict__
