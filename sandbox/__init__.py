"""The sandbox: a local AWS (moto) and a local fleet of SSH/Tomcat hosts on loopback."""

from .config import FaultRates, SandboxConfig
from .server import Sandbox, SandboxError

__all__ = ["FaultRates", "Sandbox", "SandboxConfig", "SandboxError"]
