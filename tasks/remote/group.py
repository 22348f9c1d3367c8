"""A thread per host, one result per host (Fabric's `ThreadingGroup`/`GroupResult` model).

`fan_out` is the generic part: run `fn` on every item in a thread pool (each thread with a
copy of the caller's context variables, so Prefect's run context follows), hand each
result back in the items' order as soon as it and those before it are done, and turn an
exception into a result with `on_error`, so no item is ever lost. `ThreadingGroup` applies
the install recipe to a list of instances and returns a `GroupResult`.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from tasks.models import HostResult, Instance
from tasks.remote.config import HostInstallConfig
from tasks.remote.recipe import install_host

T = TypeVar("T")
R = TypeVar("R")


def fan_out(
    items: Sequence[T],
    fn: Callable[[T], R],
    *,
    max_workers: int,
    on_error: Callable[[T, BaseException], R],
    on_result: Callable[[T, R], None] | None = None,
    thread_name_prefix: str = "group",
) -> list[R]:
    """`[fn(item) for item in items]` on `max_workers` threads; an item whose call raised
    gets `on_error(item, exc)` instead. `on_result(item, result)` is called in the items'
    order, each as soon as it (and every item before it) is done."""
    results: list[R] = []
    with ThreadPoolExecutor(
        max_workers=max(1, max_workers), thread_name_prefix=thread_name_prefix
    ) as pool:
        futures: list[tuple[T, Future[R]]] = []
        for item in items:
            ctx = contextvars.copy_context()
            futures.append((item, pool.submit(ctx.run, fn, item)))
        for item, fut in futures:
            try:
                res = fut.result()
            except BaseException as exc:
                res = on_error(item, exc)
            results.append(res)
            if on_result is not None:
                on_result(item, res)
    return results


@dataclass
class GroupResult:
    """One `HostResult` per host, in the hosts' order."""

    results: list[HostResult] = field(default_factory=list)

    def __iter__(self) -> Iterator[HostResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def succeeded(self) -> list[HostResult]:
        return [r for r in self.results if r.status == "installed"]

    @property
    def failed(self) -> list[HostResult]:
        return [r for r in self.results if r.status != "installed"]

    @property
    def ok(self) -> bool:
        return not self.failed


def crashed(inst: Instance, exc: BaseException) -> HostResult:
    """The result of a host whose thread raised (`install_host` never does)."""
    return HostResult(
        instance_id=inst.instance_id,
        public_ip=inst.public_ip,
        status="failed",
        reason=f"installer crashed: {exc!r}",
    )


class ThreadingGroup:
    """The install recipe on every host of `instances`, `max_workers` at a time."""

    def __init__(
        self,
        instances: Sequence[Instance],
        config: HostInstallConfig,
        *,
        max_workers: int,
        thread_name_prefix: str = "group",
    ) -> None:
        self.instances = list(instances)
        self.config = config
        self.max_workers = max_workers
        self.thread_name_prefix = thread_name_prefix

    def install(
        self,
        *,
        log: logging.Logger | None = None,
        stop: threading.Event | None = None,
        on_result: Callable[[Instance, HostResult], None] | None = None,
    ) -> GroupResult:
        """`install_host` on each host; one result per host, never raises for a host."""
        cfg = self.config
        return GroupResult(
            fan_out(
                self.instances,
                lambda inst: install_host(inst, cfg, log=log, stop=stop),
                max_workers=self.max_workers,
                on_error=crashed,
                on_result=on_result,
                thread_name_prefix=self.thread_name_prefix,
            )
        )
