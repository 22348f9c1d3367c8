"""The SSH private key as a Prefect `Secret` block (settings.ssh_key_block).

Made from the deployment's key file (settings.key_file_path(), which stage 1 of `deploy`
writes when it creates the EC2 key pair). The key is never printed.
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.system import Secret

from blocks.settings import FleetSettings


def default_block_name(settings: FleetSettings) -> str:
    return settings.ssh_key_block or f"{settings.deployment_name}-ssh-key"


def key_source(settings: FleetSettings) -> Path:
    return settings.key_file_path()


def secret_from_file(path: Path) -> Secret:
    """An unsaved Secret block holding the PEM in `path`; ValueError if it is no key."""
    pem = path.read_text()
    if "PRIVATE KEY" not in pem:
        raise ValueError(f"{path} does not hold a PEM private key")
    return Secret(value=pem)
