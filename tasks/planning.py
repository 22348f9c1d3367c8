"""Chunking and process-pool planning for the install stage.

Hosts are split into chunks of `chunk_size`; each chunk is one task on a pool of
`desired_count` processes, and inside a chunk `max_workers` threads handle one host each.
The old system wrote a plan as "processes/pooled", e.g. "250/50": 250 chunks, of which
200 start at once (the initial batch) and 50 wait in the pool.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from tasks.errors import FleetError

T = TypeVar("T")

MAX_THREADS_PER_CHUNK = 256
"""Upper bound on `max_workers` (and hence `chunk_size`) chosen by `default_shape`."""

FailureKind = Literal["count", "percent"]


class PlanError(FleetError, ValueError):
    """An unusable pool parameter; `field` names the parameter, the message names the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, str(self)))


def _require_int(name: str, value: object, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(name, f"{name}={value!r} is not a whole number; {fix}")
    if value < minimum:
        raise PlanError(name, f"{name}={value} must be at least {minimum}; {fix}")
    return value


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """Split `items` into consecutive lists of `size` (the last may be shorter), order kept."""
    _require_int("chunk_size", size, 1, "use chunk_size >= 1 (hosts per chunk)")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class PoolPlan:
    """The validated shape of one install run (build it with `plan_pool`)."""

    hosts: int
    chunk_size: int
    max_workers: int
    desired_count: int
    total_chunks: int
    initial_batch: int
    pooled: int
    pooled_batches: int
    warnings: tuple[str, ...] = ()

    @property
    def notation(self) -> str:
        """The old system's "processes/pooled" shorthand, e.g. "250/50"."""
        return f"{self.total_chunks}/{self.pooled}"

    def log_lines(self) -> list[str]:
        """The orchestration log lines (warnings are not included: log them as warnings)."""
        return [
            f"hosts={self.hosts}, chunk_size={self.chunk_size}, "
            f"max_workers={self.max_workers}, desired_count={self.desired_count} "
            f"({self.notation})",
            f"Total chunks: {self.total_chunks}",
            f"Initial batch (desired_count): {self.initial_batch}",
            f"Remaining chunks pooled: {self.pooled}",
            f"Pooled batches: {self.pooled_batches}",
        ]


def plan_pool(hosts: int, chunk_size: int, max_workers: int, desired_count: int) -> PoolPlan:
    """Validate the pool parameters and work out chunks, initial batch and pooled chunks.

    Raises `PlanError` for a parameter below 1 or `desired_count` above the number of
    chunks. `max_workers` below `chunk_size` is raised to `chunk_size` with a warning.
    """
    _require_int("hosts", hosts, 1, "launch at least one instance")
    _require_int("chunk_size", chunk_size, 1, "use chunk_size >= 1 (hosts per chunk)")
    _require_int(
        "max_workers", max_workers, 1, "use max_workers >= chunk_size (one thread per host)"
    )
    _require_int(
        "desired_count", desired_count, 1, "use desired_count >= 1 (processes, about the cores)"
    )
    total_chunks = math.ceil(hosts / chunk_size)
    if desired_count > total_chunks:
        raise PlanError(
            "desired_count",
            f"desired_count={desired_count} is larger than the number of chunks "
            f"({total_chunks} for {hosts} hosts at chunk_size={chunk_size}); "
            "lower desired_count or chunk_size",
        )
    warnings: list[str] = []
    if max_workers < chunk_size:
        warnings.append(
            f"max_workers={max_workers} < chunk_size={chunk_size}: raised to {chunk_size}; "
            "fewer threads than hosts in a chunk serialises the chunk (the old system "
            "measured chunk 24 / 6 threads at 14:45 vs 6:25)"
        )
        max_workers = chunk_size
    initial_batch = min(desired_count, total_chunks)
    pooled = total_chunks - initial_batch
    return PoolPlan(
        hosts=hosts,
        chunk_size=chunk_size,
        max_workers=max_workers,
        desired_count=desired_count,
        total_chunks=total_chunks,
        initial_batch=initial_batch,
        pooled=pooled,
        pooled_batches=math.ceil(pooled / desired_count),
        warnings=tuple(warnings),
    )


def default_shape(hosts: int, cores: int) -> tuple[int, int, int]:
    """A default ``(chunk_size, max_workers, desired_count)``: processes ≈ cores, wide threads.

    - ``desired_count = min(cores, hosts)`` processes and one chunk per process, so every
      chunk starts at once (``chunk_size = ceil(hosts / desired_count)``).
    - Ceil rounding can leave fewer chunks than processes (10 hosts on 6 cores: chunks of
      2 give 5 chunks); `desired_count` is then lowered to the chunk count, so the plan
      stays a single wave and `plan_pool` accepts it. Splitting smaller instead would need
      a second wave of chunks and double the wall time.
    - ``max_workers = chunk_size`` (one thread per host), capped at `MAX_THREADS_PER_CHUNK`
      (256). If one wave would need bigger chunks, the hosts are spread over the fewest
      equal waves of `desired_count` chunks that keep ``chunk_size <= 256``; the extra
      chunks are pooled.

    The result always satisfies `plan_pool` without warnings.
    """
    _require_int("hosts", hosts, 1, "launch at least one instance")
    _require_int("cores", cores, 1, "pass the number of CPU cores (>= 1)")
    desired_count = max(1, min(cores, hosts))
    waves = math.ceil(math.ceil(hosts / desired_count) / MAX_THREADS_PER_CHUNK)
    chunk_size = math.ceil(hosts / (desired_count * waves))
    total_chunks = math.ceil(hosts / chunk_size)
    desired_count = min(desired_count, total_chunks)
    return chunk_size, chunk_size, desired_count


_COUNT_RE = re.compile(r"\d+")
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%")


def parse_allow_failures(spec: str | int) -> tuple[FailureKind, float]:
    """Parse an allowed-failures spec like SSM's MaxErrors: ``5``, ``"5"`` or ``"10%"``.

    Returns ``("count", n)`` with a whole n >= 0, or ``("percent", p)`` with 0 <= p <= 100.
    """
    fix = 'use a host count such as 5 or a percentage such as "10%" (0-100)'
    if isinstance(spec, bool):
        raise PlanError("allow_failures", f"allow_failures={spec!r} is not valid; {fix}")
    if isinstance(spec, int):
        if spec < 0:
            raise PlanError("allow_failures", f"allow_failures={spec} is negative; {fix}")
        return "count", spec
    if isinstance(spec, str):
        text = spec.strip()
        if len(text) > 32:  # int() refuses > 4300 digits; no fleet needs more than a few
            raise PlanError("allow_failures", f"allow_failures={spec[:40]!r}... is too long; {fix}")
        if _COUNT_RE.fullmatch(text):
            return "count", int(text)
        match = _PERCENT_RE.fullmatch(text)
        if match:
            percent = float(match.group(1))
            if percent <= 100:
                return "percent", percent
            raise PlanError("allow_failures", f"allow_failures={spec!r} is above 100%; {fix}")
    raise PlanError("allow_failures", f"allow_failures={spec!r} is not valid; {fix}")


def failures_within(spec: str | int, failed: int, hosts: int) -> bool:
    """True when `failed` of `hosts` is within the allowance (``failed <= count`` or
    ``failed * 100 / hosts <= percent``). With no hosts only zero failures are within."""
    kind, limit = parse_allow_failures(spec)
    if failed < 0 or hosts < 0:
        raise ValueError(f"failed={failed} and hosts={hosts} must be >= 0")
    if kind == "count":
        return failed <= limit
    if hosts == 0:
        return failed == 0
    return failed * 100 <= limit * hosts


def sample_points(expected_runtime_s: float, rng: random.Random) -> list[tuple[str, float]]:
    """Resource-sampling points: one random point in 30-70 % of the expected runtime,
    plus 50 % and 75 %; as ``(label, seconds)`` sorted by time."""
    if not expected_runtime_s > 0 or math.isinf(expected_runtime_s):
        raise PlanError(
            "expected_runtime_s",
            f"expected_runtime_s={expected_runtime_s!r} must be a finite number of seconds > 0",
        )
    fraction = rng.uniform(0.30, 0.70)
    points = [
        (f"random-{round(fraction * 100)}%", expected_runtime_s * fraction),
        ("50%", expected_runtime_s * 0.50),
        ("75%", expected_runtime_s * 0.75),
    ]
    return sorted(points, key=lambda p: p[1])
