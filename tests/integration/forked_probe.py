"""Functions the forked-worker tests run in workers (importable by name)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any


def echo(value: int, lines: int, emit: Callable[[int, str], None]) -> dict[str, Any]:
    for i in range(lines):
        emit(logging.INFO, f"line {i}")
    return {"value": value * 2, "pid": os.getpid()}


def fail(n: int, emit: Callable[[int, str], None]) -> str:
    if n:
        raise ValueError(f"bad input {n}")
    return "ok"


def sleep_then(seconds: float, value: str, emit: Callable[[int, str], None]) -> str:
    emit(logging.INFO, f"started in {os.getpid()}")
    time.sleep(seconds)
    return value


def report(i: int, marker: str, emit: Callable[[int, str], None]) -> dict[str, Any]:
    """What a worker holds: its pid, whether Prefect is imported, the frozen heap."""
    import gc
    import sys

    emit(logging.WARNING, f"{marker} from work {i}")
    return {
        "i": i,
        "pid": os.getpid(),
        "prefect_imported": any(m == "prefect" or m.startswith("prefect.") for m in sys.modules),
        "frozen": gc.get_freeze_count() > 0,
        "preloaded": "tests.integration.forked_probe" in sys.modules,
    }
