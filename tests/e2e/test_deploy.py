"""deploy end to end on the sandbox: all eleven stages against 50 instances, a repeated
run that creates nothing, a run killed during install and resumed, teardown to zero,
the critical path, and bad input refused before anything is created."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from flows.deploy import DeployReport, deploy
from sandbox import Sandbox, SandboxConfig

from ..support import client, lb_port, make_sandbox

N = 50
DEPLOYMENT = "deploytest"


@pytest.fixture(scope="module")
def sb() -> Any:
    # Beanstalk is made slower than RDS + jumphost so the timeline can show 9 starting
    # before 7 ends, as it must when stages start on what they need, not on barriers
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        rds_create_seconds=0.3,
        eb_launch_seconds=25.0,  # well past RDS + jumphost even on a loaded 2-core box
        health_check_interval=0.3,
        drop_hold_seconds=3.0,
    )
    with make_sandbox(cfg, env=True) as s:
        yield s


@pytest.fixture(scope="module")
def base(tmp_path_factory: Any) -> Path:
    return Path(tmp_path_factory.mktemp("deploy"))


def overrides(base: Path, name: str = DEPLOYMENT) -> dict[str, Any]:
    return {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": name,
        "traffic_requests": 20,
    }


def count_resources(sb: Sandbox, name: str = DEPLOYMENT) -> dict[str, int]:
    """What carries the deployment's tag, counted through the AWS API."""
    tag = [{"Name": "tag:tomcat-fleet:deployment", "Values": [name]}]
    ec2, elb = client(sb, "ec2"), client(sb, "elbv2")
    instances = [
        i
        for r in ec2.describe_instances(Filters=tag)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] in ("pending", "running")
    ]
    lbs = elb.describe_load_balancers()["LoadBalancers"]
    tagged_lbs = [
        lb
        for lb in lbs
        if any(
            t["Key"] == "tomcat-fleet:deployment" and t["Value"] == name
            for d in elb.describe_tags(ResourceArns=[lb["LoadBalancerArn"]])["TagDescriptions"]
            for t in d["Tags"]
        )
    ]
    tgs = [
        tg
        for tg in elb.describe_target_groups()["TargetGroups"]
        if tg["TargetGroupName"].startswith(name)
    ]
    acm = client(sb, "acm")
    certs = [
        c
        for c in acm.list_certificates()["CertificateSummaryList"]
        if any(
            t["Key"] == "tomcat-fleet:deployment" and t["Value"] == name
            for t in acm.list_tags_for_certificate(CertificateArn=c["CertificateArn"]).get(
                "Tags", []
            )
        )
    ]
    envs = [
        e
        for e in client(sb, "elasticbeanstalk").describe_environments()["Environments"]
        if e["EnvironmentName"].startswith(name) and e["Status"] != "Terminated"
    ]
    dbs = [
        d
        for d in client(sb, "rds").describe_db_instances()["DBInstances"]
        if d["DBInstanceIdentifier"].startswith(name)
    ]
    groups = ec2.describe_security_groups(Filters=tag)["SecurityGroups"]
    return {
        "instances": len(instances),
        "load_balancers": len(tagged_lbs),
        "target_groups": len(tgs),
        "certificates": len(certs),
        "environments": len(envs),
        "databases": len(dbs),
        "security_groups": len(groups),
    }


@pytest.fixture(scope="module")
def first(sb: Sandbox, base: Path) -> DeployReport:
    report = deploy(
        instances=N,
        stages="1-11",
        chunk_size=25,
        desired_count=2,
        settings_overrides=overrides(base),
    )
    assert isinstance(report, DeployReport)
    return report


def test_all_eleven_stages_complete(first: DeployReport) -> None:
    assert [r.status for r in first.stages] == ["completed"] * 11
    assert first.install["installed"] == N
    assert first.resources["select_1"] == "1"
    traffic = first.resources["alb_traffic"]
    assert traffic["by_scheme"]["http"]["ok"] > 0 and traffic["by_scheme"]["https"]["ok"] > 0


def test_alb_answers_from_every_instance_over_http_and_https(
    sb: Sandbox, first: DeployReport
) -> None:
    names = sb.state()["names"]
    dns = first.urls["alb_http"].split("/")[2]
    domain = first.urls["alb_https"].split("/")[2]
    address = names[dns.lower()]
    assert names[domain] == address  # the alias record points at the balancer
    http_port, https_port = lb_port(sb, 80), lb_port(sb, 443)  # 8080/8443 without low ports
    seen_http, seen_https = set(), set()
    for _ in range(3 * N):
        with urllib.request.urlopen(f"http://{address}:{http_port}/", timeout=5) as resp:
            seen_http.add(resp.headers["X-Instance-Id"])
    ctx = ssl.create_default_context(cafile=sb.ca.ca_path)
    for _ in range(3 * N):
        with (
            socket.create_connection((address, https_port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 200")
        seen_https.add(
            next(
                line.split(":", 1)[1].strip()
                for line in head.splitlines()
                if line.lower().startswith("x-instance-id")
            )
        )
    assert len(seen_http) == N and len(seen_https) == N


def test_critical_path_is_not_a_barrier(first: DeployReport) -> None:
    st = {r.stage: r for r in first.stages}
    assert st[7].seconds is not None and st[8].seconds is not None
    assert st[7].seconds > st[8].seconds  # Beanstalk is the slow one here
    assert st[9].started_s is not None and st[7].ended_s is not None
    assert st[9].started_s < st[7].ended_s  # 9 needed only 8


def test_second_run_creates_nothing_and_is_faster(
    sb: Sandbox, base: Path, first: DeployReport
) -> None:
    before = count_resources(sb)
    calls = sb.state()["api"]["calls"]
    again = deploy(
        instances=N,
        stages="1-11",
        chunk_size=25,
        desired_count=2,
        settings_overrides=overrides(base),
    )
    assert [r.status for r in again.stages] == ["completed"] * 11
    assert count_resources(sb) == before
    after = sb.state()["api"]["calls"]
    for action in (
        "ec2:RunInstances",
        "elasticloadbalancing:CreateLoadBalancer",
        "acm:RequestCertificate",
        "elasticbeanstalk:CreateEnvironment",
        "rds:CreateDBInstance",
    ):
        assert after.get(action, 0) == calls.get(action, 0), action
    assert again.install["already_installed"] == N
    assert again.seconds < first.seconds


def test_killed_during_install_then_rerun(sb: Sandbox, base: Path) -> None:
    name = "crashtest"
    ov = overrides(base, name)
    env = {**os.environ, **sb.env()}
    cmd = [
        sys.executable,
        "-m",
        "flows",
        "deploy",
        "--instances",
        "12",
        "--stages",
        "1-3",
        "--deployment-name",
        name,
        "--state-dir",
        ov["state_dir"],
        "--log-dir",
        ov["log_dir"],
        "--chunk-size",
        "6",
        "--desired-count",
        "2",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    logs = Path(ov["log_dir"])
    deadline = time.monotonic() + 120
    while not list(logs.glob("install-*/chunk-*.log")):
        assert proc.poll() is None, "deploy ended before the install stage started"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    again = deploy(instances=12, stages="1-3", chunk_size=6, desired_count=2, settings_overrides=ov)
    assert again.install["installed"] == 12
    assert count_resources(sb, name)["instances"] == 12


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"instances": 0}, "instances"),
        ({"stages": "1-12"}, "stages"),
        ({"domain": "www.elsewhere.org"}, "domain"),
        ({"instance_type": "t9.mega"}, "instance_type"),
        (
            {"hosted_zone": "missing.example.net", "domain": "www.missing.example.net"},
            "hosted_zone",
        ),
    ],
)
def test_bad_input_refused_before_anything_is_created(
    sb: Sandbox, base: Path, kwargs: dict[str, Any], field: str
) -> None:
    calls = dict(sb.state()["api"]["calls"])
    args: dict[str, Any] = {"instances": 2, "settings_overrides": overrides(base, "badinput")}
    state = deploy(**{**args, **kwargs}, return_state=True)
    assert state.is_failed()
    assert field in str(state.message)
    after = sb.state()["api"]["calls"]
    created = {
        k: after[k] - calls.get(k, 0)
        for k in after
        if k.split(":")[1].startswith(
            ("Create", "Run", "Request", "Authorize", "Put", "Register", "Import")
        )
        and after[k] != calls.get(k, 0)
    }
    assert created == {}


def test_teardown_leaves_nothing_tagged(sb: Sandbox, base: Path, first: DeployReport) -> None:
    from flows.teardown import teardown

    teardown(deployment_name=DEPLOYMENT, settings_overrides=overrides(base))
    assert all(v == 0 for v in count_resources(sb).values()), count_resources(sb)
    teardown(deployment_name=DEPLOYMENT, settings_overrides=overrides(base))
