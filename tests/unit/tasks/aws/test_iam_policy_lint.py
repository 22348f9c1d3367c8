"""docs/iam-policy.json under the IAM policy linters (docs/iam.md explains what remains).

parliament: no RESOURCE_STAR (no action that AWS scopes to a resource is granted on "*"),
and nothing but the findings docs/iam.md explains. cloudsplaining: no privilege escalation,
no resource exposure, no unconstrained write or permissions management. Both are dev
extras; the tests skip when they are not installed.
"""

from __future__ import annotations

import json

import pytest

from tasks.aws.policy import POLICY_PATH

# each explained in docs/iam.md ("What the linters still report")
EXPLAINED = {
    "RESOURCE_MISMATCH",
    "UNKNOWN_CONDITION_FOR_ACTION",
    "RESOURCE_POLICY_PRIVILEGE_ESCALATION",
}


def test_parliament_finds_no_resource_star() -> None:
    parliament = pytest.importorskip("parliament", reason="parliament not installed (dev extra)")
    policy = parliament.analyze_policy_string(POLICY_PATH.read_text())
    issues = sorted({f.issue for f in policy.findings})
    assert "RESOURCE_STAR" not in issues, [f.detail for f in policy.findings]
    assert set(issues) <= EXPLAINED, (
        f"new parliament findings, explain them in docs/iam.md: {issues}"
    )


def test_parliament_flags_the_old_star_policy() -> None:
    """The check has teeth: a statement granting a scoped mutation on "*" is RESOURCE_STAR."""
    parliament = pytest.importorskip("parliament", reason="parliament not installed (dev extra)")
    star = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:CreateRole"], "Resource": "*"}],
    }
    issues = {f.issue for f in parliament.analyze_policy_string(json.dumps(star)).findings}
    assert "RESOURCE_STAR" in issues


def test_cloudsplaining_finds_no_escalation_or_exposure() -> None:
    pytest.importorskip("cloudsplaining", reason="cloudsplaining not installed (dev extra)")
    from cloudsplaining.scan.policy_document import PolicyDocument

    doc = PolicyDocument(json.loads(POLICY_PATH.read_text()))
    assert doc.allows_privilege_escalation == []
    assert doc.permissions_management_without_constraints == []  # resource exposure
    assert doc.write_actions_without_constraints == []
    assert doc.allows_data_exfiltration_actions == []


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_the_policy_names_one_partition(partition: str) -> None:
    """`tomcat-fleet iam-policy --partition P`: every ARN in P, China's EC2 principal."""
    from tasks.aws.policy import policy_document, shipped_operations

    doc = policy_document(
        shipped_operations(), partition=partition, domains=("www.a.cn", "eb.a.cn")
    )
    text = json.dumps(doc)
    arns = [a for a in text.split('"') if a.startswith("arn:")]
    assert arns and all(a.startswith(f"arn:{partition}:") for a in arns), arns[:5]
    principal = "ec2.amazonaws.com.cn" if partition == "aws-cn" else "ec2.amazonaws.com"
    passed = next(s for s in doc["Statement"] if s["Sid"] == "IamPassEc2Role")
    assert passed["Condition"]["StringEquals"]["iam:PassedToService"] == [principal]
    records = next(s for s in doc["Statement"] if s["Sid"] == "Route53Records")
    names = records["Condition"]["ForAllValues:StringLike"][
        "route53:ChangeResourceRecordSetsNormalizedRecordNames"
    ]
    assert names == ["www.a.cn", "_*.www.a.cn", "eb.a.cn", "_*.eb.a.cn"]
