"""A deployment's lives (issue 12): deploy -> teardown -> deploy -> teardown under one name,
counts checked through the AWS API after each step, then a third life whose deploy is
SIGKILLed while the jumphost / traffic generators launch and a rerun converges. Those
launches had fixed ClientTokens, so a second life got the terminated instances back.
Small and bounded for CI: 2 web instances, all eleven stages with sandbox latencies near
zero, one sandbox for the module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flows.deploy import DeployReport, deploy
from flows.teardown import teardown
from sandbox import Sandbox, SandboxConfig

from ..support import client, make_sandbox
from .test_deploy import count_resources

N = 2
NAME = "lifetest"


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        rds_create_seconds=0.3,
        eb_launch_seconds=0.5,
        health_check_interval=0.3,
    )
    with make_sandbox(cfg, env=True) as s:
        yield s


@pytest.fixture(scope="module")
def ov(tmp_path_factory: Any) -> dict[str, Any]:
    base = Path(tmp_path_factory.mktemp("life"))
    return {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": NAME,
        "traffic_requests": 10,
    }


def full_deploy(ov: dict[str, Any]) -> DeployReport:
    state = deploy(instances=N, stages="1-11", settings_overrides=ov, return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, DeployReport), state.message
    assert [r.status for r in report.stages] == ["completed"] * 11, [
        (r.stage, r.status, r.detail) for r in report.stages
    ]
    return report


def tear_down(sb: Sandbox, ov: dict[str, Any]) -> None:
    report = teardown(deployment_name=NAME, settings_overrides=ov)
    assert not report.errors
    assert all(v == 0 for v in count_resources(sb, NAME).values()), count_resources(sb, NAME)
    assert not (Path(ov["state_dir"]) / NAME / "inventory.json").exists()  # local state too


def roles(sb: Sandbox) -> dict[str, set[str]]:
    """Live instances of the deployment by role tag."""
    res = client(sb, "ec2").describe_instances(
        Filters=[
            {"Name": "tag:tomcat-fleet:deployment", "Values": [NAME]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    out: dict[str, set[str]] = {}
    for r in res["Reservations"]:
        for i in r["Instances"]:
            role = {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("tomcat-fleet:role", "")
            out.setdefault(role, set()).add(i["InstanceId"])
    return out


@pytest.fixture(scope="module")
def first_life(sb: Sandbox, ov: dict[str, Any]) -> tuple[dict[str, int], dict[str, set[str]]]:
    report = full_deploy(ov)
    assert report.resources["select_1"] == "1"
    counts, live = count_resources(sb, NAME), roles(sb)
    assert counts["instances"] >= N + 1 and len(live["web"]) == N  # web + jumphost (+ generators)
    assert counts["load_balancers"] == 2 and counts["databases"] == 1  # ALB + Beanstalk's
    assert counts["environments"] == 1 and counts["certificates"] == 1
    tear_down(sb, ov)
    return counts, live


def test_deploy_teardown_deploy_teardown(
    sb: Sandbox, ov: dict[str, Any], first_life: tuple[dict[str, int], dict[str, set[str]]]
) -> None:
    counts, live = first_life
    full_deploy(ov)
    assert count_resources(sb, NAME) == counts
    again = roles(sb)
    assert {k: len(v) for k, v in again.items()} == {k: len(v) for k, v in live.items()}
    for role in again:  # fresh instances in the new life, none handed back from the old one
        assert not again[role] & live[role], role
    tear_down(sb, ov)


def test_killed_deploy_in_a_new_life_converges(
    sb: Sandbox, ov: dict[str, Any], first_life: tuple[dict[str, int], dict[str, set[str]]]
) -> None:
    counts, _ = first_life
    cmd = [sys.executable, "-m", "flows", "deploy", "--instances", str(N), "--stages", "1-11"]
    for opt in ("deployment_name", "state_dir", "log_dir"):
        cmd += [f"--{opt.replace('_', '-')}", str(ov[opt])]
    env = {**os.environ, **sb.env(), "TOMCAT_FLEET_TRAFFIC_REQUESTS": "10"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    try:  # kill while the jumphost or a traffic generator is being launched
        while not ({"jumphost", "traffic"} & set(roles(sb))):
            assert proc.poll() is None, "deploy ended before stage 6/9 launched anything"
            assert time.monotonic() < deadline, "no jumphost/generator within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    full_deploy(ov)  # the rerun converges on one estate
    assert count_resources(sb, NAME) == counts
    tear_down(sb, ov)
