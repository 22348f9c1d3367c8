"""AWS clients from settings: credentials block or default chain, endpoint URL, one retry layer.

botocore's own retries are off (see `tasks.aws.retry.botocore_config`); every call made
through `RetryingClient` goes through the jittered back-off instead, and every HTTP request
is counted, so a run can report API calls made and throttling retries. Every operation
called is also recorded process-wide as `<IAM prefix>:<Operation>` (`recorded_operations()`);
`tasks.aws.policy` turns that set into the least-privilege `docs/iam-policy.json`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import boto3

from blocks.settings import FleetSettings
from tasks.aws.retry import RetryStats, botocore_config, call_with_backoff

_OPERATIONS: set[str] = set()
_OPERATIONS_LOCK = threading.Lock()


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
    """A boto3 client whose operations retry throttling with jittered back-off."""

    def __init__(
        self, client: Any, stats: RetryStats, retries: int = 8, base: float = 0.5, cap: float = 20.0
    ) -> None:
        self._client = client
        self._stats = stats
        self._retries, self._base, self._cap = retries, base, cap

    @property
    def raw(self) -> Any:
        return self._client

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        if not callable(method) or name.startswith(("get_paginator", "get_waiter", "can_")):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return call_with_backoff(
                method,
                *args,
                stats=self._stats,
                retries=self._retries,
                base=self._base,
                cap=self._cap,
                **kwargs,
            )

        return call


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


def _session(settings: FleetSettings) -> tuple[boto3.Session, str | None]:
    """The boto3 session and endpoint URL: the settings' endpoint wins over the block's."""
    if settings.aws_credentials_block:
        from prefect_aws import AwsCredentials

        creds = cast(AwsCredentials, AwsCredentials.load(settings.aws_credentials_block))
        endpoint = settings.aws_endpoint_url or creds.aws_client_parameters.endpoint_url
        return creds.get_boto3_session(), endpoint
    return boto3.Session(region_name=settings.region), settings.aws_endpoint_url
