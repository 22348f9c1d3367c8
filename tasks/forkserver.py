"""The process pool's fork server, started before Prefect is imported (no Prefect here).

`tasks.pool_runner` forks its workers from a ``forkserver`` whose server process imports
Prefect, paramiko and the install modules once. That import costs seconds of CPU; started
by the first pool it lies on the install's critical path whenever nothing (such as deploy's
stage 1) runs in front of it. `start_early` starts the server at a command's start, so its
imports overlap the parent's own (Prefect, the flow modules, the local Prefect server's
start): the pool the flow builds later finds it running. A process has one fork server, and
its preload list is fixed when it starts: `preload_list` is the one list both use.

`fork_here` goes one step further when the caller has already imported what the workers
need: the fork server becomes a fork of the caller itself (a zygote). Nothing is imported
twice, and the caller's, the server's and every worker's module pages are the same
physical pages (copy-on-write), which a spawned server can never share with its parent.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import socket
import sys
import threading
from collections.abc import Iterable
from typing import Any

BASE_PRELOAD = ("prefect", "prefect.task_engine", "prefect.task_runners", "prefect.context")
INSTALL_PRELOAD = ("paramiko", "tasks.install_chunk")
"""What the install flow's chunk task needs beyond Prefect's engine."""
FREEZE_MODULE = "tasks.pool_runner_freeze"


def main_module_name() -> str | None:
    """The `-m` module the parent runs as __main__: workers import it by name at start,
    so preloading it keeps that import off every worker's start."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if not name or name == "__main__" or name.endswith(".__main__"):
        return None
    return str(name)


def preload_list(preload: Iterable[str], freeze_gc: bool = True) -> list[str]:
    """The fork server's modules: Prefect's engine, `preload`, the -m module, the freeze."""
    mods = list(dict.fromkeys([*BASE_PRELOAD, *preload]))
    main = main_module_name()
    return [*mods, *([main] if main else []), *([FREEZE_MODULE] if freeze_gc else [])]


def _pool_forks() -> bool:
    """The process pool starts its workers from a fork server (RuntimeSettings)."""
    from blocks.settings import RuntimeSettings  # in the CLI: imported with the flow module

    return RuntimeSettings().pool_start_method == "forkserver"


def start_early(preload: Iterable[str] = INSTALL_PRELOAD) -> bool:
    """Start the fork server now (returns at once; its imports run in the server process).

    Call it before importing Prefect, once PREFECT_API_URL and the run's environment are
    set: the server keeps the environment it starts with. No-op (False) when the pool
    would not use a fork server (TOMCAT_FLEET_POOL_START_METHOD=spawn) or on a platform
    without one."""
    if not _pool_forks():
        return False
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload_list(preload))
    forkserver.ensure_running()
    return True


def _single_threaded() -> bool:
    """No other thread, Python or native, that a fork could catch holding a lock."""
    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no procfs: trust the Python count
        return True


def fork_here(freeze_gc: bool = True) -> bool:
    """Make this process's fork server a fork of this process, now (returns at once).

    Call it once the modules the pool's workers need are imported and before any thread
    starts (server polling, log workers, ...): the server is a copy of this process, so it
    starts in milliseconds with everything loaded, and the workers it forks share this
    process's pages. With `freeze_gc`, this process moves its objects to the garbage
    collector's permanent generation first (`gc.freeze()`), so its own later collections
    do not write to, and thereby copy, the pages it shares (a 12-worker install: this
    process's PSS 137 -> 123 MB). The server then loads Prefect's collections and freezes
    the collector again (`FREEZE_MODULE`), as a spawned one does after its preload, and
    serves fork requests with the standard library's own loop
    (`multiprocessing.forkserver.main`); it exits when this process does. Returns False,
    changing nothing, when a fork server already runs, when the pool would not use one,
    or when another thread exists (then `start_early` is the fallback). The workers see
    `__main__` as it was at the fork: a function defined there afterwards reaches them
    only if pickled by value (Prefect pickles tasks by value)."""
    if not _pool_forks():
        return False
    if "forkserver" not in multiprocessing.get_all_start_methods() or not _single_threaded():
        return False
    from multiprocessing import connection, forkserver, resource_tracker, util

    server: Any = forkserver._forkserver  # the stdlib's private singleton: its fields
    with server._lock:
        if server._forkserver_pid is not None:
            return False
        resource_tracker.ensure_running()  # the workers register with the caller's tracker
        listener = socket.socket(socket.AF_UNIX)
        address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()  # EOF for the server when this process ends
        if freeze_gc:  # this process's later collections leave the shared objects alone
            gc.freeze()
        pid = os.fork()
        if pid == 0:  # the fork server: never returns into the caller's code
            code = 0
            try:
                os.close(alive_w)  # else the server would keep its own pipe from EOF
                server._lock = threading.Lock()  # held by the caller at the fork
                if freeze_gc:
                    __import__(FREEZE_MODULE)
                forkserver.main(listener.fileno(), alive_r, [])
            except SystemExit:
                pass
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(alive_r)
        listener.close()
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return True
