"""Worker processes that run plain functions: forked from a server holding the install's
modules only, talking to the caller over a pipe each. No Prefect here.

    pool = WorkerPool(4).start()          # forks 4 workers (milliseconds each)
    result = pool.call(run_chunk, {...}, on_emit=log)   # in any thread; blocks it

`call` sends the function (by module and name) and its keyword arguments to an idle
worker; the function gets an extra `emit(level, text)` argument, whose lines come back as
they are emitted and are handed to `on_emit` in the calling thread; its return value (or
its exception, as `WorkerError`) comes back last. A worker that dies mid-call (SIGKILL,
OOM) fails that call alone with `WorkerDied` and is replaced; the other calls go on.

The workers come from the standard library's ``forkserver``, whose server process imports
`WORKER_PRELOAD` (paramiko and the install's work) once and freezes the garbage collector,
so a worker starts in milliseconds and shares those pages copy-on-write. `start_server`
starts that server early (a command calls it before importing Prefect, so the server's
imports overlap its own); a process has one fork server and its preload list is fixed
when it starts.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

from tasks.errors import FleetError

WORKER_PRELOAD = ("paramiko", "tasks.install_work", "tasks.forked_freeze")
"""What the fork server imports once: the chunk's work and its libraries, then gc.freeze."""

Emit = Callable[[int, str], None]
log = logging.getLogger(__name__)


class WorkerError(FleetError, RuntimeError):
    """The function raised in its worker: its type and message (the traceback is in the
    message's following lines)."""


class WorkerDied(FleetError, RuntimeError):
    """The worker process ended while running a call (killed, out of memory, crashed)."""


def start_server(preload: Iterable[str] = WORKER_PRELOAD) -> bool:
    """Start the fork server now, importing `preload` (returns at once; the imports run in
    the server). False, changing nothing, where the platform has no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    forkserver.ensure_running()
    return True


# -- the worker side ---------------------------------------------------------------------
def _worker_main(conn: Connection) -> None:
    """A worker's life: run calls until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    lock = threading.Lock()  # the function's threads emit concurrently

    def emit(level: int, text: str) -> None:
        with lock:
            conn.send(("emit", level, text))

    functions: dict[tuple[str, str], Callable[..., Any]] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, module, name, kwargs = message
        try:
            fn = functions.get((module, name))
            if fn is None:
                fn = functions[(module, name)] = getattr(importlib.import_module(module), name)
            result = fn(**kwargs, emit=emit)
        except BaseException as exc:
            text = "".join(traceback.format_exception(exc))
            own = exc if isinstance(exc, FleetError) and _pickles(exc) else None
            with lock:  # the project's own errors cross as themselves (PlanError, ...)
                conn.send(("error", f"{type(exc).__name__}: {exc}", text, own))
        else:
            with lock:
                conn.send(("done", result))


def _pickles(obj: Any) -> bool:
    import pickle

    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:
        return False
    return True


# -- the caller side ---------------------------------------------------------------------
class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()  # the worker holds the other end: EOF here when it dies

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def ended(self) -> str:
        """How the process ended, in words (after EOF on its pipe)."""
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is None:
            return "stopped answering"
        if code < 0:
            return f"was killed by signal {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def close(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.conn.close()


class PendingCall:
    """A call sent (or queued) to the pool: its lines and its outcome, as they come.

    `attach(on_emit)` hands every line emitted so far, then each new one, to `on_emit` in
    the attaching thread, and returns the function's value (or raises WorkerError /
    WorkerDied). Lines emitted before anyone attached wait in the call's queue."""

    def __init__(self, fn: Callable[..., Any], kwargs: dict[str, Any], key: str | None) -> None:
        self.module, self.name = fn.__module__, fn.__qualname__
        self.kwargs = kwargs
        self.key = key
        self.messages: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def attach(self, on_emit: Emit | None = None) -> Any:
        while True:
            message = self.messages.get()
            if message[0] == "emit":
                if on_emit is not None:
                    try:
                        on_emit(message[1], message[2])
                    except Exception:  # a log line lost must not lose the call
                        log.exception("emitting a worker's line failed")
                continue
            if message[0] == "done":
                return message[1]
            if message[0] == "died":
                raise WorkerDied(message[1])
            if len(message) > 3 and message[3] is not None:
                raise message[3]  # one of the project's errors, as raised in the worker
            raise WorkerError(f"{message[1]}\n{message[2]}".rstrip())


class WorkerPool:
    """`size` forked workers, each running one call at a time (see the module docstring).

    One thread here per worker takes the next queued call, sends it, and routes what comes
    back to that call; a worker that dies is replaced by its thread."""

    def __init__(self, size: int, preload: Iterable[str] = WORKER_PRELOAD) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, not {size}")
        self.size = size
        self.preload = tuple(preload)
        self._queue: queue.SimpleQueue[PendingCall | None] = queue.SimpleQueue()
        self._workers: dict[int, _Worker] = {}  # slot -> its current process
        self._keyed: dict[str, PendingCall] = {}
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._ctx: Any = None

    # -- life -----------------------------------------------------------------------------
    def start(self, background: bool = False) -> WorkerPool:
        """Fork the workers (in a thread of its own with `background`); calls submitted
        meanwhile wait in the queue."""
        if background:
            threading.Thread(target=self.start, name="worker-pool-start", daemon=True).start()
            return self
        with self._lock:
            if self._started.is_set() or self._closed:
                return self
            start_server(self.preload)
            forks = "forkserver" in multiprocessing.get_all_start_methods()
            self._ctx = multiprocessing.get_context("forkserver" if forks else "spawn")
            for slot in range(self.size):
                self._workers[slot] = _Worker(self._ctx)
                thread = threading.Thread(
                    target=self._serve, args=(slot,), name=f"worker-{slot}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._started.set()
        return self

    def pids(self) -> list[int]:
        self._started.wait()
        with self._lock:
            return sorted(w.pid for w in self._workers.values())

    def close(self) -> None:
        """Stop every worker once the calls queued so far are done (a call that keeps a
        worker longer than its close timeout ends with its worker)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            w.close()

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------
    def submit(
        self, fn: Callable[..., Any], kwargs: dict[str, Any], key: str | None = None
    ) -> PendingCall:
        """Queue `fn(**kwargs, emit=...)` for the next idle worker and return at once; a
        `key` lets a later `attach_or_call` find it."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        call = PendingCall(fn, kwargs, key)
        if key is not None:
            with self._lock:
                self._keyed[key] = call
        self._queue.put(call)
        if not self._started.is_set():
            self.start(background=True)
        return call

    def call(
        self, fn: Callable[..., Any], kwargs: dict[str, Any], on_emit: Emit | None = None
    ) -> Any:
        """Run `fn(**kwargs, emit=...)` in a worker, its lines to `on_emit` as they come;
        its value, or WorkerError if it raised, WorkerDied if its worker ended first."""
        return self.submit(fn, kwargs).attach(on_emit)

    def attach_or_call(
        self, key: str, fn: Callable[..., Any], kwargs: dict[str, Any], on_emit: Emit | None
    ) -> Any:
        """The call submitted under `key` if there is one (started before its caller was
        ready for it), else a new one: either way its lines and value, as `call`."""
        with self._lock:
            call = self._keyed.pop(key, None)
        if call is None:
            call = self.submit(fn, kwargs)
        return call.attach(on_emit)

    # -- one thread per worker --------------------------------------------------------------
    def _serve(self, slot: int) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            worker = self._workers[slot]
            try:
                worker.conn.send(("call", call.module, call.name, call.kwargs))
                while True:
                    message = worker.conn.recv()
                    if message[0] == "error":
                        message = (
                            "error",
                            f"{message[1]} (in worker pid {worker.pid})",
                            message[2],
                        )
                    call.messages.put(message)
                    if message[0] != "emit":
                        break
            except (EOFError, OSError):
                call.messages.put(("died", f"worker pid {worker.pid} {worker.ended()}"))
                self._replace(slot, worker)
            except Exception as exc:  # e.g. arguments that do not pickle
                call.messages.put(("error", f"{type(exc).__name__}: {exc}", ""))

    def _replace(self, slot: int, dead: _Worker) -> None:
        dead.conn.close()
        with self._lock:
            if self._closed:
                return
            log.warning("worker pid %d ended mid-call; starting a replacement", dead.pid)
            self._workers[slot] = _Worker(self._ctx)

    def __repr__(self) -> str:
        return f"WorkerPool(size={self.size}, parent pid {os.getpid()})"


def run_once(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    on_emit: Emit | None = None,
    preload: Iterable[str] = WORKER_PRELOAD,
) -> Any:
    """`fn(**kwargs, emit=...)` in a worker of its own that exits after it: what it imports
    (boto3, a service model) is gone with it instead of staying in this process."""
    start_server(preload)
    forks = "forkserver" in multiprocessing.get_all_start_methods()
    worker = _Worker(multiprocessing.get_context("forkserver" if forks else "spawn"))
    call = PendingCall(fn, kwargs, None)
    try:
        worker.conn.send(("call", call.module, call.name, call.kwargs))
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                message = ("died", f"worker pid {worker.pid} {worker.ended()}")
            call.messages.put(message)
            if message[0] != "emit":
                break
    finally:
        worker.close()
    return call.attach(on_emit)


# -- pools started ahead of the runner that will use them --------------------------------
_OFFERED: dict[tuple[int, tuple[str, ...]], WorkerPool] = {}
_OFFERED_LOCK = threading.Lock()


def offer(pool: WorkerPool) -> WorkerPool:
    """Leave `pool` for the next `adopt` of its size and preload (a warm-up, or an install
    started before its flow run); returns it."""
    with _OFFERED_LOCK:
        _OFFERED.setdefault((pool.size, pool.preload), pool)
    return pool


def adopt(size: int, preload: Iterable[str] = WORKER_PRELOAD) -> WorkerPool | None:
    """The pool offered for this size and preload, taken (None if there is none)."""
    with _OFFERED_LOCK:
        return _OFFERED.pop((size, tuple(preload)), None)
