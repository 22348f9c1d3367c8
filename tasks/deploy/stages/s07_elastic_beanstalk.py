"""Stage 7, elastic-beanstalk: an application and a load-balanced Tomcat environment.

The EC2 instance role and its instance profile, the service role, the application and the
environment are each found (by name, owned by this deployment) before anything is created,
so a second call creates nothing and returns the same environment. It waits for stage 5 when
that runs (the seed's order) but uses nothing of it. Not run, the environment is found by
name and must be Ready (`find`).
"""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.beanstalk import (
    application_exists,
    application_name,
    create_environment,
    ensure_application,
    environment_load_balancer,
    environment_name,
    find_environment,
    wait_environment_ready,
)
from tasks.aws.cleanup import not_ours, owned
from tasks.aws.ec2 import StageError
from tasks.aws.iam import (
    EB_POLICIES,
    EB_SERVICE_POLICIES,
    ensure_instance_profile,
    ensure_instance_role,
    ensure_service_role,
    find_instance_profile,
    find_role,
    policy_arns,
    profile_name,
    role_name,
    service_role_name,
)
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.found import MissingStage
from tasks.deploy.models import BeanstalkResult
from tasks.deploy.stages.room import Finding, Room, stage_task
from tasks.deploy.survey import Survey
from tasks.plan import diff
from tasks.plan.models import PlanEntry

ROW = STAGES[7]


def create_beanstalk(
    aws: Aws, settings: FleetSettings, timeout_s: float = ROW.timeout_s, poll_s: float = 2.0
) -> BeanstalkResult:
    """Roles (instances' and service), instance profile, application and a Ready
    load-balanced environment."""
    role = ensure_instance_role(aws, settings)
    profile = ensure_instance_profile(aws, settings, role)
    service_role = ensure_service_role(aws, settings)
    app = ensure_application(aws, settings)
    name = environment_name(settings)
    env = find_environment(aws, app, name)
    if env is not None and env.get("Status") == "Terminating":
        raise StageError(
            f"Beanstalk environment {name} is terminating; run again once it has terminated"
        )
    if env is not None:
        arn = env.get("EnvironmentArn")
        if arn:
            tags = aws.client("elasticbeanstalk").list_tags_for_resource(ResourceArn=arn)
            if not owned(tags.get("ResourceTags"), settings):
                raise not_ours("Beanstalk environment", name, settings)
        why = f"status {env.get('Status')}"
        actions.found("Beanstalk environment", str(env.get("EnvironmentId", "")), name, why)
    else:
        env = create_environment(aws, settings, app, name, profile, service_role)
    env_id = str(env["EnvironmentId"])
    ready, lb = wait_environment_ready(aws, app, name, env_id, timeout_s, poll_s)
    cname = str(ready.get("CNAME") or ready.get("EndpointURL") or "")
    actions.result(f"environment {name} Ready at http://{cname}/ (health {ready.get('Health')})")
    return BeanstalkResult(
        application=app,
        environment=name,
        cname=str(ready.get("CNAME") or ready.get("EndpointURL") or ""),
        load_balancer_arn=lb,
        instance_profile=profile,
        role=role,
        service_role=service_role,
    )


@stage_task(ROW)
def beanstalk_stage(settings: FleetSettings) -> BeanstalkResult:
    return create_beanstalk(Aws(settings), settings)


def find(q: Finding) -> BeanstalkResult:
    """The environment, found by name; it must be Ready."""
    app, name = application_name(q.settings), environment_name(q.settings)
    env = find_environment(q.aws, app, name)
    if env is None or env.get("Status") != "Ready":
        state = "not found" if env is None else f"status {env.get('Status')}"
        raise MissingStage(q.stage, ROW.number, "Beanstalk environment", f"{name} {state}")
    lb = environment_load_balancer(q.aws, str(env["EnvironmentId"]))
    if lb is None:
        raise MissingStage(
            q.stage, ROW.number, "Beanstalk environment", f"{name} has no load balancer"
        )
    return BeanstalkResult(
        application=app,
        environment=name,
        cname=str(env.get("CNAME") or env.get("EndpointURL") or ""),
        load_balancer_arn=lb,
        instance_profile=profile_name(q.settings),
        role=role_name(q.settings),
    )


def report(result: BeanstalkResult, _: FleetSettings) -> ReportPart:
    return ReportPart(
        urls={"beanstalk_http": f"http://{result.cname}/"},
        resources={"beanstalk_environment": result.environment},
    )


def _role_entry(s: Survey, name: str, policies: tuple[str, ...]) -> PlanEntry:
    found = find_role(s.aws, name)
    want = [a.rsplit("/", 1)[-1] for a in policy_arns(s.aws, policies)]
    have = [a.rsplit("/", 1)[-1] for a in (found[1] if found else set())]
    return diff.resource(
        ROW.number,
        "iam-role",
        name,
        exists=found is not None,
        create=f"holding {', '.join(want)}",
        drift=diff.members("attached policies", want, have, add="attach", remove=None),
    )


def plan(s: Survey) -> list[PlanEntry]:
    """The two roles and their policies, the instance profile holding the instances' role,
    the application and a Ready environment."""
    n = ROW.number
    profile = find_instance_profile(s.aws, s.settings)
    role = role_name(s.settings)
    held = [r["RoleName"] for r in (profile or {}).get("Roles", [])]
    app, name = application_name(s.settings), environment_name(s.settings)
    env = find_environment(s.aws, app, name)
    status = str(env.get("Status")) if env else ""
    return [
        _role_entry(s, role, EB_POLICIES),
        diff.resource(
            n,
            "instance-profile",
            profile_name(s.settings),
            exists=profile is not None,
            create=f"holding {role}",
            drift=diff.members("role", [role], held, add="add role", remove=None),
        ),
        _role_entry(s, service_role_name(s.settings), EB_SERVICE_POLICIES),
        diff.resource(
            n, "beanstalk-application", app, exists=application_exists(s.aws, s.settings)
        ),
        diff.resource(
            n,
            "beanstalk-environment",
            name,
            exists=env is not None,
            create="load-balanced Tomcat environment, waited until Ready",
            drift=[("status", f"wait for Ready (now {status})")] if status != "Ready" else [],
            ok=f"Ready at {env.get('CNAME')}" if env else "",
        ),
    ]


ROOM = Room(ROW, task=beanstalk_stage, find=find, report=report, plan=plan)
