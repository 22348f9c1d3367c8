"""Shared test helpers: boto3 clients and SSH against a sandbox, and the test session's
one Prefect server (started before any test module imports Prefect, so every process,
thread and pool worker reports to it; none starts a temporary server of its own)."""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable
from typing import Any

import boto3
import paramiko
import pytest

from sandbox import Sandbox

_prefect: contextlib.AbstractContextManager[Any] | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _prefect
    from tasks.runtime.prefect_api import prefect_api  # imports no Prefect

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    _prefect = prefect_api()
    _prefect.__enter__()


def pytest_unconfigure(config: pytest.Config) -> None:
    import sys

    if "prefect.logging.handlers" in sys.modules:  # send buffered logs while the API is up
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    if _prefect is not None:
        _prefect.__exit__(None, None, None)


@contextlib.contextmanager
def sandbox_env(sb: Sandbox) -> Any:
    """The sandbox's env file, applied to this process (as `set -a; . .sandbox.env`)."""
    saved = {k: os.environ.get(k) for k in sb.env()}
    os.environ.update(sb.env())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
