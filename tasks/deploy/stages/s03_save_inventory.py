"""Stage 3, save-inventory: every launched host with its install status, as the deployment's
inventory file (tasks/deploy/inventory.py) and a table artifact. Only the installed hosts go
forward to the load balancer. Not run, the saved inventory file stands in for it."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from blocks.settings import FleetSettings
from tasks import actions
from tasks.deploy.dag import STAGES
from tasks.deploy.found import MissingStage
from tasks.deploy.inventory import load_inventory, write_inventory
from tasks.deploy.models import InventoryResult, LaunchResult, SavedInstall
from tasks.deploy.stages.room import Finding, Room, stage_task
from tasks.models import InstallSummary, Instance

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


ROOM = Room(ROW, task=inventory_stage, find=find)
