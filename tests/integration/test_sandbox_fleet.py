"""End to end on one sandbox: real boto3, real paramiko over TCP, real HTTP.

50 instances launched, SSH with the right key (wrong key refused), tomcat9 installed and
serving on every host, an ALB forwarding to all healthy targets, ACM issuing only after the
validation CNAME exists, HTTPS through the ALB, security groups enforced, and the state
JSON agreeing with what the test did.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paramiko
import pytest

from sandbox import Sandbox, SandboxConfig
from sandbox.moto_patches import validation_record_name

from ..support import client, lb_port, make_sandbox, run, ssh, wait_for

N = 50
INSTALL = (
    "sudo cloud-init status --wait && sudo apt-get update -q && "
    "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y tomcat9 && "
    "sudo systemctl enable --now tomcat9 && systemctl is-active tomcat9"
)


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        # inside the default ranges (test_public_ips_are_loopback checks the 127.100 prefix),
        # in their upper halves, away from sandboxes on the defaults (they start at the bottom)
        public_ip_cidr="127.100.128.0/17",
        service_ip_cidr="127.101.128.0/17",
        install_latency=0.1,
        boot_delay=0.3,
        cloud_init_seconds=0.3,
        drop_hold_seconds=3.0,
        health_check_interval=0.3,
    )
    with make_sandbox(cfg) as s:
        yield s


@pytest.fixture(scope="module")
def fleet(sb: Sandbox) -> dict[str, Any]:
    ec2 = client(sb, "ec2")
    key = ec2.create_key_pair(KeyName="fleet")["KeyMaterial"]
    other = ec2.create_key_pair(KeyName="other")["KeyMaterial"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    sg = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc["VpcId"])
    ec2.authorize_security_group_ingress(
        GroupId=sg["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": p,
                "ToPort": p,
                "IpRanges": [{"CidrIp": sb.cfg.controller_cidr}],
            }
            for p in (22, 8080)
        ],
    )
    res = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=N,
        MaxCount=N,
        InstanceType="t3.small",
        KeyName="fleet",
        SecurityGroupIds=[sg["GroupId"]],
    )
    ids = [i["InstanceId"] for i in res["Instances"]]
    desc = ec2.describe_instances(InstanceIds=ids)
    ips = {
        i["InstanceId"]: i["PublicIpAddress"] for r in desc["Reservations"] for i in r["Instances"]
    }
    return {
        "ec2": ec2,
        "key": key,
        "other": other,
        "sg": sg["GroupId"],
        "ids": ids,
        "ips": ips,
        "vpc": vpc["VpcId"],
    }


def _ssh_when_up(ip: str, port: int, key: str) -> paramiko.SSHClient:
    deadline = time.monotonic() + 20
    while True:
        try:
            return ssh(ip, port, key)
        except (OSError, paramiko.SSHException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_public_ips_are_loopback(fleet: dict[str, Any]) -> None:
    assert len(set(fleet["ips"].values())) == N
    assert all(ip.startswith("127.100.") for ip in fleet["ips"].values())


def test_install_on_every_host(sb: Sandbox, fleet: dict[str, Any]) -> None:
    def install(iid: str) -> tuple[str, int, str]:
        c = _ssh_when_up(fleet["ips"][iid], sb.ssh_port, fleet["key"])
        try:
            status, out, err = run(c, INSTALL)
        finally:
            c.close()
        return iid, status, out + err

    with ThreadPoolExecutor(25) as pool:
        results = list(pool.map(install, fleet["ids"]))
    assert [r for r in results if r[1] != 0] == []
    assert all(r[2].rstrip().endswith("active") for r in results)
    for iid, ip in fleet["ips"].items():
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as resp:
            assert resp.status == 200
            assert iid in resp.read().decode()


def test_wrong_key_is_refused(sb: Sandbox, fleet: dict[str, Any]) -> None:
    ip = fleet["ips"][fleet["ids"][0]]
    _ssh_when_up(ip, sb.ssh_port, fleet["key"]).close()
    with pytest.raises(paramiko.AuthenticationException):
        ssh(ip, sb.ssh_port, fleet["other"])


def test_unknown_command_and_console_fingerprint(sb: Sandbox, fleet: dict[str, Any]) -> None:
    iid = fleet["ids"][1]
    c = _ssh_when_up(fleet["ips"][iid], sb.ssh_port, fleet["key"])
    try:
        status, _, err = run(c, "frobnicate --now")
        assert status == 127 and "command not found" in err
        host_key = c.get_transport().get_remote_server_key()  # type: ignore[union-attr]
    finally:
        c.close()
    out = fleet["ec2"].get_console_output(InstanceId=iid)["Output"]
    assert "-----BEGIN SSH HOST KEY FINGERPRINTS-----" in out
    import base64
    import hashlib

    fp = "SHA256:" + base64.b64encode(hashlib.sha256(host_key.asbytes()).digest()).decode()
    assert fp.rstrip("=") in out


def test_security_group_drops_ssh_without_rule(sb: Sandbox, fleet: dict[str, Any]) -> None:
    ec2 = fleet["ec2"]
    closed = ec2.create_security_group(
        GroupName="closed", Description="no ingress", VpcId=fleet["vpc"]
    )
    res = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        KeyName="fleet",
        SecurityGroupIds=[closed["GroupId"]],
    )
    iid = res["Instances"][0]["InstanceId"]
    ip = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
        "PublicIpAddress"
    ]
    wait_for(lambda: any(h["instance_id"] == iid and h["booted"] for h in sb.state()["hosts"]))
    started = time.monotonic()
    with pytest.raises((socket.timeout, paramiko.SSHException, EOFError, OSError)):
        ssh(ip, sb.ssh_port, fleet["key"], timeout=1.0)
    assert time.monotonic() - started >= 0.9  # a drop times out; it is not refused
    ec2.terminate_instances(InstanceIds=[iid])


def _alb(sb: Sandbox, fleet: dict[str, Any]) -> dict[str, Any]:
    ec2, elb = fleet["ec2"], client(sb, "elbv2")
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [fleet["vpc"]]}])[
            "Subnets"
        ]
    ][:2]
    lb_sg = ec2.create_security_group(GroupName="alb", Description="alb", VpcId=fleet["vpc"])
    ec2.authorize_security_group_ingress(
        GroupId=lb_sg["GroupId"],
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            for p in (80, 443)
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=fleet["sg"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8080,
                "ToPort": 8080,
                "UserIdGroupPairs": [{"GroupId": lb_sg["GroupId"]}],
            }
        ],
    )
    tg = elb.create_target_group(
        Name="web", Protocol="HTTP", Port=8080, VpcId=fleet["vpc"], HealthCheckPath="/"
    )["TargetGroups"][0]
    elb.register_targets(
        TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": i, "Port": 8080} for i in fleet["ids"]]
    )
    lb = elb.create_load_balancer(Name="web", Subnets=subnets, SecurityGroups=[lb_sg["GroupId"]])[
        "LoadBalancers"
    ][0]
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    return {"elb": elb, "tg": tg, "lb": lb}


def test_alb_forwards_to_all_healthy_targets(sb: Sandbox, fleet: dict[str, Any]) -> None:
    alb = _alb(sb, fleet)
    elb, tg, lb = alb["elb"], alb["tg"], alb["lb"]
    fleet["alb"] = alb

    def healthy() -> bool:
        states = [
            d["TargetHealth"]["State"]
            for d in elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])[
                "TargetHealthDescriptions"
            ]
        ]
        return states.count("healthy") == N

    wait_for(healthy, timeout=30)
    address = sb.state()["names"][lb["DNSName"].lower()]
    port = lb_port(sb, 80)  # 8080 when the sandbox may not bind low ports
    seen = set()
    for _ in range(2 * N):
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as resp:
            seen.add(resp.headers["X-Instance-Id"])
    assert len(seen) == N


def test_acm_issues_only_after_cname_then_https(sb: Sandbox, fleet: dict[str, Any]) -> None:
    acm, r53 = client(sb, "acm"), client(sb, "route53")
    domain = "www." + sb.cfg.hosted_zone
    arn = acm.request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]
    time.sleep(0.5)
    cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    assert cert["Status"] == "PENDING_VALIDATION"
    record = cert["DomainValidationOptions"][0]["ResourceRecord"]
    assert record["Name"] == validation_record_name(domain)
    zone = r53.list_hosted_zones_by_name(DNSName=sb.cfg.hosted_zone)["HostedZones"][0]
    r53.change_resource_record_sets(
        HostedZoneId=zone["Id"],
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": record["Name"],
                        "Type": "CNAME",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": record["Value"]}],
                    },
                }
            ]
        },
    )
    cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    assert cert["Status"] == "ISSUED"

    alb = fleet.get("alb") or _alb(sb, fleet)
    alb["elb"].create_listener(
        LoadBalancerArn=alb["lb"]["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": arn}],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": alb["tg"]["TargetGroupArn"]}],
    )
    sb.wait_settled()
    address = sb.state()["names"][alb["lb"]["DNSName"].lower()]
    ctx = ssl.create_default_context(cafile=sb.ca.ca_path)
    import http.client

    port = lb_port(sb, 443)  # 8443 when the sandbox may not bind low ports
    conn = http.client.HTTPSConnection(address, port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(
        socket.create_connection((address, port), timeout=5), server_hostname=domain
    )
    conn.request("GET", "/", headers={"Host": domain})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("X-Instance-Id") in fleet["ids"]


def test_state_json_agrees(sb: Sandbox, fleet: dict[str, Any]) -> None:
    with urllib.request.urlopen(f"{sb.endpoint}/_sandbox/state", timeout=5) as resp:
        state = json.load(resp)
    hosts = {h["instance_id"]: h for h in state["hosts"]}
    for iid in fleet["ids"]:
        assert hosts[iid]["tomcat"] == "running"
        assert hosts[iid]["ssh_logins"] >= 1
        assert hosts[iid]["http_requests"] >= 1
    assert state["api"]["calls"]["ec2:RunInstances"] >= 2
    assert state["api"]["total_throttled"] == 0
    assert state["faults"] == {}
