"""Jittered exponential back-off for AWS's transient errors (no I/O but `sleep` and logging).

`call_with_backoff` / `with_backoff` retry what `is_retryable` says is transient: throttling
(`THROTTLING_CODES`), AWS server errors (`SERVER_ERROR_CODES`, any HTTP 5xx answer) and
dropped or timed-out connections (`CONNECTION_ERRORS`); every other exception (e.g.
``InvalidAMIID.NotFound``) propagates unchanged on the first call. Clients should be built
with `botocore_config()`, which turns botocore's own retries off, so this module is the
only retry layer and the two never multiply. Every retry says so in one line
(`tasks.actions.retried`: the call, the error code, the delay), in the log of the stage it
runs for.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from tasks import actions
from tasks.backoff import backoff_delay
from tasks.errors import FleetError

T = TypeVar("T")
P = ParamSpec("P")

THROTTLING_CODES: frozenset[str] = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
    }
)

# AWS server-side errors: the request may succeed when repeated
SERVER_ERROR_CODES: frozenset[str] = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "EC2InternalError",
    }
)

# the connection dropped, was refused or timed out (botocore's ConnectionError covers
# EndpointConnectionError, ConnectTimeoutError and ProxyConnectionError)
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    EndpointConnectionError,
    ConnectionClosedError,
    ReadTimeoutError,
)

_MAX_EXPONENT = 64  # 2**64 s is far beyond any cap; avoids float overflow for huge attempts
_RNG = random.Random()


def _response(exc: BaseException) -> dict[str, Any]:
    return dict(exc.response or {}) if isinstance(exc, ClientError) else {}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore `ClientError` (``response["Error"]["Code"]``), else None."""
    code = _response(exc).get("Error", {}).get("Code")
    return str(code) if code else None


def is_throttle(exc: BaseException) -> bool:
    """True when `exc` is a ClientError whose code is a throttling code."""
    return error_code(exc) in THROTTLING_CODES


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore `ClientError`'s response, else None."""
    status = _response(exc).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def is_retryable(exc: BaseException) -> bool:
    """True for transient errors: throttling, AWS 5xx (by code or HTTP status) and dropped or
    timed-out connections. Other client errors (4xx: bad input, not found, ...) are False."""
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    if is_throttle(exc) or error_code(exc) in SERVER_ERROR_CODES:
        return True
    status = http_status(exc)
    return status is not None and status >= 500


def worst_case_attempts(retries: int, task_retries: int) -> int:
    """The most requests one logical AWS call can make within one deploy run.

    Our layer makes at most ``retries + 1`` requests per call (botocore's own retries are
    off, see `botocore_config`). A failed call fails its stage task, and Prefect re-runs the
    whole task up to ``task_retries`` more times, making the same call again each time. So
    the bound is ``(retries + 1) * (task_retries + 1)``. With the defaults (``aws_retries``
    8; the deploy flow's stage tasks have ``retries=1``, `tasks.deploy.dag.TASK_RETRIES`)
    that is 9 * 2 = 18 requests. A waiter or paginator page counts as one call: each
    poll/page request gets its own ``retries + 1``.
    """
    if retries < 0 or task_retries < 0:
        raise ValueError(f"retries={retries}, task_retries={task_retries} must be >= 0")
    return (retries + 1) * (task_retries + 1)


def worst_case_sleep_s(retries: int, *, base: float, cap: float, jitter: float = 1.0) -> float:
    """The longest our layer can sleep for one call: the sum of the largest possible
    `backoff_delay` of every retry."""
    return sum(min(cap, base * 2.0 ** min(n, _MAX_EXPONENT)) + jitter for n in range(retries))


@dataclass
class RetryStats:
    """Thread-safe retry counters; one per chunk, merged into the flow's totals.

    Picklable (the lock is dropped and recreated), so it can cross process boundaries.
    """

    retries: int = 0
    slept_s: float = 0.0
    by_code: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def record(self, code: str | None, delay: float) -> None:
        """Count one retry caused by `code` that slept `delay` seconds."""
        with self._lock:
            self.retries += 1
            self.slept_s += delay
            self.by_code[code or "unknown"] += 1

    def merge(self, other: RetryStats) -> None:
        """Add `other`'s counts into this one."""
        with other._lock:
            retries, slept, codes = other.retries, other.slept_s, Counter(other.by_code)
        with self._lock:
            self.retries += retries
            self.slept_s += slept
            self.by_code.update(codes)

    def as_dict(self) -> dict[str, Any]:
        """Plain snapshot: ``{"retries": int, "slept_s": float, "by_code": {code: n}}``."""
        with self._lock:
            return {
                "retries": self.retries,
                "slept_s": self.slept_s,
                "by_code": dict(sorted(self.by_code.items())),
            }

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = dict(self.__dict__)
        del state["_lock"]
        state["by_code"] = Counter(state["by_code"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class RetriesExhausted(FleetError, RuntimeError):
    """A retryable call still failed after every allowed retry; raised ``from`` the last error."""

    def __init__(self, operation: str, attempts: int, last_error: BaseException) -> None:
        code = error_code(last_error) or type(last_error).__name__
        super().__init__(
            f"{operation} failed after {attempts} attempts, every one retryable (last error "
            f"{code}: {last_error}); lower the concurrency (desired_count / max_workers) "
            "or raise retries"
        )
        self.operation = operation
        self.attempts = attempts
        self.last_error = last_error

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.attempts, self.last_error))


def _operation_name(fn: Callable[..., Any]) -> str:
    """``Class.method`` or ``function``; boto3 client methods give their API name
    (``describe_instances``), not their generated ``<locals>`` qualname."""
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str) and "<locals>" not in qualname:
        return qualname
    return str(getattr(fn, "__name__", None) or repr(fn))


def _retry_loop(
    call: Callable[[], T],
    operation: str,
    *,
    retries: int,
    base: float,
    cap: float,
    jitter: float,
    sleep: Callable[[float], Any],
    rng: random.Random | None,
    stats: RetryStats | None,
    retry_if: Callable[[BaseException], bool],
) -> T:
    if retries < 0:
        raise ValueError(f"retries={retries} must be >= 0")
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if not retry_if(exc):
                raise
            last = exc
            if attempt == retries:
                break
            delay = backoff_delay(attempt, base=base, cap=cap, jitter=jitter, rng=rng)
            code = error_code(exc) or type(exc).__name__
            if stats is not None:
                stats.record(code, delay)
            actions.retried(
                operation, code, delay, attempt + 1, retries, throttled=is_throttle(exc)
            )
            sleep(delay)
    assert last is not None
    raise RetriesExhausted(operation, retries + 1, last) from last


def call_with_backoff(
    fn: Callable[..., T],
    *args: Any,
    retries: int = 8,
    base: float = 1.0,
    cap: float = 20.0,
    jitter: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
    rng: random.Random | None = None,
    stats: RetryStats | None = None,
    retry_if: Callable[[BaseException], bool] = is_retryable,
    operation: str | None = None,
    **kwargs: Any,
) -> T:
    """Call ``fn(*args, **kwargs)``, retrying with jittered back-off while `retry_if` says so.

    At most `retries` retries (``retries + 1`` calls); retry *n* (0-based) sleeps
    ``backoff_delay(n)`` via `sleep`. Exceptions for which `retry_if` is False propagate
    unchanged at once. When the last retry also fails, `RetriesExhausted` is raised from
    that error. `operation` names the call in retry lines and errors (default: `fn`'s
    name). Keyword arguments named like the options above are consumed here, not passed
    to `fn` (use `with_backoff` or a lambda if `fn` needs such a name).
    """
    return _retry_loop(
        lambda: fn(*args, **kwargs),
        operation or _operation_name(fn),
        retries=retries,
        base=base,
        cap=cap,
        jitter=jitter,
        sleep=sleep,
        rng=rng,
        stats=stats,
        retry_if=retry_if,
    )


def with_backoff(
    *,
    retries: int = 8,
    base: float = 1.0,
    cap: float = 20.0,
    jitter: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
    rng: random.Random | None = None,
    stats: RetryStats | None = None,
    retry_if: Callable[[BaseException], bool] = is_retryable,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of `call_with_backoff` with the same options (all keyword-only)."""
    if retries < 0:
        raise ValueError(f"retries={retries} must be >= 0")

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        operation = _operation_name(fn)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return _retry_loop(
                lambda: fn(*args, **kwargs),
                operation,
                retries=retries,
                base=base,
                cap=cap,
                jitter=jitter,
                sleep=sleep,
                rng=rng,
                stats=stats,
                retry_if=retry_if,
            )

        return wrapper

    return decorate


def botocore_config(
    *,
    max_pool_connections: int = 50,
    connect_timeout: float = 10,
    read_timeout: float = 60,
) -> Config:
    """A botocore `Config` with botocore's own retries turned off.

    ``retries={"mode": "standard", "total_max_attempts": 1}`` makes every API call a single
    attempt, so a throttling error reaches `call_with_backoff` at once: this module's back-off
    is the only retry layer, and the two layers never multiply (botocore's default of 3-5
    attempts times our 9 calls would be up to 45 requests per logical call against an API
    that is already throttling). `max_pool_connections` should be at least the number of
    threads sharing one client (`max_workers`).
    """
    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
