"""Elastic Beanstalk: the deployment's environments and applications."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tasks.aws.cleanup import Cleanup, Gone, is_gone
from tasks.aws.retry import error_code

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
    # applications: those tagged for this deployment, and those holding its environments
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
    for name in sorted(apps):
        c.attempt("beanstalk-application", name, _delete_application, c, name)
