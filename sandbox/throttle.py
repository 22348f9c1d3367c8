"""API throttling for the sandbox: AWS's token buckets (on by default) plus a refusal rate.

AWS throttles each API of an account and region with its own token bucket: a call takes a
token, the bucket refills at a fixed rate up to its size, and a call finding it empty is
refused. The sandbox does the same, per (service, action), with these figures:

EC2 ("Request throttling for the Amazon EC2 API", EC2 developer guide, request token and
resource token limits; refused with HTTP 503 `RequestLimitExceeded`):
- non-mutating actions (Describe*, Get*, List*): bucket 100, refill 20/s;
- mutating actions: bucket 50, refill 5/s;
- RunInstances: bucket 5, refill 2/s (request tokens), and resource tokens: one per
  instance asked for (MaxCount), bucket 1000, refill 2/s; TerminateInstances: one resource
  token per instance id, bucket 1000, refill 20/s.
ELB API version 2 ("Request throttling for the ELB API", ELB user guide; refused with HTTP
400 `Throttling`, "Rate exceeded"): Describe* bucket 40, refill 10/s (published); mutating
actions bucket 20, refill 4/s (our reading of the same page's table for registration and
other mutating actions; check it before relying on the exact figure).
Route 53 ("Quotas", Route 53 developer guide: five API requests per second per account):
one account-wide bucket of 5, refill 5/s, refused with HTTP 400 `Throttling`.
RDS publishes no bucket figures we could confirm: its calls are not bucketed.

`--throttle-rate` is a separate fault knob: a seeded fraction of EC2 calls refused on top
of the buckets. `--no-token-buckets` turns the buckets off.

Pure logic (a clock and a random source are injected) so it is unit-tested without a network.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DESCRIBE_PREFIXES = ("Describe", "Get", "List")


@dataclass(frozen=True)
class Limit:
    """A token bucket's size and refill rate (tokens per second); size 0 means unlimited."""

    size: float
    refill_per_s: float


# EC2 request tokens: per action class, with per-action exceptions.
EC2_DESCRIBE = Limit(100, 20)
EC2_MUTATING = Limit(50, 5)
EC2_ACTIONS = {"RunInstances": Limit(5, 2)}
# EC2 resource tokens: one per instance the call acts on.
EC2_RESOURCES = {"RunInstances": Limit(1000, 2), "TerminateInstances": Limit(1000, 20)}
ELB_DESCRIBE = Limit(40, 10)
ELB_MUTATING = Limit(20, 4)
ROUTE53_ACCOUNT = Limit(5, 5)
ELB_SERVICES = ("elasticloadbalancing", "elbv2")


def action_class(action: str) -> str:
    """AWS splits its limits into read (describe) and write (mutating) calls."""
    return "describe" if action.startswith(DESCRIBE_PREFIXES) else "mutating"


@dataclass(frozen=True)
class Ec2Limits:
    """The EC2 request buckets a sandbox uses (the CLI and config can change them)."""

    describe: Limit = EC2_DESCRIBE
    mutating: Limit = EC2_MUTATING
    run_instances: Limit = EC2_ACTIONS["RunInstances"]


class TokenBucket:
    """Classic token bucket; `size` 0 means unlimited."""

    def __init__(self, size: float, refill_per_s: float, clock: Callable[[], float]) -> None:
        self.size = size
        self.refill = refill_per_s
        self.clock = clock
        self.tokens = size
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.size, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now

    def has(self, n: float = 1.0) -> bool:
        if self.size <= 0:
            return True
        self._refill()
        return self.tokens >= n

    def take(self, n: float = 1.0) -> bool:
        if self.size <= 0:
            return True
        self._refill()
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class Throttler:
    """Decides whether one AWS call is admitted. Thread-safe.

    `rate` refuses a seeded fraction of EC2 calls; `buckets` False turns every bucket off.
    """

    def __init__(
        self,
        rate: float,
        *,
        buckets: bool = True,
        ec2: Ec2Limits | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.enabled = buckets
        self.ec2 = ec2 or Ec2Limits()
        self.rng = random.Random(seed)
        self.clock = clock
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.lock = threading.Lock()

    def _limit(self, service: str, action: str) -> tuple[str, Limit] | None:
        """The bucket key and limit for a call, or None when the call is not bucketed."""
        if service == "ec2":
            if action == "RunInstances":
                return action, self.ec2.run_instances
            describe = action_class(action) == "describe"
            return action, self.ec2.describe if describe else self.ec2.mutating
        if service in ELB_SERVICES:
            describe = action_class(action) == "describe"
            return action, ELB_DESCRIBE if describe else ELB_MUTATING
        if service == "route53":
            return "*", ROUTE53_ACCOUNT  # one bucket for the whole account
        return None

    def _bucket(self, key: tuple[str, str], limit: Limit) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(limit.size, limit.refill_per_s, self.clock)
        return bucket

    def admit(self, service: str, action: str, resources: int = 0) -> bool:
        """Take the call's tokens (and `resources` resource tokens) or refuse it."""
        with self.lock:
            if service == "ec2" and self.rate > 0 and self.rng.random() < self.rate:
                return False
            if not self.enabled:
                return True
            found = self._limit(service, action)
            if found is None:
                return True
            name, limit = found
            request = self._bucket((service, name), limit)
            resource_limit = EC2_RESOURCES.get(action) if service == "ec2" else None
            if resource_limit is None or resources <= 0:
                return request.take()
            pool = self._bucket((service, f"{action}#resources"), resource_limit)
            if not (request.has() and pool.has(resources)):
                return False
            return request.take() and pool.take(resources)


def request_limit_exceeded_body(request_id: str) -> bytes:
    """The XML EC2 returns with HTTP 503 when it throttles a call."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
        "<Message>Request limit exceeded.</Message></Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    ).encode()


def throttling_body(service: str, request_id: str) -> bytes:
    """The XML ELB, Route 53 and RDS return with HTTP 400 when they throttle a call."""
    ns = {
        "route53": "https://route53.amazonaws.com/doc/2013-04-01/",
        "rds": "http://rds.amazonaws.com/doc/2014-10-31/",
    }.get(service, "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="{ns}">'
        "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def refusal(service: str, request_id: str) -> tuple[str, bytes]:
    """(HTTP status line, body) of a throttled call, as the service answers it."""
    if service == "ec2":
        return "503 Service Unavailable", request_limit_exceeded_body(request_id)
    return "400 Bad Request", throttling_body(service, request_id)
