"""The Amazon Linux 2023 recipe end to end (`recipe=al2023`): all eleven stages deploy on the
sandbox under the shipped policy; every instance is launched from the image the AL2023
parameter names, logs in as ec2-user, installs tomcat10 with dnf (no apt command is sent)
and serves through the ALB. The image's login user is the only one its hosts accept, as on
AWS: `ubuntu` is refused on an AL2023 host, `ec2-user` on an Ubuntu one.

One module-scoped deploy feeds the tests."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from blocks.recipes import AL2023
from flows.deploy import DeployReport, deploy
from sandbox import Sandbox
from sandbox.ssm_seed import AL2023_AMI, UBUNTU_2204_AMI
from tasks.aws.ec2 import TAG_KEY

from ..support import client, fast_all_stages, lb_port, make_sandbox, run, ssh, wait_for

N = 3
DEPLOYMENT = "al2023test"


@dataclass
class Deployed:
    sb: Sandbox
    report: DeployReport
    key_pem: str
    seconds: float


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = Path(tmp_path_factory.mktemp("al2023"))
    overrides: dict[str, Any] = {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": DEPLOYMENT,
        "traffic_requests": 10,
        "recipe": "al2023",
    }
    cfg = fast_all_stages()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with make_sandbox(cfg, env=True) as sb:
            t0 = time.monotonic()
            state = deploy(
                instances=N,
                stages="1-11",
                chunk_size=2,
                desired_count=2,
                settings_overrides=overrides,
                return_state=True,
            )
            seconds = time.monotonic() - t0
            report = state.result(raise_on_failure=False)
            assert isinstance(report, DeployReport), f"deploy failed: {state.message}"
            key = (base / "state" / DEPLOYMENT / f"{DEPLOYMENT}.pem").read_text()
            yield Deployed(sb, report, key, seconds)


def _instances(sb: Sandbox) -> list[dict[str, Any]]:
    desc = client(sb, "ec2").describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": [DEPLOYMENT]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    return [i for r in desc["Reservations"] for i in r["Instances"]]


def test_all_eleven_stages_complete(deployed: Deployed) -> None:
    report = deployed.report
    assert [r.status for r in report.stages] == ["completed"] * 11, report.stages
    assert report.install["installed"] == N and report.install.get("failed", 0) == 0
    assert report.resources["select_1"] == "1"  # the jumphost's mariadb105 client
    traffic = report.resources["alb_traffic"]
    assert traffic["by_scheme"]["http"]["ok"] > 0 and traffic["by_scheme"]["https"]["ok"] > 0
    print(f"al2023 deploy: 11 stages, {N} hosts installed, {deployed.seconds:.1f}s")


def test_instances_run_the_al2023_image(deployed: Deployed) -> None:
    roles: dict[str, set[str]] = {}
    for inst in _instances(deployed.sb):
        roles.setdefault(_role(inst), set()).add(inst["ImageId"])
    # the web hosts, the jumphost and the traffic generator: all the recipe's image
    assert sum(1 for i in _instances(deployed.sb) if _role(i) == "web") == N
    for role in ("web", "jumphost", "traffic"):
        assert roles.get(role) == {AL2023_AMI}, roles
    param = client(deployed.sb, "ssm").get_parameter(Name=AL2023.ami_parameter)
    assert param["Parameter"]["Value"] == AL2023_AMI


def test_hosts_installed_tomcat10_with_dnf(deployed: Deployed) -> None:
    sb = deployed.sb
    web = {i["InstanceId"] for i in _instances(sb) if _role(i) == "web"}
    assert len(web) == N
    hosts = {h["instance_id"]: h for h in sb.state()["hosts"]}
    for iid in web:
        h = hosts[iid]
        assert h["os"] == "al2023" and h["image_id"] == AL2023_AMI
        assert {"tomcat10", "tomcat10-webapps"} <= set(h["packages"])
        assert h["tomcat"] == "running"
    assert sb.fleet is not None
    records = [r for r in sb.fleet.commands.records() if r["instance_id"] in web]
    assert {r["user"] for r in records} == {"ec2-user"}
    sent = [r["command"] for r in records]
    assert "sudo dnf install -y -q tomcat10 tomcat10-webapps" in sent
    assert "sudo systemctl enable --now tomcat10" in sent
    assert not [c for c in sent if "apt" in c or "dpkg" in c]


def _role(inst: dict[str, Any]) -> str:
    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    return tags.get("tomcat-fleet:role", "")


def test_alb_answers_200_from_tomcat10(deployed: Deployed) -> None:
    sb, report = deployed.sb, deployed.report
    address = sb.state()["names"][report.urls["alb_http"].split("/")[2].lower()]
    seen = set()
    for _ in range(3 * N):
        url = f"http://{address}:{lb_port(sb, 80)}/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
            assert "Apache Tomcat/10.1" in resp.read().decode()
            seen.add(resp.headers["X-Instance-Id"])
    assert len(seen) == N


def test_login_user_is_the_images(deployed: Deployed) -> None:
    """ubuntu is refused on an AL2023 host, ec2-user accepted; on an Ubuntu host the other
    way round (the same key pair)."""
    sb, key = deployed.sb, deployed.key_pem
    al = next(i for i in _instances(sb) if _role(i) == "web")
    ip, port = al["PublicIpAddress"], sb.ssh_port
    with pytest.raises(paramiko.AuthenticationException):
        ssh(ip, port, key, user="ubuntu")
    c = ssh(ip, port, key, user="ec2-user")
    try:
        assert run(c, "whoami")[1] == "ec2-user\n"
        assert run(c, "apt-get update")[0] == 127
    finally:
        c.close()

    iid, ubuntu_ip = _launch(sb, UBUNTU_2204_AMI, al)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            ssh(ubuntu_ip, port, key, user="ec2-user")
        c = ssh(ubuntu_ip, port, key, user="ubuntu")
        try:
            assert run(c, "whoami")[1] == "ubuntu\n"
            assert run(c, "dnf --version")[0] == 127
        finally:
            c.close()
    finally:
        client(sb, "ec2").terminate_instances(InstanceIds=[iid])


def _launch(sb: Sandbox, ami: str, like: dict[str, Any]) -> tuple[str, str]:
    """One instance from `ami` with `like`'s key pair and groups, once its SSH is up."""
    res = client(sb, "ec2").run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        KeyName=like["KeyName"],
        SecurityGroupIds=[g["GroupId"] for g in like["SecurityGroups"]],
    )
    iid = res["Instances"][0]["InstanceId"]
    ip = wait_for(
        lambda: next(
            (
                h["public_ip"]
                for h in sb.state()["hosts"]
                if h["instance_id"] == iid and h["booted"]
            ),
            None,
        )
    )
    return iid, ip


def test_tomcat10_without_its_webapps_answers_404(deployed: Deployed) -> None:
    """As on AWS: tomcat10 alone has no ROOT webapp, so the recipe's probe fails until
    tomcat10-webapps is installed."""
    sb, key = deployed.sb, deployed.key_pem
    al = next(i for i in _instances(sb) if _role(i) == "web")
    iid, ip = _launch(sb, AL2023_AMI, al)
    try:
        c = ssh(ip, sb.ssh_port, key, user="ec2-user")
        try:
            install = "sudo dnf install -y -q tomcat10 && sudo systemctl enable --now tomcat10"
            assert run(c, install)[0] == 0
            status, _, err = run(c, AL2023.probe_command)
            assert status == 22 and "404" in err, err
            assert run(c, "sudo dnf install -y -q tomcat10-webapps")[0] == 0
            assert run(c, AL2023.probe_command)[0] == 0
        finally:
            c.close()
    finally:
        client(sb, "ec2").terminate_instances(InstanceIds=[iid])
