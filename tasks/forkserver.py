"""The process pool's fork server, started before Prefect is imported (no Prefect here).

`tasks.pool_runner` forks its workers from a ``forkserver`` whose server process imports
Prefect, paramiko and the install modules once. That import costs seconds of CPU; started
by the first pool it lies on the install's critical path whenever nothing (such as deploy's
stage 1) runs in front of it. `start_early` starts the server at a command's start, so its
imports overlap the parent's own (Prefect, the flow modules, the local Prefect server's
start): the pool the flow builds later finds it running. A process has one fork server, and
its preload list is fixed when it starts: `preload_list` is the one list both use.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterable

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


def start_early(preload: Iterable[str] = INSTALL_PRELOAD) -> bool:
    """Start the fork server now (returns at once; its imports run in the server process).

    Call it before importing Prefect, once PREFECT_API_URL and the run's environment are
    set: the server keeps the environment it starts with. No-op (False) when the pool
    would not use a fork server (TOMCAT_FLEET_POOL_START_METHOD=spawn) or on a platform
    without one."""
    if os.environ.get("TOMCAT_FLEET_POOL_START_METHOD", "forkserver") != "forkserver":
        return False
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload_list(preload))
    forkserver.ensure_running()
    return True
