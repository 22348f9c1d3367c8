"""How a `tomcat-fleet` flow command starts and ends (no Prefect imported here).

Start: the local Prefect server (when the run uses ours and it is down), the sandbox child
and, for the install's `process` runner, the fork server of its workers
(`tasks.forked_workers.start_server`: paramiko and the install's work, no Prefect) are
started first, without waiting and without a thread; the flow module (Prefect: about a
second of CPU) is imported meanwhile, with the adjustments every flow run gets
(`tasks.runtime.prefect_adjustments`). `prefect_server` then waits for the server and, on
the way out, flushes Prefect's log and event queues while the server is still up.

End: `exit_now` leaves without tearing the interpreter down. Prefect, boto3 and pydantic
load ~2000 modules whose finalisation took ~0.5 s of every run's wall time; nothing in it
is needed once threads that are not daemons have ended and the exit handlers (Prefect's
drains, logging's flush) have run.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

from tasks.forked_workers import start_server
from tasks.runtime.prefect_api import LocalServer, flush_prefect
from tasks.runtime.sandbox_child import SandboxOptions, start_sandbox

_LOCAL: dict[str, LocalServer] = {}


def local_server() -> LocalServer:
    """This process's handle on the reusable local server (one, so a launch is waited for)."""
    return _LOCAL.setdefault("server", LocalServer())


def start_run(module: str, sb: SandboxOptions, pool: bool, planned: str | None) -> Any:
    """Begin a flow command (see the module docstring); `planned` is the local server's URL
    when the run uses it. Returns the started sandbox, for `maybe_sandbox` to wait for."""
    if planned:
        local_server().launch(planned)
    sandbox = start_sandbox(sb)
    if pool:
        start_server()  # its imports overlap the flow module's
    try:
        importlib.import_module(module)
        from tasks.runtime.prefect_adjustments import install

        install()  # what every flow run gets (the flows call it too): now, once
    except BaseException:
        if sandbox is not None:
            sandbox.__exit__(None, None, None)
        raise
    return sandbox


@contextlib.contextmanager
def prefect_server(planned: str | None) -> Iterator[int | None]:
    """The API this run reports to: PREFECT_API_URL if set (`planned` None), else our
    reusable server (started if it is not up). Yields the pid of a server we started, else
    None; flushes Prefect's log and event workers before leaving."""
    pid = None
    if planned:
        url, server_pid, started = local_server().ensure(planned)
        pid = server_pid if started else None
        base = url.removesuffix("/api")
        how = "started" if started else "reused"
        print(
            f"tomcat-fleet: using Prefect server at {base} ({how}); "
            "stop with `tomcat-fleet server stop`",
            file=sys.stderr,
            flush=True,
        )
    try:
        yield pid
    finally:
        flush_prefect()


def process_age_s() -> float:
    """Seconds since this process started (interpreter start-up and the CLI's imports)."""
    try:  # both since boot, to the clock tick (psutil's create_time rounds boot time)
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return max(0.0, float(f.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return 0.0


def exit_now(rc: int) -> NoReturn:
    """Exit with `rc` once non-daemon threads ended and the exit handlers ran, skipping
    the interpreter's teardown (see the module docstring)."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
