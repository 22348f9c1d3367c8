"""Waiting one way: `wait_until`, the project's one poll loop (no I/O but `sleep` and its log line).

Every wait in the product is either a boto3 waiter run through the retrying client
(`tasks.aws.client.RetryingClient.wait`; the project's own waiter models are in
`tasks.aws.waiters`) or this helper: a condition spanning several calls, a value to
return, a retry until something is visible, a back-off while a dependency goes away.

`wait_until` calls `check()` until it returns a value other than None or False, sleeping
`poll_s` (times `backoff` per check, capped at `max_poll_s`, plus up to `jitter` of it
at random so callers do not poll in step) between checks, never past the deadline: the
last check is made at the deadline. It gives up with `WaitTimeout`, naming what was
waited for and for how long. Exceptions `retry_on` accepts count as "not yet"; when the
wait gives up on one, that exception is raised again (its error code is what callers
report), with a note saying what was waited for.

Every wait reports itself: one line (`tasks.actions.waited`: what, how long, how it ended)
when it returns or gives up, in the log of the stage it runs for.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tasks import actions
from tasks.errors import FleetError

T = TypeVar("T")

_RNG = random.Random()


class WaitTimeout(FleetError, RuntimeError):
    """A wait did not reach its state within its deadline (a boto3 waiter also raises it
    when it reaches a failure state; the message says which)."""


def _budget(seconds: float) -> str:
    return "no deadline" if math.isinf(seconds) else f"{seconds:.0f}s"


def _error_name(exc: BaseException) -> str:
    """An AWS error's code (a botocore ClientError's), else the exception's type."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code or type(exc).__name__)


def wait_until(
    what: str,
    check: Callable[[], T | None],
    *,
    poll_s: float,
    timeout_s: float | None = None,
    deadline: float | None = None,
    jitter: float = 0.1,
    backoff: float = 1.0,
    max_poll_s: float | None = None,
    max_checks: int | None = None,
    retry_on: Callable[[Exception], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """The first value of `check()` that is neither None nor False (so an empty list or 0
    is a result), checked until `deadline` (a `clock()` time) or for `timeout_s`
    (one of the two; both: the earlier), at most `max_checks` times.

    Between checks it sleeps ``min(max_poll_s, poll_s * backoff**n) * (1 + U(0, jitter))``
    (n = checks made - 1), cut short at the deadline. Raises `WaitTimeout`
    (``"<what>: not done within <N>s"`` or ``"... after <k> checks"``), or the last
    exception `retry_on` accepted when the wait ends on one."""
    if timeout_s is None and deadline is None:
        raise ValueError(f"{what}: give timeout_s or deadline")
    if poll_s < 0 or jitter < 0 or backoff < 1.0 or (max_checks is not None and max_checks < 1):
        raise ValueError(
            f"{what}: poll_s={poll_s}, jitter={jitter} must be >= 0, backoff={backoff} >= 1, "
            f"max_checks={max_checks} >= 1"
        )
    start = clock()
    end = min(
        math.inf if deadline is None else deadline,
        math.inf if timeout_s is None else start + timeout_s,
    )
    budget = timeout_s if timeout_s is not None else max(0.0, end - start)
    r = rng if rng is not None else _RNG
    checks = 0

    def report(outcome: str, ok: bool = False) -> None:
        actions.waited(what, clock() - start, outcome, ok)

    while True:
        failure: Exception | None = None
        try:
            value = check()
        except Exception as exc:
            if retry_on is None or not retry_on(exc):
                report(f"stopped by {_error_name(exc)} after {checks + 1} check(s)")
                raise
            failure, value = exc, None
        checks += 1
        if value is not None and value is not False:
            report(f"done after {checks} check(s)", ok=True)
            return value
        remaining = end - clock()
        out_of_checks = max_checks is not None and checks >= max_checks
        if remaining <= 0 or out_of_checks:
            why = f"after {checks} checks" if out_of_checks else f"within {_budget(budget)}"
            if failure is not None:
                report(f"still failing ({_error_name(failure)}) {why}")
                failure.add_note(f"{what}: still failing {why}")
                raise failure
            report(f"not done {why}")
            raise WaitTimeout(f"{what}: not done {why}")
        delay = poll_s * backoff ** min(checks - 1, 64)
        if max_poll_s is not None:
            delay = min(delay, max_poll_s)
        sleep(min(delay * (1.0 + r.uniform(0.0, jitter)), remaining))
