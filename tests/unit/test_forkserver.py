"""The fork server's preload list, shared by the early start and the pool (no process
is started here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.forkserver import BASE_PRELOAD, FREEZE_MODULE, INSTALL_PRELOAD, preload_list, start_early


def test_preload_list_is_prefect_then_ours_then_the_freeze() -> None:
    mods = preload_list(INSTALL_PRELOAD)
    assert mods[: len(BASE_PRELOAD)] == list(BASE_PRELOAD)
    assert mods[-1] == FREEZE_MODULE and "tasks.install_chunk" in mods
    assert FREEZE_MODULE not in preload_list(INSTALL_PRELOAD, freeze_gc=False)
    assert len(set(preload_list(["prefect", *INSTALL_PRELOAD]))) == len(mods)  # no repeats


def test_start_early_is_a_no_op_for_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOMCAT_FLEET_POOL_START_METHOD", "spawn")
    assert start_early() is False


def test_the_pool_runner_uses_the_same_list() -> None:
    from tasks.pool_runner import PreloadedProcessPoolTaskRunner

    runner = PreloadedProcessPoolTaskRunner(max_workers=1, preload=INSTALL_PRELOAD)
    assert runner._preload == tuple(preload_list(INSTALL_PRELOAD)[:-1])


def test_fork_here_refuses_while_another_thread_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from tasks.forkserver import fork_here

    monkeypatch.setenv("TOMCAT_FLEET_POOL_START_METHOD", "spawn")
    assert fork_here() is False  # the pool would not use a fork server
    monkeypatch.delenv("TOMCAT_FLEET_POOL_START_METHOD")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert fork_here() is False  # a fork could catch that thread holding a lock
    finally:
        stop.set()
        other.join()


FORK_HERE_SCRIPT = """
import json, multiprocessing, os, sys, threading
from concurrent.futures import ProcessPoolExecutor
import email.mime.text  # stands in for the modules a pool's workers need
from tasks.forkserver import fork_here

def probe(_):
    return os.getpid(), os.getppid(), "email.mime.text" in sys.modules, threading.active_count()

if __name__ == "__main__":
    assert fork_here(freeze_gc=False) is True
    assert fork_here(freeze_gc=False) is False  # one fork server per process
    from multiprocessing import forkserver
    server = forkserver._forkserver._forkserver_pid
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as ex:
        rows = list(ex.map(probe, range(4)))
    print(json.dumps({"me": os.getpid(), "server": server, "rows": rows}))
"""


def test_fork_here_serves_workers_forked_from_a_copy_of_the_caller(tmp_path: Path) -> None:
    """The fork server is a child of the caller (not a fresh interpreter); its workers are
    its children, start with the caller's modules imported, and it ends with the caller."""
    import json
    import subprocess
    import sys

    script = tmp_path / "fork_here_probe.py"
    script.write_text(FORK_HERE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("TOMCAT_FLEET_POOL_START_METHOD", None)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    server = data["server"]
    assert server != data["me"]
    for pid, ppid, imported, _threads in data["rows"]:
        assert ppid == server and pid not in (server, data["me"])
        assert imported  # inherited from the caller, not imported again
    try:  # the server is gone with its caller (its alive pipe reached EOF)
        os.kill(server, 0)
        gone = False
    except ProcessLookupError:
        gone = True
    assert gone or _zombie(server)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
