"""AWS clients from settings: credentials block or default chain, endpoint URL, one retry layer.

botocore's own retries are off (see `tasks.aws.retry.botocore_config`); every call made
through `RetryingClient` goes through the jittered back-off instead, and every HTTP request
is counted, so a run can report API calls made and throttling retries. Every operation
called is also recorded process-wide as `<IAM prefix>:<Operation>` (`recorded_operations()`);
`tasks.aws.policy` turns that set into the least-privilege `docs/iam-policy.json`.
Every waiter run through `RetryingClient.wait` reports itself in one line
(`tasks.actions.waited`), as every retry does (`tasks.aws.retry`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from botocore import xform_name
from botocore.exceptions import WaiterError
from botocore.loaders import Loader, create_loader
from botocore.waiter import NormalizedOperationMethod, create_waiter_with_client

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.retry import (
    RetryStats,
    botocore_config,
    call_with_backoff,
    error_code,
    is_retryable,
    is_throttle,
)
from tasks.aws.waiters import custom_waiter
from tasks.waiting import WaitTimeout

_OPERATIONS: set[str] = set()
_OPERATIONS_LOCK = threading.Lock()
_LOADERS: dict[Any, Loader] = {}
_LOADERS_LOCK = threading.Lock()


def _record_operation(model: Any, **_: Any) -> None:
    """botocore `before-call` handler: remember `<signing name>:<operation>` (the signing
    name is the IAM service prefix for every service this project uses, e.g.
    `elasticloadbalancing` for elbv2)."""
    op = f"{model.service_model.signing_name}:{model.name}"
    with _OPERATIONS_LOCK:
        _OPERATIONS.add(op)


def recorded_operations() -> frozenset[str]:
    """Operations called through `Aws.client()` in this process since the last reset."""
    with _OPERATIONS_LOCK:
        return frozenset(_OPERATIONS)


def reset_operations() -> None:
    with _OPERATIONS_LOCK:
        _OPERATIONS.clear()


class ApiCounter:
    """Counts HTTP requests botocore sends (retries included), thread-safe."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, **_: Any) -> None:
        with self.lock:
            self.calls += 1


class RetryingClient:
    """A boto3 client whose operations retry transient errors (throttling, 5xx, dropped
    connections) with jittered back-off. Plain calls, waiters (`get_waiter`, `wait`) and
    paginators (`get_paginator`, `pages`) all go through the same retry loop: a throttle on
    one waiter poll or one page is retried, not fatal."""

    def __init__(
        self,
        client: Any,
        stats: RetryStats,
        retries: int = 8,
        base: float = 0.5,
        cap: float = 20.0,
        jitter: float | None = None,
    ) -> None:
        self._client = client
        self._stats = stats
        self._retries, self._base, self._cap = retries, base, cap
        # the design's U(0, 1) s; a tiny cap (tests, sandbox) gets a jitter to match
        self._jitter = min(1.0, cap) if jitter is None else jitter
        self._retry_if: Callable[[BaseException], bool] = is_retryable

    def throttling_only(self) -> RetryingClient:
        """This client retrying throttling only: for probes, where an unreachable endpoint
        or a server error should fail at once."""
        probe = RetryingClient(
            self._client, self._stats, self._retries, self._base, self._cap, self._jitter
        )
        probe._retry_if = is_throttle
        return probe

    @property
    def _service(self) -> str:
        """The boto3 service name (`ec2`, `elbv2`, ...): retry lines say `ec2.run_instances`."""
        model = getattr(getattr(self._client, "meta", None), "service_model", None)
        return str(getattr(model, "service_name", "") or "aws")

    @property
    def raw(self) -> Any:
        return self._client

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def _retrying(self, method: Callable[..., Any]) -> Callable[..., Any]:
        operation = f"{self._service}.{getattr(method, '__name__', 'call')}"

        def call(*args: Any, **kwargs: Any) -> Any:
            return call_with_backoff(
                method,
                *args,
                stats=self._stats,
                retries=self._retries,
                base=self._base,
                cap=self._cap,
                jitter=self._jitter,
                retry_if=self._retry_if,
                operation=operation,
                **kwargs,
            )

        call.__name__ = getattr(method, "__name__", "call")
        return call

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        if not callable(method) or name.startswith("can_"):
            return method
        return self._retrying(method)

    def get_waiter(self, name: str) -> Any:
        """The boto3 waiter `name` (the project's own, `tasks.aws.waiters`, else botocore's)
        whose every poll goes through the retry loop (errors the retry loop gives up on
        propagate; other error responses reach the waiter's acceptors, as boto3 does)."""
        custom = custom_waiter(self._client.meta.service_model.service_name, name)
        waiter: Any
        if custom is not None:
            model, model_name = custom
            waiter = create_waiter_with_client(model_name, model, self._client)
        else:
            waiter = self._client.get_waiter(name)
        operation = self._retrying(getattr(self._client, xform_name(waiter.config.operation)))
        waiter._operation_method = NormalizedOperationMethod(operation)
        return waiter

    def get_paginator(self, name: str) -> Any:
        """The boto3 paginator whose every page request goes through the retry loop."""
        paginator = self._client.get_paginator(name)
        paginator._method = self._retrying(getattr(self._client, name))
        return paginator

    def pages(self, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item under `key` of every page of `operation` (a paginator)."""
        for page in self.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])

    def wait(
        self,
        name: str,
        *,
        what: str,
        timeout_s: float | None = None,
        deadline: float | None = None,
        delay_s: float = 2.0,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run waiter `name` with our deadline: polls every `delay_s` for at most
        `timeout_s`, or until `deadline` (a `time.monotonic()` value: what is left of a
        budget several waits share); returns the response that matched the success state.
        Raises `WaitTimeout` naming `what`, and the deadline (`not done within`) or the
        failure state or error the waiter stopped on (`failed`)."""
        if deadline is not None:
            timeout_s = max(0.0, deadline - time.monotonic())
        if timeout_s is None:
            raise TypeError("wait() needs timeout_s or deadline")
        delay = max(0.01, delay_s)
        attempts = max(1, math.ceil(timeout_s / delay) + 1)
        waiter = self.get_waiter(name)
        poll = waiter._operation_method
        last: dict[str, Any] = {}

        def remember(**kw: Any) -> Any:
            last["response"] = poll(**kw)
            return last["response"]

        waiter._operation_method = remember
        t0 = time.monotonic()

        def report(outcome: str, ok: bool = False) -> None:
            actions.waited(what, time.monotonic() - t0, outcome, ok)

        try:
            waiter.wait(WaiterConfig={"Delay": delay, "MaxAttempts": attempts}, **kwargs)
        except WaiterError as exc:
            response = exc.last_response or {}
            reason = str(exc.kwargs.get("reason") or "")
            detail = response.get("Error", {}).get("Code") or reason or str(exc)
            if reason.startswith("Max attempts exceeded"):
                report(f"not done within {timeout_s:.0f}s")
                raise WaitTimeout(f"{what}: not done within {timeout_s:.0f}s ({detail})") from None
            report(f"failed ({detail})")
            raise WaitTimeout(f"{what}: failed ({detail})") from None
        except Exception as exc:
            report(f"stopped by {error_code(exc) or type(exc).__name__}")
            raise
        report("done", ok=True)
        return dict(last.get("response") or {})


class Aws:
    """Clients for one run (one per process/thread that needs them; they are not shared
    across processes)."""

    def __init__(self, settings: FleetSettings, stats: RetryStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or RetryStats()
        self.counter = ApiCounter()
        self.session, self.endpoint_url = _session(settings)
        self._clients: dict[str, RetryingClient] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                raw = self.session.client(  # type: ignore[call-overload]
                    service,
                    region_name=self.settings.region,
                    endpoint_url=self.endpoint_url,
                    config=botocore_config(),
                )
                raw.meta.events.register("before-send", self.counter)
                raw.meta.events.register("before-call", _record_operation)
                self._clients[service] = RetryingClient(
                    raw,
                    self.stats,
                    retries=self.settings.aws_retries,
                    base=self.settings.aws_backoff_base_s,
                    cap=self.settings.aws_backoff_cap_s,
                )
            return self._clients[service]

    @property
    def api_calls(self) -> int:
        return self.counter.calls


def share_data_loader(session: boto3.Session) -> boto3.Session:
    """Give `session` the process's one botocore data loader (one per data path).

    Each botocore session otherwise builds its own loader, and a loader caches the JSON
    models it parses: every `Aws` (one per task run) parsed EC2's service model again (a
    second session's first EC2 client took 0.7 s and 23 MB of Python objects in a probe on
    the 2-core development machine). With one loader per process a model is parsed once.
    botocore treats the parsed models as read-only, as it does when several clients of
    one session share them."""
    core = session._session  # boto3's botocore session; the loader is a public component
    path = core.get_config_variable("data_path")
    with _LOADERS_LOCK:
        loader = _LOADERS.get(path)
        if loader is None:
            loader = _LOADERS[path] = create_loader(path)
    core.register_component("data_loader", loader)
    return session


def _session(settings: FleetSettings) -> tuple[boto3.Session, str | None]:
    """The boto3 session and endpoint URL: the settings' endpoint wins over the block's."""
    if settings.aws_credentials_block:
        from blocks.aws_credentials import load_credentials

        creds = load_credentials(settings.aws_credentials_block)
        endpoint = settings.aws_endpoint_url or creds.aws_client_parameters.endpoint_url
        return share_data_loader(creds.get_boto3_session()), endpoint
    session = boto3.Session(region_name=settings.region)
    return share_data_loader(session), settings.aws_endpoint_url
