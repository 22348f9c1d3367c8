"""What one emulated host knows about itself, and what it may ask of the sandbox's network.

`HostState` is plain data owned by the fleet (one per running instance). `Network` is the
narrow interface the emulated shell uses to reach other things the sandbox serves: name
resolution, security-group checks from this host, HTTP fetches, MySQL logins, and
starting/stopping the host's Tomcat server. The fleet implements it; shell tests fake it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from .faults import HostFaults


@dataclass
class HostState:
    instance_id: str
    public_ip: str
    private_ip: str
    groups: list[str]
    faults: HostFaults
    install_latency: float  # seconds, already multiplied by the host's slow factor
    latency_jitter: float
    rng: random.Random
    booted_at: float  # time.monotonic() when SSH became reachable
    cloud_init_seconds: float
    os: str = "ubuntu-22.04"  # the image's system: "ubuntu-22.04" or "al2023"
    login_user: str = "ubuntu"  # the image's SSH login user
    apt_lists_fresh: bool = False  # set by `apt-get update`
    dnf_metadata: bool = False  # set by dnf's first metadata download
    packages: set[str] = field(default_factory=set)  # installed packages
    enabled_units: set[str] = field(default_factory=set)
    active_units: set[str] = field(default_factory=set)
    installing: bool = False  # an apt-get (dpkg lock) or dnf install is running
    ssh_logins: int = 0
    commands_run: int = 0
    http_requests: int = 0

    def cloud_init_done(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now >= self.booted_at + self.cloud_init_seconds

    def seconds_until_cloud_init_done(self) -> float:
        return max(0.0, self.booted_at + self.cloud_init_seconds - time.monotonic())


@dataclass
class HttpResult:
    status: int | None  # None when no answer (see error)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # "resolve", "refused", "timeout", "tls"


class Network(Protocol):
    def resolve(self, name: str) -> str | None:
        """Hostname or dotted address -> loopback address the sandbox serves, or None."""
        ...

    async def http_get(
        self, host: HostState, url: str, *, verify_tls: bool, timeout: float
    ) -> HttpResult:
        """GET `url` as seen from `host` (security groups apply)."""
        ...

    async def mysql_login(
        self,
        host: HostState,
        endpoint: str,
        port: int,
        user: str,
        password: str,
        timeout: float,
    ) -> str | None:
        """None on success, else the mysql client's error line (e.g. ERROR 1045 ...)."""
        ...

    async def start_tomcat(self, host: HostState) -> None: ...

    async def stop_tomcat(self, host: HostState) -> None: ...
