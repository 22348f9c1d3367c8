"""One TLS context for all of a process's Prefect API clients.

Prefect builds a new `ssl.SSLContext` for every API client it creates, and loads the whole
CA bundle into it (`ssl.create_default_context(cafile=certifi.where())`). A task run in a
process-pool worker creates two clients (the hydrated context's and the engine's): in a
profile of twelve workers starting a task each on 2 cores, loading the bundle took 92 ms
per client, the second largest part of a task run's start. The events client's server
version check builds one more, once per process (about 0.1 s of the CLI's main thread in
py-spy samples of two runs).

`share_api_tls_context()` makes Prefect's client modules build that verified context once
per CA file and hand the same context to every client: an `SSLContext` is made to be
shared by many connections, and the verified path never changes the context it gets.
Only those modules are affected, and only the verified path with a CA file: the insecure
path (`PREFECT_API_TLS_INSECURE_SKIP_VERIFY`) mutates its context and keeps a fresh one.
The place to fix this for good is Prefect's client (cache the context per CA file).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any


class _SharedDefaultContext:
    """Stands in for the `ssl` module inside Prefect's client module."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._cache: dict[tuple[Any, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def create_default_context(
        self,
        purpose: Any = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: Any = None,
    ) -> ssl.SSLContext:
        if cafile is None or capath is not None or cadata is not None:
            return self._real.create_default_context(
                purpose, cafile=cafile, capath=capath, cadata=cadata
            )
        with self._lock:
            ctx = self._cache.get((purpose, cafile))
            if ctx is None:
                ctx = self._real.create_default_context(purpose, cafile=cafile)
                self._cache[(purpose, cafile)] = ctx
            return ctx


_SHARED = _SharedDefaultContext(ssl)
API_TLS_MODULES = ("prefect.client.orchestration", "prefect._internal.version_checking")
"""Prefect's modules that build a verified context per client: the API clients, and the
server version check each events client runs first (once per process)."""


def share_api_tls_context() -> bool:
    """Install the one shared context in Prefect's client modules (idempotent). False when
    one of them no longer builds its context the way this expects (that one is left
    unchanged)."""
    import importlib

    done = True
    for name in API_TLS_MODULES:
        module = importlib.import_module(name)
        current = getattr(module, "ssl", None)
        if current is _SHARED:
            continue
        if current is not ssl:
            done = False
            continue
        module.ssl = _SHARED  # type: ignore[attr-defined]
    return done
