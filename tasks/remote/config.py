"""The one place that turns FleetSettings and a private key into how we reach hosts.

`HostInstallConfig` is plain and picklable (it crosses process boundaries). It carries
either the private key (a `SecretStr`, so reprs and logs never show it) or only where to
read it (`key_block`, a Prefect Secret block, or `key_file`): the install flow sends the
latter to its chunk tasks, which read the key in the worker (`tasks.remote.key_source`),
so the key is never a task argument, pickled to a pool or Dask worker. `remote_config` is the
only builder from settings: the install flow, the jumphost, the traffic generator and the
benchmark all call it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from blocks.install_steps import InstallStep
from blocks.settings import FleetSettings

HostKeyPolicy = Literal["strict", "tofu", "insecure"]


class HostInstallConfig(BaseModel):
    """How to reach a host over SSH, and (for the install recipe) what to run there."""

    ssh_port: int = Field(ge=1, le=65535)
    ssh_user: str = Field(min_length=1)
    key_pem: SecretStr | None = None
    key_block: str | None = None  # a Prefect Secret block holding the key (when no key_pem)
    key_file: str | None = None  # a key file on the worker (when no key_pem nor key_block)
    host_key_policy: HostKeyPolicy = "tofu"
    known_hosts_path: str
    expected_fingerprints: dict[str, list[str]] = Field(default_factory=dict)
    connect_timeout_s: float = Field(10.0, gt=0)
    ssh_wait_s: float = Field(300.0, gt=0)
    host_attempts: int = Field(3, ge=1)
    steps: list[InstallStep] = Field(default_factory=list)
    probe_command: str = "true"
    # a rollout: run the steps even on a host that answers the probe, then probe it
    reinstall: bool = False
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_cap_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _a_key_source(self) -> HostInstallConfig:
        if self.key_pem is None and not (self.key_block or self.key_file):
            raise ValueError("a private key, a key block or a key file is needed")
        return self

    def private_key(self) -> str:
        """The key's text; ValueError while the config only says where to read it."""
        if self.key_pem is None:
            raise ValueError("the private key is not loaded (tasks.remote.key_source.with_key)")
        return self.key_pem.get_secret_value()


def remote_config(
    settings: FleetSettings,
    key_pem: str | SecretStr | None,
    *,
    expected_fingerprints: dict[str, list[str]] | None = None,
    host_key_policy: HostKeyPolicy | None = None,
) -> HostInstallConfig:
    """The SSH/install config from `settings` and the private key's text; with
    `key_pem=None`, the settings' key source instead (the Secret block
    `settings.ssh_key_block`, else the key file), read where the config is used.

    `expected_fingerprints` (instance id -> console fingerprints) matter for the `strict`
    host-key policy; `host_key_policy` overrides the settings' policy (the benchmark's
    throw-away hosts)."""
    return HostInstallConfig(
        ssh_port=settings.ssh_port,
        ssh_user=settings.ssh_user,
        key_pem=key_pem if isinstance(key_pem, SecretStr | None) else SecretStr(key_pem),
        key_block=settings.ssh_key_block if key_pem is None else None,
        key_file=(
            str(settings.key_file_path())
            if key_pem is None and not settings.ssh_key_block
            else None
        ),
        host_key_policy=host_key_policy or settings.host_key_policy,
        known_hosts_path=str(settings.known_hosts_path),
        expected_fingerprints=dict(expected_fingerprints or {}),
        connect_timeout_s=settings.ssh_connect_timeout_s,
        ssh_wait_s=settings.ssh_wait_s,
        host_attempts=settings.host_attempts,
        steps=list(settings.install_steps),
        probe_command=settings.probe_command,
    )
