"""The local start's process tracking and state file (see tasks/runtime/local/__init__.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tasks.errors import FleetError

PROJECT_DIR = Path(__file__).resolve().parents[3]
PROCESS_POOL = "tomcat-fleet-process"
LOCAL_DEPLOYMENTS = [
    "deploy/full",
    "deploy/infra",
    "install-tomcat/default",
    "teardown/default",
    "status/default",
    "rollout/default",
    "benchmark/nightly",
]
OPTIONAL_ENTRYPOINTS = {"benchmark/nightly": "flows/benchmark.py"}
PUBLIC_IP_CIDR = "127.150.0.0/16"
SERVICE_IP_CIDR = "127.151.0.0/16"
READY = "LOCAL START READY"


class LocalError(FleetError, RuntimeError):
    """The local start cannot go on; the message says why in one line."""


# -- tracked processes -------------------------------------------------------------------
@dataclass
class Tracked:
    name: str
    pid: int
    create_time: float
    group: bool = True  # started in its own session: stop its whole process group
    log: str = ""

    def process(self) -> psutil.Process | None:
        """The live process this entry recorded (None if gone or the pid was reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.5:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


@dataclass
class State:
    dir: Path
    entries: list[Tracked] = field(default_factory=list)

    @property
    def file(self) -> Path:
        return self.dir / "processes.json"

    @classmethod
    def load(cls, state_dir: Path) -> State:
        st = cls(state_dir)
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            st.entries = [Tracked(**e) for e in json.loads(st.file.read_text())]
        return st

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps([e.__dict__ for e in self.entries], indent=1))
        tmp.replace(self.file)

    def add(self, entry: Tracked) -> None:
        self.entries.append(entry)
        self.save()

    def alive(self) -> list[tuple[Tracked, psutil.Process]]:
        out = []
        for e in self.entries:
            proc = e.process()
            if proc is not None:
                out.append((e, proc))
        return out


def stop_all(state_dir: Path, quiet: bool = False, timeout_s: float = 20.0) -> list[int]:
    """End every process recorded in `state_dir` and their descendants (never this process);
    return the pids that were signalled."""
    st = State.load(state_dir)
    me = os.getpid()
    targets: dict[int, psutil.Process] = {}
    groups: list[int] = []
    for entry, proc in st.alive():
        if proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                if child.pid != me:
                    targets[child.pid] = child
        targets[proc.pid] = proc
        if entry.group:
            groups.append(proc.pid)
        if not quiet:
            print(f"local: stopping {entry.name} (pid {proc.pid})", flush=True)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGTERM)
    for proc in targets.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, left = psutil.wait_procs(list(targets.values()), timeout=timeout_s)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=5)
    # keep the launcher's own entry if it is the one stopping (it removes the file itself)
    st.entries = [e for e in st.entries if e.pid == me and e.process() is not None]
    if st.entries:
        st.save()
    else:
        with contextlib.suppress(FileNotFoundError):
            st.file.unlink()
    return sorted(targets)
