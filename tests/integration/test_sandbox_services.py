"""Sandbox services beyond the fleet: RDS behind a jumphost, Elastic Beanstalk, Route53
names, and injected host faults.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from typing import Any

import botocore.exceptions
import paramiko
import pytest

from sandbox import FaultRates, Sandbox, SandboxConfig

from ..support import client, eb_service_role, lb_port, make_sandbox, run, ssh, wait_for


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        install_latency=0.05,
        boot_delay=0.1,
        cloud_init_seconds=0.1,
        rds_create_seconds=0.5,
        eb_launch_seconds=0.3,
        drop_hold_seconds=2.0,
        health_check_interval=0.2,
        faults=FaultRates(install_failure=0.0, ssh_drop=0.0),
    )
    with make_sandbox(cfg) as s:
        yield s


def _launch(ec2: Any, key: str, groups: list[str], n: int = 1) -> list[tuple[str, str]]:
    res = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=n, MaxCount=n, KeyName=key, SecurityGroupIds=groups
    )
    ids = [i["InstanceId"] for i in res["Instances"]]
    desc = ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]
    return [(i["InstanceId"], i["PublicIpAddress"]) for i in desc]


def _connect(ip: str, port: int, key: str) -> paramiko.SSHClient:
    return wait_for(lambda: _try(ip, port, key), timeout=20)


def _try(ip: str, port: int, key: str) -> paramiko.SSHClient | None:
    try:
        return ssh(ip, port, key, timeout=2)
    except (OSError, paramiko.SSHException):
        return None


def test_rds_through_jumphost_with_security_groups(sb: Sandbox) -> None:
    ec2, rds = client(sb, "ec2"), client(sb, "rds")
    key = ec2.create_key_pair(KeyName="jump")["KeyMaterial"]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    jump_sg = ec2.create_security_group(GroupName="jump", Description="j", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=jump_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": sb.cfg.controller_cidr}],
            }
        ],
    )
    db_sg = ec2.create_security_group(GroupName="db", Description="d", VpcId=vpc)["GroupId"]
    rds.create_db_instance(
        DBInstanceIdentifier="appdb",
        Engine="mysql",
        DBInstanceClass="db.t3.micro",
        MasterUsername="admin",
        MasterUserPassword="s3cret-Pass",
        AllocatedStorage=20,
        VpcSecurityGroupIds=[db_sg],
        PubliclyAccessible=False,
    )
    db = rds.describe_db_instances(DBInstanceIdentifier="appdb")["DBInstances"][0]
    assert db["DBInstanceStatus"] == "creating"
    wait_for(
        lambda: (
            rds.describe_db_instances(DBInstanceIdentifier="appdb")["DBInstances"][0][
                "DBInstanceStatus"
            ]
            == "available"
        ),
        timeout=10,
    )
    endpoint = db["Endpoint"]["Address"]

    ((_, ip),) = _launch(ec2, "jump", [jump_sg])
    c = _connect(ip, sb.ssh_port, key)
    try:
        sql = f"mysql -h {endpoint} -u admin -ps3cret-Pass --connect-timeout=1 -N -e 'SELECT 1'"
        assert run(c, sql)[0] == 127  # no client installed yet
        status, _, err = run(
            c, "sudo apt-get update -qq && sudo apt-get install -y -qq mysql-client"
        )
        assert status == 0, err
        started = time.monotonic()
        status, _, err = run(c, sql)  # no ingress rule on the database yet: dropped
        assert status == 1 and "ERROR 2003" in err and time.monotonic() - started >= 0.9
        ec2.authorize_security_group_ingress(
            GroupId=db_sg,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 3306,
                    "ToPort": 3306,
                    "UserIdGroupPairs": [{"GroupId": jump_sg}],
                }
            ],
        )
        sb.wait_settled()
        status, out, err = run(c, sql)
        assert (status, out.strip()) == (0, "1"), err
        status, _, err = run(c, sql.replace("s3cret-Pass", "wrong"))
        assert status == 1 and "ERROR 1045" in err
    finally:
        c.close()


def test_beanstalk_environment_cname_and_balancer(sb: Sandbox) -> None:
    eb, elb = client(sb, "elasticbeanstalk"), client(sb, "elbv2")
    eb.create_application(ApplicationName="app")
    env = eb.create_environment(
        ApplicationName="app",
        EnvironmentName="app-env",
        SolutionStackName="64bit Amazon Linux 2023 v5.4.0 running Tomcat 10 Corretto 17",
        OptionSettings=eb_service_role(client(sb, "iam")),
    )
    assert env["Status"] == "Launching"

    def ready() -> dict[str, Any] | None:
        envs = eb.describe_environments(EnvironmentNames=["app-env"])["Environments"]
        return envs[0] if envs and envs[0]["Status"] == "Ready" else None

    info = wait_for(ready, timeout=10)
    resources = eb.describe_environment_resources(EnvironmentName="app-env")
    lbs = resources["EnvironmentResources"]["LoadBalancers"]
    assert len(lbs) == 1
    lb = elb.describe_load_balancers(LoadBalancerArns=[lbs[0]["Name"]])["LoadBalancers"][0]
    listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert [li["Port"] for li in listeners] == [80]
    sb.wait_settled()
    address = wait_for(lambda: sb.state()["names"].get(info["CNAME"].lower()))
    port = lb_port(sb, 80)  # 8080 when the sandbox may not bind low ports

    def answered() -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/", timeout=2) as resp:
                return resp.status == 200 and b"app-env" in resp.read()
        except OSError:
            return False

    wait_for(answered, timeout=10)
    eb.terminate_environment(EnvironmentName="app-env")
    envs = eb.describe_environments(EnvironmentNames=["app-env"])["Environments"]
    assert envs[0]["Status"] == "Terminated"
    assert lb["LoadBalancerArn"] not in [
        x["LoadBalancerArn"] for x in elb.describe_load_balancers()["LoadBalancers"]
    ]


def test_route53_alias_resolves_for_controller_state(sb: Sandbox) -> None:
    r53, elb, ec2 = client(sb, "route53"), client(sb, "elbv2"), client(sb, "ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lb = elb.create_load_balancer(Name="aliased", Subnets=subnets)["LoadBalancers"][0]
    zone = r53.list_hosted_zones_by_name(DNSName=sb.cfg.hosted_zone)["HostedZones"][0]
    name = f"www.{sb.cfg.hosted_zone}"
    r53.change_resource_record_sets(
        HostedZoneId=zone["Id"],
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": "A",
                        "AliasTarget": {
                            "HostedZoneId": lb["CanonicalHostedZoneId"],
                            "DNSName": lb["DNSName"],
                            "EvaluateTargetHealth": False,
                        },
                    },
                }
            ]
        },
    )
    sb.wait_settled()
    names = sb.state()["names"]
    assert names[name] == names[lb["DNSName"].lower()]


def test_install_failure_fault_is_reported_like_apt(sb: Sandbox) -> None:
    ec2 = client(sb, "ec2")
    key = ec2.create_key_pair(KeyName="faulty")["KeyMaterial"]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    sg = ec2.create_security_group(GroupName="f", Description="f", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    ((iid, ip),) = _launch(ec2, "faulty", [sg])
    sb.wait_settled()
    sb.fleet.hosts[iid].state.faults.rates = FaultRates(install_failure=1.0)  # type: ignore[union-attr]
    c = _connect(ip, sb.ssh_port, key)
    try:
        run(c, "sudo apt-get update -qq")
        status, _, err = run(c, "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y tomcat9")
        assert status == 100 and "E: Failed to fetch" in err
        assert run(c, "systemctl is-active tomcat9")[1].strip() == "inactive"
    finally:
        c.close()


def _cname(sb: Sandbox, name: str, value: str) -> None:
    r53 = client(sb, "route53")
    zone = r53.list_hosted_zones_by_name(DNSName=sb.cfg.hosted_zone)["HostedZones"][0]
    record = {"Name": name, "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": value}]}
    r53.change_resource_record_sets(
        HostedZoneId=zone["Id"],
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]},
    )


def _tls_answers(address: str, name: str, ca_path: str, port: int) -> bool:
    ctx = ssl.create_default_context(cafile=ca_path)
    try:
        with (
            socket.create_connection((address, port), timeout=3) as raw,
            ctx.wrap_socket(raw, server_hostname=name),
        ):
            return True
    except OSError:
        return False


def test_acm_checks_cname_value_and_elb_refuses_unissued_certificates(sb: Sandbox) -> None:
    acm, elb, ec2 = client(sb, "acm"), client(sb, "elbv2"), client(sb, "ec2")
    domain = f"strict.{sb.cfg.hosted_zone}"
    arn = acm.request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]

    def status() -> str:
        return str(acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"])

    opts = acm.describe_certificate(CertificateArn=arn)["Certificate"]["DomainValidationOptions"]
    record = opts[0]["ResourceRecord"]
    _cname(sb, record["Name"], "garbage.invalid.")  # the right name, the wrong value
    sb.wait_settled()
    assert status() == "PENDING_VALIDATION"

    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lb = elb.create_load_balancer(Name="strict", Subnets=subnets)["LoadBalancers"][0]
    tg = elb.create_target_group(Name="strict", Protocol="HTTP", Port=8080, VpcId=vpc)
    forward = [{"Type": "forward", "TargetGroupArn": tg["TargetGroups"][0]["TargetGroupArn"]}]
    https = {
        "Protocol": "HTTPS",
        "Port": 443,
        "Certificates": [{"CertificateArn": arn}],
        "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "DefaultActions": forward,
    }
    with pytest.raises(botocore.exceptions.ClientError) as info:
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], **https)
    assert info.value.response["Error"]["Code"] == "UnsupportedCertificate"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert arn in info.value.response["Error"]["Message"]
    plain = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=forward
    )["Listeners"][0]["ListenerArn"]
    with pytest.raises(botocore.exceptions.ClientError) as info:
        elb.modify_listener(ListenerArn=plain, **https)
    assert info.value.response["Error"]["Code"] == "UnsupportedCertificate"
    assert len(elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]) == 1

    _cname(sb, record["Name"], record["Value"])  # the right value: ACM issues
    assert status() == "ISSUED"
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], **https)
    sb.wait_settled()
    address = sb.state()["names"][lb["DNSName"].lower()]
    https_port = lb_port(sb, 443)  # 8443 when the sandbox may not bind low ports
    assert wait_for(lambda: _tls_answers(address, domain, sb.ca.ca_path, https_port), timeout=10)

    from moto.acm.models import acm_backends

    from sandbox.moto_patches import ACCOUNT

    def revoke() -> None:
        acm_backends[ACCOUNT][sb.cfg.region]._certificates[arn].status = "REVOKED"

    with sb.api.lock:  # type: ignore[union-attr]
        revoke()
    sb.wait_settled()
    # no TLS without an ISSUED cert
    assert not _tls_answers(address, domain, sb.ca.ca_path, https_port)
