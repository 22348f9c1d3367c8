"""The sandbox: a local AWS (moto) and a local fleet of SSH/Tomcat hosts on loopback."""

from typing import Any

from .config import FaultRates, SandboxConfig

__all__ = ["FaultRates", "Sandbox", "SandboxConfig", "SandboxError"]


def __getattr__(name: str) -> Any:  # the server pulls in moto and asyncssh: load on use
    if name in ("Sandbox", "SandboxError"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
