"""The jittered exponential back-off every retry of the project sleeps by (AWS calls,
SSH connections, install steps): pure, no boto3, no Prefect."""

from __future__ import annotations

import random

_RNG = random.Random()
_MAX_EXPONENT = 64  # 2**64 s is far beyond any cap; avoids float overflow for huge attempts


def backoff_delay(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 20.0,
    jitter: float = 1.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to sleep before retry number `attempt` (0 = first retry).

    ``min(cap, base * 2**attempt) + uniform(0, jitter)``: the exponential part is capped,
    the jitter never is, so even at the cap callers sleep different times instead of
    waking up together. Never above ``cap + jitter``, never negative.
    """
    if attempt < 0:
        raise ValueError(f"attempt={attempt} must be >= 0")
    if base < 0 or cap < 0 or jitter < 0:
        raise ValueError(f"base={base}, cap={cap}, jitter={jitter} must all be >= 0")
    r = rng if rng is not None else _RNG
    exponential = min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))
    return max(0.0, exponential + r.uniform(0.0, jitter))
