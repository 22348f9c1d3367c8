"""Reading the SSH private key where it is used: a Prefect Secret block or a key file.

The install flow hands its chunk tasks a `HostInstallConfig` that says where the key is
(`key_block` or `key_file`), never the key: the chunk task calls `with_key` inside the
worker (a pool process, a thread, a Dask worker anywhere), so the key is never pickled as a
task argument nor stored with a task or flow run's parameters. A Dask worker on another
machine reads the Secret block through the Prefect API (it needs PREFECT_API_URL).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from pydantic import SecretStr

from tasks.errors import FleetError

from .config import HostInstallConfig
from .connection import load_private_key


class KeyUnavailable(FleetError, ValueError):
    """The key source cannot be read or holds no usable private key (never the key)."""


def read_key(block: str | None, file: str | None) -> str:
    """The private key PEM from the Secret block `block`, else from `file`; checked to be
    a key paramiko can use. KeyUnavailable says why not, without the key."""
    if block:
        from prefect.blocks.system import Secret

        try:
            pem = str(cast(Secret, Secret.load(block)).get())
        except ValueError as exc:
            raise KeyUnavailable(
                f"ssh_key_block {block!r} cannot be loaded ({type(exc).__name__}); create "
                "it with `python -m blocks.register`"
            ) from None
    elif file:
        path = Path(file)
        if not path.is_file():
            raise KeyUnavailable(
                f"ssh key file {path} does not exist; set "
                "TOMCAT_FLEET_SSH_KEY_FILE or TOMCAT_FLEET_SSH_KEY_BLOCK"
            )
        pem = path.read_text()
    else:
        raise KeyUnavailable("no ssh key source: set TOMCAT_FLEET_SSH_KEY_BLOCK or _FILE")
    try:
        load_private_key(pem)
    except ValueError as exc:
        raise KeyUnavailable(f"ssh key: {exc}") from None
    return pem


def with_key(cfg: HostInstallConfig) -> HostInstallConfig:
    """`cfg` holding the private key, read from its key source when it has none yet."""
    if cfg.key_pem is not None:
        return cfg
    pem = read_key(cfg.key_block, cfg.key_file)
    return cfg.model_copy(update={"key_pem": SecretStr(pem)})
