"""The sandbox authorises calls as AWS does: the env file's keys are an operator user holding
exactly docs/iam-policy.json; anything else is AccessDenied, naming the action."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import Sandbox, SandboxConfig
from tasks.aws.policy import load_policy

from ..support import client, make_sandbox


def operator(sb: Sandbox, service: str) -> Any:
    env = sb.env()
    return boto3.client(
        service,
        endpoint_url=sb.endpoint,
        region_name=sb.cfg.region,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def sb() -> Any:
    with make_sandbox(SandboxConfig()) as sb:
        yield sb


def test_operator_cannot_create_users(sb: Sandbox) -> None:
    with pytest.raises(ClientError) as err:
        operator(sb, "iam").create_user(UserName="intruder")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert "iam:CreateUser" in err.value.response["Error"]["Message"]
    assert "tomcat-fleet-operator" in err.value.response["Error"]["Message"]
    # the admin (what tests inspect with) may; the operator's describes work
    client(sb, "iam").create_user(UserName="by-admin")
    assert operator(sb, "ec2").describe_vpcs()["Vpcs"]


def test_operator_holds_exactly_the_shipped_policy(sb: Sandbox) -> None:
    iam = client(sb, "iam")
    names = iam.list_user_policies(UserName="tomcat-fleet-operator")["PolicyNames"]
    assert len(names) == 1
    doc = iam.get_user_policy(UserName="tomcat-fleet-operator", PolicyName=names[0])
    document = doc["PolicyDocument"]
    assert (json.loads(document) if isinstance(document, str) else document) == load_policy()
    assert (
        iam.list_attached_user_policies(UserName="tomcat-fleet-operator")["AttachedPolicies"] == []
    )


def test_operator_is_scoped_by_arn_where_moto_knows_the_resource(sb: Sandbox) -> None:
    """IAM roles and S3 buckets: moto checks the statement's ARNs, not just the action."""
    with pytest.raises(ClientError) as err:
        operator(sb, "iam").create_role(
            RoleName="not-ours", AssumeRolePolicyDocument=json.dumps({"Statement": []})
        )
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    client(sb, "iam").create_role(
        RoleName="not-ours", AssumeRolePolicyDocument=json.dumps({"Statement": []})
    )
    with pytest.raises(ClientError) as err:
        operator(sb, "iam").delete_role(RoleName="not-ours")
    assert "iam:DeleteRole" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        operator(sb, "s3").create_bucket(Bucket="someone-elses-bucket")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    operator(sb, "s3").create_bucket(Bucket="x-alb-logs-123456789012")


def test_env_file_carries_both_keys_owner_only(sb: Sandbox, tmp_path: Path) -> None:
    env = sb.env()
    assert env["AWS_ACCESS_KEY_ID"] == sb.operator.access_key_id
    assert env["SANDBOX_ADMIN_AWS_ACCESS_KEY_ID"] == sb.admin.access_key_id
    assert env["AWS_ACCESS_KEY_ID"] != env["SANDBOX_ADMIN_AWS_ACCESS_KEY_ID"]
    path = tmp_path / "sb.env"
    sb.write_env_file(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert f"AWS_SECRET_ACCESS_KEY={sb.operator.secret_access_key}" in path.read_text()


def test_no_enforce_iam_allows_every_call() -> None:
    with make_sandbox(SandboxConfig(enforce_iam=False)) as sb:
        operator(sb, "iam").create_user(UserName="anyone")
