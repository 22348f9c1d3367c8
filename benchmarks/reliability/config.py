"""Sizes and settings of one reliability run, and the paths and tag it uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
TAG_KEY = "tomcat-fleet:deployment"
COUNT_KEYS = (
    "instances",
    "load_balancers",
    "target_groups",
    "certificates",
    "environments",
    "databases",
    "security_groups",
    "key_pairs",
    "buckets",
)


@dataclass
class Config:
    """Sizes and settings of one reliability run (the CLI flags)."""

    workdir: Path
    hosts: int = 200
    deploy_instances: int = 50
    deploy_stages: str = "1-11"
    throttle_rates: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.6, 0.9])
    raise_above: float = 0.3
    raised_retries: int = 100
    raised_base: float = 0.25
    raised_cap: float = 1.0
    hostile_hosts: int = 100
    hostile_allow: str = "30%"
    hostile_deploy_allow: str = "60%"
    ssh_wait_s: float = 30.0
    crashes: int = 5
    crash_instances: int = 10
    crash_stages: str = "1-11"
    install_latency: float = 1.0
    boot_delay: float = 1.0
    cloud_init_seconds: float = 1.0
    seed: int = 7
    public_ip_cidr: str = "127.170.0.0/16"
    service_ip_cidr: str = "127.171.0.0/16"
    timeout_s: float = 1800.0


def parameters(cfg: Config) -> dict[str, Any]:
    """The run's parameters as the report prints them (everything but the work directory)."""
    return {k: v for k, v in asdict(cfg).items() if k != "workdir"}
