"""What every service module shares: the deployment tag and ownership checks, StageError,
and the delete side's bookkeeping.

A `Cleanup` is one teardown run: which deployment (by its tag), one overall deadline, what
was removed and what failed. A delete function never raises for one resource: `attempt`
records the error and the run goes on; things already gone are skipped. Each resource gets
one line (`tasks.actions`): deleted, already gone, kept (not this deployment's) or failed;
every wait says what it waited for and how long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.client import Aws
from tasks.aws.retry import error_code
from tasks.errors import FleetError, StageError
from tasks.waiting import WaitTimeout, wait_until

TAG_KEY = "tomcat-fleet:deployment"

# error codes that mean "already gone": skipped silently
GONE_CODES: frozenset[str] = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "InvalidGroup.NotFound",
        "InvalidGroupId.NotFound",
        "InvalidPermission.NotFound",
        "InvalidKeyPair.NotFound",
        "LoadBalancerNotFound",
        "TargetGroupNotFound",
        "ListenerNotFound",
        "ResourceNotFoundException",
        "NoSuchBucket",
        "NoSuchKey",
        "NoSuchHostedZone",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "NoSuchEntity",
    }
)


class Gone(FleetError):
    """The resource no longer exists: nothing to do, nothing to report."""


def is_gone(exc: BaseException) -> bool:
    code = error_code(exc)
    if code in GONE_CODES:
        return True
    # Route53 says a record to delete does not exist with InvalidChangeBatch
    return code == "InvalidChangeBatch" and "not found" in str(exc).lower()


def tag_value(tags: Any) -> str | None:
    """The deployment tag's value from a list of {Key, Value} or a plain dict."""
    if isinstance(tags, dict):
        value = tags.get(TAG_KEY)
        return None if value is None else str(value)
    for tag in tags or []:
        if tag.get("Key") == TAG_KEY:
            return str(tag.get("Value"))
    return None


def dns(name: str | None) -> str:
    """A DNS name normalised for comparison: lowercase, no trailing dot, no `dualstack.`."""
    out = (name or "").strip().rstrip(".").lower()
    return out.removeprefix("dualstack.")


class Cleanup:
    """One teardown run of one deployment: the clients, the deadline, the bookkeeping."""

    def __init__(
        self,
        aws: Aws,
        settings: FleetSettings,
        kinds: Iterable[str],
        timeout_s: float,
        poll_s: float,
        log: Any,
    ) -> None:
        self.aws = aws
        self.settings = settings
        self.deployment = settings.deployment_name
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout_s
        self.timeout_s = timeout_s
        self.poll_s = max(0.05, poll_s)
        self.log = log
        self.removed_by_kind: dict[str, list[str]] = {k: [] for k in kinds}
        self.errors: list[str] = []

    def mine(self, tags: Any) -> bool:
        return tag_value(tags) == self.deployment

    def removed(self, kind: str, ident: str) -> None:
        self.removed_by_kind[kind].append(ident)
        actions.deleted(kind, ident)

    def error(self, what: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            code = error_code(exc) or type(exc).__name__
            why = f"{code}: {exc}"
        else:
            why = str(exc)
        self.errors.append(f"{what}: {why}")
        actions.failed(what, why=why)

    def attempt(self, kind: str, ident: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> bool:
        """Run one deletion, `fn(*args, **kw)`; True when it removed something (already
        gone: False; not this deployment's: False, kept and recorded as an error; failed:
        False, error recorded)."""
        try:
            fn(*args, **kw)
        except Gone:
            actions.gone(kind, ident)
            return False
        except NotOurs as exc:
            self.errors.append(f"{kind} {ident}: {type(exc).__name__}: {exc}")
            actions.kept(kind, ident, why=f"not this deployment's: {exc}")
            return False
        except Exception as exc:
            if is_gone(exc):
                actions.gone(kind, ident)
                return False
            self.error(f"{kind} {ident}", exc)
            return False
        self.removed(kind, ident)
        return True

    def stage(self, name: str, fn: Callable[[Cleanup], Any]) -> None:
        """One stage, `fn(self)`; an error that escapes it (e.g. listing failed) is recorded."""
        try:
            fn(self)
        except Exception as exc:
            self.error(f"stage {name}", exc)

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self, what: str, done: Callable[..., bool], *args: Any, **kw: Any) -> bool:
        """Poll `done(*args, **kw)` until True or the deadline; a timeout is an error."""
        try:
            wait_until(
                f"waiting for {what}",
                lambda: done(*args, **kw) or None,
                deadline=self.deadline,
                poll_s=self.poll_s,
            )
        except WaitTimeout:
            self.error(f"waiting for {what}", f"not done within the {self.timeout_s:.0f}s deadline")
            return False
        except Exception as exc:
            return self._gone_while_waiting(what, exc)
        return True

    def waiter(self, what: str, service: str, name: str, **kwargs: Any) -> bool:
        """Run boto3 waiter `name` of `service` (through the retrying client) until the
        deadline; a timeout or a failure state is recorded as an error."""
        try:
            self.aws.client(service).wait(
                name,
                what=f"waiting for {what}",
                timeout_s=max(0.0, self.remaining),
                delay_s=self.poll_s,
                **kwargs,
            )
        except WaitTimeout as exc:
            self.error(f"waiting for {what}", str(exc).split(": ", 1)[-1])
            return False
        except Exception as exc:
            return self._gone_while_waiting(what, exc)
        return True

    def _gone_while_waiting(self, what: str, exc: Exception) -> bool:
        """A wait that raised: the thing being gone is success, anything else an error."""
        if is_gone(exc):
            return True
        self.error(f"waiting for {what}", exc)
        return False

    def retrying(self, codes: set[str], fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """`fn(*args, **kw)`, retrying the given error codes (a resource still in use, a
        dependency not yet gone) with bounded back-off: at most 30 retries, never past the
        deadline; then the last such error is raised. Throttling and 5xx are retried
        below, by the client."""
        result = self.until(
            f"{getattr(fn, '__name__', 'call')} to get past {', '.join(sorted(codes))}",
            lambda: (fn(*args, **kw),),
            retry_on=lambda exc: isinstance(exc, ClientError) and error_code(exc) in codes,
            max_checks=31,
        )
        return result[0]

    def until(self, what: str, check: Callable[[], Any], **options: Any) -> Any:
        """`wait_until(what, check)` with this teardown's deadline and its back-off for
        re-trying a resource that is still in use (doubling from `poll_s` up to 15 s)."""
        return wait_until(
            what,
            check,
            deadline=self.deadline,
            poll_s=self.poll_s,
            backoff=2.0,
            max_poll_s=max(self.poll_s, 15.0),
            jitter=0.5,
            **options,
        )


def tag_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in tags}


def owned(tags: list[dict[str, str]] | None, settings: FleetSettings) -> bool:
    return any(
        t.get("Key") == TAG_KEY and t.get("Value") == settings.deployment_name for t in tags or []
    )


def not_ours(kind: str, name: str, settings: FleetSettings) -> NotOurs:
    return NotOurs(
        f"{kind} {name!r} exists but is not tagged {TAG_KEY}={settings.deployment_name}; "
        "it belongs to something else: choose another TOMCAT_FLEET_DEPLOYMENT_NAME or remove it"
    )


class NotOurs(StageError):
    """A resource with the deployment's name that another owner holds: never changed or
    removed (teardown keeps it and reports it)."""
