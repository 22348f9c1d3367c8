"""Local TCP ports: pick a free one, or say why a chosen one cannot be used."""

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


PRIVILEGED_BELOW = 1024
DEFAULT_LB_PORT_BASE = 8000


def low_ports_bindable(host: str) -> bool:
    """True when this process may bind ports below 1024 (root or CAP_NET_BIND_SERVICE)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, 80))
        except PermissionError:
            return False
        except OSError:
            return True  # in use, but not refused for want of the right
    return True


class PortMap:
    """Where a load balancer's listener port really listens on loopback.

    Ports from 1024 up listen as they are. Ports below 1024 (80, 443) listen as they are
    when the process may bind them, else at `base + port` (8080, 8443 for base 8000).
    """

    def __init__(self, base: int | None) -> None:
        self.base = base

    def bound(self, port: int) -> int:
        if self.base is None or port >= PRIVILEGED_BELOW:
            return port
        return self.base + port

    def table(self, ports: tuple[int, ...] = (80, 443)) -> dict[str, int]:
        return {str(p): self.bound(p) for p in ports}


def lb_port_map(host: str, base: int | None) -> PortMap:
    """`base` None: real low ports when bindable, else DEFAULT_LB_PORT_BASE; a number forces it."""
    if base is None and not low_ports_bindable(host):
        base = DEFAULT_LB_PORT_BASE
    return PortMap(base)
