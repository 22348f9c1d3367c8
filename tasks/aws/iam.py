"""IAM: the deployment's instance profiles and roles (Elastic Beanstalk's instances)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tasks.aws.cleanup import Cleanup, is_gone


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


def delete_profiles_and_roles(c: Cleanup) -> None:
    iam = c.aws.client("iam")
    profiles = []
    for p in iam.pages("list_instance_profiles", "InstanceProfiles"):
        tags = p.get("Tags")
        if tags is None:  # AWS lists profiles without their tags
            try:
                tags = iam.get_instance_profile(InstanceProfileName=p["InstanceProfileName"])[
                    "InstanceProfile"
                ].get("Tags", [])
            except ClientError as exc:
                if is_gone(exc):
                    continue
                raise
        if c.mine(tags):
            profiles.append(p)
    for p in profiles:
        c.attempt("instance-profile", p["InstanceProfileName"], _delete_profile, c, p)
    roles = []
    for role in iam.pages("list_roles", "Roles"):
        if role.get("Path", "/").startswith("/aws-service-role/"):
            continue
        try:
            tags = iam.list_role_tags(RoleName=role["RoleName"]).get("Tags", [])
        except ClientError as exc:
            if is_gone(exc):
                continue
            raise
        if c.mine(tags):
            roles.append(role["RoleName"])
    for name in roles:
        c.attempt("iam-role", name, delete_role, c, name)
