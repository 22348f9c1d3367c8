"""S3: the deployment's buckets (the ALB access-log bucket); one line per bucket found,
created or deleted (`tasks.actions`)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.cleanup import TAG_KEY, Cleanup, tag_dict
from tasks.aws.client import Aws
from tasks.aws.ec2 import StageError, deployment_tags
from tasks.aws.retry import error_code
from tasks.planning import chunked


# -- delete -----------------------------------------------------------------------------
def empty_and_delete_bucket(c: Cleanup, bucket: str) -> None:
    """Every object version and delete marker, then any unversioned object, then the bucket."""
    s3 = c.aws.client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for batch in chunked(objects, 1000):
            res = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            failed = [e for e in res.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                raise RuntimeError(
                    f"{len(failed)} object(s) not deleted, first {failed[0].get('Key')}: "
                    f"{failed[0].get('Code')} {failed[0].get('Message')}"
                )
    # objects written without versioning, if the listing above missed any
    for obj in s3.pages("list_objects_v2", "Contents", Bucket=bucket):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def deployment_buckets(c: Cleanup) -> list[str]:
    """The buckets tagged for this deployment."""
    s3 = c.aws.client("s3")
    out = []
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        try:
            tags = s3.get_bucket_tagging(Bucket=name).get("TagSet", [])
        except ClientError:
            continue  # NoSuchTagSet, another region's bucket, no access: not ours
        if c.mine(tags):
            out.append(name)
    return out


def delete_buckets(c: Cleanup) -> None:
    for name in deployment_buckets(c):
        c.attempt("s3-bucket", name, empty_and_delete_bucket, c, name)


# -- ensure -------------------------------------------------------------------------------
LOG_PREFIX = "alb"


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


def log_bucket_name(settings: FleetSettings, account: str) -> str:
    """`<deployment>-alb-logs-<account>`, lowercase, at most 63 characters."""
    tail = f"-alb-logs-{account}".lower()
    head = settings.deployment_name.lower()[: BUCKET_NAME_MAX - len(tail)].rstrip("-")
    return head + tail


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


def find_log_bucket(aws: Aws, settings: FleetSettings) -> tuple[str, dict[str, str] | None]:
    """(the access-log bucket's name, its tags), tags None when the bucket does not exist
    (or is another account's: HeadBucket with the expected owner refuses it)."""
    account = str(aws.client("sts").get_caller_identity()["Account"])
    bucket = log_bucket_name(settings, account)
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound", "403", "AccessDenied"):
            return bucket, None
        raise
    return bucket, _bucket_tags(s3, bucket)


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
            actions.created("bucket", bucket, why=f"ALB access logs, in {settings.region}")
        except ClientError as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
            exists = True
    if exists:
        why = "ALB access logs; tagged now" if not tags else "ALB access logs"
        actions.found("bucket", bucket, why=f"{why}; access block, encryption and policy put again")
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
        return tag_dict(s3.get_bucket_tagging(Bucket=bucket)["TagSet"])
    except ClientError as exc:
        if error_code(exc) in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        raise
