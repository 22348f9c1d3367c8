"""IAM: roles, instance profiles, iam:PassRole, service-linked roles."""

from __future__ import annotations

from typing import Any

from ..checks import Checks, tags_of


def _backend(c: Checks) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[c.call.account][c.call.partition]


def _role(c: Checks, name: str) -> Any:
    return next((r for r in _backend(c).roles.values() if r.name == name), None)


def _profile(c: Checks, name: str) -> Any:
    return _backend(c).instance_profiles.get(name) or next(
        (p for p in _backend(c).instance_profiles.values() if p.name == name), None
    )


def role_arn(c: Checks, name: str, path: str | None = None) -> str:
    role = _role(c, name)
    if role is not None:
        return str(role.arn)
    return c.arn("role", "iam", RoleNameWithPath=f"{(path or '/').strip('/')}/{name}".lstrip("/"))


def _role_check(c: Checks, name: str, **kw: Any) -> None:
    role = _role(c, name)
    c.add(
        "role",
        role_arn(c, name),
        resource_tags=tags_of(role.tags) if role is not None else {},
        **kw,
    )


def _profile_check(c: Checks, name: str, **kw: Any) -> None:
    profile = _profile(c, name)
    arn = (
        str(profile.arn)
        if profile is not None
        else c.arn("instance-profile", "iam", InstanceProfileNameWithPath=name)
    )
    tags = tags_of(getattr(profile, "tags", {})) if profile is not None else {}
    c.add("instance-profile", arn, resource_tags=tags, **kw)


def pass_role(c: Checks, role: str, service: str, why: str = "passes the role") -> None:
    """iam:PassRole of `role` (a name or ARN) to `service` (its principal)."""
    name = role.rsplit("/", 1)[-1]
    arn = role if role.startswith("arn:") else role_arn(c, name)
    c.add(
        "role",
        arn,
        action="iam:PassRole",
        keys={"iam:PassedToService": [service]},
        why=why,
    )


def pass_profile_role(c: Checks, profile: str, service: str) -> None:
    """iam:PassRole of the role inside instance profile `profile` (a name or ARN)."""
    p = _profile(c, profile.rsplit("/", 1)[-1])
    for role in getattr(p, "roles", []) or []:
        pass_role(c, role.arn, service, why=f"instance profile {p.name} passes its role")


def create_role(c: Checks) -> None:
    p = c.call.params
    tags = c.call.tags()
    arn = role_arn(c, p.get("RoleName", "*"), p.get("Path"))
    c.add("role", arn, request_tags=tags)
    if tags:
        c.add("role", arn, action="iam:TagRole", request_tags=tags, why="tags on create")


def on_role(c: Checks) -> None:
    tags = c.call.tags() or None
    _role_check(c, c.call.params.get("RoleName", ""), request_tags=tags)


def attach_role_policy(c: Checks) -> None:
    _role_check(
        c, c.call.params.get("RoleName", ""), keys={"iam:PolicyARN": [c.call.params["PolicyArn"]]}
    )


def create_instance_profile(c: Checks) -> None:
    p = c.call.params
    tags = c.call.tags()
    path = (p.get("Path") or "/").strip("/")
    name = f"{path}/{p.get('InstanceProfileName', '*')}".lstrip("/")
    arn = c.arn("instance-profile", "iam", InstanceProfileNameWithPath=name)
    c.add("instance-profile", arn, request_tags=tags)
    if tags:
        c.add(
            "instance-profile",
            arn,
            action="iam:TagInstanceProfile",
            request_tags=tags,
            why="tags on create",
        )


def on_profile(c: Checks) -> None:
    tags = c.call.tags() or None
    _profile_check(c, c.call.params.get("InstanceProfileName", ""), request_tags=tags)


def add_role_to_profile(c: Checks) -> None:
    on_profile(c)
    role = c.call.params.get("RoleName", "")
    pass_role(c, role, "ec2.amazonaws.com", why="adds the role to an instance profile")


def create_service_linked_role(c: Checks) -> None:
    from ..slr import slr_arn

    service = c.call.params.get("AWSServiceName", "")
    c.add("role", slr_arn(c, service), keys={"iam:AWSServiceName": [service]})


MODELS = {
    "CreateRole": create_role,
    "GetRole": on_role,
    "DeleteRole": on_role,
    "TagRole": on_role,
    "UntagRole": on_role,
    "ListRoleTags": on_role,
    "ListAttachedRolePolicies": on_role,
    "ListRolePolicies": on_role,
    "DeleteRolePolicy": on_role,
    "PutRolePolicy": on_role,
    "DetachRolePolicy": on_role,
    "ListInstanceProfilesForRole": on_role,
    "UpdateAssumeRolePolicy": on_role,
    "AttachRolePolicy": attach_role_policy,
    "CreateInstanceProfile": create_instance_profile,
    "GetInstanceProfile": on_profile,
    "DeleteInstanceProfile": on_profile,
    "TagInstanceProfile": on_profile,
    "ListInstanceProfileTags": on_profile,
    "RemoveRoleFromInstanceProfile": on_profile,
    "AddRoleToInstanceProfile": add_role_to_profile,
    "CreateServiceLinkedRole": create_service_linked_role,
}
