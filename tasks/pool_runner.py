"""A process-pool task runner whose workers cost milliseconds: forkserver + preloaded modules.

Prefect's `ProcessPoolTaskRunner` starts its workers with the ``spawn`` method: every worker
is a fresh interpreter that imports Prefect (and the task's modules) before it can run a
task: seconds of CPU and ~160 MB of private memory each. `PreloadedProcessPoolTaskRunner`
is the same runner (same submit path, same context/settings/env shipping, same worker
initialiser that forwards events and API logs through a queue to the parent) with two
changes:

- workers come from a ``forkserver`` whose server process imports `preload` once
  (Prefect's task engine, the task modules, their libraries); each worker is a fork of it,
  so starting one costs milliseconds and the preloaded pages are shared copy-on-write
  (count them with PSS, not summed RSS);
- the pool can be started before it is needed: `warm_up()` starts the pool in the
  background, forks every worker and initialises each worker's Prefect runtime (settings,
  the API client and its version check, the event-forwarding worker), e.g. while
  instances are still launching. The next run of a flow using an equal runner adopts that
  warm pool instead of starting its own (the flow engine duplicates the runner it is
  given, so hand-over goes through a small registry keyed by the runner's configuration).
  `shutdown()` releases a warm pool nobody adopted; an adopted pool ends with the run that
  adopted it.

Nothing in this module is specific to this project: it only uses Prefect's public task
runner and its worker initialiser, and could be offered to Prefect upstream (as a
``start_method``/``preload`` option of `ProcessPoolTaskRunner` plus a ``warm_up()``).
The pool itself is created lazily at the first `submit` (or adopted at `__enter__`), so a
runner entered but never used — Prefect enters a duplicate of the flow's runner inside
every worker when it hydrates a task's context — costs nothing.

Caveat: a process has one forkserver; the preload list of the first pool that starts it
wins for the life of the process (`multiprocessing` semantics).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, _initialize_process_pool_worker

from tasks.forkserver import BASE_PRELOAD, preload_list
from tasks.runtime.prefect_shared_tls_context import share_api_tls_context

_WARM: dict[tuple[Any, ...], _WarmPool] = {}
_WARM_LOCK = threading.Lock()
_WORKER_BARRIER: Any = None


def _worker_init(
    barrier: Any, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    """Runs in each worker after Prefect's own initialiser (event/log forwarding)."""
    global _WORKER_BARRIER
    _WORKER_BARRIER = barrier
    share_api_tls_context()  # two API clients per task run: one CA-bundle parse per worker
    if initializer is not None:
        initializer(*initargs)


def settings_digest(serialized: dict[str, Any]) -> str:
    """A digest of a serialized `SettingsContext` (profile and settings values), as
    `prefect.context.serialize_context` ships it to a worker."""
    text = json.dumps(serialized, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _warm_worker(env: dict[str, str], settings_context: dict[str, Any] | None) -> tuple[int, str]:
    """One per worker at warm-up: set up what the first task run would otherwise set up
    on the critical path (settings, the sync API client + its once-per-process version
    check, the events worker that forwards to the parent), then wait until every worker
    has done the same, so each warm-up job lands in its own process. Returns the pid and
    the digest of the worker's own (process-wide) settings."""
    import threading as _threading

    from prefect.context import SettingsContext, SyncClientContext
    from prefect.events.worker import EventsWorker
    from prefect.settings.context import get_current_settings

    own = SettingsContext.get()  # the worker's process-wide settings (no run context yet)
    digest = settings_digest(own.serialize()) if own is not None else ""
    original = os.environ.copy()
    os.environ.update(env)
    try:
        with contextlib.ExitStack() as stack:
            if settings_context:
                stack.enter_context(SettingsContext(**settings_context))
            if get_current_settings().api.url:  # never start an ephemeral server here
                with contextlib.suppress(Exception), SyncClientContext.get_or_create():
                    pass  # no API reachable yet: the first task run will say so
            EventsWorker.instance()
    finally:
        os.environ.clear()
        os.environ.update(original)
    if _WORKER_BARRIER is not None:
        with contextlib.suppress(_threading.BrokenBarrierError):
            _WORKER_BARRIER.wait(timeout=15)  # bounded: a lost worker cannot hold the rest
    return os.getpid(), digest


class _WarmPool:
    """An executor plus its message queue and forwarding thread, started ahead of use."""

    def __init__(self, owner: PreloadedProcessPoolTaskRunner) -> None:
        from prefect.context import serialize_context
        from prefect.settings.context import get_current_settings

        self.owner = owner
        # the caller's settings, captured in the caller's thread (as `submit` does)
        self.env = get_current_settings().to_environment_variables(exclude_unset=True) | dict(
            os.environ
        )
        self.settings_context = serialize_context().get("settings_context")
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.warmups: list[Future[tuple[int, str]]] = []
        self.thread = threading.Thread(target=self._start, name="warm-process-pool", daemon=True)

    def _start(self) -> None:
        try:
            self.owner._start_pool(warm=True)
            self.warmups = self.owner._submit_warmups(self.env, self.settings_context)
        except BaseException as exc:  # surfaced when the pool is adopted
            self.error = exc
        finally:
            self.ready.set()


class PreloadedProcessPoolTaskRunner(ProcessPoolTaskRunner):
    """`ProcessPoolTaskRunner` with forkserver workers that share preloaded modules, and a
    `warm_up()` to start the pool (and every worker's Prefect runtime) ahead of use.

    Args:
        max_workers: processes in the pool (as for `ProcessPoolTaskRunner`).
        preload: modules the fork server imports once, before forking workers: Prefect's
            engine is always included; add the task modules and their heavy libraries.
        start_method: ``"forkserver"`` (default); ``"spawn"`` gives Prefect's behaviour.
        freeze_gc: the fork server calls `gc.freeze()` after the preload (module
            ``<this module>_freeze``), so the workers' garbage collections leave the
            shared pages shared.
        initializer, initargs, subprocess_message_processor_factories: as for
            `ProcessPoolTaskRunner`.

    See the module docstring for the design and the warm-pool hand-over.
    """

    BASE_PRELOAD = BASE_PRELOAD

    def __init__(
        self,
        max_workers: int | None = None,
        preload: Iterable[str] = (),
        start_method: str = "forkserver",
        freeze_gc: bool = True,
        subprocess_message_processor_factories: Iterable[Any] | None = None,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(
            max_workers=max_workers,
            subprocess_message_processor_factories=subprocess_message_processor_factories,
            initializer=initializer,
            initargs=initargs,
        )
        self._preload = tuple(dict.fromkeys([*self.BASE_PRELOAD, *preload]))
        self._start_method = start_method
        self._freeze_gc = freeze_gc
        self._warm: _WarmPool | None = None
        self._owns_pool = False
        self._worker_settings: str | None = None  # digest all warm workers share

    # -- configuration ----------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        return (
            type(self),
            self._max_workers,
            self._start_method,
            self._preload,
            getattr(self, "_initializer", None),
            getattr(self, "_initargs", ()),
        )

    def duplicate(self) -> PreloadedProcessPoolTaskRunner:
        dup = type(self)(
            max_workers=self._max_workers,
            preload=self._preload,
            start_method=self._start_method,
            freeze_gc=self._freeze_gc,
            initializer=getattr(self, "_initializer", None),
            initargs=getattr(self, "_initargs", ()),
        )
        dup.subprocess_message_processor_factories = self.subprocess_message_processor_factories
        return dup

    def __eq__(self, value: object) -> bool:
        return isinstance(value, PreloadedProcessPoolTaskRunner) and self._key() == value._key()

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        """The flow (and its runner) is pickled into every task's context: ship the
        configuration, never a live pool."""
        state = self.__dict__.copy()
        for name in (
            "_executor",
            "_resolver_executor",
            "_subprocess_message_queue",
            "_message_forwarding_thread",
            "_warm",
            "logger",
        ):
            state[name] = None
        state["_cancel_events"] = {}
        state["_started"] = False
        state["_owns_pool"] = False
        state["_cached_env"] = None
        state["_worker_settings"] = None
        state["_cached_env_settings"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        from prefect.logging.loggers import get_logger

        self.logger = get_logger(f"task_runner.{self.name}")

    # -- the pool -----------------------------------------------------------------------
    def mp_context(self) -> Any:
        ctx = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver":  # no-op once the server runs (start_early)
            ctx.set_forkserver_preload(preload_list(self._preload, self._freeze_gc))
        return ctx

    def _start_pool(self, warm: bool = False) -> None:
        """Prefect's `__enter__` body with our context; the pool is this runner's."""
        ctx = self.mp_context()
        self._subprocess_message_queue = ctx.Queue()
        self._message_forwarding_thread = threading.Thread(
            target=self._forward_subprocess_messages,
            name="ProcessPoolTaskRunnerMessageForwarder",
            daemon=True,
        )
        self._message_forwarding_thread.start()
        barrier = ctx.Barrier(self._max_workers) if warm else None
        try:
            self._executor = ProcessPoolExecutor(
                max_workers=self._max_workers,
                mp_context=ctx,
                initializer=_initialize_process_pool_worker,
                initargs=(
                    self._subprocess_message_queue,
                    _worker_init,
                    (barrier, getattr(self, "_initializer", None), getattr(self, "_initargs", ())),
                ),
            )
            self._resolver_executor = ThreadPoolExecutor(max_workers=self._max_workers)
        except Exception:
            if self._executor is not None:
                self._executor.shutdown(cancel_futures=True, wait=True)
                self._executor = None
            self._stop_message_forwarding()
            raise
        self._owns_pool = True

    def _submit_warmups(
        self, env: dict[str, str], settings_context: dict[str, Any] | None
    ) -> list[Future[tuple[int, str]]]:
        assert self._executor is not None
        return [
            self._executor.submit(_warm_worker, env, settings_context)
            for _ in range(self._max_workers)
        ]

    def warm_up(self) -> PreloadedProcessPoolTaskRunner:
        """Start the pool now, in the background, for the next run of an equal runner.

        Returns at once; the workers fork and initialise Prefect's runtime while the
        caller goes on (e.g. launching instances). Call `shutdown()` when no run will
        adopt the pool (safe to call always: it leaves an adopted pool alone)."""
        with _WARM_LOCK:
            if self._key() in _WARM:
                return self
            self._warm = _WarmPool(self)
            _WARM[self._key()] = self._warm
        self._warm.thread.start()
        return self

    def wait_warm(self, timeout: float | None = None) -> list[int]:
        """Block until warm-up finished; the worker pids (for tests and benchmarks)."""
        if self._warm is None:
            return []
        self._warm.ready.wait(timeout)
        if self._warm.error is not None:
            raise self._warm.error
        return [f.result(timeout)[0] for f in self._warm.warmups]

    def shutdown(self) -> None:
        """Release the pool `warm_up()` started unless a run adopted it."""
        with _WARM_LOCK:
            warm = self._warm
            if warm is None or _WARM.get(self._key()) is not warm:
                return
            del _WARM[self._key()]
        warm.ready.wait(120)
        if warm.owner._owns_pool:
            warm.owner.cancel_all()
            if warm.owner._resolver_executor is not None:
                warm.owner._resolver_executor.shutdown(wait=True)
                warm.owner._resolver_executor = None

    def _adopt(self, warm: _WarmPool) -> None:
        warm.ready.wait(300)
        if warm.error is not None or not warm.owner._owns_pool:
            return  # start our own at first submit
        src = warm.owner
        digests = set()
        for fut in warm.warmups:
            try:
                digests.add(fut.result(timeout=60)[1])
            except Exception:  # a worker that did not warm up: settings are shipped as usual
                digests.add("")
        self._worker_settings = digests.pop() if len(digests) == 1 else None
        self._executor = src._executor
        self._resolver_executor = src._resolver_executor
        self._subprocess_message_queue = src._subprocess_message_queue
        self._message_forwarding_thread = src._message_forwarding_thread
        src._executor = src._resolver_executor = None
        src._subprocess_message_queue = src._message_forwarding_thread = None
        src._owns_pool = False
        self._owns_pool = True

    # -- the task-runner protocol -----------------------------------------------------
    def __enter__(self) -> PreloadedProcessPoolTaskRunner:
        # TaskRunner.__enter__ only (ProcessPoolTaskRunner's would start a spawn pool)
        super(ProcessPoolTaskRunner, self).__enter__()
        with _WARM_LOCK:
            warm = _WARM.pop(self._key(), None)
        if warm is not None:
            self._adopt(warm)
        return self

    def submit(
        self, task: Any, parameters: Any, wait_for: Any = None, dependencies: Any = None
    ) -> Any:
        if self._started and self._executor is None:
            with _WARM_LOCK:  # lazily, so a runner entered but never used costs nothing
                if self._executor is None:
                    self._start_pool()
        return super().submit(task, parameters, wait_for, dependencies)

    def _resolve_futures_and_submit(
        self,
        task: Any,
        task_run_id: Any,
        parameters: Any,
        wait_for: Any,
        dependencies: Any,
        context: dict[str, Any],
        env: dict[str, str],
    ) -> Any:
        """Prefect's hand-off to the pool, minus the settings when every worker already
        holds equal ones (by digest, against what each worker reported at warm-up):
        rebuilding `Settings` from the shipped dict (~50 nested pydantic-settings models)
        is the largest part of a task run's start in a worker."""
        shipped = context.get("settings_context")
        if shipped and self._worker_settings == settings_digest(shipped):
            context = {k: v for k, v in context.items() if k != "settings_context"}
        return super()._resolve_futures_and_submit(
            task, task_run_id, parameters, wait_for, dependencies, context, env
        )

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        super().__exit__(exc_type, exc_value, traceback)
        self._owns_pool = False
