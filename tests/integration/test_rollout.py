"""The rollout flow on a real sandbox: a serving fleet (deploy stages 1-4, 12 hosts behind
the ALB) reinstalled in waves under continuous traffic through the ALB.

The recipe reinstalls the package (`apt-get install --reinstall tomcat9`): on the
sandbox, as with dpkg, the old package's prerm stops Tomcat and its port refuses until the
postinst starts it again, so a host still receiving requests while it is reinstalled would
fail them. The sandbox's balancer drains a deregistered target (no new requests) for the
target group's deregistration delay, set small here through `deregistration_delay_s`.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from blocks.settings import DEFAULT_INSTALL_STEPS, FleetSettings
from flows.deploy import deploy
from flows.rollout import rollout
from sandbox import Sandbox, SandboxConfig
from tasks.rollout.plan import RolloutState
from tasks.runtime.outcome import outcome_of

from ..support import Traffic, client, lb_port, make_sandbox, max_out_of_service

N = 12
CFG = SandboxConfig(
    install_latency=0.3,
    boot_delay=0.2,
    cloud_init_seconds=0.2,
    health_check_interval=1.0,  # its checks time out after min(2, interval) s: a loaded
    # box may be slow to answer one, and two in a row would count a serving host as out
    drop_hold_seconds=2.0,
)


def recipe(marker: str) -> list[dict[str, Any]]:
    """The default recipe with the package reinstalled (a new version of the recipe:
    `marker` changes the verify step's command, so each test rolls out its own)."""
    steps = [s.model_dump() for s in DEFAULT_INSTALL_STEPS]
    for s in steps:
        if s["name"] == "install":
            s["command"] = s["command"].replace("install -y", "install --reinstall -y")
        if s["name"] == "verify":
            s["command"] += f" --header 'X-Rollout: {marker}'"
    return steps


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("rollout")
    ov = {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": "rollouttest",
        "deregistration_delay_s": 1,
        "ssh_wait_s": 60,
    }
    with make_sandbox(CFG, env=True) as sb:
        state = deploy(
            instances=N, stages="1-4", runner="thread", settings_overrides=ov, return_state=True
        )
        assert state.is_completed(), state.message
        yield sb, ov


def alb(sb: Sandbox) -> tuple[str, str, str]:
    """(address, DNS name, target group ARN) of the one balancer."""
    (name, lb), *_ = sb.state()["load_balancers"].items()
    tg = client(sb, "elbv2").describe_target_groups()["TargetGroups"][0]["TargetGroupArn"]
    return lb["address"], name, tg


def health(sb: Sandbox, tg: str) -> dict[str, str]:
    descs = client(sb, "elbv2").describe_target_health(TargetGroupArn=tg)
    return {
        d["Target"]["Id"]: d["TargetHealth"]["State"] for d in descs["TargetHealthDescriptions"]
    }


def test_twelve_hosts_in_waves_under_traffic_fail_no_request(estate: Any) -> None:
    sb, ov = estate
    address, name, tg = alb(sb)
    before = health(sb, tg)
    assert len(before) == N and set(before.values()) == {"healthy"}
    attrs = client(sb, "elbv2").describe_target_group_attributes(TargetGroupArn=tg)["Attributes"]
    assert {a["Key"]: a["Value"] for a in attrs}["deregistration_delay.timeout_seconds"] == "1"
    transitions = sb.fleet.balancers.transitions  # type: ignore[union-attr]
    overrides = {**ov, "install_steps": recipe("a")}
    with Traffic(address, lb_port(sb, 80), name, workers=3, max_s=85) as traffic:
        time.sleep(1.0)  # traffic flowing before the first host leaves
        t0 = time.monotonic()
        state = rollout(
            waves="1,25%",
            max_errors="0",
            poll_s=0.2,
            health_timeout_s=30,
            settings_overrides=overrides,
            return_state=True,
        )
        t1 = time.monotonic()
        time.sleep(1.0)
    report = outcome_of(state)
    assert state.is_completed(), state.message
    assert isinstance(report, RolloutState)
    assert [len(w.hosts) for w in report.waves] == [1, 3, 3, 3, 2]
    assert report.counts() == {"upgraded": N, "failed": 0, "untouched": 0}
    assert set(report.versions()) == {report.version}
    worst = max_out_of_service(transitions, tg, set(before), t0, t1)
    print(
        f"\nrollout (a): {traffic.sent} requests, {traffic.failed} failed "
        f"{dict(traffic.counts)}, max out of service {worst}, rollout {t1 - t0:.1f}s, "
        f"{len(traffic.backends)} backends answered"
    )
    assert traffic.failed == 0, traffic.errors
    assert traffic.sent >= 200, traffic.counts
    if worst > 3:
        for at, arn, tid, new in list(transitions):
            if arn == tg and t0 - 1 <= at <= t1:
                print(f"{at - t0:7.3f} {tid} {new}")
    assert 1 <= worst <= 3
    assert set(health(sb, tg).values()) == {"healthy"}
    # every host really was reinstalled: tomcat stopped and started again on each
    hosts = {h["instance_id"]: h for h in sb.state()["hosts"]}
    assert all(hosts[i]["tomcat"] == "running" for i in before)
    saved = FleetSettings(**ov)
    from tasks.deploy.inventory import read_versions

    assert read_versions(saved) == dict.fromkeys(before, report.version)
    # the artifacts: a table per wave, the progress and the report
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = [f"rollouttest-rollout-wave-{n}" for n in range(1, 6)]
    keys += ["rollouttest-rollout-progress", "rollouttest-rollout-report"]
    with get_client(sync_client=True) as api:
        for key in keys:
            found = api.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
            assert found, key


def test_a_failing_wave_stops_the_rollout_and_later_hosts_stay_untouched(estate: Any) -> None:
    sb, ov = estate
    address, name, tg = alb(sb)
    ids = sorted(health(sb, tg))
    second = ids[1:4]  # waves 1,25% on 12 hosts: 1, 3, 3, 3, 2
    sb.break_installs(second)
    commands_before = {h["instance_id"]: h["commands_run"] for h in sb.state()["hosts"]}
    overrides = {**ov, "install_steps": recipe("b"), "host_attempts": 1}
    transitions = sb.fleet.balancers.transitions  # type: ignore[union-attr]
    t0 = time.monotonic()
    try:
        with Traffic(address, lb_port(sb, 80), name, workers=2, max_s=85) as traffic:
            state = rollout(
                waves="1,25%",
                max_errors="0",
                poll_s=0.2,
                health_timeout_s=30,
                settings_overrides=overrides,
                return_state=True,
            )
    finally:
        sb.break_installs(second, broken=False)
    worst = max_out_of_service(transitions, tg, set(ids), t0, time.monotonic())
    report = outcome_of(state)
    assert state.is_failed(), state.message
    assert "stopped after wave 2" in str(state.message)
    assert isinstance(report, RolloutState) and report.stopped_at == 2
    assert report.by_state("upgraded") == ids[:1]
    assert report.by_state("failed") == second
    untouched = report.by_state("untouched")
    assert untouched == ids[4:]
    print(
        f"\nrollout (b): upgraded {report.by_state('upgraded')}, failed {second}, "
        f"untouched {len(untouched)}; traffic {traffic.sent} sent, {traffic.failed} failed, "
        f"max out of service {worst}"
    )
    assert worst <= 3
    assert all("Failed to fetch" in report.hosts[i].reason for i in second)
    # the later waves' hosts: never logged into, still healthy and serving
    after = {h["instance_id"]: h["commands_run"] for h in sb.state()["hosts"]}
    assert all(after[i] == commands_before[i] for i in untouched)
    now = health(sb, tg)
    assert all(now[i] == "healthy" for i in [*ids[:1], *untouched])
    assert all(i not in now for i in second)  # failed hosts stay out of the target group
    assert traffic.failed == 0, traffic.errors
    assert set(traffic.backends) >= set(untouched)


def test_the_command_rolls_out_the_hosts_in_the_target_group(
    estate: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tomcat-fleet rollout` with the recipe from the environment: the fleet is what the
    target group holds (the hosts test (b) failed stay out of it), one JSON line out."""
    import json

    from tasks.cli.app import main

    sb, ov = estate
    _, _, tg = alb(sb)
    serving = sorted(i for i, s in health(sb, tg).items() if s == "healthy")
    monkeypatch.setenv("TOMCAT_FLEET_INSTALL_STEPS", json.dumps(recipe("c")))
    monkeypatch.setenv("TOMCAT_FLEET_SSH_WAIT_S", "60")
    args = ["rollout", "--waves", "50%", "--poll-s", "0.2", "--health-timeout-s", "30"]
    args += ["--deployment-name", ov["deployment_name"], "--state-dir", ov["state_dir"]]
    rc = main([*args, "--log-dir", ov["log_dir"]])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, line
    assert (line["upgraded"], line["failed"], line["untouched"]) == (len(serving), 0, 0)
    assert line["waves"] == line["planned_waves"] == 3 and line["stopped_at"] is None
    assert sorted(i for i, s in health(sb, tg).items() if s == "healthy") == serving
