"""IAM: the deployment's instance profiles and roles (Elastic Beanstalk's instances and
its service role)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.cleanup import Cleanup, StageError, is_gone, not_ours, owned
from tasks.aws.client import Aws
from tasks.aws.ec2 import deployment_tags
from tasks.aws.retry import error_code


# -- delete -----------------------------------------------------------------------------
def _delete_profile(c: Cleanup, profile: dict[str, Any]) -> None:
    iam = c.aws.client("iam")
    name = profile["InstanceProfileName"]
    for role in profile.get("Roles", []):
        try:
            iam.remove_role_from_instance_profile(
                InstanceProfileName=name, RoleName=role["RoleName"]
            )
        except ClientError as exc:
            if not is_gone(exc):
                raise
    iam.delete_instance_profile(InstanceProfileName=name)


def delete_role(c: Cleanup, name: str) -> None:
    """Out of its instance profiles, policies detached and deleted, then the role."""
    iam = c.aws.client("iam")
    for p in iam.pages("list_instance_profiles_for_role", "InstanceProfiles", RoleName=name):
        iam.remove_role_from_instance_profile(
            InstanceProfileName=p["InstanceProfileName"], RoleName=name
        )
    for pol in iam.pages("list_attached_role_policies", "AttachedPolicies", RoleName=name):
        iam.detach_role_policy(RoleName=name, PolicyArn=pol["PolicyArn"])
    for pol_name in iam.pages("list_role_policies", "PolicyNames", RoleName=name):
        iam.delete_role_policy(RoleName=name, PolicyName=pol_name)
    iam.delete_role(RoleName=name)


def _own(c: Cleanup, kind: str, name: str, found: dict[str, Any]) -> dict[str, Any]:
    """`found` (read by name) when its tags say it is the deployment's; another owner's
    is left alone: StageError naming it."""
    if not c.mine(found.get("Tags")):
        raise not_ours(kind, name, c.settings)
    return found


def deployment_iam(c: Cleanup) -> list[tuple[str, str]]:
    """(kind, name) of the deployment's instance profile and roles that exist and are its
    own, each read by the name the flows give it (never listed)."""
    iam = c.aws.client("iam")
    reads = [
        ("instance-profile", profile_name(c.settings), "InstanceProfile"),
        ("iam-role", role_name(c.settings), "Role"),
        ("iam-role", service_role_name(c.settings), "Role"),
    ]
    out = []
    for kind, name, key in reads:
        try:
            if key == "Role":
                found = iam.get_role(RoleName=name)[key]
            else:
                found = iam.get_instance_profile(InstanceProfileName=name)[key]
        except ClientError as exc:
            if is_gone(exc):
                continue
            raise
        if c.mine(found.get("Tags")):
            out.append((kind, name))
    return out


def delete_profiles_and_roles(c: Cleanup) -> None:
    """The deployment's instance profile, then its two roles, each read by the name the
    flows give it (`profile_name`, `role_name`, `service_role_name`) and deleted only when
    its tags say it is the deployment's. Nothing is listed: on a real account the shipped
    policy denies reading other owners' roles and profiles (SSO roles,
    OrganizationAccountAccessRole, ...), so a list-then-filter teardown fails there.
    NoSuchEntity on the read means gone (skipped by `attempt`); a same-named entity of
    another owner is left in place and recorded as an error."""
    iam = c.aws.client("iam")
    profile = profile_name(c.settings)

    def delete_profile() -> None:
        found = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
        _delete_profile(c, _own(c, "instance profile", profile, found))

    c.attempt("instance-profile", profile, delete_profile)
    for name in (role_name(c.settings), service_role_name(c.settings)):

        def delete(name: str = name) -> None:
            _own(c, "IAM role", name, iam.get_role(RoleName=name)["Role"])
            delete_role(c, name)

        c.attempt("iam-role", name, delete)


EB_POLICIES = (
    "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier",
    "arn:aws:iam::aws:policy/AWSElasticBeanstalkWorkerTier",
)


def trust_policy(service: str, **condition: Any) -> dict[str, Any]:
    """A role trust policy letting `service` (a service principal) assume the role."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


EC2_TRUST_POLICY = trust_policy("ec2.amazonaws.com")


# the service role: enhanced health reporting. AWS's console role also holds
# AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy, for managed platform updates, which
# the flows do not turn on; leaving it out keeps that broad policy out of the operator's
# reach (the shipped policy lets it attach only this one to the service role)
EB_SERVICE_POLICIES = ("arn:aws:iam::aws:policy/service-role/AWSElasticBeanstalkEnhancedHealth",)

EB_SERVICE_TRUST_POLICY = trust_policy(
    "elasticbeanstalk.amazonaws.com",
    StringEquals={"sts:ExternalId": "elasticbeanstalk"},
)


# a new instance profile takes a few seconds to be visible to Elastic Beanstalk
_PROFILE_PROPAGATION_S = 60.0


def policy_arns(aws: Aws, arns: tuple[str, ...] = EB_POLICIES) -> list[str]:
    """Managed policies' ARNs in the region's partition (aws, aws-cn, aws-us-gov)."""
    try:
        partition = aws.session.get_partition_for_region(aws.settings.region)
    except Exception:  # an unknown region: the commercial partition
        partition = "aws"
    return [arn.replace("arn:aws:", f"arn:{partition}:", 1) for arn in arns]


def role_name(settings: FleetSettings) -> str:
    return f"{settings.deployment_name}-eb-ec2-role"


def service_role_name(settings: FleetSettings) -> str:
    """`<deployment>-eb-service-role`: inside the deployment's name prefix, like every
    IAM name the flows create (the shipped policy scopes IAM to that prefix)."""
    return f"{settings.deployment_name}-eb-service-role"


def profile_name(settings: FleetSettings) -> str:
    return f"{settings.deployment_name}-eb-profile"


def find_role(aws: Aws, name: str) -> tuple[dict[str, Any], set[str]] | None:
    """(the role `name`, the ARNs of its attached policies), or None when it does not exist."""
    iam = aws.client("iam")
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return None
    attached = {
        p["PolicyArn"]
        for p in iam.pages("list_attached_role_policies", "AttachedPolicies", RoleName=name)
    }
    return dict(role), attached


def find_instance_profile(aws: Aws, settings: FleetSettings) -> dict[str, Any] | None:
    """The deployment's instance profile (`profile_name`), or None."""
    try:
        got = aws.client("iam").get_instance_profile(InstanceProfileName=profile_name(settings))
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return None
    return dict(got["InstanceProfile"])


def ensure_instance_role(aws: Aws, settings: FleetSettings) -> str:
    """The EC2 role Beanstalk instances assume, with the web and worker tier policies."""
    return _ensure_role(
        aws,
        settings,
        role_name(settings),
        EC2_TRUST_POLICY,
        EB_POLICIES,
        "eb-ec2-role",
        "Elastic Beanstalk EC2",
    )


def ensure_service_role(aws: Aws, settings: FleetSettings) -> str:
    """The role Elastic Beanstalk itself assumes for the environment (health reporting):
    trusts elasticbeanstalk.amazonaws.com, holds AWSElasticBeanstalkEnhancedHealth."""
    return _ensure_role(
        aws,
        settings,
        service_role_name(settings),
        EB_SERVICE_TRUST_POLICY,
        EB_SERVICE_POLICIES,
        "eb-service-role",
        "Elastic Beanstalk service role",
    )


def _ensure_role(
    aws: Aws,
    settings: FleetSettings,
    name: str,
    trust: dict[str, Any],
    policies: tuple[str, ...],
    component: str,
    what: str,
) -> str:
    """Find the deployment's role `name` (or create it with `trust`), then attach
    whichever of `policies` it lacks."""
    iam = aws.client("iam")
    _find_or_create(
        settings,
        "IAM role",
        name,
        lambda: iam.get_role(RoleName=name)["Role"],
        lambda: iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=f"tomcat-fleet {settings.deployment_name}: {what}",
            Tags=deployment_tags(settings, component),
        )["Role"],
    )
    attached = {
        p["PolicyArn"]
        for p in iam.pages("list_attached_role_policies", "AttachedPolicies", RoleName=name)
    }
    for arn in policy_arns(aws, policies):
        if arn not in attached:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
            actions.changed("IAM role", name, why=f"attached {arn.rsplit('/', 1)[-1]}")
    return name


def _find_or_create(
    settings: FleetSettings,
    kind: str,
    name: str,
    get: Callable[[], dict[str, Any]],
    create: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The deployment's IAM entity `name` (refused if another owner's), else created; a
    racing caller that created it first is fine (then it is read again)."""
    try:
        found = get()
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    else:
        if not owned(found.get("Tags"), settings):
            raise not_ours(kind, name, settings)
        actions.found(kind, name=name)
        return found
    try:
        made = create()
        actions.created(kind, name=name, why=str(made.get("Arn", "")))
        return made
    except ClientError as exc:
        if error_code(exc) != "EntityAlreadyExists":
            raise
        actions.found(kind, name=name, why="created meanwhile by another run")
        return get()


def ensure_instance_profile(aws: Aws, settings: FleetSettings, role: str) -> str:
    """The instance profile holding `role` (a profile holds at most one role)."""
    iam = aws.client("iam")
    name = profile_name(settings)
    profile = _find_or_create(
        settings,
        "instance profile",
        name,
        lambda: iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"],
        lambda: iam.create_instance_profile(
            InstanceProfileName=name, Tags=deployment_tags(settings, "eb-profile")
        )["InstanceProfile"],
    )
    roles = [r["RoleName"] for r in profile.get("Roles", [])]
    if role in roles:
        return name
    if roles:
        raise StageError(
            f"instance profile {name!r} already holds role {roles[0]!r}, not {role!r}; "
            "remove that role from the profile (a profile holds one role)"
        )
    try:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        actions.changed("instance profile", name=name, why=f"holds role {role}")
    except ClientError as exc:
        if error_code(exc) != "LimitExceeded":
            raise
        # a racing caller added a role first: fine only if it is ours
        now = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        if role not in [r["RoleName"] for r in now.get("Roles", [])]:
            raise StageError(
                f"instance profile {name!r} holds another role than {role!r}"
            ) from None
    return name
