"""The least-privilege IAM policy (`docs/iam-policy.json`) from the AWS operations called.

`tasks.aws.client` records every operation the flows call as `<IAM prefix>:<Operation>` (the
botocore operation name). Most operations authorise as the IAM action of the same name; the
exceptions are listed here:

* `OPERATION_ACTIONS`: S3 operations whose IAM action has another name (HeadBucket is
  authorised as s3:ListBucket, PutPublicAccessBlock as s3:PutBucketPublicAccessBlock, ...).
* `IMPLIED_ACTIONS`: further actions AWS authorises for a call as this project makes it:
  tags given at creation (TagSpecifications / Tags) also need the service's tagging action,
  `CreateBucket` with `ObjectOwnership` needs s3:PutBucketOwnershipControls, deleting object
  versions needs s3:DeleteObjectVersion, and a Beanstalk environment given an instance
  profile needs iam:PassRole for its role.

    python -m tasks.aws.policy --operations ops.json [--output docs/iam-policy.json]

regenerates the policy from a recorded operation set (a JSON list, or one per line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .ssm import public_parameter_arn

POLICY_PATH = Path(__file__).resolve().parents[2] / "docs" / "iam-policy.json"

OPERATION_ACTIONS: dict[str, tuple[str, ...]] = {
    "s3:DeleteObjects": ("s3:DeleteObject",),
    "s3:GetBucketEncryption": ("s3:GetEncryptionConfiguration",),
    "s3:GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "s3:HeadBucket": ("s3:ListBucket",),
    "s3:ListBuckets": ("s3:ListAllMyBuckets",),
    "s3:ListObjectVersions": ("s3:ListBucketVersions",),
    "s3:ListObjects": ("s3:ListBucket",),
    "s3:ListObjectsV2": ("s3:ListBucket",),
    "s3:PutBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "s3:PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
}

IMPLIED_ACTIONS: dict[str, tuple[str, ...]] = {
    "acm:RequestCertificate": ("acm:AddTagsToCertificate",),
    "ec2:AuthorizeSecurityGroupIngress": ("ec2:CreateTags",),
    "ec2:CreateKeyPair": ("ec2:CreateTags",),
    "ec2:CreateSecurityGroup": ("ec2:CreateTags",),
    "ec2:RunInstances": ("ec2:CreateTags",),
    "elasticbeanstalk:CreateApplication": ("elasticbeanstalk:AddTags",),
    "elasticbeanstalk:CreateEnvironment": ("elasticbeanstalk:AddTags", "iam:PassRole"),
    "elasticloadbalancing:CreateListener": ("elasticloadbalancing:AddTags",),
    "elasticloadbalancing:CreateLoadBalancer": ("elasticloadbalancing:AddTags",),
    "elasticloadbalancing:CreateTargetGroup": ("elasticloadbalancing:AddTags",),
    "iam:CreateInstanceProfile": ("iam:TagInstanceProfile",),
    "iam:CreateRole": ("iam:TagRole",),
    "rds:CreateDBInstance": ("rds:AddTagsToResource",),
    "s3:CreateBucket": ("s3:PutBucketOwnershipControls",),
    "s3:DeleteObjects": ("s3:DeleteObjectVersion",),
}

_SIDS = {
    "acm": "Acm",
    "ec2": "Ec2",
    "elasticbeanstalk": "ElasticBeanstalk",
    "elasticloadbalancing": "ElasticLoadBalancing",
    "iam": "Iam",
    "rds": "Rds",
    "route53": "Route53",
    "s3": "S3",
    "ssm": "Ssm",
    "sts": "Sts",
}

# services whose actions are granted on named resources only (the rest: "*")
_RESOURCES: dict[str, str | list[str]] = {
    # the AMI lookup reads one public parameter (tasks/aws/ssm.py)
    "ssm": [public_parameter_arn()],
}


def actions_for(operations: Iterable[str]) -> set[str]:
    """The IAM actions that authorise `operations` (`<prefix>:<Operation>` each)."""
    out: set[str] = set()
    for op in operations:
        out.update(OPERATION_ACTIONS.get(op, (op,)))
        out.update(IMPLIED_ACTIONS.get(op, ()))
    return out


def policy_document(operations: Iterable[str]) -> dict[str, Any]:
    """One Allow statement per service prefix, actions sorted, Resource `*`."""
    by_prefix: dict[str, list[str]] = {}
    for action in sorted(actions_for(operations)):
        by_prefix.setdefault(action.split(":", 1)[0], []).append(action)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": _SIDS.get(prefix, prefix.title().replace("-", "")),
                "Effect": "Allow",
                "Action": actions,
                "Resource": _RESOURCES.get(prefix, "*"),
            }
            for prefix, actions in sorted(by_prefix.items())
        ],
    }


def render(operations: Iterable[str]) -> str:
    return json.dumps(policy_document(operations), indent=2) + "\n"


def policy_actions(document: dict[str, Any]) -> set[str]:
    """Every action an IAM policy document allows (Action as a string or a list)."""
    out: set[str] = set()
    statements = document.get("Statement", [])
    for st in [statements] if isinstance(statements, dict) else statements:
        if st.get("Effect") != "Allow":
            continue
        action = st.get("Action", [])
        out.update([action] if isinstance(action, str) else action)
    return out


def load_policy(path: Path = POLICY_PATH) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def read_operations(text: str) -> list[str]:
    """A JSON list of operations, or one operation per line."""
    text = text.strip()
    if text.startswith("["):
        return [str(op) for op in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tasks.aws.policy", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--operations", required=True, help="recorded operations file, '-' for stdin")
    p.add_argument("--output", help="where to write the policy (default: stdout)")
    args = p.parse_args(argv)
    text = sys.stdin.read() if args.operations == "-" else Path(args.operations).read_text()
    policy = render(read_operations(text))
    if args.output:
        Path(args.output).write_text(policy)
    else:
        sys.stdout.write(policy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
