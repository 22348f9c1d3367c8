"""What the flow CLIs share: sandbox options, a sandbox child for the run, and measuring
the run's own process tree (without the services it talks to)."""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
from collections.abc import Iterator

import psutil

from sandbox.config import FAULT_PROFILES


def add_sandbox_options(p: argparse.ArgumentParser) -> None:
    sb = p.add_argument_group("sandbox (with --sandbox)")
    sb.add_argument("--sandbox", action="store_true", help="start a sandbox for this run")
    sb.add_argument("--install-latency", type=float, default=2.0)
    sb.add_argument("--boot-delay", type=float, default=1.0)
    sb.add_argument("--seed", type=int, default=0)
    sb.add_argument("--fault-profile", default="clean", choices=list(FAULT_PROFILES))
    sb.add_argument("--throttle-rate", type=float, default=0.0)


def sandbox_args(args: argparse.Namespace) -> list[str]:
    return [
        "--install-latency",
        str(args.install_latency),
        "--boot-delay",
        str(args.boot_delay),
        "--seed",
        str(args.seed),
        "--fault-profile",
        args.fault_profile,
        "--throttle-rate",
        str(args.throttle_rate),
        "--cloud-init-seconds",
        str(min(1.0, args.boot_delay)),
    ]


@contextlib.contextmanager
def maybe_sandbox(args: argparse.Namespace) -> Iterator[int | None]:
    if not args.sandbox:
        yield None
        return
    from sandbox.process import SandboxProcess

    with SandboxProcess(sandbox_args(args)) as sb:
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
