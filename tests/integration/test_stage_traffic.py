"""Traffic stages (6, 10, 11) on a real sandbox: a generator instance curls the ALB over
HTTP and HTTPS, the Beanstalk CNAME over HTTP, and the Beanstalk custom domain over HTTPS.

The ALB, certificate and Beanstalk environment are built here directly with boto3, so
these tests depend only on the traffic stages' rooms and `tasks.deploy.traffic` (not on the
ALB/TLS/Beanstalk stages).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.settings import FleetSettings
from sandbox import Sandbox, SandboxConfig
from tasks.aws import Aws
from tasks.aws.ec2 import (
    TAG_KEY,
    StageError,
    authorize_ingress,
    controller_cidr,
    ensure_key_pair,
    ensure_role_instance,
    ensure_security_group,
    find_instances,
    launch_instances,
    wait_running,
)
from tasks.deploy.models import BeanstalkResult, TlsResult
from tasks.deploy.stages.s06_traffic_alb import alb_traffic
from tasks.deploy.stages.s10_traffic_beanstalk_http import beanstalk_http
from tasks.deploy.stages.s11_traffic_beanstalk_https import beanstalk_https
from tasks.deploy.traffic import send_requests
from tasks.remote.config import HostInstallConfig, remote_config
from tasks.remote.recipe import install_host

from ..support import client, eb_service_role, make_sandbox, wait_for

WEB = 4
STACK = "64bit Amazon Linux 2023 v5.4.0 running Tomcat 10 Corretto 17"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cfg = SandboxConfig(
        install_latency=0.05,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        eb_launch_seconds=0.3,
        health_check_interval=0.3,
        drop_hold_seconds=2,
    )
    state = tmp_path_factory.mktemp("traffic-state")
    with make_sandbox(cfg, env=True) as sb:
        settings = FleetSettings(
            state_dir=str(state),
            deployment_name="traffictest",
            hosted_zone=sb.cfg.hosted_zone,
            traffic_requests=20,
            ssh_wait_s=60,
        )
        aws = Aws(settings)
        key_pem = ensure_key_pair(aws, settings).read_text()
        yield {"sb": sb, "settings": settings, "aws": aws, "secret": SecretStr(key_pem)}


def _key(env: dict[str, Any]) -> str:
    return str(env["secret"].get_secret_value())


def _zone_id(sb: Sandbox) -> str:
    r53 = client(sb, "route53")
    return str(r53.list_hosted_zones_by_name(DNSName=sb.cfg.hosted_zone)["HostedZones"][0]["Id"])


def _upsert(sb: Sandbox, zone: str, record: dict[str, Any]) -> None:
    client(sb, "route53").change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]},
    )


@pytest.fixture(scope="module")
def web(env: dict[str, Any]) -> dict[str, Any]:
    """Four Tomcat instances behind an ALB with HTTP and HTTPS listeners, the custom
    domain aliased to it, and an issued certificate for the web and Beanstalk names."""
    sb, settings, aws, key = env["sb"], env["settings"], env["aws"], _key(env)
    sg = ensure_security_group(aws, settings, "web")
    cidr = controller_cidr(settings)
    authorize_ingress(aws, [sg], [22, 8080], lambda _p: cidr)
    ids = launch_instances(aws, settings, WEB, sg, client_token="traffictest-web")
    instances = wait_running(aws, ids, timeout_s=60, poll_s=0.2)
    cfg = HostInstallConfig(
        ssh_port=settings.ssh_port,
        ssh_user=settings.ssh_user,
        key_pem=key,
        host_key_policy="insecure",
        known_hosts_path=str(settings.known_hosts_path),
        ssh_wait_s=60,
        steps=settings.install_steps,
        probe_command=settings.probe_command,
    )
    with ThreadPoolExecutor(WEB) as pool:
        results = list(pool.map(lambda i: install_host(i, cfg), instances))
    assert [r.reason for r in results if r.status != "installed"] == []

    ec2, elb, acm = client(sb, "ec2"), client(sb, "elbv2"), client(sb, "acm")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0][
        "VpcId"
    ]
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    ][:2]
    lb_sg = ec2.create_security_group(GroupName="tt-alb", Description="alb", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=lb_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            for p in (80, 443)
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8080,
                "ToPort": 8080,
                "UserIdGroupPairs": [{"GroupId": lb_sg}],
            }
        ],
    )
    tg = elb.create_target_group(
        Name="tt-web", Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/"
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 8080} for i in ids])
    lb = elb.create_load_balancer(Name="tt-web", Subnets=subnets, SecurityGroups=[lb_sg])[
        "LoadBalancers"
    ][0]
    forward = [{"Type": "forward", "TargetGroupArn": tg}]
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=forward
    )

    zone = _zone_id(sb)
    cert = acm.request_certificate(
        DomainName=settings.web_domain,
        SubjectAlternativeNames=[settings.web_domain, settings.beanstalk_domain],
        ValidationMethod="DNS",
    )["CertificateArn"]

    def validation_records() -> list[dict[str, Any]] | None:
        opts = acm.describe_certificate(CertificateArn=cert)["Certificate"].get(
            "DomainValidationOptions", []
        )
        records = [o["ResourceRecord"] for o in opts if "ResourceRecord" in o]
        return records if len(records) == 2 else None

    for rec in wait_for(validation_records, timeout=10):
        _upsert(
            sb,
            zone,
            {
                "Name": rec["Name"],
                "Type": "CNAME",
                "TTL": 300,
                "ResourceRecords": [{"Value": rec["Value"]}],
            },
        )
    wait_for(
        lambda: acm.describe_certificate(CertificateArn=cert)["Certificate"]["Status"] == "ISSUED",
        timeout=10,
    )
    https = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": cert}],
        DefaultActions=forward,
    )["Listeners"][0]["ListenerArn"]
    _upsert(
        sb,
        zone,
        {
            "Name": settings.web_domain,
            "Type": "A",
            "AliasTarget": {
                "HostedZoneId": lb["CanonicalHostedZoneId"],
                "DNSName": lb["DNSName"],
                "EvaluateTargetHealth": False,
            },
        },
    )

    def all_healthy() -> bool:
        states = [
            d["TargetHealth"]["State"]
            for d in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        ]
        return states.count("healthy") == WEB

    wait_for(all_healthy, timeout=30)
    tls = TlsResult(
        certificate_arn=cert,
        domain=settings.web_domain,
        https_listener_arn=https,
        hosted_zone_id=zone,
        url=f"https://{settings.web_domain}/",
    )
    return {"ids": ids, "dns": lb["DNSName"], "tls": tls}


@pytest.fixture(scope="module")
def eb(env: dict[str, Any]) -> BeanstalkResult:
    sb = env["sb"]
    ebc = client(sb, "elasticbeanstalk")
    # tagged as the flows tag them: Beanstalk passes the tags on to its load balancer, which
    # is what lets the operator add the HTTPS listener to it
    tags = [{"Key": TAG_KEY, "Value": env["settings"].deployment_name}]
    ebc.create_application(ApplicationName="traffictest-app", Tags=tags)
    ebc.create_environment(
        ApplicationName="traffictest-app",
        EnvironmentName="traffictest-env",
        SolutionStackName=STACK,
        OptionSettings=eb_service_role(client(sb, "iam")),
        Tags=tags,
    )

    def ready() -> dict[str, Any] | None:
        envs = ebc.describe_environments(EnvironmentNames=["traffictest-env"])["Environments"]
        return envs[0] if envs and envs[0]["Status"] == "Ready" else None

    info = wait_for(ready, timeout=20)

    def lb_arn() -> str | None:
        res = ebc.describe_environment_resources(EnvironmentName="traffictest-env")
        lbs = res["EnvironmentResources"]["LoadBalancers"]
        return lbs[0]["Name"] if lbs else None

    return BeanstalkResult(
        application="traffictest-app",
        environment="traffictest-env",
        cname=info["CNAME"],
        load_balancer_arn=wait_for(lb_arn, timeout=10),
        instance_profile="",
        role="",
    )


def _generators(env: dict[str, Any]) -> list[str]:
    ec2 = client(env["sb"], "ec2")
    res = ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": ["traffictest"]},
            {"Name": "tag:tomcat-fleet:role", "Values": ["traffic"]},
        ]
    )
    return [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]


def test_generator_is_one_instance_even_from_two_threads(env: dict[str, Any]) -> None:
    settings = env["settings"]
    barrier = threading.Barrier(2)

    def one(_: int) -> str:
        aws = Aws(settings)  # one client set per thread, as stages running in threads do
        barrier.wait(timeout=10)
        return ensure_role_instance(aws, settings, "traffic", timeout_s=60)[0].instance_id

    with ThreadPoolExecutor(2) as pool:
        ids = set(pool.map(one, range(2)))
    assert len(ids) == 1
    again, _ = ensure_role_instance(env["aws"], settings, "traffic", timeout_s=60)
    assert {again.instance_id} == ids
    assert _generators(env) == [again.instance_id]
    found = find_instances(env["aws"], settings, role="traffic")
    assert [i.instance_id for i in found] == [again.instance_id]
    groups = client(env["sb"], "ec2").describe_security_groups(GroupIds=found[0].security_groups)
    assert [g["GroupName"] for g in groups["SecurityGroups"]] == ["traffictest-traffic"]


def test_alb_traffic_both_schemes_reach_every_instance(
    env: dict[str, Any], web: dict[str, Any]
) -> None:
    settings = env["settings"]
    res = alb_traffic(
        env["aws"],
        settings,
        _key(env),
        f"http://{web['dns']}/",
        f"https://{settings.web_domain}/",
        timeout_s=60,
    )
    assert res.by_scheme["http"]["ok"] > 0 and res.by_scheme["https"]["ok"] > 0
    assert res.by_scheme["http"]["requests"] == settings.traffic_requests
    assert res.requests == 2 * settings.traffic_requests
    assert res.distinct_backends == WEB
    assert res.by_scheme["http"]["distinct"] == WEB
    assert res.generator_instance_id == _generators(env)[0]


def test_send_requests_counts_and_parses(env: dict[str, Any], web: dict[str, Any]) -> None:
    settings = env["settings"]
    inst, _ = ensure_role_instance(env["aws"], settings, "traffic", timeout_s=60)
    res = send_requests(
        inst,
        remote_config(settings, _key(env)),
        [f"http://{web['dns']}/", "http://nobody.invalid/"],
        requests_per_url=5,
    )
    assert res.requests == 10 and res.ok == 5
    assert res.by_scheme == {"http": {"requests": 10, "ok": 5, "distinct": WEB}}


def test_beanstalk_http(env: dict[str, Any], eb: BeanstalkResult) -> None:
    res = beanstalk_http(env["aws"], env["settings"], _key(env), eb, timeout_s=60)
    assert res.ok > 0 and res.by_scheme["http"]["ok"] == res.ok
    assert res.distinct_backends == 1  # the environment's app server
    assert res.target == f"http://{eb.cname}/"


def test_beanstalk_https_once(
    env: dict[str, Any], web: dict[str, Any], eb: BeanstalkResult
) -> None:
    settings, tls = env["settings"], web["tls"]
    res = beanstalk_https(env["aws"], settings, _key(env), eb, tls, timeout_s=60)
    assert res.ok > 0 and res.by_scheme["https"]["ok"] == res.ok
    assert res.target == f"https://{settings.beanstalk_domain}/"
    res2 = beanstalk_https(env["aws"], settings, _key(env), eb, tls, timeout_s=60)
    assert res2.ok > 0
    elb = client(env["sb"], "elbv2")
    listeners = elb.describe_listeners(LoadBalancerArn=eb.load_balancer_arn)["Listeners"]
    assert sorted(li["Port"] for li in listeners) == [80, 443]
    https = next(li for li in listeners if li["Port"] == 443)
    assert [c["CertificateArn"] for c in https["Certificates"]] == [tls.certificate_arn]
    r53 = client(env["sb"], "route53")
    records = r53.list_resource_record_sets(HostedZoneId=tls.hosted_zone_id)["ResourceRecordSets"]
    cname = [
        r
        for r in records
        if r["Name"].rstrip(".") == settings.beanstalk_domain and r["Type"] == "CNAME"
    ]
    assert [r["ResourceRecords"][0]["Value"] for r in cname] == [eb.cname]


def test_url_nobody_serves_is_a_stage_error(env: dict[str, Any], tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StageError, match=r"no 200 answer") as info:
        alb_traffic(
            env["aws"],
            env["settings"],
            _key(env),
            "http://nobody.invalid/",
            "https://nobody.invalid/",
            timeout_s=3,
        )
    assert time.monotonic() - started < 30
    assert "nobody.invalid" in str(info.value)
    secret_lines = [ln for ln in _key(env).splitlines() if len(ln) > 16 and "-----" not in ln]
    assert not any(ln in str(info.value) for ln in secret_lines)
