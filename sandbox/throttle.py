"""API throttling for the sandbox: token buckets per EC2 action class plus a refusal rate.

Pure logic (a clock and a random source are injected) so it is unit-tested without a network.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

DESCRIBE_PREFIXES = ("Describe", "Get", "List")


def action_class(action: str) -> str:
    """EC2 splits its limits into read (describe) and write (mutating) calls."""
    return "describe" if action.startswith(DESCRIBE_PREFIXES) else "mutating"


class TokenBucket:
    """Classic token bucket; `size` 0 means unlimited."""

    def __init__(self, size: float, refill_per_s: float, clock: Callable[[], float]) -> None:
        self.size = size
        self.refill = refill_per_s
        self.clock = clock
        self.tokens = size
        self.stamp = clock()

    def take(self) -> bool:
        if self.size <= 0:
            return True
        now = self.clock()
        self.tokens = min(self.size, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Throttler:
    """Decides whether one EC2 call is admitted. Thread-safe."""

    def __init__(
        self,
        rate: float,
        buckets: dict[str, tuple[float, float]],
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.buckets = {k: TokenBucket(s, r, clock) for k, (s, r) in buckets.items()}
        self.lock = threading.Lock()

    def admit(self, action: str) -> bool:
        with self.lock:
            if self.rate > 0 and self.rng.random() < self.rate:
                return False
            bucket = self.buckets.get(action_class(action))
            return bucket.take() if bucket else True


def request_limit_exceeded_body(request_id: str) -> bytes:
    """The XML EC2 returns with HTTP 503 when it throttles a call."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
        "<Message>Request limit exceeded.</Message></Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    ).encode()
