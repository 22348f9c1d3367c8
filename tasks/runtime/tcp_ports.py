"""Local TCP ports: pick a free one, or say why a chosen one cannot be used.

The sandbox keeps its own copy (`sandbox/ports.py`): it is a separate program and imports
nothing of the product it stands in for."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_problem(host: str, port: int) -> str | None:
    """None when `port` can be bound on `host`, else the OS's reason (e.g. in use)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None
