"""`ForkedWorkerTaskRunner`: Prefect's engine runs in this process, the work in forked workers.

Each task run is driven by Prefect's task engine in a thread of this process, exactly as
with `ThreadPoolTaskRunner` (states, retries, logs, results, all in one place, one API
client, one event stream). A task that calls `in_worker(fn, kwargs, emit)` has `fn` run
in a worker process of a `tasks.forked_workers.WorkerPool` the runner holds: a fork of a
server that imported only the work's modules (no Prefect), so a worker costs milliseconds
to start and a few MB of its own. Lines the work emits come back over the worker's pipe
to the task run's logger, its return value to the task run's result. A worker killed
mid-task fails that task run alone (`WorkerDied`), and is replaced.

Only Prefect's public task-runner API is used: the runner subclasses `ThreadPoolTaskRunner`
and adds the pool in `__enter__`/`__exit__`; the pool reaches the task through a context
variable, which Prefect's `submit` carries into the task's thread (it runs the task in a
copy of the submitting context).

`warm_up()` forks the workers ahead of need (the deploy flow does it while stage 1 is
launching); the next runner entered with the same size and preload adopts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from prefect.task_runners import ThreadPoolTaskRunner

from tasks.forked_workers import WORKER_PRELOAD, Emit, WorkerPool, adopt, offer

R = TypeVar("R")
_CURRENT: ContextVar[WorkerPool | None] = ContextVar("tomcat_fleet_worker_pool", default=None)


def in_worker(fn: Callable[..., R], kwargs: dict[str, Any], emit: Emit, key: str = "") -> R:
    """`fn(**kwargs, emit=emit)` in a worker of the runner this task runs under, or right
    here (thread and Dask runners): the same work and the same lines either way. With a
    `key`, work already started under it (`WorkerPool.submit(..., key=...)`, before the
    task run existed) is attached to instead of started again."""
    pool = _CURRENT.get()
    if pool is None:
        return fn(**kwargs, emit=emit)
    result: R = pool.attach_or_call(key, fn, kwargs, emit) if key else pool.call(fn, kwargs, emit)
    return result


class ForkedWorkerTaskRunner(ThreadPoolTaskRunner):
    """Task runs in threads here, their `in_worker` work in `workers` forked processes."""

    def __init__(self, workers: int, preload: Iterable[str] = WORKER_PRELOAD) -> None:
        super().__init__(max_workers=workers)
        self.workers = workers
        self.preload = tuple(preload)
        self.pool: WorkerPool | None = None
        self._token: Token[WorkerPool | None] | None = None

    def duplicate(self) -> ForkedWorkerTaskRunner:
        return type(self)(self.workers, self.preload)

    def _key(self) -> tuple[int, tuple[str, ...]]:
        return (self.workers, self.preload)

    def warm_up(self) -> ForkedWorkerTaskRunner:
        """Fork the workers now, in the background, for the next runner like this one."""
        pool = adopt(self.workers, self.preload)
        offer(pool or WorkerPool(self.workers, self.preload).start(background=True))
        return self

    def shutdown(self) -> None:
        """Stop warm workers nobody adopted (a no-op once a runner adopted them)."""
        pool = adopt(self.workers, self.preload)
        if pool is not None:
            pool.close()

    def __enter__(self) -> ForkedWorkerTaskRunner:
        super().__enter__()
        pool = adopt(self.workers, self.preload)
        self.pool = pool or WorkerPool(self.workers, self.preload).start(background=True)
        self._token = _CURRENT.set(self.pool)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            super().__exit__(*exc_info)  # every task run ended
        finally:
            if self._token is not None:
                _CURRENT.reset(self._token)
                self._token = None
            if self.pool is not None:
                self.pool.close()
                self.pool = None
