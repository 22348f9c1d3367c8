"""Stage 3, save-inventory: every launched host with its install status, as the deployment's
inventory file (tasks/deploy/inventory.py) and a table artifact. Only the installed hosts go
forward to the load balancer. Not run, the saved inventory file stands in for it."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from blocks.settings import FleetSettings
from tasks import actions
from tasks.deploy.dag import STAGES
from tasks.deploy.found import MissingStage
from tasks.deploy.inventory import inventory_path, load_inventory, write_inventory
from tasks.deploy.models import InventoryResult, LaunchResult, SavedInstall
from tasks.deploy.stages.room import Finding, Room, stage_task
from tasks.deploy.survey import Survey
from tasks.models import InstallSummary, Instance
from tasks.plan import diff
from tasks.plan.models import PlanEntry

ROW = STAGES[3]


def save_inventory(
    settings: FleetSettings, instances: list[Instance], install: InstallSummary | SavedInstall
) -> InventoryResult:
    """Every launched host and its install status (the install's, or the saved ones: hosts
    it never saw are `not installed`); failed hosts never reach the ALB."""
    ips = {i.instance_id: i.public_ip for i in instances}
    results = [
        r.model_copy(update={"public_ip": ips[r.instance_id]})
        for r in install.results
        if r.instance_id in ips
    ]
    inv = write_inventory(settings, instances, results)
    actions.result(
        f"inventory of {len(inv.status) or len(instances)} hosts saved to {inv.path}: "
        f"{len(inv.instances)} installed go to the load balancer"
    )
    return inv


@stage_task(ROW)
def inventory_stage(
    settings: FleetSettings, launch: LaunchResult, install: InstallSummary | SavedInstall
) -> InventoryResult:
    inv = save_inventory(settings, launch.instances, install)
    create_table_artifact(
        key=f"{settings.deployment_name}-inventory",
        table=[
            i.model_dump() | {"security_groups": ",".join(i.security_groups)} for i in inv.instances
        ],
        description=f"inventory: {len(inv.instances)} installed hosts ({inv.path})",
    )
    return inv


def find(q: Finding) -> InventoryResult:
    """The saved inventory."""
    inv = load_inventory(q.settings)
    if inv is None:
        raise MissingStage(q.stage, ROW.number, "inventory", "no saved inventory")
    return inv


def plan(s: Survey) -> list[PlanEntry]:
    """The inventory file lists every running web host."""
    inv = s.inventory()
    listed = [row["instance_id"] for row in (inv or {}).get("instances", [])]
    hosts = sorted(i.instance_id for i in s.running("web"))[: s.instances]
    launched = max(0, s.instances - len(hosts))
    drift = diff.members("hosts", hosts, listed, add="list", remove="drop")
    if launched:
        drift.append(("hosts", f"list the {launched} hosts stage 1 launches"))
    return [
        diff.resource(
            ROW.number,
            "inventory-file",
            str(inventory_path(s.settings)),
            exists=inv is not None,
            create=f"{s.instances} hosts with their install status",
            drift=drift,
            ok=f"lists the {len(listed)} hosts",
        )
    ]


ROOM = Room(ROW, task=inventory_stage, find=find, plan=plan)
