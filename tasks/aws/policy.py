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

Where each action is granted (`SCOPES`): mutations only on the ARN patterns of what the
flows create, creations only with the deployment tag in the request (aws:RequestTag),
changes and deletions only of resources carrying it (aws:ResourceTag), IAM only on the
deployment's role and instance profile names, iam:PassRole only to EC2/Elastic Beanstalk;
`"Resource": "*"` only for actions AWS does not scope to a resource. docs/iam.md says which
parts the sandbox proves and which the linters check.
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

TAG = "tomcat-fleet:deployment"  # tasks.aws.ec2.TAG_KEY, every resource the flows create
# create: the request must carry the deployment tag; mutate/delete: the resource must carry it
REQUEST_TAGGED = {"Null": {f"aws:RequestTag/{TAG}": "false"}}
RESOURCE_TAGGED = {"Null": {f"aws:ResourceTag/{TAG}": "false"}}
# the IAM resources the flows create are named after the deployment (tasks/aws/iam.py)
IAM_ROLES = ["arn:aws:iam::*:role/*-eb-ec2-role", "arn:aws:iam::*:role/*-eb-service-role"]
IAM_PROFILES = ["arn:aws:iam::*:instance-profile/*-eb-profile"]
EB_MANAGED_POLICIES = [
    "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier",
    "arn:aws:iam::aws:policy/AWSElasticBeanstalkWorkerTier",
    # the Beanstalk service role's (tasks/aws/iam.ensure_service_role)
    "arn:aws:iam::aws:policy/service-role/AWSElasticBeanstalkEnhancedHealth",
    "arn:aws:iam::aws:policy/AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy",
]
PASSED_TO = ["ec2.amazonaws.com", "elasticbeanstalk.amazonaws.com"]
LOG_BUCKETS = "arn:aws:s3:::*-alb-logs-*"  # tasks.aws.s3.log_bucket_name


def _ec2(*types: str) -> list[str]:
    return [f"arn:aws:ec2:*:*:{t}/*" for t in types]


def _elb(*kinds: str) -> list[str]:
    arns = {
        "loadbalancer": "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*/*",
        "targetgroup": "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
        "listener": "arn:aws:elasticloadbalancing:*:*:listener/app/*/*/*",
    }
    return [arns[k] for k in kinds]


_ACM = ["arn:aws:acm:*:*:certificate/*"]
_EB_APP = ["arn:aws:elasticbeanstalk:*:*:application/*"]
_EB_ENV = ["arn:aws:elasticbeanstalk:*:*:environment/*/*"]
_RDS_DB = ["arn:aws:rds:*:*:db:*"]
_ZONES = ["arn:aws:route53:::hostedzone/*"]

# Per action, the statements granting it: (statement Sid, resources, condition). Actions not
# listed here are granted on "*" in the service's read statement: AWS defines no resource
# for them (Describe*, List* of a whole account, sts:GetCallerIdentity).
_Grant = tuple[str, list[str], dict[str, Any] | None]
SCOPES: dict[str, list[_Grant]] = {}


def _scope(sid: str, resources: list[str], cond: dict[str, Any] | None, *actions: str) -> None:
    for action in actions:
        SCOPES.setdefault(action, []).append((sid, resources, cond))


_scope(
    "Ec2CreateTagged",
    _ec2("instance", "key-pair", "security-group"),
    REQUEST_TAGGED,
    "ec2:RunInstances",
    "ec2:CreateKeyPair",
    "ec2:CreateSecurityGroup",
)
_scope(
    "Ec2LaunchWith",
    _ec2("image", "subnet", "security-group", "key-pair", "network-interface", "volume"),
    None,
    "ec2:RunInstances",
)
_scope("Ec2CreateGroupIn", _ec2("vpc"), None, "ec2:CreateSecurityGroup")
_scope(
    "Ec2TagOnCreate",
    _ec2("instance", "key-pair", "security-group", "security-group-rule"),
    {
        "StringEquals": {
            "ec2:CreateAction": [
                "AuthorizeSecurityGroupIngress",
                "CreateKeyPair",
                "CreateSecurityGroup",
                "RunInstances",
            ]
        }
    },
    "ec2:CreateTags",
)
_scope(
    "Ec2RuleTagged",
    _ec2("security-group-rule"),
    REQUEST_TAGGED,
    "ec2:AuthorizeSecurityGroupIngress",
)
_scope(
    "Ec2ChangeTagged",
    _ec2("instance", "key-pair", "security-group"),
    RESOURCE_TAGGED,
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteKeyPair",
    "ec2:TerminateInstances",
    "ec2:GetConsoleOutput",
)
_scope(
    "ElbCreateTagged",
    _elb("loadbalancer", "targetgroup"),
    REQUEST_TAGGED,
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
)
_scope(
    "ElbTagOnCreate",
    _elb("loadbalancer", "targetgroup", "listener"),
    {
        "StringEquals": {
            "elasticloadbalancing:CreateAction": [
                "CreateListener",
                "CreateLoadBalancer",
                "CreateTargetGroup",
            ]
        }
    },
    "elasticloadbalancing:AddTags",
)
_scope(
    "ElbChangeTagged",
    _elb("loadbalancer", "targetgroup", "listener"),
    RESOURCE_TAGGED,
    *(
        f"elasticloadbalancing:{a}"
        for a in (
            "CreateListener",
            "DeleteListener",
            "DeleteLoadBalancer",
            "DeleteTargetGroup",
            "DeregisterTargets",
            "ModifyListener",
            "ModifyLoadBalancerAttributes",
            "ModifyTargetGroup",
            "RegisterTargets",
            "SetSecurityGroups",
        )
    ),
)
_scope(
    "IamRoles",
    IAM_ROLES,
    None,
    *(
        f"iam:{a}"
        for a in (
            "CreateRole",
            "DeleteRole",
            "DeleteRolePolicy",
            "DetachRolePolicy",
            "GetRole",
            "ListAttachedRolePolicies",
            "ListInstanceProfilesForRole",
            "ListRolePolicies",
            "ListRoleTags",
            "TagRole",
        )
    ),
)
_scope(
    "IamAttachBeanstalkPolicies",
    IAM_ROLES,
    {"ArnEquals": {"iam:PolicyARN": EB_MANAGED_POLICIES}},
    "iam:AttachRolePolicy",
)
_scope(
    "IamPassRole", IAM_ROLES, {"StringEquals": {"iam:PassedToService": PASSED_TO}}, "iam:PassRole"
)
_scope(
    "IamInstanceProfiles",
    IAM_PROFILES,
    None,
    *(
        f"iam:{a}"
        for a in (
            "AddRoleToInstanceProfile",
            "CreateInstanceProfile",
            "DeleteInstanceProfile",
            "GetInstanceProfile",
            "RemoveRoleFromInstanceProfile",
            "TagInstanceProfile",
        )
    ),
)
_scope("RdsCreateTagged", _RDS_DB, REQUEST_TAGGED, "rds:CreateDBInstance", "rds:AddTagsToResource")
_scope(
    "RdsCreateWith",
    [
        "arn:aws:rds:*:*:subgrp:*",
        "arn:aws:rds:*:*:og:*",
        "arn:aws:rds:*:*:pg:*",
        "arn:aws:rds:*:*:secgrp:*",
    ],
    None,
    "rds:CreateDBInstance",
)
_scope("RdsChangeTagged", _RDS_DB, RESOURCE_TAGGED, "rds:DeleteDBInstance")
_scope("RdsRead", _RDS_DB, None, "rds:DescribeDBInstances")
# ACM defines no resource for RequestCertificate: "*", but only with the deployment tag
_scope("AcmRequestTagged", ["*"], REQUEST_TAGGED, "acm:RequestCertificate")
_scope("AcmTagOnCreate", _ACM, REQUEST_TAGGED, "acm:AddTagsToCertificate")
_scope("AcmChangeTagged", _ACM, RESOURCE_TAGGED, "acm:DeleteCertificate")
_scope("AcmRead", _ACM, None, "acm:DescribeCertificate", "acm:ListTagsForCertificate")
_scope(
    "BeanstalkCreateTagged",
    _EB_APP + _EB_ENV,
    REQUEST_TAGGED,
    "elasticbeanstalk:CreateApplication",
    "elasticbeanstalk:CreateEnvironment",
    "elasticbeanstalk:AddTags",
)
_scope(
    "BeanstalkCreateWith",
    [*_EB_APP, "arn:aws:elasticbeanstalk:*::solutionstack/*"],
    None,
    "elasticbeanstalk:CreateEnvironment",
)
_scope(
    "BeanstalkChangeTagged",
    _EB_APP + _EB_ENV,
    RESOURCE_TAGGED,
    "elasticbeanstalk:DeleteApplication",
    "elasticbeanstalk:TerminateEnvironment",
)
_scope(
    "BeanstalkRead",
    _EB_APP + _EB_ENV,
    None,
    "elasticbeanstalk:DescribeEnvironmentResources",
    "elasticbeanstalk:ListTagsForResource",
)
_scope(
    "Route53Zones",
    _ZONES,
    None,
    "route53:ChangeResourceRecordSets",
    "route53:ListResourceRecordSets",
)
_scope("Route53Changes", ["arn:aws:route53:::change/*"], None, "route53:GetChange")
_scope(
    "S3LogBuckets",
    [LOG_BUCKETS],
    None,
    *(
        f"s3:{a}"
        for a in (
            "CreateBucket",
            "DeleteBucket",
            "GetBucketTagging",
            "ListBucket",
            "ListBucketVersions",
            "PutBucketOwnershipControls",
            "PutBucketPolicy",
            "PutBucketPublicAccessBlock",
            "PutBucketTagging",
            "PutEncryptionConfiguration",
            "GetEncryptionConfiguration",
            "GetBucketPublicAccessBlock",
        )
    ),
)
_scope("S3LogObjects", [LOG_BUCKETS + "/*"], None, "s3:DeleteObject", "s3:DeleteObjectVersion")
# the AMI lookup reads one public parameter (tasks/aws/ssm.py)
_scope("SsmAmiParameter", [public_parameter_arn()], None, "ssm:GetParameter")

_READ_SIDS = {
    "acm": "AcmList",
    "ec2": "Ec2Describe",
    "elasticbeanstalk": "BeanstalkDescribe",
    "elasticloadbalancing": "ElbDescribe",
    "iam": "IamList",
    "rds": "RdsDescribe",
    "route53": "Route53List",
    "s3": "S3ListBuckets",
    "sts": "StsCallerIdentity",
}


def actions_for(operations: Iterable[str]) -> set[str]:
    """The IAM actions that authorise `operations` (`<prefix>:<Operation>` each)."""
    out: set[str] = set()
    for op in operations:
        out.update(OPERATION_ACTIONS.get(op, (op,)))
        out.update(IMPLIED_ACTIONS.get(op, ()))
    return out


def policy_document(operations: Iterable[str]) -> dict[str, Any]:
    """Statements grouped by (resources, condition) as `SCOPES` says, one per Sid, in `SCOPES`
    order then the unscoped ("*") read statements by service; actions sorted."""
    grants: dict[str, tuple[list[str], dict[str, Any] | None, list[str]]] = {}
    order = list(dict.fromkeys(sid for scopes in SCOPES.values() for sid, _, _ in scopes))
    for action in sorted(actions_for(operations)):
        prefix = action.split(":", 1)[0]
        for sid, resources, cond in SCOPES.get(action) or [
            (_READ_SIDS.get(prefix, prefix.title() + "Unscoped"), ["*"], None)
        ]:
            grants.setdefault(sid, (resources, cond, []))[2].append(action)
    sids = [s for s in order if s in grants] + sorted(s for s in grants if s not in order)
    statements = []
    for sid in sids:
        resources, cond, actions = grants[sid]
        st: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions}
        st["Resource"] = resources[0] if resources == ["*"] else resources
        if cond:
            st["Condition"] = cond
        statements.append(st)
    return {"Version": "2012-10-17", "Statement": statements}


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
