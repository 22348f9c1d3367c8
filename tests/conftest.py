"""Shared test helpers: boto3 clients and SSH against a sandbox."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import boto3
import paramiko
import pytest

from sandbox import Sandbox


def client(sb: Sandbox, service: str, **kw: Any) -> Any:
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=sb.endpoint,
        region_name=sb.cfg.region,
        aws_access_key_id="sandbox-access-key",
        aws_secret_access_key="sandbox-secret-key",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        **kw,
    )


def ssh(ip: str, port: int, key_pem: str, timeout: float = 5.0) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    c.connect(
        ip,
        port=port,
        username="ubuntu",
        pkey=paramiko.RSAKey.from_private_key(io.StringIO(key_pem)),
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        look_for_keys=False,
        allow_agent=False,
    )
    return c


def run(c: paramiko.SSHClient, cmd: str, timeout: float = 30) -> tuple[int, str, str]:
    _, out, err = c.exec_command(cmd, timeout=timeout)
    status = out.channel.recv_exit_status()
    return status, out.read().decode(), err.read().decode()


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


@pytest.fixture
def tmp_env_file(tmp_path: Any) -> str:
    return str(tmp_path / "sandbox.env")
