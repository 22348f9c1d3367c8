"""The sandbox as users start it (`python -m sandbox`), its bad-input errors, and throttling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import botocore.exceptions
import pytest

from sandbox import Sandbox, SandboxConfig

from ..support import client, eb_service_role, make_sandbox, wait_for


def _run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fault-profile", "nope"], "fault-profile"),
        (["--account-profile", "crowded"], "account-profile"),
        (["--install-latency", "-1"], "install-latency"),
        (["--throttle-rate", "2"], "throttle-rate"),
    ],
)
def test_bad_options_give_one_line(args: list[str], needle: str, tmp_env_file: str) -> None:
    proc = _run_cli(*args, "--env-file", tmp_env_file)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not os.path.exists(tmp_env_file)


def test_port_in_use_gives_one_line(tmp_env_file: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = _run_cli("--port", str(port), "--env-file", tmp_env_file)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "Traceback" not in proc.stderr


def _start_cli(
    env_file: str, *args: str, prefix: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    """`python -m sandbox` started as users start it: the process, its READY line, its env."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "sandbox", "--env-file", env_file, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    env: dict[str, str] = {}
    if line.startswith("SANDBOX READY"):
        with open(env_file) as f:
            lines = f.read().splitlines()
        env = dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))
    return proc, line, env


def test_cli_ready_line_env_file_and_interrupt(tmp_env_file: str) -> None:
    proc, line, env = _start_cli(tmp_env_file)
    try:
        assert line.startswith("SANDBOX READY endpoint=http://127.0.0.1:")
        assert (
            env["AWS_ENDPOINT_URL"] in line and f"ssh_port={env['TOMCAT_FLEET_SSH_PORT']}" in line
        )
        # the env file alone is enough for boto3
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                # as the operator: an action of docs/iam-policy.json
                "import boto3; ec2 = boto3.client('ec2'); "
                "print(len(ec2.describe_availability_zones()['AvailabilityZones']))",
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and int(out.stdout) > 0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


@pytest.fixture(scope="module")
def throttled() -> Any:
    with make_sandbox(SandboxConfig(throttle_rate=0.5, seed=7)) as s:
        yield s


def test_throttle_rate_refuses_ec2_calls(throttled: Sandbox) -> None:
    ec2 = client(throttled, "ec2")
    refused = 0
    for _ in range(40):
        try:
            ec2.describe_instances()
        except botocore.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "RequestLimitExceeded"
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            refused += 1
    assert 5 < refused < 35
    state = throttled.state()
    assert state["api"]["throttled"]["ec2:DescribeInstances"] == refused
    assert state["api"]["calls"]["ec2:DescribeInstances"] == 40


@pytest.fixture(scope="module")
def default_sb() -> Any:
    with Sandbox(SandboxConfig()) as s:  # token buckets on, as by default
        yield s


def test_default_buckets_throttle_a_burst_like_aws(default_sb: Sandbox) -> None:
    ec2, elb = client(default_sb, "ec2"), client(default_sb, "elbv2")
    codes: list[tuple[str, int]] = []
    served, t0 = 0, time.monotonic()
    # the describe bucket holds 100, refilling 20/s: a burst runs it dry however slowly this
    # machine sends it (a fixed count of calls did not on a loaded one), and no more is
    # served than the bucket and its refill allow
    for _ in range(1000):
        try:
            ec2.describe_vpcs()
            served += 1
        except botocore.exceptions.ClientError as exc:
            codes.append(
                (exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"])
            )
            if len(codes) >= 10:
                break
    elapsed = time.monotonic() - t0
    assert codes and set(codes) == {("RequestLimitExceeded", 503)}
    assert served <= 100 + 20 * elapsed + 1, (served, elapsed)
    elb_codes = set()
    for _ in range(60):  # ELB's describe bucket holds 40, refilling 10/s
        try:
            elb.describe_load_balancers()
        except botocore.exceptions.ClientError as exc:
            elb_codes.add(
                (exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"])
            )
    assert elb_codes == {("Throttling", 400)}
    ec2.describe_regions()  # another API has its own bucket
    throttled = default_sb.state()["api"]["throttled"]
    assert throttled["ec2:DescribeVpcs"] == len(codes)


def test_no_token_buckets_flag() -> None:
    from sandbox.__main__ import build_parser, config_from_args

    on = config_from_args(build_parser().parse_args([]))
    assert on.token_buckets and (on.mutate_bucket_size, on.mutate_refill_per_s) == (50, 5)
    assert (on.describe_bucket_size, on.describe_refill_per_s) == (100, 20)
    assert (on.run_instances_bucket_size, on.run_instances_refill_per_s) == (5, 2)
    off = config_from_args(build_parser().parse_args(["--no-token-buckets"]))
    assert not off.token_buckets
    with Sandbox(off) as sb:
        ec2 = client(sb, "ec2")
        for _ in range(130):
            ec2.describe_vpcs()
        assert sb.state()["api"]["total_throttled"] == 0


STACK = "64bit Amazon Linux 2023 v5.4.0 running Tomcat 10 Corretto 17"


def _beanstalk(sb_endpoint: str, region: str, env: dict[str, str]) -> tuple[str, Any]:
    import boto3
    from botocore.config import Config

    eb, iam = (
        boto3.client(
            service,
            endpoint_url=sb_endpoint,
            region_name=region,
            aws_access_key_id=env["SANDBOX_ADMIN_AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["SANDBOX_ADMIN_AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
        for service in ("elasticbeanstalk", "iam")
    )
    eb.create_application(ApplicationName="ports")
    eb.create_environment(
        ApplicationName="ports",
        EnvironmentName="ports-env",
        SolutionStackName=STACK,
        OptionSettings=eb_service_role(iam),
    )

    def ready() -> str | None:
        envs = eb.describe_environments(EnvironmentNames=["ports-env"])["Environments"]
        return str(envs[0]["CNAME"]) if envs and envs[0]["Status"] == "Ready" else None

    return wait_for(ready, timeout=60), eb


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status)
    except OSError:
        return 0


SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to drop the capability"
)
def test_without_low_ports_balancers_fall_back_and_urls_follow(tmp_env_file: str) -> None:
    """The sandbox run without CAP_NET_BIND_SERVICE (as any non-root user is): balancer
    ports 80/443 listen at 8080/8443 and what the sandbox reports says so."""
    assert SETPRIV is not None
    proc, line, env = _start_cli(
        tmp_env_file,
        "--public-ip-cidr=127.120.0.0/16",
        "--service-ip-cidr=127.121.0.0/16",
        prefix=(SETPRIV, "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service"),
    )
    try:
        assert line.startswith("SANDBOX READY") and "lb_ports=80:8080,443:8443" in line, line
        assert env["TOMCAT_FLEET_SANDBOX_LB_PORTS"] == "80:8080,443:8443"
        cname, _ = _beanstalk(env["AWS_ENDPOINT_URL"], env["AWS_DEFAULT_REGION"], env)
        state_url = env["TOMCAT_FLEET_SANDBOX_STATE_URL"]

        def state() -> dict[str, Any]:
            with urllib.request.urlopen(state_url, timeout=10) as resp:
                return dict(json.load(resp))

        address = wait_for(lambda: state()["names"].get(cname.lower()), timeout=60)
        assert state()["lb_ports"] == {"80": 8080, "443": 8443}
        port = state()["lb_ports"]["80"]
        assert wait_for(lambda: _get(f"http://{address}:{port}/") == 200, timeout=60)
        assert _get(f"http://{address}/") == 0  # nothing could listen on 80
        (lb,) = state()["load_balancers"].values()
        assert lb["listeners"] == [
            {"port": 80, "protocol": "HTTP", "bound_port": 8080, "listening": True}
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_hosts_reach_balancers_through_the_port_mapping() -> None:
    """A host's curl of http://<cname>/ (port 80) reaches a balancer bound at base+80."""
    cfg = SandboxConfig(
        lb_port_base=9000,
        eb_launch_seconds=0.2,
        boot_delay=0.1,
        public_ip_cidr="127.122.0.0/16",
        service_ip_cidr="127.123.0.0/16",
    )
    with Sandbox(cfg) as sb:
        assert sb.env()["TOMCAT_FLEET_SANDBOX_LB_PORTS"] == "80:9080,443:9443"
        cname, _ = _beanstalk(sb.endpoint, sb.cfg.region, sb.env())
        ec2 = client(sb, "ec2")
        iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"
        ]
        sb.wait_settled()
        host = sb.fleet.hosts[iid].state  # type: ignore[union-attr]

        def curl() -> int | None:
            res = sb._call(sb.fleet.http_get(host, f"http://{cname}/", verify_tls=True, timeout=3))  # type: ignore[union-attr]
            return res.status

        assert wait_for(lambda: curl() == 200, timeout=60)
