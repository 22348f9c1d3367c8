"""Where the SSH key comes from when it is not a task argument: `remote_config(settings,
None)` carries only the key's source, `with_key` reads it in the worker. No network: the
key file case only (the Secret block case runs on Dask in tests/integration/test_install_flow)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blocks.settings import FleetSettings
from tasks.remote.config import HostInstallConfig, remote_config
from tasks.remote.key_source import KeyUnavailable, read_key, with_key


def _pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )


def test_a_config_without_the_key_pickles_no_key_and_reads_it_in_the_worker(
    tmp_path: Path,
) -> None:
    pem = _pem()
    settings = FleetSettings(state_dir=str(tmp_path), deployment_name="keys")
    settings.key_file_path().parent.mkdir(parents=True)
    settings.key_file_path().write_text(pem)
    cfg = remote_config(settings, None)
    assert cfg.key_pem is None and cfg.key_block is None
    assert cfg.key_file == str(settings.key_file_path())
    assert pem.splitlines()[1].encode() not in pickle.dumps(cfg)
    with pytest.raises(ValueError, match="not loaded"):
        cfg.private_key()
    loaded = with_key(cfg)
    assert loaded.private_key() == pem and with_key(loaded) is loaded


def test_the_block_is_the_source_when_set(tmp_path: Path) -> None:
    settings = FleetSettings(state_dir=str(tmp_path), ssh_key_block="fleet-key")
    cfg = remote_config(settings, None)
    assert (cfg.key_pem, cfg.key_block, cfg.key_file) == (None, "fleet-key", None)


def test_a_config_needs_some_key_source() -> None:
    with pytest.raises(ValueError, match="key"):
        HostInstallConfig(ssh_port=22, ssh_user="u", known_hosts_path="/x")


def test_unreadable_sources_say_why_without_the_key(tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailable, match="does not exist"):
        read_key(None, str(tmp_path / "missing.pem"))
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(KeyUnavailable, match="ssh key"):
        read_key(None, str(tmp_path / "bad.pem"))
    with pytest.raises(KeyUnavailable, match="no ssh key source"):
        read_key(None, None)
