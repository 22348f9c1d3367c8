"""`tasks.waiting.wait_until`, the one poll loop: a fake clock, no sleeping."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from tasks.waiting import WaitTimeout, wait_until


class FakeClock:
    """`clock()` and `sleep(s)` for `wait_until`: sleeping moves the time on."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def answers(*values: Any) -> Callable[[], Any]:
    """A check giving `values` in turn (an exception instance is raised)."""
    it = iter(values)

    def check() -> Any:
        value = next(it)
        if isinstance(value, Exception):
            raise value
        return value

    return check


def run(check: Callable[[], Any], clock: FakeClock, **options: Any) -> Any:
    options.setdefault("poll_s", 2.0)
    options.setdefault("jitter", 0.0)
    return wait_until("the thing", check, clock=clock, sleep=clock.sleep, **options)


def test_returns_the_first_value_that_is_not_none_or_false() -> None:
    clock = FakeClock()
    assert run(answers(None, False, "ready"), clock, timeout_s=60) == "ready"
    assert clock.sleeps == [2.0, 2.0]


def test_empty_and_zero_values_are_results() -> None:
    clock = FakeClock()
    assert run(answers([]), clock, timeout_s=60) == []
    assert run(answers(0), clock, timeout_s=60) == 0
    assert clock.sleeps == []


def test_timeout_names_what_and_how_long_and_checks_once_at_the_deadline() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def never() -> None:
        calls.append(clock.now)
        return None

    with pytest.raises(WaitTimeout, match=r"^the thing: not done within 5s$"):
        run(never, clock, timeout_s=5)
    # polls at 0, 2, 4 and, cut short, at the deadline itself; never sleeps past it
    assert [c - 1000.0 for c in calls] == [0.0, 2.0, 4.0, 5.0]
    assert clock.sleeps == [2.0, 2.0, 1.0]


def test_an_absolute_deadline_is_shared_and_the_earlier_of_the_two_wins() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match="not done within 3s"):
        run(answers(*[None] * 10), clock, deadline=clock.now + 3)
    assert clock.now == pytest.approx(1003.0)
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        run(answers(*[None] * 10), clock, deadline=clock.now + 3, timeout_s=100)
    assert clock.now == pytest.approx(1003.0)


def test_a_deadline_already_past_still_checks_once() -> None:
    clock = FakeClock()
    assert run(answers("now"), clock, deadline=clock.now - 1) == "now"
    with pytest.raises(WaitTimeout, match="within 0s"):
        run(answers(None), clock, deadline=clock.now - 1)
    assert clock.sleeps == []


def test_backoff_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match="after 6 checks"):
        run(
            answers(*[None] * 6),
            clock,
            timeout_s=1000,
            poll_s=1.0,
            backoff=2.0,
            max_poll_s=5.0,
            max_checks=6,
        )
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_only_lengthens_the_poll_and_never_passes_the_deadline() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        run(
            answers(*[None] * 100),
            clock,
            timeout_s=30,
            poll_s=2.0,
            jitter=0.5,
            rng=random.Random(7),
        )
    *polls, last = clock.sleeps
    assert all(2.0 <= s <= 3.0 for s in polls)
    assert len(set(polls)) > 1  # not in step
    assert 0 <= last <= 3.0
    assert clock.now == pytest.approx(1030.0)


def test_other_exceptions_propagate_at_once() -> None:
    clock = FakeClock()
    with pytest.raises(KeyError):
        run(answers(None, KeyError("boom")), clock, timeout_s=60)
    assert clock.sleeps == [2.0]


class Unseen(Exception):
    pass


def test_retry_on_keeps_going_and_returns_once_it_works() -> None:
    clock = FakeClock()
    check = answers(Unseen("not yet"), Unseen("not yet"), {"ok": 1})
    assert run(check, clock, timeout_s=60, retry_on=lambda e: isinstance(e, Unseen)) == {"ok": 1}
    assert clock.sleeps == [2.0, 2.0]


def test_retry_on_gives_up_with_the_last_error_and_a_note() -> None:
    clock = FakeClock()
    last = Unseen("third")
    check = answers(Unseen("first"), Unseen("second"), last)
    with pytest.raises(Unseen) as info:
        run(check, clock, timeout_s=4, retry_on=lambda e: isinstance(e, Unseen))
    assert info.value is last
    assert info.value.__notes__ == ["the thing: still failing within 4s"]


def test_retry_on_leaves_other_errors_alone() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError):
        run(answers(ValueError("bad input")), clock, timeout_s=60, retry_on=lambda e: False)


def test_max_checks_bounds_the_calls() -> None:
    clock = FakeClock()
    calls = 0

    def count() -> None:
        nonlocal calls
        calls += 1
        return None

    with pytest.raises(WaitTimeout, match=r"the thing: not done after 3 checks"):
        run(count, clock, timeout_s=1000, max_checks=3)
    assert calls == 3


def test_no_deadline_waits_until_done() -> None:
    clock = FakeClock()
    assert run(answers(*[None] * 50, "exited"), clock, timeout_s=math.inf, poll_s=1.0) == "exited"
    assert len(clock.sleeps) == 50


@pytest.mark.parametrize(
    "options",
    [
        {},  # neither timeout_s nor deadline
        {"timeout_s": 1, "poll_s": -1},
        {"timeout_s": 1, "backoff": 0.5},
        {"timeout_s": 1, "jitter": -0.1},
        {"timeout_s": 1, "max_checks": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        run(answers("x"), FakeClock(), **options)


def test_wait_timeout_survives_pickling() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(WaitTimeout("the thing: not done within 5s")))
    assert str(exc) == "the thing: not done within 5s"
