"""Stage 1, launch-instances: the web fleet exists, runs, passes status checks and has public
IPs. Not run, its instances are found by the deployment's tags.

Idempotent and crash-safe: instances are found by the deployment's tags first (tags are
applied by RunInstances itself, so even a run killed mid-call leaves findable instances);
only the missing count is launched, with a ClientToken derived from what exists, so a
retried call cannot launch twice.
"""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.ec2 import (
    TAG_KEY,
    client_token,
    ensure_key_pair,
    ensure_security_group,
    find_instances,
    key_pair_exists,
    launch_instances,
    life_id,
    wait_running,
)
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.found import MissingStage
from tasks.deploy.models import DeployRequest, LaunchResult
from tasks.deploy.stages.room import Finding, Room, stage_task
from tasks.deploy.survey import Survey
from tasks.plan import diff
from tasks.plan.models import PlanEntry

ROW = STAGES[1]


def existing_instance_ids(aws: Aws, settings: FleetSettings, role: str) -> list[str]:
    """Pending or running instances of this deployment and role, oldest first."""
    res = aws.client("ec2").describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": [settings.deployment_name]},
            {"Name": "tag:tomcat-fleet:role", "Values": [role]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    found = [i for r in res["Reservations"] for i in r["Instances"]]
    found.sort(key=lambda i: (str(i.get("LaunchTime", "")), i["InstanceId"]))
    return [i["InstanceId"] for i in found]


def launch_fleet(
    aws: Aws, settings: FleetSettings, count: int, timeout_s: float = ROW.timeout_s
) -> LaunchResult:
    ensure_key_pair(aws, settings)
    group = ensure_security_group(aws, settings, role="web")
    existing = existing_instance_ids(aws, settings, "web")
    for iid in existing[:count]:
        actions.found("instance", iid, f"{settings.deployment_name}-web", "pending or running")
    missing = max(0, count - len(existing))
    ids = existing[:count]
    if missing:
        # same life, same instances found, same count: same token (EC2 remembers tokens
        # after termination; a new life after teardown never collides with an old one)
        life = life_id(aws, settings)
        token = client_token(settings, life, "web", group, ",".join(sorted(existing)), missing)
        ids += launch_instances(aws, settings, missing, group, client_token=token)
    instances = wait_running(aws, ids, timeout_s=timeout_s)
    actions.result(
        f"{len(instances)} instances running with public IPs ({missing} launched now), "
        f"group {group}"
    )
    return LaunchResult(
        instances=instances, security_group_id=group, key_name=settings.key_name, created=missing
    )


@stage_task(ROW)
def launch_stage(settings: FleetSettings, count: int) -> LaunchResult:
    return launch_fleet(Aws(settings), settings, count)


def find(q: Finding) -> LaunchResult:
    """The deployment's running web instances, found by its tags."""
    instances = find_instances(q.aws, q.settings, "web")
    if not instances:
        raise MissingStage(
            q.stage, ROW.number, "instances", "no running instance of this deployment"
        )
    groups = sorted({g for i in instances for g in i.security_groups})
    return LaunchResult(
        instances=instances,
        security_group_id=groups[0] if groups else "",
        key_name=q.settings.key_name,
    )


def report(result: LaunchResult, _: FleetSettings) -> ReportPart:
    return ReportPart(
        resources={
            "instances": [i.instance_id for i in result.instances],
            "web_security_group": result.security_group_id,
        }
    )


def _count(request: DeployRequest) -> tuple[int]:
    return (request.instances,)


def plan(s: Survey) -> list[PlanEntry]:
    """The key pair, the web group and the instance count."""
    have = len(existing_instance_ids(s.aws, s.settings, "web"))
    key = s.settings.key_name
    return [
        diff.resource(
            ROW.number,
            "key-pair",
            key,
            exists=key_pair_exists(s.aws, s.settings),
            create=f"private key kept at {s.settings.key_file_path()}",
        ),
        s.group_entry(ROW.number, "web"),
        diff.count(ROW.number, "ec2-instance", f"{s.name}-web", s.instances, have, "web instances"),
    ]


ROOM = Room(ROW, task=launch_stage, parameters=_count, find=find, report=report, plan=plan)
