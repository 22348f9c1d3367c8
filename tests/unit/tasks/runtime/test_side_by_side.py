"""`side_by_side`: the CLI starts the Prefect server and the sandbox at once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from tasks.runtime.cli_support import side_by_side


def test_both_start_at_once_and_exit_second_then_first() -> None:
    events: list[str] = []

    @contextlib.contextmanager
    def slow(name: str) -> Iterator[str]:
        time.sleep(0.3)
        events.append(f"up {name}")
        yield name
        events.append(f"down {name}")

    t0 = time.monotonic()
    with side_by_side(slow("server"), slow("sandbox")) as (a, b):
        assert (a, b) == ("server", "sandbox")
        assert time.monotonic() - t0 < 0.55  # overlapped, not 0.6 s in a row
    assert events[-2:] == ["down sandbox", "down server"]


def test_a_failed_first_is_raised_after_the_second_is_left() -> None:
    left: list[str] = []

    @contextlib.contextmanager
    def broken() -> Iterator[None]:
        raise RuntimeError("server would not start")
        yield

    @contextlib.contextmanager
    def ok() -> Iterator[int]:
        try:
            yield 1
        finally:
            left.append("sandbox")

    with pytest.raises(RuntimeError, match="would not start"), side_by_side(broken(), ok()):
        pass
    assert left == ["sandbox"]
