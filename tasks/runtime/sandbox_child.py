"""What the CLI's flow commands share: a sandbox child for the run, and measuring the run's
own process tree (without the services it talks to)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from tasks.runtime.sandbox_process import SandboxProcess


@dataclass(frozen=True)
class SandboxOptions:
    """A sandbox child for one CLI run (`enabled` False: use the environment's settings)."""

    enabled: bool = False
    install_latency: float = 2.0
    boot_delay: float = 1.0
    seed: int = 0
    fault_profile: str = "clean"
    throttle_rate: float = 0.0


def sandbox_args(o: SandboxOptions) -> list[str]:
    return [
        "--install-latency",
        str(o.install_latency),
        "--boot-delay",
        str(o.boot_delay),
        "--seed",
        str(o.seed),
        "--fault-profile",
        o.fault_profile,
        "--throttle-rate",
        str(o.throttle_rate),
        "--cloud-init-seconds",
        str(min(1.0, o.boot_delay)),
    ]


def start_sandbox(o: SandboxOptions) -> Any:
    """The run's sandbox child, started (not yet waited for) when `o.enabled`, else None."""
    if not o.enabled:
        return None
    return SandboxProcess(sandbox_args(o)).start()


@contextlib.contextmanager
def maybe_sandbox(o: SandboxOptions, started: Any = None) -> Iterator[int | None]:
    """Wait for the run's sandbox (`started` by `start_sandbox`, else started here) and put
    its settings in the environment; stop it on exit."""
    if not o.enabled:
        yield None
        return
    with started or SandboxProcess(sandbox_args(o)) as sb:
        os.environ.update(sb.env)
        yield sb.pid


def tree_rss_mb(exclude: list[int]) -> float:
    """RSS of this process and its descendants, minus the `exclude` subtrees (the sandbox
    and the Prefect server: services the run uses, not the run itself)."""
    me = psutil.Process()
    skip = set()
    for pid in exclude:
        with contextlib.suppress(psutil.Error):
            skip |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        if proc.pid in skip:
            continue
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 2**20


class Peak:
    def __init__(self, exclude: list[int]) -> None:
        self.exclude = exclude
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.exclude))
            self.stop.wait(0.25)
