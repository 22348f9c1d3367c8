"""Elastic Beanstalk: applications and environments.

CreateEnvironment passes two roles (the instance profile's, to EC2; the service role, to
Elastic Beanstalk), and Elastic Beanstalk builds the environment with the caller's rights:
`sandbox.authz.models.eb_caller` lists and checks what it does on the caller's behalf.
"""

from __future__ import annotations

from typing import Any

import sandbox.authz.models.eb_caller as eb_caller

from ..checks import Checks, tags_of
from .iam import pass_profile_role, pass_role


def _backend(c: Checks) -> Any:
    from moto.elasticbeanstalk.models import eb_backends

    return eb_backends[c.call.account][c.call.region]


def resource_tags(c: Checks, arn: str) -> dict[str, str]:
    try:
        return tags_of(_backend(c).list_tags_for_resource(arn))
    except Exception:  # not found: a resource about to be created has no tags
        return {}


def app_arn(c: Checks, app: str) -> str:
    return c.arn("application", ApplicationName=app)


def env_arn(c: Checks, app: str, env: str) -> str:
    return c.arn("environment", ApplicationName=app, EnvironmentName=env)


def find_environment(c: Checks) -> Any:
    p = c.call.params
    for e in _backend(c).describe_environments():
        if e.environment_id == p.get("EnvironmentId") or e.environment_name == p.get(
            "EnvironmentName"
        ):
            return e
    return None


def _option(options: list[dict[str, Any]], namespace: str, name: str) -> str | None:
    for opt in options or []:
        if opt.get("Namespace") == namespace and opt.get("OptionName") == name:
            return str(opt.get("Value") or "") or None
    return None


def create_application(c: Checks) -> None:
    tags = c.call.tags()
    c.add("application", app_arn(c, c.call.params.get("ApplicationName", "*")), request_tags=tags)


def create_environment(c: Checks) -> None:
    p = c.call.params
    app, env = p.get("ApplicationName", "*"), p.get("EnvironmentName", "*")
    arn = env_arn(c, app, env)
    c.add(
        "environment",
        arn,
        request_tags=c.call.tags(),
        keys={"elasticbeanstalk:InApplication": [app_arn(c, app)]},
    )
    options = p.get("OptionSettings") or []
    profile = _option(options, "aws:autoscaling:launchconfiguration", "IamInstanceProfile")
    if profile:
        pass_profile_role(c, profile, "ec2.amazonaws.com")
    service_role = _option(options, "aws:elasticbeanstalk:environment", "ServiceRole")
    if service_role:
        pass_role(c, service_role, "elasticbeanstalk.amazonaws.com", why="the service role")
    eb_caller.create_environment(c, app, env)


def _environment(c: Checks) -> tuple[Any, str]:
    e = find_environment(c)
    if e is None:
        name = c.call.params.get("EnvironmentName") or c.call.params.get("EnvironmentId", "*")
        return None, env_arn(c, c.call.params.get("ApplicationName") or "*", name)
    return e, env_arn(c, e.application_name, e.environment_name)


def on_environment(c: Checks) -> None:
    e, arn = _environment(c)
    app = e.application_name if e is not None else "*"
    c.add(
        "environment",
        arn,
        resource_tags=resource_tags(c, arn),
        keys={"elasticbeanstalk:InApplication": [app_arn(c, app)]},
    )


def terminate_environment(c: Checks) -> None:
    on_environment(c)
    e, _ = _environment(c)
    if e is not None:
        eb_caller.terminate_environment(c, e)


def describe_environment_resources(c: Checks) -> None:
    on_environment(c)
    e, _ = _environment(c)
    if e is not None:
        eb_caller.describe_environment_resources(c, e)


def on_application(c: Checks) -> None:
    arn = app_arn(c, c.call.params.get("ApplicationName", "*"))
    c.add("application", arn, resource_tags=resource_tags(c, arn))


def by_resource_arn(c: Checks) -> None:
    arn = c.call.params.get("ResourceArn", "")
    kind = arn.split(":", 5)[-1].split("/", 1)[0]
    c.add(kind, arn, resource_tags=resource_tags(c, arn))


def update_tags(c: Checks) -> None:
    """UpdateTagsForResource is authorized as AddTags and/or RemoveTags."""
    p = c.call.params
    arn = p.get("ResourceArn", "")
    kind = arn.split(":", 5)[-1].split("/", 1)[0]
    current = resource_tags(c, arn)
    add = tags_of(p.get("TagsToAdd"))
    if add:
        c.add(kind, arn, action="elasticbeanstalk:AddTags", request_tags=add, resource_tags=current)
    if p.get("TagsToRemove"):
        c.add(kind, arn, action="elasticbeanstalk:RemoveTags", resource_tags=current)


def described(kind: str, param: str) -> Any:
    """Describe* of named applications or environments; without names, unscoped."""

    def model(c: Checks) -> None:
        names = c.call.params.get(param) or []
        if not names:
            c.unscoped()
            return
        for name in names:
            if kind == "application":
                c.add(kind, app_arn(c, name), resource_tags=resource_tags(c, app_arn(c, name)))
            else:
                c.unscoped()

    return model


MODELS = {
    "CreateApplication": create_application,
    "CreateEnvironment": create_environment,
    "TerminateEnvironment": terminate_environment,
    "DescribeEnvironmentResources": describe_environment_resources,
    "DeleteApplication": on_application,
    "ListTagsForResource": by_resource_arn,
    "UpdateTagsForResource": update_tags,
}
