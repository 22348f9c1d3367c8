"""Elastic Beanstalk: the deployment's environments and applications; one line per one
found, created or deleted (`tasks.actions`)."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.cleanup import Cleanup, Gone, StageError, is_gone
from tasks.aws.client import Aws, WaitTimeout
from tasks.aws.ec2 import deployment_tags
from tasks.aws.iam import _PROFILE_PROPAGATION_S
from tasks.aws.retry import error_code
from tasks.waiting import wait_until

_BUSY = ("Launching", "Updating")


# -- find -------------------------------------------------------------------------------
def deployment_environments(c: Cleanup) -> list[dict[str, Any]]:
    """This deployment's Beanstalk environments, terminated ones included."""
    eb = c.aws.client("elasticbeanstalk")
    out = []
    for env in eb.pages("describe_environments", "Environments", IncludeDeleted=True):
        try:
            tags = eb.list_tags_for_resource(ResourceArn=env["EnvironmentArn"]).get(
                "ResourceTags", []
            )
        except ClientError as exc:
            if is_gone(exc) or error_code(exc) == "InvalidParameterValue":
                continue
            raise
        if c.mine(tags):
            out.append(env)
    return out


def environment_status(c: Cleanup, env_id: str) -> str | None:
    eb = c.aws.client("elasticbeanstalk")
    envs = eb.describe_environments(EnvironmentIds=[env_id], IncludeDeleted=True).get(
        "Environments", []
    )
    return str(envs[0]["Status"]) if envs else None


def deployment_applications(c: Cleanup, envs: list[dict[str, Any]]) -> list[str]:
    """Applications tagged for this deployment, and those holding its environments `envs`."""
    eb = c.aws.client("elasticbeanstalk")
    apps = {e["ApplicationName"] for e in envs if e.get("ApplicationName")}
    for app in eb.describe_applications().get("Applications", []):
        arn = app.get("ApplicationArn")
        if app["ApplicationName"] in apps or not arn:
            continue
        try:
            tags = eb.list_tags_for_resource(ResourceArn=arn).get("ResourceTags", [])
        except ClientError:
            continue  # moto cannot tag applications; AWS can
        if c.mine(tags):
            apps.add(app["ApplicationName"])
    return sorted(apps)


# -- delete -----------------------------------------------------------------------------
def _delete_application(c: Cleanup, name: str) -> None:
    eb = c.aws.client("elasticbeanstalk")
    if not eb.describe_applications(ApplicationNames=[name]).get("Applications"):
        raise Gone
    eb.delete_application(ApplicationName=name, TerminateEnvByForce=True)


def delete_environments_and_applications(c: Cleanup) -> None:
    eb = c.aws.client("elasticbeanstalk")
    envs = deployment_environments(c)
    live = [e for e in envs if e.get("Status") not in ("Terminating", "Terminated")]
    for env in live:
        name, env_id = env["EnvironmentName"], env["EnvironmentId"]
        if env.get("Status") in _BUSY:  # terminate it once settled
            c.wait(
                f"beanstalk environment {name} to settle",
                lambda i=env_id: environment_status(c, i) not in _BUSY,
            )
        c.attempt("beanstalk-environment", name, eb.terminate_environment, EnvironmentId=env_id)
    for env in envs:
        if env.get("Status") != "Terminated":
            c.wait(
                f"beanstalk environment {env['EnvironmentName']} to terminate",
                lambda i=env["EnvironmentId"]: environment_status(c, i) in (None, "Terminated"),
            )
    for name in deployment_applications(c, envs):
        c.attempt("beanstalk-application", name, _delete_application, c, name)


_GONE = ("Terminating", "Terminated")


def application_name(settings: FleetSettings) -> str:
    return f"{settings.deployment_name}-app"


EB_ENV_NAME_MAX = 40  # Beanstalk environment names: 4-40 letters, digits and hyphens


def environment_name(settings: FleetSettings) -> str:
    """`<deployment>-env`, shortened with a stable hash when over 40 characters."""
    name = f"{settings.deployment_name}-env"
    if len(name) <= EB_ENV_NAME_MAX:
        return name
    import hashlib

    digest = hashlib.sha256(settings.deployment_name.encode()).hexdigest()[:6]
    keep = EB_ENV_NAME_MAX - len("-env") - len(digest) - 1
    return f"{settings.deployment_name[:keep].rstrip('-')}-{digest}-env"


def application_exists(aws: Aws, settings: FleetSettings) -> bool:
    name = application_name(settings)
    apps = aws.client("elasticbeanstalk").describe_applications(ApplicationNames=[name])
    return any(a.get("ApplicationName") == name for a in apps["Applications"])


def ensure_application(aws: Aws, settings: FleetSettings) -> str:
    eb = aws.client("elasticbeanstalk")
    name = application_name(settings)
    if application_exists(aws, settings):
        actions.found("Beanstalk application", name=name)
        return name
    try:
        eb.create_application(
            ApplicationName=name,
            Description=f"tomcat-fleet {settings.deployment_name}",
            Tags=deployment_tags(settings, "app"),
        )
        actions.created("Beanstalk application", name=name)
    except ClientError as exc:
        msg = str(exc).lower()
        if error_code(exc) != "InvalidParameterValue" or "already exists" not in msg:
            raise
        actions.found("Beanstalk application", name=name, why="created meanwhile by another run")
    return name


def _version_key(stack: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", stack))


def choose_solution_stack(aws: Aws, settings: FleetSettings) -> str:
    """The configured stack, else the newest Tomcat one (platform, Tomcat, Java versions)."""
    if settings.eb_solution_stack:
        return settings.eb_solution_stack
    stacks = aws.client("elasticbeanstalk").list_available_solution_stacks()["SolutionStacks"]
    tomcat = [s for s in stacks if "Tomcat" in s]
    if not tomcat:
        raise StageError(
            f"no Tomcat solution stack is offered in {settings.region}; "
            "set TOMCAT_FLEET_EB_SOLUTION_STACK"
        )
    return max(tomcat, key=_version_key)


def find_environment(aws: Aws, app: str, name: str) -> dict[str, Any] | None:
    eb = aws.client("elasticbeanstalk")
    envs = eb.describe_environments(
        ApplicationName=app, EnvironmentNames=[name], IncludeDeleted=False
    )["Environments"]
    live = [e for e in envs if e.get("EnvironmentName") == name and e.get("Status") != "Terminated"]
    if not live:
        return None
    env = live[0]
    if env.get("ApplicationName") != app:
        raise StageError(
            f"environment {name!r} exists in application {env.get('ApplicationName')!r}, not "
            f"{app!r}; environment names are unique per region: remove it or rename the deployment"
        )
    return dict(env)


def _option_settings(profile: str, service_role: str) -> list[dict[str, str]]:
    return [
        {
            "Namespace": "aws:autoscaling:launchconfiguration",
            "OptionName": "IamInstanceProfile",
            "Value": profile,
        },
        {  # Beanstalk's instances answer instance metadata only with a session token
            "Namespace": "aws:autoscaling:launchconfiguration",
            "OptionName": "DisableIMDSv1",
            "Value": "true",
        },
        {
            "Namespace": "aws:elasticbeanstalk:environment",
            "OptionName": "ServiceRole",
            "Value": service_role,
        },
        {
            "Namespace": "aws:elasticbeanstalk:environment",
            "OptionName": "EnvironmentType",
            "Value": "LoadBalanced",
        },
        {
            "Namespace": "aws:elasticbeanstalk:environment",
            "OptionName": "LoadBalancerType",
            "Value": "application",
        },
    ]


def create_environment(
    aws: Aws, settings: FleetSettings, app: str, name: str, profile: str, service_role: str
) -> dict[str, Any]:
    """Create the load-balanced environment with the instance profile and the service
    role (name or ARN); a profile or role IAM does not show yet is retried a while."""
    eb = aws.client("elasticbeanstalk")
    stack = choose_solution_stack(aws, settings)
    # Beanstalk sets `Name` itself (to the environment name) and rejects tag values equal
    # to the environment name, so the environment carries the other deployment tags.
    tags = [t for t in deployment_tags(settings, "env") if t["Key"] != "Name"]

    def create() -> dict[str, Any]:
        try:
            env = eb.create_environment(
                ApplicationName=app,
                EnvironmentName=name,
                SolutionStackName=stack,
                OptionSettings=_option_settings(profile, service_role),
                Tags=tags,
            )
        except ClientError as exc:
            if error_code(exc) == "InvalidParameterValue" and "already exists" in str(exc).lower():
                found = find_environment(aws, app, name)  # a racing caller created it
                if found is not None:
                    why = "created meanwhile by another run"
                    actions.found(
                        "Beanstalk environment", found.get("EnvironmentId", ""), name, why
                    )
                    return found
            raise
        actions.created("Beanstalk environment", env.get("EnvironmentId", ""), name, stack)
        return dict(env)

    def unseen(exc: Exception) -> bool:
        """IAM is eventually consistent: a new profile/role is not seen yet."""
        message = str(exc).lower()
        if error_code(exc) != "InvalidParameterValue" or "already exists" in message:
            return False
        return "instance profile" in message or "service role" in message

    return wait_until(
        f"Beanstalk to see instance profile {profile} and service role {service_role}",
        create,
        timeout_s=_PROFILE_PROPAGATION_S,
        poll_s=5.0,
        retry_on=unseen,
    )


def environment_load_balancer(aws: Aws, env_id: str) -> str | None:
    res = aws.client("elasticbeanstalk").describe_environment_resources(EnvironmentId=env_id)
    lbs = res.get("EnvironmentResources", {}).get("LoadBalancers", [])
    return str(lbs[0]["Name"]) if lbs and lbs[0].get("Name") else None


def wait_environment_ready(
    aws: Aws, app: str, name: str, env_id: str, timeout_s: float, poll_s: float
) -> tuple[dict[str, Any], str]:
    """Until the environment is Ready (the `environment_ready` waiter, through the retrying
    client) and has its load balancer; (env, LB ARN). StageError with its status otherwise."""
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(WaitTimeout):  # the environment below says why
        aws.client("elasticbeanstalk").wait(
            "environment_ready",
            what=f"Beanstalk environment {name} ({env_id}) to be Ready",
            timeout_s=timeout_s,
            delay_s=poll_s,
            ApplicationName=app,
            EnvironmentNames=[name],
            EnvironmentIds=[env_id],
            IncludeDeleted=False,
        )
    env = find_environment(aws, app, name)
    if env is None or env.get("EnvironmentId") != env_id:
        raise StageError(f"Beanstalk environment {name} ({env_id}) disappeared while waiting")
    status = str(env.get("Status"))
    if status in _GONE:
        raise StageError(f"Beanstalk environment {name} ({env_id}) is {status}")
    what = f"status {status}"
    if status == "Ready":
        try:
            lb: str = wait_until(
                f"the load balancer of Beanstalk environment {name}",
                lambda: environment_load_balancer(aws, env_id),
                deadline=deadline,
                poll_s=poll_s,
            )
            return env, lb
        except WaitTimeout:
            what = "Ready but has no load balancer"
    raise StageError(
        f"Beanstalk environment {name} ({env_id}) not ready after {timeout_s:.0f}s "
        f"({what}, health {env.get('Health', '?')}); see its events in the console"
    )
