"""One TLS context for all of a process's Prefect API clients.

Prefect builds a new `ssl.SSLContext` for every API client it creates, and loads the whole
CA bundle into it (`ssl.create_default_context(cafile=certifi.where())`). A task run in a
process-pool worker creates two clients (the hydrated context's and the engine's): in a
profile of twelve workers starting a task each on 2 cores, loading the bundle took 92 ms
per client, the second largest part of a task run's start.

`share_api_tls_context()` makes Prefect's client module build that verified context once
per CA file and hand the same context to every client: an `SSLContext` is made to be
shared by many connections, and the verified path never changes the context it gets.
Only that module is affected, and only the verified path with a CA file: the insecure
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


def share_api_tls_context() -> bool:
    """Install the shared context in Prefect's client module (idempotent). False when that
    module no longer builds its context the way this expects (nothing is changed)."""
    from prefect.client import orchestration

    current = getattr(orchestration, "ssl", None)
    if isinstance(current, _SharedDefaultContext):
        return True
    if current is not ssl:
        return False
    orchestration.ssl = _SharedDefaultContext(ssl)  # type: ignore[assignment]
    return True
