"""teardown end to end on the sandbox: an estate made with boto3 (every kind the deploy
stages create, tagged as they tag it), removed by the flow, counted again through the API.
A second run removes nothing; another deployment's resources survive; an error on one
resource fails the flow with a report and leaves the rest removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from sandbox import Sandbox, SandboxConfig
from tasks.aws.ec2 import TAG_KEY
from tasks.aws.iam import EB_SERVICE_POLICIES, EB_SERVICE_TRUST_POLICY
from tasks.aws.teardown import TeardownReport
from tasks.runtime.outcome import outcome_of

from ..support import client, make_sandbox, wait_for

D = "tdtest"
OTHER = "other"
ACCOUNT = "123456789012"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
LOGS_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}],
    }
)


def tags(deployment: str, role: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_KEY, "Value": deployment},
        {"Key": "Name", "Value": f"{deployment}-{role}"},
        {"Key": "tomcat-fleet:role", "Value": role},
    ]


def spec(kind: str, deployment: str, role: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": tags(deployment, role)}]


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        boot_delay=0.2,
        eb_launch_seconds=0.3,
        rds_create_seconds=0.3,
        # the fixture populates with plain boto3 (no retries) faster than Route 53's 5/s
        token_buckets=False,
    )
    with pytest.MonkeyPatch.context() as mp:
        # moto attaches AWS managed policies only when it loads them; real IAM has them
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with make_sandbox(cfg, env=True) as s:
            yield s


@pytest.fixture(scope="module")
def overrides(tmp_path_factory: Any) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("teardown")
    return {"state_dir": str(base / "state"), "log_dir": str(base / "logs")}


def zone_id(sb: Sandbox) -> str:
    zones = client(sb, "route53").list_hosted_zones_by_name(DNSName=sb.cfg.hosted_zone + ".")
    return str(zones["HostedZones"][0]["Id"])


def upsert(sb: Sandbox, rrset: dict[str, Any]) -> None:
    client(sb, "route53").change_resource_record_sets(
        HostedZoneId=zone_id(sb),
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rrset}]},
    )


def record_names(sb: Sandbox) -> set[tuple[str, str]]:
    sets = client(sb, "route53").list_resource_record_sets(HostedZoneId=zone_id(sb))
    return {(r["Name"].rstrip(".").lower(), r["Type"]) for r in sets["ResourceRecordSets"]}


def build_estate(sb: Sandbox) -> dict[str, Any]:
    """What the deploy stages leave behind for deployment D (plus one thing of OTHER)."""
    ec2, elb = client(sb, "ec2"), client(sb, "elbv2")
    zone = sb.cfg.hosted_zone
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0][
        "VpcId"
    ]
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
            "Subnets"
        ]
    ][:2]
    ec2.create_key_pair(KeyName=D, TagSpecifications=spec("key-pair", D, "key"))
    groups = {
        role: ec2.create_security_group(
            GroupName=f"{D}-{role}",
            Description=f"tomcat-fleet {role}",
            VpcId=vpc,
            TagSpecifications=spec("security-group", D, role),
        )["GroupId"]
        for role in ("web", "alb", "db")
    }
    # web <-> alb reference each other; db admits web
    for target, source, port in (("web", "alb", 8080), ("alb", "web", 80), ("db", "web", 3306)):
        ec2.authorize_security_group_ingress(
            GroupId=groups[target],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "UserIdGroupPairs": [{"GroupId": groups[source]}],
                }
            ],
        )
    ec2.authorize_security_group_ingress(
        GroupId=groups["alb"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId="ami-0c7217cdde317cfec",
            InstanceType="t3.small",
            MinCount=3,
            MaxCount=3,
            KeyName=D,
            SecurityGroupIds=[groups["web"]],
            TagSpecifications=spec("instance", D, "web"),
        )["Instances"]
    ]
    tg = elb.create_target_group(
        Name=f"{D}-tg", Protocol="HTTP", Port=8080, VpcId=vpc, Tags=tags(D, "tg")
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 8080} for i in ids])
    lb = elb.create_load_balancer(
        Name=f"{D}-alb",
        Subnets=subnets,
        SecurityGroups=[groups["alb"]],
        Scheme="internet-facing",
        Type="application",
        Tags=tags(D, "alb"),
    )["LoadBalancers"][0]
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        Tags=tags(D, "http"),
    )
    s3 = client(sb, "s3")
    bucket = f"{D}-alb-logs-{ACCOUNT}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags(D, "alb-logs")})
    s3.put_object(Bucket=bucket, Key="AWSLogs/elb.log", Body=b"one log line\n")
    s3.put_object(Bucket=bucket, Key="AWSLogs/elb2.log", Body=b"another\n")

    acm = client(sb, "acm")
    cert = acm.request_certificate(
        DomainName=f"www.{zone}",
        SubjectAlternativeNames=[f"eb.{zone}"],
        ValidationMethod="DNS",
        Tags=tags(D, "cert"),
    )["CertificateArn"]
    options = wait_for(
        lambda: [
            o
            for o in acm.describe_certificate(CertificateArn=cert)["Certificate"].get(
                "DomainValidationOptions", []
            )
            if o.get("ResourceRecord")
        ]
    )
    for opt in options:
        rr = opt["ResourceRecord"]
        upsert(
            sb,
            {
                "Name": rr["Name"],
                "Type": "CNAME",
                "TTL": 300,
                "ResourceRecords": [{"Value": rr["Value"]}],
            },
        )
    wait_for(
        lambda: acm.describe_certificate(CertificateArn=cert)["Certificate"]["Status"] == "ISSUED"
    )
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": cert}],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        Tags=tags(D, "https"),
    )
    upsert(
        sb,
        {
            "Name": f"www.{zone}.",
            "Type": "A",
            "AliasTarget": {
                "HostedZoneId": lb["CanonicalHostedZoneId"],
                "DNSName": f"dualstack.{lb['DNSName']}.",
                "EvaluateTargetHealth": False,
            },
        },
    )

    iam = client(sb, "iam")
    role = f"{D}-eb-ec2-role"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST, Tags=tags(D, "eb-ec2-role"))
    iam.attach_role_policy(
        RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier"
    )
    iam.put_role_policy(RoleName=role, PolicyName="logs", PolicyDocument=LOGS_POLICY)
    iam.create_instance_profile(InstanceProfileName=f"{D}-eb-profile", Tags=tags(D, "eb-profile"))
    iam.add_role_to_instance_profile(InstanceProfileName=f"{D}-eb-profile", RoleName=role)
    # the service role Elastic Beanstalk assumes (as tasks.aws.iam.ensure_service_role makes)
    service_role = f"{D}-eb-service-role"
    iam.create_role(
        RoleName=service_role,
        AssumeRolePolicyDocument=json.dumps(EB_SERVICE_TRUST_POLICY),
        Tags=tags(D, "eb-service-role"),
    )
    for arn in EB_SERVICE_POLICIES:
        iam.attach_role_policy(RoleName=service_role, PolicyArn=arn)

    eb = client(sb, "elasticbeanstalk")
    stack = next(s for s in eb.list_available_solution_stacks()["SolutionStacks"] if "Tomcat" in s)
    eb.create_application(ApplicationName=f"{D}-app", Tags=tags(D, "eb-app"))
    eb.create_environment(
        ApplicationName=f"{D}-app",
        EnvironmentName=f"{D}-env",
        SolutionStackName=stack,
        Tags=tags(D, "eb-env"),
        OptionSettings=[
            {
                "Namespace": "aws:autoscaling:launchconfiguration",
                "OptionName": "IamInstanceProfile",
                "Value": f"{D}-eb-profile",
            },
            {
                "Namespace": "aws:elasticbeanstalk:environment",
                "OptionName": "ServiceRole",
                "Value": service_role,
            },
        ],
    )
    env = wait_for(
        lambda: next(
            (
                e
                for e in eb.describe_environments(EnvironmentNames=[f"{D}-env"])["Environments"]
                if e["Status"] == "Ready"
            ),
            None,
        ),
        timeout=30,
    )
    upsert(
        sb,
        {
            "Name": f"eb.{zone}.",
            "Type": "CNAME",
            "TTL": 60,
            "ResourceRecords": [{"Value": env["CNAME"]}],
        },
    )

    rds = client(sb, "rds")
    rds.create_db_instance(
        DBInstanceIdentifier=f"{D}-db",
        DBInstanceClass="db.t3.micro",
        Engine="mysql",
        MasterUsername="admin",
        MasterUserPassword="sandbox-password-1",
        AllocatedStorage=20,
        VpcSecurityGroupIds=[groups["db"]],
        Tags=tags(D, "db"),
    )
    wait_for(
        lambda: (
            rds.describe_db_instances(DBInstanceIdentifier=f"{D}-db")["DBInstances"][0][
                "DBInstanceStatus"
            ]
            == "available"
        ),
        timeout=30,
    )

    # another deployment: a security group, an instance and a record that must survive
    other_sg = ec2.create_security_group(
        GroupName=f"{OTHER}-web",
        Description="tomcat-fleet web",
        VpcId=vpc,
        TagSpecifications=spec("security-group", OTHER, "web"),
    )["GroupId"]
    other_id = ec2.run_instances(
        ImageId="ami-0c7217cdde317cfec",
        InstanceType="t3.small",
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[other_sg],
        TagSpecifications=spec("instance", OTHER, "web"),
    )["Instances"][0]["InstanceId"]
    upsert(
        sb,
        {
            "Name": f"{OTHER}.{zone}.",
            "Type": "CNAME",
            "TTL": 60,
            "ResourceRecords": [{"Value": "other.example.org"}],
        },
    )
    return {
        "groups": groups,
        "instances": ids,
        "lb_dns": lb["DNSName"],
        "cert": cert,
        "validation": {opt["ResourceRecord"]["Name"].rstrip(".").lower() for opt in options},
        "other_sg": other_sg,
        "other_instance": other_id,
    }


def remaining(sb: Sandbox, deployment: str) -> dict[str, list[str]]:
    """Everything still carrying the deployment's tag, counted through the API."""
    ec2, elb = client(sb, "ec2"), client(sb, "elbv2")
    flt = [{"Name": f"tag:{TAG_KEY}", "Values": [deployment]}]

    def mine(tag_list: Any) -> bool:
        return any(t["Key"] == TAG_KEY and t["Value"] == deployment for t in tag_list or [])

    out: dict[str, list[str]] = {}
    out["instances"] = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=flt)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    out["security-groups"] = [
        g["GroupId"] for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]
    ]
    out["key-pairs"] = [
        k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if mine(k.get("Tags"))
    ]
    arns = [lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]]
    arns += [tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]]
    out["elbv2"] = [
        d["ResourceArn"]
        for i in range(0, len(arns), 20)
        for d in elb.describe_tags(ResourceArns=arns[i : i + 20])["TagDescriptions"]
        if mine(d["Tags"])
    ]
    s3 = client(sb, "s3")
    buckets = []
    for b in s3.list_buckets()["Buckets"]:
        try:
            if mine(s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"]):
                buckets.append(b["Name"])
        except ClientError:
            pass
    out["buckets"] = buckets
    acm = client(sb, "acm")
    out["certificates"] = [
        c["CertificateArn"]
        for c in acm.list_certificates()["CertificateSummaryList"]
        if mine(acm.list_tags_for_certificate(CertificateArn=c["CertificateArn"])["Tags"])
    ]
    rds = client(sb, "rds")
    out["rds"] = [
        db["DBInstanceIdentifier"]
        for db in rds.describe_db_instances()["DBInstances"]
        if mine(db.get("TagList"))
    ]
    iam = client(sb, "iam")
    out["roles"] = [
        r["RoleName"]
        for r in iam.list_roles()["Roles"]
        if mine(iam.list_role_tags(RoleName=r["RoleName"])["Tags"])
    ]
    out["profiles"] = [
        p["InstanceProfileName"]
        for p in iam.list_instance_profiles()["InstanceProfiles"]
        if mine(p.get("Tags"))
    ]
    eb = client(sb, "elasticbeanstalk")
    out["environments"] = [
        e["EnvironmentName"]
        for e in eb.describe_environments()["Environments"]
        if e["Status"] != "Terminated"
        and mine(eb.list_tags_for_resource(ResourceArn=e["EnvironmentArn"])["ResourceTags"])
    ]
    out["applications"] = [
        a["ApplicationName"]
        for a in eb.describe_applications()["Applications"]
        if a["ApplicationName"].startswith(f"{deployment}-")
    ]
    return out


@pytest.fixture(scope="module")
def estate(sb: Sandbox) -> dict[str, Any]:
    built = build_estate(sb)
    before = remaining(sb, D)
    assert all(before[k] for k in before), before  # every kind exists before the teardown
    return built


@pytest.fixture(scope="module")
def first_run(sb: Sandbox, estate: dict[str, Any], overrides: dict[str, Any]) -> TeardownReport:
    from flows.teardown import teardown

    t0 = time.monotonic()
    report = teardown(deployment_name=D, settings_overrides=overrides)
    assert isinstance(report, TeardownReport)
    assert time.monotonic() - t0 < 120
    return report


def test_teardown_removes_every_kind_in_order(
    sb: Sandbox, estate: dict[str, Any], first_run: TeardownReport
) -> None:
    report = first_run
    assert report.errors == []
    counts = report.counts()
    assert counts == {
        "route53-record": 4,  # 2 validation CNAMEs, the alias A, the eb CNAME
        "beanstalk-environment": 1,
        "beanstalk-application": 1,
        "listener": 2,
        "load-balancer": 1,
        "target-group": 1,
        "certificate": 1,
        "s3-bucket": 1,
        "rds-instance": 1,
        "ec2-instance": 3,
        "security-group": 3,
        "instance-profile": 1,
        "iam-role": 2,  # the instances' role and the service role
        "key-pair": 1,
        "secret": 0,
    }, counts
    assert sorted(report.removed["ec2-instance"]) == sorted(estate["instances"])
    assert report.removed["beanstalk-environment"] == [f"{D}-env"]
    assert f"{D}-eb-service-role" in report.removed["iam-role"]
    assert report.removed["s3-bucket"] == [f"{D}-alb-logs-{ACCOUNT}"]
    # HTTPS listener first: it holds the certificate
    assert report.removed["listener"][0].endswith(":HTTPS:443")


def test_nothing_of_the_deployment_is_left(
    sb: Sandbox, estate: dict[str, Any], first_run: TeardownReport
) -> None:
    left = remaining(sb, D)
    assert all(not v for v in left.values()), left
    records = record_names(sb)
    zone = sb.cfg.hosted_zone
    assert (f"www.{zone}", "A") not in records
    assert (f"eb.{zone}", "CNAME") not in records
    assert not {(n, "CNAME") for n in estate["validation"]} & records
    with pytest.raises(ClientError) as exc:
        client(sb, "s3").head_bucket(Bucket=f"{D}-alb-logs-{ACCOUNT}")
    assert exc.value.response["Error"]["Code"] in ("404", "NoSuchBucket")


def test_other_deployment_survives(
    sb: Sandbox, estate: dict[str, Any], first_run: TeardownReport
) -> None:
    ec2 = client(sb, "ec2")
    assert ec2.describe_security_groups(GroupIds=[estate["other_sg"]])["SecurityGroups"]
    inst = ec2.describe_instances(InstanceIds=[estate["other_instance"]])["Reservations"][0][
        "Instances"
    ][0]
    assert inst["State"]["Name"] in ("pending", "running")
    assert (f"{OTHER}.{sb.cfg.hosted_zone}", "CNAME") in record_names(sb)
    assert remaining(sb, OTHER)["security-groups"] == [estate["other_sg"]]


def test_second_run_removes_nothing(
    sb: Sandbox, first_run: TeardownReport, overrides: dict[str, Any]
) -> None:
    from flows.teardown import teardown

    state = teardown(deployment_name=D, settings_overrides=overrides, return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert isinstance(report, TeardownReport)
    assert report.total_removed == 0 and report.errors == [], report


def test_markdown_artifact(first_run: TeardownReport) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{D}-teardown"]))
        )
    assert arts, "no teardown artifact"
    texts = [str(a.data) for a in arts]
    assert any("| ec2-instance | 3 |" in t for t in texts), texts
    assert any("| security-group | 3 |" in t for t in texts)


def test_error_on_one_resource_fails_the_flow_and_the_rest_goes(
    sb: Sandbox, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket that refuses deletion: recorded, the flow fails with the report as data,
    everything else of the deployment is removed; once the refusal stops, a rerun finishes."""
    from flows.teardown import teardown
    from tasks.aws.client import RetryingClient

    dep = "tderr"
    ec2, s3 = client(sb, "ec2"), client(sb, "s3")
    ec2.create_key_pair(KeyName=dep, TagSpecifications=spec("key-pair", dep, "key"))
    bucket = f"{dep}-alb-logs-{ACCOUNT}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags(dep, "alb-logs")})

    real = RetryingClient.__getattr__

    def refusing(self: RetryingClient, name: str) -> Any:
        if name == "delete_bucket":

            def denied(**kw: Any) -> Any:
                raise ClientError(
                    {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "DeleteBucket"
                )

            return denied
        return real(self, name)

    monkeypatch.setattr(RetryingClient, "__getattr__", refusing)
    state = teardown(deployment_name=dep, settings_overrides=overrides, return_state=True)
    assert state.is_failed()
    report = outcome_of(state)
    assert isinstance(report, TeardownReport)
    assert len(report.errors) == 1 and "AccessDenied" in report.errors[0], report.errors
    assert report.removed["key-pair"] == [dep]
    assert remaining(sb, dep)["buckets"] == [bucket]

    monkeypatch.setattr(RetryingClient, "__getattr__", real)
    report = teardown(deployment_name=dep, settings_overrides=overrides)
    assert report.removed["s3-bucket"] == [bucket] and not report.errors
    assert not any(remaining(sb, dep).values())


def test_cli_prints_json_last(sb: Sandbox, first_run: TeardownReport) -> None:
    env = {**os.environ, "TOMCAT_FLEET_DEPLOYMENT_NAME": D}
    proc = subprocess.run(
        [sys.executable, "-m", "flows", "teardown", "--deployment-name", D],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == 0 and sum(out["removed"].values()) == 0
    assert set(out["removed"]) >= {"ec2-instance", "security-group", "route53-record"}


def test_secret_block_kept_unless_delete_secrets(sb: Sandbox, overrides: dict[str, Any]) -> None:
    from prefect.blocks.system import Secret

    from flows.teardown import teardown

    dep = "tdsecret"
    Secret(value="sandbox-password-1").save(f"{dep}-rds-password", overwrite=True)
    report = teardown(deployment_name=dep, settings_overrides=overrides)
    assert report.removed["secret"] == []
    kept = cast(Secret, Secret.load(f"{dep}-rds-password"))
    assert kept.get() == "sandbox-password-1"
    report = teardown(deployment_name=dep, delete_secrets=True, settings_overrides=overrides)
    assert report.removed["secret"] == [f"{dep}-rds-password"] and not report.errors
    with pytest.raises(ValueError):
        Secret.load(f"{dep}-rds-password")
    report = teardown(deployment_name=dep, delete_secrets=True, settings_overrides=overrides)
    assert report.total_removed == 0 and not report.errors
