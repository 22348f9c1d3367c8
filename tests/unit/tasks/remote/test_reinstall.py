"""The recipe with `reinstall=True` (the rollout's): the steps run on a host that already
answers the probe, and the probe must answer after them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

import tasks.remote.recipe as recipe
from blocks.install_steps import InstallStep
from tasks.models import Instance
from tasks.remote.config import HostInstallConfig
from tasks.remote.connection import Result


class FakeConnection:
    """Answers each command from `answers` (command -> exit status); records them."""

    answers: dict[str, int] = {}
    ran: list[str] = []

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def load_key(self) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def redact(self, text: str) -> str:
        return text

    def backoff(self, n: int) -> float:
        return 0.0

    def run(self, command: str, timeout: float) -> Result:
        FakeConnection.ran.append(command)
        status = FakeConnection.answers.get(command, 0)
        return Result(status, "", "" if status == 0 else "it broke")


def cfg(reinstall: bool) -> HostInstallConfig:
    return HostInstallConfig(
        ssh_port=22,
        ssh_user="ubuntu",
        key_pem=SecretStr("unused"),
        known_hosts_path="/nonexistent",
        steps=[InstallStep(name="install", command="reinstall-it")],
        probe_command="probe-it",
        reinstall=reinstall,
        host_attempts=1,
    )


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipe, "Connection", FakeConnection)
    FakeConnection.answers, FakeConnection.ran = {}, []


HOST = Instance(instance_id="i-1", public_ip="127.0.0.1")


def test_install_skips_a_host_that_serves_but_a_rollout_does_not() -> None:
    assert recipe.install_host(HOST, cfg(False)).already_installed
    assert FakeConnection.ran == ["probe-it"]
    FakeConnection.ran = []
    res = recipe.install_host(HOST, cfg(True))
    assert res.status == "installed" and not res.already_installed
    assert FakeConnection.ran == ["reinstall-it", "probe-it"]


def test_a_rollout_fails_the_host_when_the_probe_does_not_answer_after() -> None:
    FakeConnection.answers = {"probe-it": 7}
    res = recipe.install_host(HOST, cfg(True))
    assert res.status == "failed"
    assert res.reason == "probe after the install exited 7: it broke"
