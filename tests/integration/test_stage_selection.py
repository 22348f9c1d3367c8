"""`deploy --stages` runs exactly the stages named (issue 12): stage 1 alone launches and
installs nothing; a stage whose input comes from a stage not selected finds it (saved
inventory, tags) or fails at once naming the stage to run; statuses are true. Small: two
instances, short latencies, one sandbox for the module."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from blocks.settings import FleetSettings
from flows.deploy import DeployReport, deploy
from sandbox import Sandbox, SandboxConfig
from tasks.aws.ec2 import TAG_KEY
from tasks.runtime.outcome import outcome_of

from ..support import client, make_sandbox

N = 2


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(install_latency=0.1, boot_delay=0.2, cloud_init_seconds=0.2)
    with make_sandbox(cfg, env=True) as s:
        yield s


def overrides(tmp: Any, name: str) -> dict[str, Any]:
    return {
        "state_dir": str(tmp / "state"),
        "log_dir": str(tmp / "logs"),
        "deployment_name": name,
    }


def run(**kw: Any) -> tuple[Any, DeployReport]:
    state = deploy(instances=N, return_state=True, **kw)
    report = outcome_of(state)
    assert isinstance(report, DeployReport), state.message
    return state, report


def statuses(report: DeployReport) -> dict[int, str]:
    return {r.stage: r.status for r in report.stages}


def running(sb: Sandbox, name: str) -> list[dict[str, Any]]:
    res = client(sb, "ec2").describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": [name]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [i for r in res["Reservations"] for i in r["Instances"]]


def tomcat_of(sb: Sandbox, ids: set[str]) -> dict[str, str]:
    hosts = sb.state()["hosts"]
    return {h["instance_id"]: h["tomcat"] for h in hosts if h["instance_id"] in ids}


def test_stage_1_alone_launches_and_installs_nothing(sb: Sandbox, tmp_path: Any) -> None:
    ov = overrides(tmp_path, "sel-one")
    state, report = run(stages="1", settings_overrides=ov)
    assert state.is_completed(), state.message
    got = statuses(report)
    assert got[1] == "completed"
    assert all(got[n] == "not run" for n in range(2, 12)), got
    assert all(r.detail == "not selected" for r in report.stages if r.stage != 1)
    ids = {i["InstanceId"] for i in running(sb, "sel-one")}
    assert len(ids) == N
    time.sleep(1.0)  # anything started in the background would be visible by now
    assert set(tomcat_of(sb, ids).values()) == {"absent"}
    inv = FleetSettings(**ov)
    assert not (tmp_path / "state" / inv.deployment_name / "inventory.json").exists()

    # 2,3 later: stage 2 finds stage 1's instances by tag; 3 saves every host's status
    state, report = run(stages="2,3", settings_overrides=ov)
    assert state.is_completed(), state.message
    assert statuses(report)[1] == "not run" and statuses(report)[2] == "completed"
    assert set(tomcat_of(sb, ids).values()) == {"running"}
    saved = json.loads((tmp_path / "state" / "sel-one" / "inventory.json").read_text())
    assert set(saved["status"]) == ids and set(saved["status"].values()) == {"installed"}

    # 3 alone: the statuses come from the saved inventory
    state, report = run(stages="3", settings_overrides=ov)
    assert state.is_completed(), state.message
    assert statuses(report)[3] == "completed" and statuses(report)[2] == "not run"


def test_missing_input_fails_at_once_naming_the_stage(sb: Sandbox, tmp_path: Any) -> None:
    ov = overrides(tmp_path, "sel-none")
    t0 = time.monotonic()
    state, report = run(stages="4", settings_overrides=ov)
    assert state.is_failed()
    got = statuses(report)
    assert got[4] == "failed" and all(got[n] == "not run" for n in got if n != 4), got
    detail = next(r.detail for r in report.stages if r.stage == 4)
    assert "stage 4 (application-load-balancer) needs stage 3's inventory" in detail
    assert "run --stages 3 first or include it" in detail
    assert time.monotonic() - t0 < 60
    assert running(sb, "sel-none") == []

    state, report = run(stages="2", settings_overrides=ov)
    assert state.is_failed()
    detail = next(r.detail for r in report.stages if r.stage == 2)
    assert "needs stage 1's" in detail, detail
    assert running(sb, "sel-none") == []
