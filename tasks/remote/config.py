"""The one place that turns FleetSettings and a private key into how we reach hosts.

`HostInstallConfig` is plain and picklable (it crosses process boundaries); the private key
is a `SecretStr`, so reprs and logs of the config never show it. `remote_config` is the
only builder from settings: the install flow, the jumphost, the traffic generator and the
benchmark all call it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from blocks.install_steps import InstallStep
from blocks.settings import FleetSettings

HostKeyPolicy = Literal["strict", "tofu", "insecure"]


class HostInstallConfig(BaseModel):
    """How to reach a host over SSH, and (for the install recipe) what to run there."""

    ssh_port: int = Field(ge=1, le=65535)
    ssh_user: str = Field(min_length=1)
    key_pem: SecretStr
    host_key_policy: HostKeyPolicy = "tofu"
    known_hosts_path: str
    expected_fingerprints: dict[str, list[str]] = Field(default_factory=dict)
    connect_timeout_s: float = Field(10.0, gt=0)
    ssh_wait_s: float = Field(300.0, gt=0)
    host_attempts: int = Field(3, ge=1)
    steps: list[InstallStep] = Field(default_factory=list)
    probe_command: str = "true"
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_cap_s: float = Field(10.0, ge=0)


def remote_config(
    settings: FleetSettings,
    key_pem: str | SecretStr,
    *,
    expected_fingerprints: dict[str, list[str]] | None = None,
    host_key_policy: HostKeyPolicy | None = None,
) -> HostInstallConfig:
    """The SSH/install config from `settings` and the private key's text.

    `expected_fingerprints` (instance id -> console fingerprints) matter for the `strict`
    host-key policy; `host_key_policy` overrides the settings' policy (the benchmark's
    throw-away hosts)."""
    return HostInstallConfig(
        ssh_port=settings.ssh_port,
        ssh_user=settings.ssh_user,
        key_pem=key_pem if isinstance(key_pem, SecretStr) else SecretStr(key_pem),
        host_key_policy=host_key_policy or settings.host_key_policy,
        known_hosts_path=str(settings.known_hosts_path),
        expected_fingerprints=dict(expected_fingerprints or {}),
        connect_timeout_s=settings.ssh_connect_timeout_s,
        ssh_wait_s=settings.ssh_wait_s,
        host_attempts=settings.host_attempts,
        steps=list(settings.install_steps),
        probe_command=settings.probe_command,
    )
