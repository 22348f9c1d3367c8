"""Stage 2, install-tomcat: the install-tomcat subflow over stage 1's instances.

The flow itself is flows/install_tomcat.py (a room in tasks/ does not import a flow module):
the table names it (`subflow`), the deploy flow hands it over by that name, and this room
calls it in the flow body. Not run, its results are the statuses the last install saved in
the inventory file (installed and failed hosts)."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.ec2 import StageError
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.found import MissingStage
from tasks.deploy.inventory import INSTALLED, inventory_path, read_inventory
from tasks.deploy.models import LaunchResult, SavedInstall
from tasks.deploy.stages.room import Call, Finding, Room
from tasks.deploy.survey import Survey
from tasks.models import HostResult, InstallSummary
from tasks.plan import diff
from tasks.plan.models import PlanEntry
from tasks.runtime.outcome import outcome_of

ROW = STAGES[2]


def run(call: Call) -> InstallSummary:
    """The install subflow over the launched instances, with the deploy's install knobs."""
    launch: LaunchResult = call.inputs[1]
    req = call.request
    state = call.subflows[ROW.subflow](
        launch.instances,
        chunk_size=req.chunk_size,
        max_workers=req.max_workers,
        desired_count=req.desired_count,
        runner=req.runner,
        allow_failures=req.allow_failures,
        settings_overrides=req.settings_overrides,
        return_state=True,
    )
    summary = outcome_of(state)
    if not isinstance(summary, InstallSummary) or state.is_failed():
        raise StageError(str(state.message or f"{ROW.subflow} failed"))
    actions.result(
        f"Tomcat on {summary.installed}/{summary.hosts} hosts "
        f"({summary.already_installed} already installed, {summary.failed} failed) "
        f"in {summary.install_s:.1f}s"
    )
    return summary


def saved_install(settings: FleetSettings) -> SavedInstall | None:
    """The installed and failed hosts of the saved inventory, or None without one."""
    data = read_inventory(settings)
    if data is None:
        return None
    reasons = {f["instance_id"]: f.get("reason") for f in data.get("failed", [])}
    ips = {row["instance_id"]: row["public_ip"] for row in data.get("instances", [])}
    results = [
        HostResult(
            instance_id=host,
            public_ip=ips[host],
            status=status,
            reason=(reasons.get(host) or "earlier install failed") if status == "failed" else None,
        )
        for host, status in data["status"].items()
        if status in (INSTALLED, "failed")
    ]
    return SavedInstall(path=str(inventory_path(settings)), results=results)


def find(q: Finding) -> SavedInstall:
    saved = saved_install(q.settings)
    if saved is None:
        raise MissingStage(q.stage, ROW.number, "install results", "no saved inventory")
    return saved


def report(result: InstallSummary | SavedInstall, _: FleetSettings) -> ReportPart:
    if not isinstance(result, InstallSummary):  # found: this run installed nothing
        return ReportPart()
    return ReportPart(
        install={
            "hosts": result.hosts,
            "installed": result.installed,
            "failed": result.failed,
            "already_installed": result.already_installed,
            "install_s": round(result.install_s, 2),
        }
    )


def plan(s: Survey) -> list[PlanEntry]:
    """The install's ingress from this controller, and Tomcat on every web host (installed
    ones are known from the saved inventory; the install itself skips hosts that serve)."""
    hosts = sorted(i.instance_id for i in s.running("web"))[: s.instances]
    launched = max(0, s.instances - len(hosts))
    installed = set(s.installed() or []) & set(hosts)
    todo = [h for h in hosts if h not in installed]
    more = f" and the {launched} stage 1 launches" if launched else ""
    drift = (
        [("installed hosts", f"install on {diff.shown(todo)}{more}")] if todo or launched else []
    )
    ports = list(s.settings.ingress_ports)
    return [
        s.controller_ingress_entry(ROW.number, "web", ports),
        diff.resource(
            ROW.number,
            "tomcat-install",
            f"{s.name}-web",
            exists=bool(installed),
            create=f"install Tomcat on {s.instances} hosts",
            drift=drift,
            ok=f"Tomcat installed on all {len(hosts)} hosts (saved inventory)",
        ),
    ]


ROOM = Room(ROW, run=run, find=find, report=report, plan=plan)
