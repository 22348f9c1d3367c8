"""Host keys and the install config without a network: console fingerprints, the OpenSSH
fingerprint format, the config hiding its key, the trust-on-first-use policy under threads
(the same module's tests against a sandbox: tests/integration/test_ssh_install.py)."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blocks.settings import DEFAULT_INSTALL_STEPS, DEFAULT_PROBE
from tasks.remote.config import HostInstallConfig
from tasks.remote.connection import load_private_key
from tasks.remote.host_keys import (
    HostKeyRejected,
    fingerprint,
    make_policy,
    parse_console_fingerprints,
)


def _other_ed25519_blob() -> str:
    pub = Ed25519PrivateKey.generate().public_key()
    return pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


# -- pure units -------------------------------------------------------------------------


def test_parse_console_fingerprints() -> None:
    text = "\n".join(
        [
            "[    0.000000] Linux version 5.15.0-1051-aws",
            "ec2: SHA256:outsideTheBlockIsIgnored0000000000000000000",
            "ec2: #############################################################",
            "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
            "ec2: 256 SHA256:pX3fLk2Q1nS0JdXn1sM8WfHq6c5yZl3c0pZ2mC0aB1E root@ip-1 (ED25519)",
            "ec2: 256 SHA256:abc+/def== root@ip-172-31-0-5 (ECDSA)",
            "3072 SHA256:NoPrefixLine1234 root@ip-172-31-0-5 (RSA)",
            "ec2: -----END SSH HOST KEY FINGERPRINTS-----",
            "-----BEGIN SSH HOST KEY KEYS-----",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIexample root@ip-172-31-0-5",
            "-----END SSH HOST KEY KEYS-----",
        ]
    )
    assert parse_console_fingerprints(text) == [
        "SHA256:pX3fLk2Q1nS0JdXn1sM8WfHq6c5yZl3c0pZ2mC0aB1E",
        "SHA256:abc+/def",
        "SHA256:NoPrefixLine1234",
    ]
    assert parse_console_fingerprints("") == []
    assert parse_console_fingerprints("booting...\n") == []


def test_fingerprint_matches_openssh_format() -> None:
    key = paramiko.Ed25519Key(data=_blob_bytes())
    fp = fingerprint(key)
    assert fp.startswith("SHA256:") and not fp.endswith("=") and len(fp) == 7 + 43


def _blob_bytes() -> bytes:
    import base64

    return base64.b64decode(_other_ed25519_blob().split()[1])


def test_config_repr_and_pickle_hide_the_key(tmp_path: Path) -> None:
    key = paramiko.RSAKey.generate(1024)
    import io

    buf = io.StringIO()
    key.write_private_key(buf)
    pem = buf.getvalue()
    cfg = HostInstallConfig(
        ssh_port=22,
        ssh_user="ubuntu",
        key_pem=pem,
        host_key_policy="tofu",
        known_hosts_path=str(tmp_path / "kh"),
        steps=DEFAULT_INSTALL_STEPS,
        probe_command=DEFAULT_PROBE,
    )
    body = [ln for ln in pem.splitlines() if "-----" not in ln]
    for text in (repr(cfg), str(cfg), f"{cfg}", repr(cfg.model_dump())):
        assert "PRIVATE KEY" not in text and not any(ln in text for ln in body)
    back = pickle.loads(pickle.dumps(cfg))
    assert back.key_pem.get_secret_value() == pem
    assert load_private_key(pem).get_base64() == key.get_base64()
    with pytest.raises(ValueError, match="unsupported or encrypted") as info:
        load_private_key(pem.replace("A", "B"))
    assert not any(ln in str(info.value) for ln in body)


def test_tofu_policy_concurrent_appends_no_duplicates(tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "b" / "known_hosts")
    keys = {f"i-{n:04d}": paramiko.Ed25519Key(data=_blob_bytes()) for n in range(8)}
    go = threading.Event()

    def connect(iid: str) -> None:
        go.wait(5)
        make_policy("tofu", instance_id=iid, expected=None, known_hosts_path=path).missing_host_key(
            paramiko.SSHClient(), "127.0.0.1", keys[iid]
        )

    with ThreadPoolExecutor(32) as pool:
        futs = [pool.submit(connect, iid) for iid in keys for _ in range(4)]
        go.set()
        for f in futs:
            f.result()
    lines = Path(path).read_text().splitlines()
    assert sorted(lines) == sorted(f"{iid} ssh-ed25519 {k.get_base64()}" for iid, k in keys.items())
    changed = paramiko.Ed25519Key(data=_blob_bytes())
    policy = make_policy("tofu", instance_id="i-0000", expected=None, known_hosts_path=path)
    with pytest.raises(HostKeyRejected, match="host key for i-0000 changed"):
        policy.missing_host_key(paramiko.SSHClient(), "127.0.0.1", changed)
    strict = make_policy("strict", instance_id="i-9", expected=[], known_hosts_path=path)
    with pytest.raises(HostKeyRejected, match="no host key fingerprints for i-9"):
        strict.missing_host_key(paramiko.SSHClient(), "127.0.0.1", changed)
    with pytest.raises(ValueError, match="unknown host key policy"):
        make_policy("yolo", instance_id="i-9", expected=None, known_hosts_path=path)
