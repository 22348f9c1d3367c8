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
    """The function raised in its worker: its type, message and traceback, as text."""


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
            with lock:
                conn.send(("error", f"{type(exc).__name__}: {exc}", text))
        else:
            with lock:
                conn.send(("done", result))


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


class WorkerPool:
    """`size` forked workers, each running one call at a time (see the module docstring)."""

    def __init__(self, size: int, preload: Iterable[str] = WORKER_PRELOAD) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, not {size}")
        self.size = size
        self.preload = tuple(preload)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._closed = False
        self._ctx: Any = None

    # -- life -----------------------------------------------------------------------------
    def start(self, background: bool = False) -> WorkerPool:
        """Fork the workers (in a thread of its own with `background`)."""
        if background:
            threading.Thread(target=self.start, name="worker-pool-start", daemon=True).start()
            return self
        with self._lock:
            if self._started.is_set() or self._closed:
                return self
            start_server(self.preload)
            method = (
                "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            )
            self._ctx = multiprocessing.get_context(method)
            for _ in range(self.size):
                self._add()
            self._started.set()
        return self

    def _add(self) -> None:
        worker = _Worker(self._ctx)
        self._all.add(worker)
        self._idle.put(worker)

    def pids(self) -> list[int]:
        self._started.wait()
        return sorted(w.pid for w in self._all)

    def close(self) -> None:
        """Stop every worker (idle ones at once; a call in progress ends its worker)."""
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        for w in workers:
            w.close()

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------
    def call(
        self,
        fn: Callable[..., Any],
        kwargs: dict[str, Any],
        on_emit: Emit | None = None,
    ) -> Any:
        """Run `fn(**kwargs, emit=...)` in an idle worker (waiting for one); its emitted
        lines go to `on_emit` here, as they come. WorkerError if it raised, WorkerDied if
        its worker ended first (the worker is replaced)."""
        if not self._started.is_set():
            self.start()
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        worker = self._idle.get()
        busy = True  # until the worker answered: a worker left mid-call is not reused
        try:
            worker.conn.send(("call", fn.__module__, fn.__qualname__, kwargs))
            while True:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    raise WorkerDied(f"worker pid {worker.pid} {worker.ended()}") from None
                if message[0] == "emit":
                    if on_emit is not None:
                        try:
                            on_emit(message[1], message[2])
                        except Exception:  # a log line lost must not lose the call
                            log.exception("emitting a worker's line failed")
                    continue
                busy = False
                if message[0] == "done":
                    return message[1]
                raise WorkerError(f"{message[1]} (in worker pid {worker.pid})\n{message[2]}")
        finally:
            if busy or not worker.process.is_alive():
                if worker.process.is_alive():
                    worker.process.kill()
                self._replace(worker)
            else:
                self._idle.put(worker)

    def _replace(self, dead: _Worker) -> None:
        with self._lock:
            self._all.discard(dead)
            if not self._closed:
                log.warning("worker pid %d ended mid-call; starting a replacement", dead.pid)
                self._add()
        dead.conn.close()

    def __repr__(self) -> str:
        return f"WorkerPool(size={self.size}, pids={os.getpid()}->{len(self._all)} workers)"
