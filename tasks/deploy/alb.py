"""Deploy stage 4: an internet-facing Application Load Balancer in front of the fleet.

`create_alb` finds or creates, in order: the ALB security group (80/443 from anywhere) and
the rule letting it reach the instances on 8080, the access-log bucket (private, public
access blocked, SSE-S3, writable by ELB log delivery only), the target group with every
inventory instance registered, the load balancer with access logs on, and its HTTP
listener. Then it waits until the balancer is active and every registered target is
healthy. Every resource is found by name and checked for the deployment tag before
anything is created, so a second call creates nothing and returns the same ids.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.client import WaitTimeout
from tasks.aws.ec2 import (
    TAG_KEY,
    StageError,
    authorize_ingress,
    default_vpc,
    deployment_tags,
    ensure_security_group,
)
from tasks.aws.elbv2 import find_listener, forwards_to
from tasks.aws.retry import error_code
from tasks.deploy.models import AlbResult, InventoryResult

APP_PORT = 8080
LOG_PREFIX = "alb"
ELB_NAME_MAX = 32  # load balancer and target group names
BUCKET_NAME_MAX = 63

# Regions that predate the log-delivery service principal (August 2022) deliver ALB access
# logs as the regional Elastic Load Balancing account; the bucket policy admits both.
_ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580",
    "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-south-1": "635631232127",
    "eu-west-3": "009996457667",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}


# -- names ------------------------------------------------------------------------------
def elb_name(settings: FleetSettings, suffix: str) -> str:
    """`<deployment>-<suffix>`, shortened with a stable hash when over 32 characters."""
    name = f"{settings.deployment_name}-{suffix}"
    if len(name) <= ELB_NAME_MAX:
        return name
    digest = hashlib.sha256(settings.deployment_name.encode()).hexdigest()[:6]
    keep = ELB_NAME_MAX - len(suffix) - len(digest) - 2
    return f"{settings.deployment_name[:keep].rstrip('-')}-{digest}-{suffix}"


def log_bucket_name(settings: FleetSettings, account: str) -> str:
    """`<deployment>-alb-logs-<account>`, lowercase, at most 63 characters."""
    tail = f"-alb-logs-{account}".lower()
    head = settings.deployment_name.lower()[: BUCKET_NAME_MAX - len(tail)].rstrip("-")
    return head + tail


def _tag_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in tags}


# -- access-log bucket ------------------------------------------------------------------
def _log_policy(bucket: str, account: str, partition: str, region: str) -> str:
    resource = f"arn:{partition}:s3:::{bucket}/{LOG_PREFIX}/AWSLogs/{account}/*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ElbLogDelivery",
            "Effect": "Allow",
            "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": resource,
        }
    ]
    legacy = _ELB_LOG_ACCOUNTS.get(region)
    if legacy:
        statements.append(
            {
                "Sid": "ElbLogDeliveryRegionalAccount",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{legacy}:root"},
                "Action": "s3:PutObject",
                "Resource": resource,
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def ensure_log_bucket(aws: Aws, settings: FleetSettings) -> str:
    """The private, encrypted access-log bucket ELB may write `alb/AWSLogs/<account>/` to."""
    ident = aws.client("sts").get_caller_identity()
    account = str(ident["Account"])
    partition = str(ident.get("Arn", "arn:aws:")).split(":")[1] or "aws"
    bucket = log_bucket_name(settings, account)
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        exists = True
    except ClientError as exc:
        code = error_code(exc)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise StageError(
                f"S3 bucket {bucket} exists but belongs to another account; "
                "delete it or choose another deployment name"
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        exists = False
    tags: dict[str, str] = {}
    if exists:
        # ours by name and account; an untagged one is a run that stopped before tagging
        tags = _bucket_tags(s3, bucket)
        if tags and tags.get(TAG_KEY) != settings.deployment_name:
            raise StageError(
                f"S3 bucket {bucket} is tagged {TAG_KEY}={tags.get(TAG_KEY)!r}, not "
                f"{settings.deployment_name!r}; it is not this deployment's"
            )
    else:
        # `private` alone would make S3 pick BucketOwnerPreferred (ACLs on); enforce owner
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "ACL": "private",
            "ObjectOwnership": "BucketOwnerEnforced",
        }
        if settings.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
    if not tags:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": deployment_tags(settings, "alb")})
    # settings below are declarative (PUT replaces): applying them again changes nothing
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_policy(
        Bucket=bucket, Policy=_log_policy(bucket, account, partition, settings.region)
    )
    return bucket


def _bucket_tags(s3: Any, bucket: str) -> dict[str, str]:
    try:
        return _tag_dict(s3.get_bucket_tagging(Bucket=bucket)["TagSet"])
    except ClientError as exc:
        if error_code(exc) in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        raise


# -- ELBv2 ------------------------------------------------------------------------------
def _elb_tags(elb: Any, arn: str) -> dict[str, str]:
    descs = elb.describe_tags(ResourceArns=[arn])["TagDescriptions"]
    return _tag_dict(descs[0].get("Tags", [])) if descs else {}


def _check_owner(elb: Any, arn: str, what: str, settings: FleetSettings) -> None:
    if _elb_tags(elb, arn).get(TAG_KEY) != settings.deployment_name:
        raise StageError(
            f"{what} exists without tag {TAG_KEY}={settings.deployment_name}; it is not this "
            "deployment's: delete it or choose another deployment name"
        )


def default_subnets(aws: Aws, vpc_id: str) -> list[str]:
    """One default subnet per availability zone of the default VPC (at least two)."""
    subnets = aws.client("ec2").describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    by_az: dict[str, str] = {}
    for s in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"])):
        by_az.setdefault(s["AvailabilityZone"], s["SubnetId"])
    if len(by_az) < 2:
        raise StageError(
            f"the default VPC {vpc_id} has default subnets in {len(by_az)} availability zone(s); "
            "an ALB needs two: create default subnets (aws ec2 create-default-subnet)"
        )
    return list(by_az.values())


_HEALTH = {
    "HealthCheckProtocol": "HTTP",
    "HealthCheckPort": "traffic-port",
    "HealthCheckPath": "/",
    "HealthCheckIntervalSeconds": 10,
    "Matcher": {"HttpCode": "200"},
}


def ensure_target_group(aws: Aws, settings: FleetSettings, vpc_id: str) -> str:
    elb = aws.client("elbv2")
    name = elb_name(settings, "tg")
    try:
        found = elb.describe_target_groups(Names=[name])["TargetGroups"]
    except ClientError as exc:
        if error_code(exc) != "TargetGroupNotFound":
            raise
        found = []
    if found:
        tg = found[0]
        arn = str(tg["TargetGroupArn"])
        _check_owner(elb, arn, f"target group {name}", settings)
        if (tg.get("Port"), tg.get("Protocol"), tg.get("VpcId")) != (APP_PORT, "HTTP", vpc_id):
            raise StageError(
                f"target group {name} exists as {tg.get('Protocol')}:{tg.get('Port')} in "
                f"{tg.get('VpcId')}, not HTTP:{APP_PORT} in {vpc_id}; delete it to recreate"
            )
        drift = (
            tg.get("HealthCheckProtocol") != _HEALTH["HealthCheckProtocol"]
            or tg.get("HealthCheckPath") != _HEALTH["HealthCheckPath"]
            or tg.get("HealthCheckIntervalSeconds") != _HEALTH["HealthCheckIntervalSeconds"]
            or (tg.get("Matcher") or {}).get("HttpCode") != "200"
        )
        if drift:
            elb.modify_target_group(TargetGroupArn=arn, **_HEALTH)
        return arn
    tg = elb.create_target_group(
        Name=name,
        Protocol="HTTP",
        Port=APP_PORT,
        VpcId=vpc_id,
        TargetType="instance",
        **_HEALTH,
        Tags=deployment_tags(settings, "tg"),
    )["TargetGroups"][0]
    return str(tg["TargetGroupArn"])


def register_inventory(aws: Aws, tg_arn: str, instance_ids: list[str]) -> None:
    """Register every inventory instance on 8080 and drop targets no longer in it."""
    elb = aws.client("elbv2")
    current = {
        (d["Target"]["Id"], int(d["Target"].get("Port", APP_PORT)))
        for d in elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    }
    wanted = {(iid, APP_PORT) for iid in instance_ids}
    missing = sorted(wanted - current)
    stale = sorted(current - wanted)
    for i in range(0, len(missing), 100):
        elb.register_targets(
            TargetGroupArn=tg_arn,
            Targets=[{"Id": iid, "Port": port} for iid, port in missing[i : i + 100]],
        )
    for i in range(0, len(stale), 100):
        elb.deregister_targets(
            TargetGroupArn=tg_arn,
            Targets=[{"Id": iid, "Port": port} for iid, port in stale[i : i + 100]],
        )


def ensure_load_balancer(
    aws: Aws, settings: FleetSettings, subnets: list[str], group_id: str
) -> dict[str, Any]:
    elb = aws.client("elbv2")
    name = elb_name(settings, "alb")
    try:
        found = elb.describe_load_balancers(Names=[name])["LoadBalancers"]
    except ClientError as exc:
        if error_code(exc) != "LoadBalancerNotFound":
            raise
        found = []
    if found:
        lb: dict[str, Any] = found[0]
        _check_owner(elb, lb["LoadBalancerArn"], f"load balancer {name}", settings)
        if lb.get("Type", "application") != "application" or lb.get("Scheme") != (
            "internet-facing"
        ):
            raise StageError(
                f"load balancer {name} exists as {lb.get('Scheme')} {lb.get('Type')}, not an "
                "internet-facing application load balancer; delete it to recreate"
            )
        if group_id not in (lb.get("SecurityGroups") or []):
            elb.set_security_groups(
                LoadBalancerArn=lb["LoadBalancerArn"], SecurityGroups=[group_id]
            )
        return lb
    return dict(
        elb.create_load_balancer(
            Name=name,
            Subnets=subnets,
            SecurityGroups=[group_id],
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Tags=deployment_tags(settings, "alb"),
        )["LoadBalancers"][0]
    )


def enable_access_logs(aws: Aws, lb_arn: str, bucket: str) -> None:
    elb = aws.client("elbv2")
    wanted = {
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": bucket,
        "access_logs.s3.prefix": LOG_PREFIX,
    }
    have = {
        a["Key"]: a.get("Value", "")
        for a in elb.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]
    }
    if any(have.get(k) != v for k, v in wanted.items()):
        elb.modify_load_balancer_attributes(
            LoadBalancerArn=lb_arn, Attributes=[{"Key": k, "Value": v} for k, v in wanted.items()]
        )


def ensure_http_listener(aws: Aws, settings: FleetSettings, lb_arn: str, tg_arn: str) -> str:
    elb = aws.client("elbv2")
    forward = [{"Type": "forward", "TargetGroupArn": tg_arn}]
    li = find_listener(aws, lb_arn, 80)
    if li is not None:
        if li.get("Protocol") != "HTTP" or not forwards_to(li, tg_arn):
            elb.modify_listener(
                ListenerArn=li["ListenerArn"], Protocol="HTTP", Port=80, DefaultActions=forward
            )
        return str(li["ListenerArn"])
    created = elb.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=forward,
        Tags=deployment_tags(settings, "http"),
    )["Listeners"][0]
    return str(created["ListenerArn"])


# -- waiting ----------------------------------------------------------------------------
def wait_active(aws: Aws, lb_arn: str, deadline: float, timeout_s: float, poll_s: float) -> None:
    """Until the load balancer is active (boto3's `load_balancer_available` waiter, through
    the retrying client), within `deadline`; StageError with its state otherwise."""
    elb = aws.client("elbv2")
    try:
        elb.wait(
            "load_balancer_available",
            what=f"load balancer {lb_arn} to be active",
            timeout_s=max(0.0, deadline - time.monotonic()),
            delay_s=poll_s,
            LoadBalancerArns=[lb_arn],
        )
        return
    except WaitTimeout:
        pass  # the state below says why
    lb = elb.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"][0]
    state = (lb.get("State") or {}).get("Code", "active")
    if state == "active":
        return
    if state == "failed":
        reason = (lb.get("State") or {}).get("Reason", "no reason given")
        raise StageError(f"load balancer {lb['LoadBalancerName']} failed: {reason}")
    raise StageError(
        f"load balancer {lb['LoadBalancerName']} is still {state} after {timeout_s:.0f}s"
    )


def describe_health(aws: Aws, tg_arn: str, instance_ids: list[str]) -> list[dict[str, Any]]:
    elb = aws.client("elbv2")
    out: list[dict[str, Any]] = []
    for i in range(0, len(instance_ids), 100):
        batch = instance_ids[i : i + 100]
        out += elb.describe_target_health(
            TargetGroupArn=tg_arn, Targets=[{"Id": iid, "Port": APP_PORT} for iid in batch]
        )["TargetHealthDescriptions"]
    return out


def health_report(descs: list[dict[str, Any]]) -> str:
    """`healthy=4, unhealthy=2 [Target.Timeout x2: i-1, i-2]` — states and reasons."""
    states = Counter(d["TargetHealth"]["State"] for d in descs)
    parts = [f"{s}={n}" for s, n in sorted(states.items())]
    reasons: dict[str, list[str]] = {}
    for d in descs:
        th = d["TargetHealth"]
        if th["State"] != "healthy":
            key = th.get("Reason") or th["State"]
            if th.get("Description"):
                key += f" ({th['Description']})"
            reasons.setdefault(key, []).append(d["Target"]["Id"])
    details = [
        f"{reason} x{len(ids)}: {', '.join(sorted(ids)[:5])}{' ...' if len(ids) > 5 else ''}"
        for reason, ids in sorted(reasons.items())
    ]
    return ", ".join(parts) + (f" [{'; '.join(details)}]" if details else "")


def wait_healthy(
    aws: Aws, tg_arn: str, instance_ids: list[str], deadline: float, timeout_s: float, poll_s: float
) -> int:
    """Until every target is healthy (boto3's `target_in_service` waiter per batch of 100,
    through the retrying client), within `deadline`; StageError with each target's state
    and reason otherwise."""
    elb = aws.client("elbv2")
    try:
        for i in range(0, len(instance_ids), 100):
            elb.wait(
                "target_in_service",
                what=f"targets of {tg_arn} to be healthy",
                timeout_s=max(0.0, deadline - time.monotonic()),
                delay_s=poll_s,
                TargetGroupArn=tg_arn,
                Targets=[{"Id": iid, "Port": APP_PORT} for iid in instance_ids[i : i + 100]],
            )
    except WaitTimeout:
        pass  # the report below says why
    descs = describe_health(aws, tg_arn, instance_ids)
    healthy = sum(1 for d in descs if d["TargetHealth"]["State"] == "healthy")
    if healthy == len(instance_ids):
        return healthy
    hint = ""
    if any(d["TargetHealth"].get("Reason") == "Target.Timeout" for d in descs):
        hint = (
            "; Target.Timeout usually means the instance's security group does not "
            f"admit the ALB's group on {APP_PORT}"
        )
    raise StageError(
        f"{healthy}/{len(instance_ids)} targets healthy after {timeout_s:.0f}s: "
        f"{health_report(descs)}{hint}"
    )


# -- the stage --------------------------------------------------------------------------
def create_alb(
    aws: Aws,
    settings: FleetSettings,
    inventory: InventoryResult,
    timeout_s: float = 300,
    poll_s: float = 1.0,
) -> AlbResult:
    """Stage 4: the ALB serving every inventory instance over HTTP on port 80."""
    if not inventory.instances:
        raise StageError(f"inventory {inventory.path} lists no instances to put behind the ALB")
    instance_ids = sorted({i.instance_id for i in inventory.instances})
    groups = sorted(set(inventory.security_group_ids))
    if not groups:
        raise StageError(f"inventory {inventory.path} names no security groups for the instances")

    vpc = default_vpc(aws)
    subnets = default_subnets(aws, vpc)
    alb_sg = ensure_security_group(aws, settings, role="alb")
    authorize_ingress(aws, [alb_sg], [80, 443], lambda _p: "0.0.0.0/0")
    authorize_ingress(aws, groups, [APP_PORT], lambda _p: alb_sg, description="tomcat-fleet alb")

    bucket = ensure_log_bucket(aws, settings)
    tg_arn = ensure_target_group(aws, settings, vpc)
    register_inventory(aws, tg_arn, instance_ids)
    lb = ensure_load_balancer(aws, settings, subnets, alb_sg)
    lb_arn = str(lb["LoadBalancerArn"])
    enable_access_logs(aws, lb_arn, bucket)
    listener_arn = ensure_http_listener(aws, settings, lb_arn, tg_arn)

    deadline = time.monotonic() + timeout_s
    wait_active(aws, lb_arn, deadline, timeout_s, poll_s)
    healthy = wait_healthy(aws, tg_arn, instance_ids, deadline, timeout_s, poll_s)
    dns = str(lb["DNSName"])
    return AlbResult(
        load_balancer_arn=lb_arn,
        dns_name=dns,
        security_group_id=alb_sg,
        target_group_arn=tg_arn,
        http_listener_arn=listener_arn,
        registered=instance_ids,
        healthy=healthy,
        access_log_bucket=bucket,
        url=f"http://{dns}/",
    )
