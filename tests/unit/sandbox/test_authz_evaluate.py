"""IAM policy evaluation (sandbox.authz.evaluate): AWS's documented semantics, no network."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.authz.evaluate import (
    Check,
    Decision,
    arn_match,
    condition_holds,
    evaluate,
    unsupported,
)


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = "*", **condition: Any) -> dict[str, Any]:
    st: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


@pytest.mark.parametrize(
    ("pattern", "arn", "expected"),
    [
        ("*", "arn:aws:ec2:us-east-1:1:instance/i-1", True),
        ("arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:us-east-1:1:instance/i-1", True),
        ("arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:us-east-1:1:volume/vol-1", False),
        ("arn:aws:ec2:*:*:instance/*", "*", False),  # a named ARN never grants "no resource"
        ("arn:aws:rds:*:*:db:*", "arn:aws:rds:us-east-1:1:db:mydb", True),
        ("arn:aws:iam::*:role/*-eb-ec2-role", "arn:aws:iam::1:role/x/d-eb-ec2-role", True),
        ("arn:aws:iam::*:role/*-eb-ec2-role", "arn:aws-cn:iam::1:role/d-eb-ec2-role", False),
        ("arn:aws:s3:::b-?", "arn:aws:s3:::b-1", True),
        ("arn:aws:s3:::b-?", "arn:aws:s3:::b-12", False),
        ("arn:aws:ec2:us-east-1:1:instance/I-1", "arn:aws:ec2:us-east-1:1:instance/i-1", False),
    ],
)
def test_arn_match(pattern: str, arn: str, expected: bool) -> None:
    assert arn_match(pattern, arn) is expected


CTX = {"aws:RequestTag/team": ["a"], "aws:TagKeys": ["team", "env"]}


@pytest.mark.parametrize(
    ("operator", "key", "values", "expected"),
    [
        ("StringEquals", "aws:RequestTag/team", "a", True),
        ("StringEquals", "AWS:requesttag/TEAM", "a", True),  # key names ignore case
        ("StringEquals", "aws:RequestTag/team", "A", False),  # values do not
        ("StringEqualsIgnoreCase", "aws:RequestTag/team", "A", True),
        ("StringEquals", "aws:RequestTag/missing", "a", False),  # absent: false
        ("StringNotEquals", "aws:RequestTag/missing", "a", True),  # ... but negated: true
        ("StringEqualsIfExists", "aws:RequestTag/missing", "a", True),
        ("StringLike", "aws:RequestTag/team", "*", True),
        ("Null", "aws:RequestTag/team", "false", True),
        ("Null", "aws:RequestTag/missing", "true", True),
        ("Null", "aws:RequestTag/missing", "false", False),
        ("ForAllValues:StringEquals", "aws:TagKeys", ["team", "env", "x"], True),
        ("ForAllValues:StringEquals", "aws:TagKeys", ["team"], False),
        ("ForAllValues:StringEquals", "aws:RequestTag/missing", ["x"], True),  # vacuous
        ("ForAnyValue:StringEquals", "aws:TagKeys", ["env"], True),
        ("ForAnyValue:StringEquals", "aws:RequestTag/missing", ["x"], False),
        ("ForAllValues:StringNotEquals", "aws:TagKeys", ["secret"], True),
        ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:user/op", True),
        ("ArnEquals", "aws:PrincipalArn", "arn:aws:iam::*:user/op", True),
        ("ArnNotLike", "aws:PrincipalArn", "arn:aws:iam::*:user/op", False),
        ("Bool", "aws:ViaAWSService", True, False),
        ("BoolIfExists", "aws:ViaAWSService", "true", True),
        ("NumericLessThan", "n", "5", True),
        ("IpAddress", "aws:SourceIp", "127.0.0.0/8", True),
        ("NotIpAddress", "aws:SourceIp", "10.0.0.0/8", True),
    ],
)
def test_condition_operators(operator: str, key: str, values: Any, expected: bool) -> None:
    context = {
        **CTX,
        "aws:PrincipalArn": ["arn:aws:iam::1:user/op"],
        "aws:ViaAWSService": ["false"],
        "n": ["3"],
        "aws:SourceIp": ["127.0.0.1"],
    }
    if key == "aws:ViaAWSService" and operator.endswith("IfExists"):
        context.pop(key)
    assert condition_holds(operator, key, values, context) is expected


def test_explicit_deny_wins_over_allow() -> None:
    docs = [
        policy(allow("ec2:*")),
        policy(
            {"Effect": "Deny", "Sid": "NoTerminate", "Action": "ec2:Terminate*", "Resource": "*"}
        ),
    ]
    out = evaluate(docs, Check("ec2:TerminateInstances", "arn:aws:ec2:r:1:instance/i-1"))
    assert out.decision is Decision.EXPLICIT_DENY and out.statement == "NoTerminate"
    assert evaluate(docs, Check("ec2:RunInstances", "*")).allowed


def test_implicit_deny_and_action_case() -> None:
    docs = [policy(allow("EC2:describe*"))]
    assert evaluate(docs, Check("ec2:DescribeInstances", "*")).allowed
    assert evaluate(docs, Check("ec2:RunInstances", "*")).decision is Decision.IMPLICIT_DENY


def test_not_action_and_not_resource() -> None:
    docs = [policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})]
    assert evaluate(docs, Check("ec2:RunInstances", "*")).allowed
    assert not evaluate(docs, Check("iam:CreateUser", "*")).allowed
    docs = [policy({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"})]
    assert evaluate(docs, Check("s3:GetObject", "arn:aws:s3:::public/x")).allowed
    assert not evaluate(docs, Check("s3:GetObject", "arn:aws:s3:::secret/x")).allowed


def test_every_condition_must_hold() -> None:
    docs = [
        policy(
            allow(
                "ec2:CreateTags",
                "arn:aws:ec2:*:*:instance/*",
                StringEquals={"ec2:CreateAction": "RunInstances"},
                Null={"aws:RequestTag/team": "false"},
            )
        )
    ]
    arn = "arn:aws:ec2:r:1:instance/*"
    both = {"ec2:CreateAction": ["RunInstances"], "aws:RequestTag/team": ["a"]}
    assert evaluate(docs, Check("ec2:CreateTags", arn, both)).allowed
    # a standalone CreateTags carries no ec2:CreateAction
    assert not evaluate(docs, Check("ec2:CreateTags", arn, {"aws:RequestTag/team": ["a"]})).allowed


def test_unsupported_names_what_cannot_be_evaluated() -> None:
    doc = policy(
        allow("s3:*", "arn:aws:s3:::${aws:username}/*"),
        allow("ec2:*", "*", DateGreaterThan={"aws:CurrentTime": "2020-01-01T00:00:00Z"}),
    )
    problems = unsupported(doc)
    assert any("policy variable ${aws:username}" in p for p in problems)
    assert any("DateGreaterThan" in p for p in problems)
    assert unsupported(policy(allow("ec2:*", "*", StringLikeIfExists={"k": "v"}))) == []
