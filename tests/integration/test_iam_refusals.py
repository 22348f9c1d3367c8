"""The sandbox refuses what AWS refuses under the shipped policy, and the policy refuses what
it must: a service-linked role the caller may not create stops stage 4, a RunInstances
statement without the subnet is not enough, another deployment's DB or certificate can be
neither tagged nor deleted. Each test runs as a user of its own, made through IAM with the
policy the test names (the shipped one, or the shipped one with a part removed)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from flows.deploy import DeployReport, deploy
from sandbox import Sandbox, SandboxConfig
from tasks.aws.ec2 import TAG_KEY
from tasks.aws.policy import load_policy
from tasks.runtime.outcome import outcome_of

from ..support import client, make_sandbox

CFG = SandboxConfig(install_latency=0.1, boot_delay=0.2, cloud_init_seconds=0.2)


def without(policy: dict[str, Any], sid: str, resource: str | None = None) -> dict[str, Any]:
    """`policy` without statement `sid` (or, given `resource`, without that resource)."""
    doc = copy.deepcopy(policy)
    out = []
    for st in doc["Statement"]:
        if st["Sid"] == sid:
            if resource is None:
                continue
            st["Resource"] = [r for r in st["Resource"] if r != resource]
            assert st["Resource"], sid
        out.append(st)
    assert out != doc["Statement"] or resource is not None, f"no statement {sid}"
    doc["Statement"] = out
    return doc


def user_with(sb: Sandbox, name: str, policy: dict[str, Any]) -> tuple[str, str]:
    """A new IAM user holding exactly `policy`: its (access key id, secret)."""
    iam = client(sb, "iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextlib.contextmanager
def acting_as(keys: tuple[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = keys
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def as_user(sb: Sandbox, keys: tuple[str, str], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=sb.endpoint,
        region_name=sb.cfg.region,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def service_linked_roles(sb: Sandbox) -> set[str]:
    roles = client(sb, "iam").list_roles(PathPrefix="/aws-service-role/")["Roles"]
    return {r["RoleName"] for r in roles}


def tags(deployment: str) -> list[dict[str, str]]:
    return [{"Key": TAG_KEY, "Value": deployment}]


def deploy_stages(tmp: Any, name: str, stages: str) -> tuple[DeployReport, str]:
    """The deploy's report and its flow run's message."""
    ov = {"state_dir": str(tmp / "state"), "log_dir": str(tmp / "logs"), "deployment_name": name}
    state = deploy(instances=2, stages=stages, settings_overrides=ov, return_state=True)
    report = outcome_of(state)
    assert isinstance(report, DeployReport), state.message
    return report, str(state.message)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with make_sandbox(CFG) as s:
        yield s


def test_run_instances_is_authorized_against_the_subnet_too(sb: Sandbox) -> None:
    """RunInstances touches an image, a subnet, security groups, a key pair, the instance,
    its volume and network interface: a policy granting all but the subnet is refused,
    naming the subnet's ARN; the shipped policy allows the same call."""
    shipped = user_with(sb, "launcher", load_policy())
    no_subnet = user_with(
        sb, "no-subnet", without(load_policy(), "Ec2LaunchWith", "arn:aws:ec2:*:*:subnet/*")
    )
    ec2 = as_user(sb, shipped, "ec2")
    spec = [{"ResourceType": "key-pair", "Tags": tags("subnettest")}]
    ec2.create_key_pair(KeyName="subnettest", TagSpecifications=spec)
    group = ec2.create_security_group(
        GroupName="subnettest",
        Description="test",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags("subnettest")}],
    )["GroupId"]
    image = client(sb, "ec2").describe_images()["Images"][0]["ImageId"]
    launch = {
        "ImageId": image,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": "subnettest",
        "SecurityGroupIds": [group],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags("subnettest")}],
    }
    with pytest.raises(ClientError) as err:
        as_user(sb, no_subnet, "ec2").run_instances(**launch)
    error = err.value.response["Error"]
    assert error["Code"] == "UnauthorizedOperation"
    assert "ec2:RunInstances on resource: arn:aws:ec2:us-east-1:" in error["Message"]
    assert ":subnet/subnet-" in error["Message"], error["Message"]
    # untagged, the instance itself is refused (the create statement needs the tag)
    with pytest.raises(ClientError) as err:
        ec2.run_instances(**{**launch, "TagSpecifications": []})
    assert ":instance/*" in err.value.response["Error"]["Message"]
    assert ec2.run_instances(**launch)["Instances"]


def test_foreign_dbs_and_certificates_are_out_of_reach(sb: Sandbox) -> None:
    """RDS and ACM have no create-only tag condition: the policy lets the operator tag a DB
    only under the deployment's name (`*-db`) and a DB or certificate only while it carries
    no deployment tag (as when it is being created). So a DB outside the names can be
    neither tagged nor deleted, an untagged certificate cannot be deleted, and another
    deployment's DB or certificate cannot be moved into this one by re-tagging."""
    admin_rds, admin_acm = client(sb, "rds"), client(sb, "acm")
    db = {
        "Engine": "mysql",
        "DBInstanceClass": "db.t3.micro",
        "MasterUsername": "admin",
        "MasterUserPassword": "not-a-real-secret-1",
        "AllocatedStorage": 20,
    }
    admin_rds.create_db_instance(DBInstanceIdentifier="other-db", Tags=tags("other"), **db)
    admin_rds.create_db_instance(DBInstanceIdentifier="payroll", **db)
    others = admin_acm.request_certificate(
        DomainName="other.example.com", ValidationMethod="DNS", Tags=tags("other")
    )["CertificateArn"]
    foreign = admin_acm.request_certificate(
        DomainName="pay.example.com",
        ValidationMethod="DNS",
        Tags=[{"Key": "team", "Value": "payments"}],
    )["CertificateArn"]
    keys = user_with(sb, "operator2", load_policy())
    rds, acm = as_user(sb, keys, "rds"), as_user(sb, keys, "acm")
    account = sb.admin.arn.split(":")[4]

    def refused(fn: Any, action: str, **kw: Any) -> str:
        with pytest.raises(ClientError) as err:
            fn(**kw)
        message = str(err.value.response["Error"]["Message"])
        assert f"{action} on resource: " in message, message
        return message

    for name in ("other-db", "payroll"):
        arn = f"arn:aws:rds:us-east-1:{account}:db:{name}"
        refused(rds.add_tags_to_resource, "rds:AddTagsToResource", ResourceName=arn, Tags=tags("x"))
    refused(
        rds.delete_db_instance,
        "rds:DeleteDBInstance",
        DBInstanceIdentifier="payroll",
        SkipFinalSnapshot=True,
    )
    for cert in (others, foreign):
        message = refused(
            acm.add_tags_to_certificate if cert == others else acm.delete_certificate,
            "acm:AddTagsToCertificate" if cert == others else "acm:DeleteCertificate",
            CertificateArn=cert,
            **({"Tags": tags("x")} if cert == others else {}),
        )
        assert cert in message
    # the deployment's own: created with its tag, deleted by it
    mine = acm.request_certificate(
        DomainName="www.example.com", ValidationMethod="DNS", Tags=tags("mine")
    )["CertificateArn"]
    acm.delete_certificate(CertificateArn=mine)


def test_a_policy_the_sandbox_cannot_evaluate_is_refused_not_guessed(sb: Sandbox) -> None:
    """A condition key the sandbox has no value for denies (loudly) instead of allowing."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ec2:DescribeVpcs",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}},
            }
        ],
    }
    keys = user_with(sb, "unjudgeable", policy)
    with pytest.raises(ClientError) as err:
        as_user(sb, keys, "ec2").describe_vpcs()
    assert "cannot evaluate" in err.value.response["Error"]["Message"]
    assert "aws:SourceVpce" in err.value.response["Error"]["Message"]


def test_the_beanstalk_roles_get_only_their_own_policies(sb: Sandbox) -> None:
    """iam:AttachRolePolicy: the EC2 role only WebTier/WorkerTier, the service role only
    EnhancedHealth, and only on roles carrying the deployment tag."""
    iam = as_user(sb, user_with(sb, "roles", load_policy()), "iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    for name in ("rt-eb-ec2-role", "rt-eb-service-role"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, Tags=tags("rt"))
    attach = [
        ("rt-eb-ec2-role", "AdministratorAccess", False),
        ("rt-eb-ec2-role", "service-role/AWSElasticBeanstalkEnhancedHealth", False),
        ("rt-eb-service-role", "AWSElasticBeanstalkWebTier", False),
        ("rt-eb-service-role", "AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy", False),
        ("rt-eb-ec2-role", "AWSElasticBeanstalkWebTier", True),
        ("rt-eb-service-role", "service-role/AWSElasticBeanstalkEnhancedHealth", True),
    ]
    for role, policy, allowed in attach:
        arn = f"arn:aws:iam::aws:policy/{policy}"
        if allowed:
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
            continue
        with pytest.raises(ClientError) as err:
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        assert "iam:AttachRolePolicy on resource: " in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError):  # untagged: not created at all
        iam.create_role(RoleName="x-eb-ec2-role", AssumeRolePolicyDocument=trust)


def test_route53_changes_only_the_flows_record_names(sb: Sandbox) -> None:
    zone = client(sb, "route53").list_hosted_zones()["HostedZones"][0]["Id"]
    r53 = as_user(sb, user_with(sb, "dns", load_policy()), "route53")

    def upsert(name: str, kind: str = "CNAME") -> None:
        r53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": name,
                            "Type": kind,
                            "TTL": 60,
                            "ResourceRecords": [
                                {"Value": "x.example.com" if kind != "TXT" else '"x"'}
                            ],
                        },
                    }
                ]
            },
        )

    z = sb.cfg.hosted_zone
    upsert(f"www.{z}.")
    upsert(f"_0123abc.eb.{z}")
    for name, kind in ((f"api.{z}", "CNAME"), (f"www.{z}", "TXT")):
        with pytest.raises(ClientError) as err:
            upsert(name, kind)
        assert "route53:ChangeResourceRecordSets" in err.value.response["Error"]["Message"]
