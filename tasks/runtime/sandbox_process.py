"""Run `python -m sandbox` as a child process (benchmarks and CLIs that measure memory
or want the sandbox off their own GIL) and read its env file.

The sandbox is started as a separate program, never imported: nothing under flows/,
tasks/ or blocks/ imports `sandbox` (tests/unit/test_layers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from types import TracebackType
from typing import Any


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


class SandboxProcess:
    def __init__(self, args: list[str] | None = None) -> None:
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.env: dict[str, str] = {}
        self._env_file = ""

    def start(self) -> SandboxProcess:
        """Start the child without waiting for it (no thread): `__enter__` waits."""
        if self.proc is None:
            fd, self._env_file = tempfile.mkstemp(suffix=".sandbox.env")
            os.close(fd)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sandbox", "--env-file", self._env_file, *self.args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        return self

    def __enter__(self) -> SandboxProcess:
        self.start()
        assert self.proc is not None
        env_file = self._env_file
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if not line.startswith("SANDBOX READY"):
            self.proc.wait(timeout=30)
            os.unlink(env_file)
            raise RuntimeError(self.proc.stderr.read().strip() or f"sandbox: {line!r}")
        for stream in (self.proc.stdout, self.proc.stderr):  # a full pipe blocks the sandbox
            threading.Thread(
                target=_drain, args=(stream,), name="sandbox-drain", daemon=True
            ).start()
        with open(env_file) as f:
            self.env = dict(
                ln.split("=", 1)
                for ln in f.read().splitlines()
                if "=" in ln and not ln.startswith("#")
            )
        os.unlink(env_file)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
