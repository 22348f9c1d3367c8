"""What the shipped IAM policy grants, action by action: the table `tasks.aws.policy` renders.

* `OPERATION_ACTIONS`: operations whose IAM action has another name (S3's HeadBucket is
  s3:ListBucket, ...).
* `IMPLIED_ACTIONS`: further actions AWS authorizes for a call as the flows make it: tags at
  creation (EC2, ELB, RDS, ACM, IAM check the tagging action too), the service-linked role a
  service creates on first use (ELB, RDS, and Auto Scaling behind Beanstalk), the role a call
  passes (iam:PassRole), and what Elastic Beanstalk does with the caller's rights
  (`BEANSTALK_CALLER_ACTIONS`, docs/iam.md lists them with AWS's sources).
* `SCOPES`: per action, the statements granting it (Sid, resources, condition). ARNs are
  written with `{P}` for the partition; `tasks.aws.policy.policy_document` fills it in.

The shapes, and the reason for each, are in docs/iam.md.
"""

from __future__ import annotations

from typing import Any

TAG = "tomcat-fleet:deployment"  # tasks.aws.cleanup.TAG_KEY, every resource the flows create
REQUEST_TAGGED = {"Null": {f"aws:RequestTag/{TAG}": "false"}}
RESOURCE_TAGGED = {"Null": {f"aws:ResourceTag/{TAG}": "false"}}
# tag a resource being created (it carries no deployment tag yet), with the deployment tag
TAG_NEW = {"Null": {f"aws:RequestTag/{TAG}": "false", f"aws:ResourceTag/{TAG}": "true"}}
VIA_CLOUDFORMATION = {"ForAnyValue:StringEquals": {"aws:CalledVia": "cloudformation.amazonaws.com"}}

# names the flows give (tasks/aws/iam.py, rds.py, beanstalk.py): the policy is scoped to them
EC2_ROLE = "arn:{P}:iam::*:role/*-eb-ec2-role"
SERVICE_ROLE = "arn:{P}:iam::*:role/*-eb-service-role"
IAM_ROLES = [EC2_ROLE, SERVICE_ROLE]
IAM_PROFILES = ["arn:{P}:iam::*:instance-profile/*-eb-profile"]
EC2_ROLE_POLICIES = [
    "arn:{P}:iam::aws:policy/AWSElasticBeanstalkWebTier",
    "arn:{P}:iam::aws:policy/AWSElasticBeanstalkWorkerTier",
]
SERVICE_ROLE_POLICIES = ["arn:{P}:iam::aws:policy/service-role/AWSElasticBeanstalkEnhancedHealth"]
LINKED_SERVICES = {
    "elasticloadbalancing.amazonaws.com": "AWSServiceRoleForElasticLoadBalancing",
    "rds.amazonaws.com": "AWSServiceRoleForRDS",
    "autoscaling.amazonaws.com": "AWSServiceRoleForAutoScaling",
}
LOG_BUCKETS = "arn:{P}:s3:::*-alb-logs-*"  # tasks.aws.s3.log_bucket_name
EB_BUCKETS = "arn:{P}:s3:::elasticbeanstalk-*"  # Elastic Beanstalk's own storage bucket
EB_STACKS = "arn:{P}:cloudformation:*:*:stack/awseb-e-*"
_DB = ["arn:{P}:rds:*:*:db:*-db"]
_DB_ANY = ["arn:{P}:rds:*:*:db:*"]
_ACM = ["arn:{P}:acm:*:*:certificate/*"]
_EB_APP = ["arn:{P}:elasticbeanstalk:*:*:application/*-app"]
_EB_ENV = ["arn:{P}:elasticbeanstalk:*:*:environment/*-app/*-env"]
_ZONES = ["arn:{P}:route53:::hostedzone/*"]

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
    # needs no permission (AWS answers it for any authenticated caller)
    "sts:GetCallerIdentity": (),
}

# Elastic Beanstalk builds, describes and removes an environment with the caller's rights
# (AWS: "Elastic Beanstalk user policies"; AdministratorAccess-AWSElasticBeanstalk): through
# CloudFormation (aws:CalledVia cloudformation.amazonaws.com), and directly for its bucket
# and the stack itself
BEANSTALK_CALLER_ACTIONS: dict[str, tuple[str, ...]] = {
    "elasticbeanstalk:CreateEnvironment": (
        "s3:CreateBucket",
        "s3:PutObject",
        "s3:GetObject",
        "cloudformation:CreateStack",
        "cloudformation:DescribeStacks",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateTags",
        "ec2:CreateLaunchTemplate",
        "ec2:RunInstances",
        "autoscaling:CreateAutoScalingGroup",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:AddTags",
        "cloudwatch:PutMetricAlarm",
        "iam:CreateServiceLinkedRole",
    ),
    "elasticbeanstalk:TerminateEnvironment": (
        "cloudformation:DeleteStack",
        "autoscaling:DeleteAutoScalingGroup",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteLaunchTemplate",
        "cloudwatch:DeleteAlarms",
    ),
    "elasticbeanstalk:DescribeEnvironmentResources": (
        "cloudformation:DescribeStackResources",
        "autoscaling:DescribeAutoScalingGroups",
        "elasticloadbalancing:DescribeLoadBalancers",
        "ec2:DescribeInstances",
    ),
}

IMPLIED_ACTIONS: dict[str, tuple[str, ...]] = {
    "acm:RequestCertificate": ("acm:AddTagsToCertificate",),
    "ec2:AuthorizeSecurityGroupIngress": ("ec2:CreateTags",),
    "ec2:CreateKeyPair": ("ec2:CreateTags",),
    "ec2:CreateSecurityGroup": ("ec2:CreateTags",),
    "ec2:RunInstances": ("ec2:CreateTags",),
    "elasticloadbalancing:CreateListener": ("elasticloadbalancing:AddTags",),
    "elasticloadbalancing:CreateLoadBalancer": (
        "elasticloadbalancing:AddTags",
        "iam:CreateServiceLinkedRole",
    ),
    "elasticloadbalancing:CreateTargetGroup": (
        "elasticloadbalancing:AddTags",
        "iam:CreateServiceLinkedRole",
    ),
    "iam:AddRoleToInstanceProfile": ("iam:PassRole",),
    "iam:CreateInstanceProfile": ("iam:TagInstanceProfile",),
    "iam:CreateRole": ("iam:TagRole",),
    "rds:CreateDBInstance": ("rds:AddTagsToResource", "iam:CreateServiceLinkedRole"),
    "s3:CreateBucket": ("s3:PutBucketOwnershipControls",),
    "s3:DeleteObjects": ("s3:DeleteObjectVersion",),
    "elasticbeanstalk:CreateEnvironment": (
        "iam:PassRole",
        *BEANSTALK_CALLER_ACTIONS["elasticbeanstalk:CreateEnvironment"],
    ),
    "elasticbeanstalk:TerminateEnvironment": BEANSTALK_CALLER_ACTIONS[
        "elasticbeanstalk:TerminateEnvironment"
    ],
    "elasticbeanstalk:DescribeEnvironmentResources": BEANSTALK_CALLER_ACTIONS[
        "elasticbeanstalk:DescribeEnvironmentResources"
    ],
}

Grant = tuple[str, list[str], dict[str, Any] | None]
SCOPES: dict[str, list[Grant]] = {}


def _scope(sid: str, resources: list[str], cond: dict[str, Any] | None, *actions: str) -> None:
    for action in actions:
        SCOPES.setdefault(action, []).append((sid, resources, cond))


def _ec2(*types: str) -> list[str]:
    return ["arn:{P}:ec2:*::image/*" if t == "image" else f"arn:{{P}}:ec2:*:*:{t}/*" for t in types]


_ELB = {
    "loadbalancer": "arn:{P}:elasticloadbalancing:*:*:loadbalancer/app/*/*",
    "targetgroup": "arn:{P}:elasticloadbalancing:*:*:targetgroup/*/*",
    "listener": "arn:{P}:elasticloadbalancing:*:*:listener/app/*/*/*",
}
_ELB_ALL = list(_ELB.values())

# -- EC2 -------------------------------------------------------------------------------------
_scope(
    "Ec2CreateTagged",
    _ec2("instance", "key-pair", "security-group", "launch-template"),
    REQUEST_TAGGED,
    "ec2:RunInstances",
    "ec2:CreateKeyPair",
    "ec2:CreateSecurityGroup",
    "ec2:CreateLaunchTemplate",
)
# what an instance is launched from and into: any image, subnet, volume and interface, but
# only the deployment's own security groups, key pair and (Beanstalk's) launch templates
_scope(
    "Ec2LaunchWith",
    _ec2("image", "subnet", "network-interface", "volume"),
    None,
    "ec2:RunInstances",
)
_scope(
    "Ec2LaunchWithOwn",
    _ec2("security-group", "key-pair", "launch-template"),
    RESOURCE_TAGGED,
    "ec2:RunInstances",
)
_scope("Ec2CreateGroupIn", _ec2("vpc"), None, "ec2:CreateSecurityGroup")
_scope(
    "Ec2TagOnCreate",
    _ec2("instance", "key-pair", "security-group", "security-group-rule", "launch-template"),
    {
        "StringEquals": {
            "ec2:CreateAction": [
                "AuthorizeSecurityGroupIngress",
                "CreateKeyPair",
                "CreateLaunchTemplate",
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
    _ec2("instance", "key-pair", "security-group", "launch-template"),
    RESOURCE_TAGGED,
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteKeyPair",
    "ec2:DeleteLaunchTemplate",
    "ec2:TerminateInstances",
    "ec2:GetConsoleOutput",
)
# -- Elastic Load Balancing ------------------------------------------------------------------
_scope(
    "ElbCreateTagged",
    [_ELB["loadbalancer"], _ELB["targetgroup"]],
    REQUEST_TAGGED,
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
)
_scope(
    "ElbTagOnCreate",
    _ELB_ALL,
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
    _ELB_ALL,
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
            "ModifyTargetGroupAttributes",
            "RegisterTargets",
            "SetSecurityGroups",
        )
    ),
)
# -- service-linked roles: created by ELB, RDS and Auto Scaling on their first use -----------
_scope(
    "ServiceLinkedRoles",
    [
        f"arn:{{P}}:iam::*:role/aws-service-role/{svc}/{role}"
        for svc, role in LINKED_SERVICES.items()
    ],
    {"StringEquals": {"iam:AWSServiceName": list(LINKED_SERVICES)}},
    "iam:CreateServiceLinkedRole",
)
# -- IAM: the Beanstalk roles and instance profile, by the names the flows give ---------------
_scope("IamCreateRoles", IAM_ROLES, REQUEST_TAGGED, "iam:CreateRole", "iam:TagRole")
_scope(
    "IamReadRoles",
    IAM_ROLES,
    None,
    "iam:GetRole",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
)
_scope(
    "IamChangeTaggedRoles",
    IAM_ROLES,
    RESOURCE_TAGGED,
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
)
# each role gets only its own AWS-managed policies
_scope(
    "IamAttachEc2RolePolicies",
    [EC2_ROLE],
    {**RESOURCE_TAGGED, "ArnEquals": {"iam:PolicyARN": EC2_ROLE_POLICIES}},
    "iam:AttachRolePolicy",
)
_scope(
    "IamAttachServiceRolePolicies",
    [SERVICE_ROLE],
    {**RESOURCE_TAGGED, "ArnEquals": {"iam:PolicyARN": SERVICE_ROLE_POLICIES}},
    "iam:AttachRolePolicy",
)
# each role passed only to the service that assumes it
_scope(
    "IamPassEc2Role",
    [EC2_ROLE],
    {"StringEquals": {"iam:PassedToService": ["{EC2_PRINCIPAL}"]}},
    "iam:PassRole",
)
_scope(
    "IamPassServiceRole",
    [SERVICE_ROLE],
    {"StringEquals": {"iam:PassedToService": ["elasticbeanstalk.amazonaws.com"]}},
    "iam:PassRole",
)
_scope(
    "IamCreateProfiles",
    IAM_PROFILES,
    REQUEST_TAGGED,
    "iam:CreateInstanceProfile",
    "iam:TagInstanceProfile",
)
_scope(
    "IamProfiles",
    IAM_PROFILES,
    None,
    "iam:AddRoleToInstanceProfile",
    "iam:GetInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
)
_scope("IamDeleteTaggedProfiles", IAM_PROFILES, RESOURCE_TAGGED, "iam:DeleteInstanceProfile")
# -- RDS: the DB instance the flows name <deployment>-db ----------------------------------
_scope("RdsCreateTagged", _DB, REQUEST_TAGGED, "rds:CreateDBInstance")
_scope("RdsTagOnCreate", _DB, TAG_NEW, "rds:AddTagsToResource")
_scope(
    "RdsCreateWith",
    ["arn:{P}:rds:*:*:subgrp:*", "arn:{P}:rds:*:*:og:*", "arn:{P}:rds:*:*:pg:*"],
    None,
    "rds:CreateDBInstance",
)
_scope("RdsChangeTagged", _DB_ANY, RESOURCE_TAGGED, "rds:DeleteDBInstance")
_scope("RdsRead", _DB_ANY, None, "rds:DescribeDBInstances")
# -- ACM ------------------------------------------------------------------------------------
# ACM defines no resource for RequestCertificate: "*", but only with the deployment tag
_scope("AcmRequestTagged", ["*"], REQUEST_TAGGED, "acm:RequestCertificate")
_scope("AcmTagOnCreate", _ACM, TAG_NEW, "acm:AddTagsToCertificate")
_scope("AcmChangeTagged", _ACM, RESOURCE_TAGGED, "acm:DeleteCertificate")
_scope("AcmRead", _ACM, None, "acm:DescribeCertificate", "acm:ListTagsForCertificate")
# -- Elastic Beanstalk: <deployment>-app and its <...>-env ------------------------------------
_scope(
    "BeanstalkCreateTagged",
    _EB_APP + _EB_ENV,
    REQUEST_TAGGED,
    "elasticbeanstalk:CreateApplication",
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
    ["arn:{P}:elasticbeanstalk:*:*:application/*", "arn:{P}:elasticbeanstalk:*:*:environment/*/*"],
    None,
    "elasticbeanstalk:DescribeEnvironmentResources",
    "elasticbeanstalk:ListTagsForResource",
)
# ... and what Elastic Beanstalk does with the caller's rights: its bucket, its stack ...
_scope(
    "BeanstalkBucket",
    [EB_BUCKETS],
    None,
    "s3:CreateBucket",
)
_scope(
    "BeanstalkBucketObjects",
    [EB_BUCKETS + "/resources/environments/*"],
    None,
    "s3:PutObject",
    "s3:GetObject",
)
_scope("BeanstalkStackCreate", [EB_STACKS], REQUEST_TAGGED, "cloudformation:CreateStack")
_scope("BeanstalkStackDelete", [EB_STACKS], RESOURCE_TAGGED, "cloudformation:DeleteStack")
_scope(
    "BeanstalkStackRead",
    [EB_STACKS],
    None,
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackResources",
)
# ... and, through CloudFormation only, its Auto Scaling group and alarms
_scope(
    "BeanstalkAutoScalingCreate",
    ["arn:{P}:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/awseb-e-*"],
    {**REQUEST_TAGGED, **VIA_CLOUDFORMATION},
    "autoscaling:CreateAutoScalingGroup",
)
_scope(
    "BeanstalkAutoScalingDelete",
    ["arn:{P}:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/awseb-e-*"],
    {**RESOURCE_TAGGED, **VIA_CLOUDFORMATION},
    "autoscaling:DeleteAutoScalingGroup",
)
_scope(
    "BeanstalkAlarms",
    ["arn:{P}:cloudwatch:*:*:alarm:awseb-e-*"],
    VIA_CLOUDFORMATION,
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:DeleteAlarms",
)
# ... and its balancer's listener: CloudFormation cannot tag a listener, so the one on
# Beanstalk's balancer (awseb-AWSEB-...) carries no deployment tag; deleted through
# CloudFormation only
_scope(
    "BeanstalkListeners",
    ["arn:{P}:elasticloadbalancing:*:*:listener/app/awseb-*/*/*"],
    VIA_CLOUDFORMATION,
    "elasticloadbalancing:DeleteListener",
)
# -- Route 53: only the record names and types the flows write -----------------------------
_scope(
    "Route53Records",
    _ZONES,
    {
        "ForAllValues:StringLike": {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["{RECORD_NAMES}"]
        },
        "ForAllValues:StringEquals": {
            "route53:ChangeResourceRecordSetsRecordTypes": ["A", "CNAME"]
        },
    },
    "route53:ChangeResourceRecordSets",
)
_scope("Route53Zones", _ZONES, None, "route53:ListResourceRecordSets")
_scope("Route53Changes", ["arn:{P}:route53:::change/*"], None, "route53:GetChange")
# -- S3: the access-log bucket -----------------------------------------------------------------
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
# the AMI lookup reads the public parameter of each recipe (blocks/recipes.py, tasks/aws/ssm.py)
_scope("SsmAmiParameter", ["{AMI_PARAMETERS}"], None, "ssm:GetParameter")

# the statements of actions AWS authorizes against no resource ("*"), by service
READ_SIDS = {
    "acm": "AcmList",
    "autoscaling": "AutoScalingDescribe",
    "ec2": "Ec2Describe",
    "elasticbeanstalk": "BeanstalkDescribe",
    "elasticloadbalancing": "ElbDescribe",
    "route53": "Route53List",
    "s3": "S3ListBuckets",
}
