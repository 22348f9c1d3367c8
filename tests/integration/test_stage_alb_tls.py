"""Deploy stages 4 (ALB) and 5 (HTTPS) on the sandbox: real boto3, real SSH installs, real
HTTP and TLS through the loopback balancers. No mocks of project code."""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from blocks.settings import FleetSettings
from sandbox import Sandbox, SandboxConfig
from tasks.aws import Aws
from tasks.aws.ec2 import (
    StageError,
    authorize_ingress,
    controller_cidr,
    ensure_key_pair,
    ensure_security_group,
    launch_instances,
    wait_running,
)
from tasks.aws.s3 import log_bucket_name
from tasks.deploy.models import AlbResult, InventoryResult, TlsResult
from tasks.deploy.stages.s04_application_load_balancer import create_alb
from tasks.deploy.stages.s05_tls_listener import enable_https
from tasks.models import Instance
from tasks.remote.config import HostInstallConfig
from tasks.remote.recipe import install_host

from ..support import client, lb_port, make_sandbox

N = 6


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        health_check_interval=0.3,
    )
    with make_sandbox(cfg, env=True) as s:
        yield s


@pytest.fixture(scope="module")
def settings(sb: Sandbox, tmp_path_factory: Any) -> FleetSettings:
    return FleetSettings(
        state_dir=str(tmp_path_factory.mktemp("albtls")),
        deployment_name="albtest",
        hosted_zone=sb.cfg.hosted_zone,
    )


def _launch_and_install(
    aws: Aws, settings: FleetSettings, count: int, role: str, token: str
) -> tuple[list[Instance], str]:
    ensure_key_pair(aws, settings)
    sg = ensure_security_group(aws, settings, role=role)
    cidr = controller_cidr(settings)
    authorize_ingress(aws, [sg], [22, 8080], lambda _p: cidr)
    ids = launch_instances(aws, settings, count, sg, client_token=token, role=role)
    instances = wait_running(aws, ids, timeout_s=60, poll_s=0.2)
    cfg = HostInstallConfig(
        ssh_port=settings.ssh_port,
        ssh_user=settings.ssh_user,
        key_pem=settings.key_file_path().read_text(),
        host_key_policy="insecure",
        known_hosts_path=str(settings.known_hosts_path),
        ssh_wait_s=60,
        steps=settings.install_steps,
        probe_command=settings.probe_command,
        backoff_base_s=0.1,
        backoff_cap_s=1.0,
    )
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(lambda i: install_host(i, cfg), instances))
    assert all(r.status == "installed" for r in results), [r.reason for r in results]
    return instances, sg


@pytest.fixture(scope="module")
def inventory(sb: Sandbox, settings: FleetSettings) -> InventoryResult:
    instances, sg = _launch_and_install(Aws(settings), settings, N, "web", "albtest-6")
    return InventoryResult(path="(test)", instances=instances, security_group_ids=[sg])


@pytest.fixture(scope="module")
def alb(sb: Sandbox, settings: FleetSettings, inventory: InventoryResult) -> AlbResult:
    return create_alb(Aws(settings), settings, inventory, timeout_s=60, poll_s=0.2)


@pytest.fixture(scope="module")
def tls(sb: Sandbox, settings: FleetSettings, alb: AlbResult) -> TlsResult:
    return enable_https(Aws(settings), settings, alb, timeout_s=60, poll_s=0.2)


def _address(sb: Sandbox, name: str) -> str:
    sb.wait_settled()
    return str(sb.state()["names"][name.rstrip(".").lower()])


def _counts(aws: Aws) -> tuple[int, int, int]:
    elb = aws.client("elbv2")
    return (
        len(elb.describe_load_balancers()["LoadBalancers"]),
        len(elb.describe_target_groups()["TargetGroups"]),
        len(elb.describe_listeners(LoadBalancerArn=_only_lb(aws))["Listeners"]),
    )


_MUTATING = ("Create", "Modify", "Register", "Deregister", "Request", "Change", "Authorize", "Set")


def _mutations(sb: Sandbox, before: dict[str, int]) -> dict[str, int]:
    """Mutating EC2/ELB/ACM/Route53 calls made since `before` (S3 PUTs are declarative)."""
    after = sb.state()["api"]["calls"]
    return {
        k: n - before.get(k, 0)
        for k, n in after.items()
        if n != before.get(k, 0) and k.split(":")[-1].startswith(_MUTATING)
    }


def _only_lb(aws: Aws) -> str:
    lbs = aws.client("elbv2").describe_load_balancers()["LoadBalancers"]
    return str(next(lb["LoadBalancerArn"] for lb in lbs if lb["LoadBalancerName"] == "albtest-alb"))


def test_alb_serves_every_instance(
    sb: Sandbox, settings: FleetSettings, inventory: InventoryResult, alb: AlbResult
) -> None:
    ids = {i.instance_id for i in inventory.instances}
    assert alb.healthy == N and set(alb.registered) == ids
    assert alb.url == f"http://{alb.dns_name}/"
    health = (
        Aws(settings)
        .client("elbv2")
        .describe_target_health(TargetGroupArn=alb.target_group_arn)["TargetHealthDescriptions"]
    )
    assert sorted(d["TargetHealth"]["State"] for d in health) == ["healthy"] * N
    address = _address(sb, alb.dns_name)
    port = lb_port(sb, 80)  # 8080 when the sandbox may not bind low ports
    seen = set()
    for _ in range(4 * N):
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as resp:
            assert resp.status == 200
            seen.add(resp.headers["X-Instance-Id"])
    assert seen == ids


def test_alb_resources_are_tagged_and_configured(settings: FleetSettings, alb: AlbResult) -> None:
    aws = Aws(settings)
    elb, ec2 = aws.client("elbv2"), aws.client("ec2")
    lb = elb.describe_load_balancers(LoadBalancerArns=[alb.load_balancer_arn])["LoadBalancers"][0]
    assert lb["LoadBalancerName"] == "albtest-alb" and lb["Scheme"] == "internet-facing"
    assert lb["SecurityGroups"] == [alb.security_group_id]
    assert len({az["ZoneName"] for az in lb["AvailabilityZones"]}) >= 2
    tags = elb.describe_tags(ResourceArns=[alb.load_balancer_arn, alb.target_group_arn])
    for desc in tags["TagDescriptions"]:
        assert {"Key": "tomcat-fleet:deployment", "Value": "albtest"} in desc["Tags"]
    attrs = {
        a["Key"]: a["Value"]
        for a in elb.describe_load_balancer_attributes(LoadBalancerArn=alb.load_balancer_arn)[
            "Attributes"
        ]
    }
    assert attrs["access_logs.s3.enabled"] == "true"
    assert attrs["access_logs.s3.bucket"] == alb.access_log_bucket
    assert attrs["access_logs.s3.prefix"] == "alb"
    tg = elb.describe_target_groups(TargetGroupArns=[alb.target_group_arn])["TargetGroups"][0]
    assert (tg["TargetGroupName"], tg["Port"], tg["HealthCheckPath"]) == ("albtest-tg", 8080, "/")
    assert tg["HealthCheckIntervalSeconds"] == 10 and tg["Matcher"]["HttpCode"] == "200"
    sg = ec2.describe_security_groups(GroupIds=[alb.security_group_id])["SecurityGroups"][0]
    assert sg["GroupName"] == "albtest-alb"
    open_ports = {
        p["FromPort"]
        for p in sg["IpPermissions"]
        if any(r["CidrIp"] == "0.0.0.0/0" for r in p.get("IpRanges", []))
    }
    assert {80, 443} <= open_ports


def test_log_bucket_is_private_encrypted_and_writable_by_elb(
    sb: Sandbox, settings: FleetSettings, alb: AlbResult
) -> None:
    import json

    s3 = client(sb, "s3")  # inspection, as the admin: the operator may not read these back
    account = client(sb, "sts").get_caller_identity()["Account"]
    assert alb.access_log_bucket == log_bucket_name(settings, account)
    block = s3.get_public_access_block(Bucket=alb.access_log_bucket)
    assert all(block["PublicAccessBlockConfiguration"].values())
    assert len(block["PublicAccessBlockConfiguration"]) == 4
    enc = s3.get_bucket_encryption(Bucket=alb.access_log_bucket)
    rule = enc["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=alb.access_log_bucket)["Policy"])
    first = policy["Statement"][0]
    assert first["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert first["Resource"] == f"arn:aws:s3:::{alb.access_log_bucket}/alb/AWSLogs/{account}/*"
    ownership = s3.get_bucket_ownership_controls(Bucket=alb.access_log_bucket)
    assert ownership["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    grants = s3.get_bucket_acl(Bucket=alb.access_log_bucket)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner only
    tags = s3.get_bucket_tagging(Bucket=alb.access_log_bucket)["TagSet"]
    assert {"Key": "tomcat-fleet:deployment", "Value": "albtest"} in tags


def test_create_alb_again_creates_nothing(
    sb: Sandbox, settings: FleetSettings, inventory: InventoryResult, alb: AlbResult
) -> None:
    aws = Aws(settings)
    before = _counts(aws)
    calls = sb.state()["api"]["calls"]
    again = create_alb(aws, settings, inventory, timeout_s=30, poll_s=0.2)
    assert _mutations(sb, calls) == {}
    assert _counts(aws) == before
    assert again.model_dump() == alb.model_dump()


def test_enable_https(sb: Sandbox, settings: FleetSettings, alb: AlbResult, tls: TlsResult) -> None:
    aws = Aws(settings)
    cert = aws.client("acm").describe_certificate(CertificateArn=tls.certificate_arn)["Certificate"]
    assert cert["Status"] == "ISSUED"
    assert set(cert["SubjectAlternativeNames"]) >= {settings.web_domain, settings.beanstalk_domain}
    assert tls.url == f"https://{settings.web_domain}/" and tls.domain == settings.web_domain
    li = aws.client("elbv2").describe_listeners(ListenerArns=[tls.https_listener_arn])["Listeners"][
        0
    ]
    assert (li["Port"], li["Protocol"], li["SslPolicy"]) == (
        443,
        "HTTPS",
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
    )

    address = _address(sb, alb.dns_name)
    ctx = ssl.create_default_context(cafile=sb.ca.ca_path)
    port = lb_port(sb, 443)  # 8443 when the sandbox may not bind low ports
    conn = http.client.HTTPSConnection(address, port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(
        socket.create_connection((address, port), timeout=5), server_hostname=settings.web_domain
    )
    try:
        conn.request("GET", "/", headers={"Host": settings.web_domain})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("X-Instance-Id") in alb.registered
    finally:
        conn.close()
    assert _address(sb, settings.web_domain) == address  # the alias record


def test_enable_https_again_creates_nothing(
    sb: Sandbox, settings: FleetSettings, alb: AlbResult, tls: TlsResult
) -> None:
    aws = Aws(settings)
    acm = aws.client("acm")
    before = len(acm.list_certificates()["CertificateSummaryList"])
    listeners = _counts(aws)
    calls = sb.state()["api"]["calls"]
    again = enable_https(aws, settings, alb, timeout_s=30, poll_s=0.2)
    assert _mutations(sb, calls) == {}
    assert again.model_dump() == tls.model_dump()
    assert len(acm.list_certificates()["CertificateSummaryList"]) == before == 1
    assert _counts(aws) == listeners


def test_unknown_zone_fails_before_creating_anything(
    sb: Sandbox, settings: FleetSettings, alb: AlbResult
) -> None:
    bad = settings.model_copy(update={"hosted_zone": "nope.example.org"})
    aws = Aws(bad)
    acm, elb = aws.client("acm"), aws.client("elbv2")
    certs = len(acm.list_certificates()["CertificateSummaryList"])
    listeners = elb.describe_listeners(LoadBalancerArn=alb.load_balancer_arn)["Listeners"]
    calls = sb.state()["api"]["calls"]
    with pytest.raises(StageError, match=r"hosted zone nope\.example\.org not found in Route53"):
        enable_https(aws, bad, alb, timeout_s=5, poll_s=0.2)
    assert _mutations(sb, calls) == {}
    assert len(acm.list_certificates()["CertificateSummaryList"]) == certs
    assert elb.describe_listeners(LoadBalancerArn=alb.load_balancer_arn)["Listeners"] == listeners


def test_domain_outside_zone_is_refused(settings: FleetSettings, alb: AlbResult) -> None:
    bad = settings.model_copy(update={"domain": "www.elsewhere.example.net"})
    with pytest.raises(StageError, match="not inside hosted zone"):
        enable_https(Aws(bad), bad, alb, timeout_s=5, poll_s=0.2)


def test_instance_without_alb_rule_is_reported_unhealthy(
    sb: Sandbox, settings: FleetSettings, inventory: InventoryResult, alb: AlbResult
) -> None:
    """Runs last: an instance in a group the stage was not told about never passes checks."""
    aws = Aws(settings)
    (isolated,), sg = _launch_and_install(aws, settings, 1, "isolated", "albtest-isolated")
    assert sg not in inventory.security_group_ids
    wider = inventory.model_copy(update={"instances": [*inventory.instances, isolated]})
    with pytest.raises(StageError) as err:
        create_alb(aws, settings, wider, timeout_s=4, poll_s=0.2)
    text = str(err.value)
    assert f"{N}/{N + 1} targets healthy" in text
    assert isolated.instance_id in text and "Target.Timeout" in text
    # the inventory without it converges again: the stray target is deregistered
    back = create_alb(aws, settings, inventory, timeout_s=30, poll_s=0.2)
    assert back.healthy == N
