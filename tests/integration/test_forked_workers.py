"""tasks.forked_workers: plain functions in forked workers, lines back as they come, a
killed worker failing its call alone. Real processes (forkserver), no Prefect."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tasks.forked_workers import WorkerDied, WorkerError, WorkerPool

PRELOAD = ("tests.integration.forked_probe",)


def test_calls_return_results_and_stream_lines() -> None:
    from tests.integration.forked_probe import echo

    lines: list[tuple[int, str]] = []
    with WorkerPool(2, PRELOAD) as pool:
        assert len(pool.pids()) == 2 and os.getpid() not in pool.pids()
        out = pool.call(
            echo, {"value": 21, "lines": 3}, on_emit=lambda lv, t: lines.append((lv, t))
        )
        assert out["value"] == 42 and out["pid"] in pool.pids()
        assert lines == [(logging.INFO, f"line {i}") for i in range(3)]
        # a worker is reused: the same pids serve later calls
        pids = {pool.call(echo, {"value": 1, "lines": 0})["pid"] for _ in range(6)}
        assert pids <= set(pool.pids())


def test_an_exception_comes_back_as_worker_error() -> None:
    from tests.integration.forked_probe import fail

    with WorkerPool(1, PRELOAD) as pool:
        with pytest.raises(WorkerError, match=r"ValueError: bad input 7"):
            pool.call(fail, {"n": 7})
        before = pool.pids()
        assert pool.call(fail, {"n": 0}) == "ok"  # the worker survives and is reused
        assert pool.pids() == before


def test_a_killed_worker_fails_its_call_alone_and_is_replaced() -> None:
    from tests.integration.forked_probe import sleep_then

    with WorkerPool(3, PRELOAD) as pool:
        started: dict[str, int] = {}
        lock = threading.Lock()

        def on_emit(name: str) -> Any:
            def emit(_level: int, text: str) -> None:
                with lock:
                    started[name] = int(text.split()[-1])

            return emit

        def run(name: str, seconds: float) -> Any:
            return pool.call(sleep_then, {"seconds": seconds, "value": name}, on_emit(name))

        with ThreadPoolExecutor(3) as ex:
            futures = {n: ex.submit(run, n, 1.5) for n in ("a", "b", "c")}
            deadline = time.monotonic() + 10
            while "b" not in started and time.monotonic() < deadline:
                time.sleep(0.02)
            victim = started["b"]
            os.kill(victim, signal.SIGKILL)
            assert futures["a"].result(10) == "a" and futures["c"].result(10) == "c"
            with pytest.raises(
                WorkerDied, match=rf"worker pid {victim} was killed by signal SIGKILL"
            ):
                futures["b"].result(10)
        assert victim not in pool.pids() and len(pool.pids()) == 3
        assert run("d", 0.0) == "d"  # the replacement works
