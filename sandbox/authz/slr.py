"""Service-linked roles: what a service creates in the account on its first use.

On AWS an account starts without them; the first load balancer or target group creates
AWSServiceRoleForElasticLoadBalancing, the first DB instance AWSServiceRoleForRDS, the first
Auto Scaling group AWSServiceRoleForAutoScaling. The service creates the role with the
caller's rights: the call also needs `iam:CreateServiceLinkedRole` on the role, with
`iam:AWSServiceName` the service's principal. Once the role exists no call needs it. Inside
`Checks.on_behalf` the check is made as that says (CloudFormation creating Elastic
Beanstalk's Auto Scaling group carries `aws:CalledVia`).
"""

from __future__ import annotations

from typing import Any

from .checks import Checks

ROLES = {
    "elasticloadbalancing.amazonaws.com": "AWSServiceRoleForElasticLoadBalancing",
    "rds.amazonaws.com": "AWSServiceRoleForRDS",
    "autoscaling.amazonaws.com": "AWSServiceRoleForAutoScaling",
    "elasticbeanstalk.amazonaws.com": "AWSServiceRoleForElasticBeanstalk",
}


def slr_arn(c: Checks, service: str) -> str:
    name = ROLES.get(service, "AWSServiceRoleFor*")
    return f"arn:{c.call.partition}:iam::{c.call.account}:role/aws-service-role/{service}/{name}"


def _iam(account: str, partition: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account][partition]


def exists(account: str, partition: str, service: str) -> bool:
    name = ROLES[service]
    return any(r.name == name for r in _iam(account, partition).roles.values())


def need_service_linked_role(c: Checks, service: str) -> None:
    """The call creates `service`'s linked role if the account lacks it: check it."""
    if exists(c.call.account, c.call.partition, service):
        return
    c.add(
        "role",
        slr_arn(c, service),
        action="iam:CreateServiceLinkedRole",
        keys={"iam:AWSServiceName": [service]},
        why=f"{service} creates its service-linked role {ROLES[service]} on first use",
    )
    c.after.append(lambda: create(c.call.account, c.call.partition, service))


def create(account: str, partition: str, service: str) -> None:
    """Create the role as the service does (path /aws-service-role/<service>/)."""
    import json

    if exists(account, partition, service):
        return
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    _iam(account, partition).create_role(
        role_name=ROLES[service],
        assume_role_policy_document=json.dumps(trust),
        path=f"/aws-service-role/{service}/",
        permissions_boundary=None,
        description=f"service-linked role of {service}",
        tags=[],
        max_session_duration="3600",
        linked_service=service,
    )
