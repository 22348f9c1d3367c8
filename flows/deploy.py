"""Flow `deploy`: the eleven stages of the stage table (tasks/deploy/dag.py), each started
as soon as what it needs is done.

The run is built from the table alone: `tasks.deploy.scheduler` says which stage starts
when (and which are `upstream failed`), each stage's room (tasks/deploy/stages/) gives its
task, or the subflow it runs in the flow body, its finder and its report part. The seed's
barrier groups stay visible as tags (`group-N`), but 9 starts when 8 is done, whatever 7 is
doing. Every stage is idempotent (finds before it creates), so a repeated or resumed run
converges on the same estate. Inputs are validated before anything is created.

`tomcat-fleet deploy --help` runs it standalone (see `tasks/cli/`).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m flows.deploy ...` is `tomcat-fleet deploy ...`
    import runpy
    import sys

    sys.argv[1:1] = ["deploy"]
    runpy.run_module("flows", run_name="__main__", alter_sys=True)

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.fleet_error import BlockNotFound, FleetError
from blocks.settings import FleetSettings
from flows.install_tomcat import install_tomcat, make_runner
from tasks.aws import Aws
from tasks.aws.ec2 import StageError, preflight
from tasks.deploy import dag
from tasks.deploy.dag import KEY_MAKER, NAMES, STAGES
from tasks.deploy.deploy_report import DeployReport, Progress, ReportPart, build_report, publish
from tasks.deploy.found import MissingStage
from tasks.deploy.models import DeployRequest
from tasks.deploy.planner import plan_deploy
from tasks.deploy.scheduler import UPSTREAM_FAILED, Schedule, drive
from tasks.deploy.stages import rooms
from tasks.deploy.stages.room import CLOCK, Call, Finding, recorded, ssh_key
from tasks.forked_runner import ForkedWorkerTaskRunner
from tasks.inputs import Runner, check_deploy_request, check_shape, resolve_shape
from tasks.plan.models import Plan
from tasks.plan.render import plan_run
from tasks.planning import PlanError
from tasks.reach import read_local_view
from tasks.runtime import prefect_adjustments
from tasks.runtime.outcome import failed_with_report
from tasks.runtime.run_names import deploy_run_name

prefect_adjustments.install()  # every entry path: the flow engine imports this module first

# the flows a stage of the table may run as a subflow (`Stage.subflow`), by name
SUBFLOWS: dict[str, Any] = {install_tomcat.name: install_tomcat}


# -- input validation (nothing is created before this passes) ---------------------------
def validate_inputs(
    settings: FleetSettings, instances: int, stages: list[int], install: dict[str, Any]
) -> None:
    """Checks that need only reads: counts, shape, instance type, zone and domain."""
    check_shape(instances, install)
    aws = Aws(settings)
    preflight(aws)
    offered = aws.client("ec2").describe_instance_type_offerings(
        LocationType="region",
        Filters=[{"Name": "instance-type", "Values": [settings.instance_type]}],
    )["InstanceTypeOfferings"]
    if not offered:
        raise PlanError(
            "instance_type",
            f"instance_type={settings.instance_type!r} is not "
            f"offered in {settings.region}; pick another type or region",
        )
    zone_stages = dag.zone_stages()
    if any(n in zone_stages for n in stages):
        if not settings.hosted_zone:
            raise PlanError(
                "hosted_zone",
                f"stages {dag.span(zone_stages)} need a Route53 hosted zone; set "
                "hosted_zone (TOMCAT_FLEET_HOSTED_ZONE)",
            )
        zone = settings.hosted_zone.rstrip(".").lower()
        for field, name in (
            ("domain", settings.web_domain),
            ("eb_domain", settings.beanstalk_domain),
        ):
            if not (name == zone or name.endswith("." + zone)):
                raise PlanError(
                    field,
                    f"{field}={name!r} is outside the hosted zone "
                    f"{zone!r}; use a name ending in .{zone}",
                )
        zones = aws.client("route53").list_hosted_zones_by_name(DNSName=zone + ".")
        if not any(z["Name"].rstrip(".").lower() == zone for z in zones["HostedZones"]):
            raise PlanError(
                "hosted_zone",
                f"hosted zone {zone!r} does not exist in Route53; "
                "create it or set hosted_zone to one that does",
            )


def warm_install_pool(
    instances: int, runner: str, knobs: dict[str, int | None]
) -> ForkedWorkerTaskRunner | None:
    """Fork the install's workers now; the install subflow adopts them."""
    if runner != "process":
        return None
    _, _, count = resolve_shape(
        instances, knobs["chunk_size"], knobs["max_workers"], knobs["desired_count"]
    )
    pool = make_runner(runner, count, None)
    return pool.warm_up() if isinstance(pool, ForkedWorkerTaskRunner) else None


def check_key(settings: FleetSettings, stage: int, todo: list[int]) -> None:
    """The deployment's SSH key is there (stage KEY_MAKER makes sure it exists); the stages
    that SSH read it themselves, so it is never a task argument."""
    try:
        ssh_key(settings)
    except StageError as exc:
        if KEY_MAKER in todo:
            raise
        raise MissingStage(stage, KEY_MAKER, "SSH key", str(exc).split(";")[0]) from None


class StageRun:
    """The Prefect side of one run's stages, driven by `tasks.deploy.scheduler.drive`:
    `start` submits a stage's task (or runs its subflow in the flow body) with its inputs,
    this run's results or found; `wait` reports the next task to end; `ended` keeps the
    progress artifact. An input from a stage not selected is found by that stage's room
    (once, whoever needs it); when it is missing the stage needing it fails naming the
    stage to run, and the stages after it are not run."""

    def __init__(
        self, settings: FleetSettings, request: DeployRequest, todo: list[int], progress: Progress
    ) -> None:
        self.settings, self.request, self.todo, self.progress = settings, request, todo, progress
        self.rooms = rooms()
        self.aws = Aws(settings)  # reads only: finding what a stage not selected made
        self.results: dict[int, Any] = {}  # this run's
        self.found: dict[int, Any] = {}  # of stages not selected
        self.failed: dict[int, str] = {}
        self.running: dict[int, PrefectFuture[Any]] = {}
        self.completed: dict[int, PrefectFuture[Any]] = {}

    def input(self, producer: int, stage: int) -> Any:
        """Stage `producer`'s result for `stage`: this run's, or found."""
        if producer in self.results:
            return self.results[producer]
        if producer in self.todo:  # the scheduler starts a stage only after what it needs
            raise RuntimeError(f"stage {stage} started before stage {producer} completed")
        if producer not in self.found:
            find = self.rooms[producer].find
            assert find is not None, f"stage {producer} has no finder"  # the table checks it
            query = Finding(self.settings, self.aws, stage, lambda p: self.input(p, stage))
            self.found[producer] = find(query)
        return self.found[producer]

    def start(self, n: int) -> bool | None:
        room = self.rooms[n]
        try:
            if room.stage.ssh:
                check_key(self.settings, n, self.todo)
            inputs = {p: self.input(p, n) for p in room.stage.needs}
            if room.run is not None:  # a subflow, in the flow body
                CLOCK.mark(n, 0)
                try:
                    with recorded(n):
                        call = Call(self.settings, self.request, inputs, SUBFLOWS)
                        self.results[n] = room.run(call)
                finally:
                    CLOCK.mark(n, 1)
                return True
            self.running[n] = room.task.submit(
                self.settings,
                *room.parameters(self.request),
                *inputs.values(),
                wait_for=[self.completed[w] for w in room.stage.waits if w in self.completed],
            )
            return None
        except MissingStage as exc:
            self.failed[n] = str(exc)
        except Exception as exc:
            self.failed[n] = f"{type(exc).__name__}: {exc}"
        return False

    def wait(self) -> tuple[int, bool]:
        by_run = {fut.task_run_id: n for n, fut in self.running.items()}
        fut = next(as_completed(list(self.running.values())))
        n = by_run[fut.task_run_id]
        del self.running[n]
        fut.wait()  # done already; this keeps its final state (else read from the API)
        if fut.state.is_completed():
            self.results[n] = fut.result()
            self.completed[n] = fut
            return n, True
        self.failed[n] = str(fut.state.message or fut.state.name)
        return n, False

    def ended(self, n: int, status: str) -> None:
        if status == UPSTREAM_FAILED:
            self.failed[n] = status
        self.progress.ended(n, "not run" if status == UPSTREAM_FAILED else status)

    def report_parts(self) -> list[ReportPart]:
        """What each stage's result adds to the report, this run's or found, by stage."""
        got = self.found | self.results
        return [
            room.report(got[n], self.settings)
            for n, room in sorted(self.rooms.items())
            if n in got and room.report is not None
        ]


# -- the flow ---------------------------------------------------------------------------
@flow(
    name="deploy",
    flow_run_name=deploy_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
    log_prints=False,
)
def deploy(
    instances: int = 4,
    stages: str = "1-11",
    instance_type: str | None = None,
    hosted_zone: str | None = None,
    domain: str | None = None,
    chunk_size: int | None = None,
    max_workers: int | None = None,
    desired_count: int | None = None,
    runner: Runner = "process",
    allow_failures: str = "0",
    settings_overrides: dict[str, Any] | None = None,
    plan: bool = False,
) -> DeployReport | Plan:
    """Stand up (or converge) the whole estate for one deployment.

    Stages (tasks/deploy/dag.py; each starts when the selected stages it needs have ended):
        1 launch-instances
        2 install-tomcat (needs 1; subflow install-tomcat)
        3 save-inventory (needs 1, 2)
        4 application-load-balancer (needs 3)
        5 tls-listener (needs 4)
        6 traffic-alb (needs 4, 5)
        7 elastic-beanstalk (after 5)
        8 rds (after 5)
        9 jumphost-mysql-check (needs 8)
        10 traffic-beanstalk-http (needs 7)
        11 traffic-beanstalk-https (needs 7, 5)

    Args:
        instances: Web instances to launch and install (1-5000).
        stages: Exactly the stages to run, e.g. 1-11, 1-5 or 1,2,3; what a stage needs from one
            not run is found (by tag, name, saved inventory) or that stage fails naming it.
        instance_type: EC2 instance type (default: the settings').
        hosted_zone: Route53 hosted zone for stages 5-11 (default: the settings').
        domain: Web domain inside the hosted zone (default: the settings').
        chunk_size: Install: hosts per chunk (default: hosts spread over one process per core).
        max_workers: Install: threads per chunk (default: the chunk size).
        desired_count: Install: process-pool size (default: cores, at most the chunk count).
        runner: Install: task runner of the chunks (process, thread or dask).
        allow_failures: Install: hosts allowed to fail, a count or a percent, e.g. 5 or 10%.
        settings_overrides: FleetSettings fields to override for this run.
        plan: Change nothing: read what exists (Describe/List/Get calls only) and report
            what each selected stage would create, update or leave alone (a plan artifact).
    """
    logger = get_run_logger()
    logger.info(prefect_adjustments.describe())
    t0 = time.time()
    overrides = dict(settings_overrides or {})
    for name, value in (
        ("instance_type", instance_type),
        ("hosted_zone", hosted_zone),
        ("domain", domain),
    ):
        if value is not None:
            overrides[name] = value
    install_knobs = {
        "chunk_size": chunk_size,
        "max_workers": max_workers,
        "desired_count": desired_count,
    }
    # every input is checked before anything is created: pure checks, then reads
    todo = check_deploy_request(instances, stages, install_knobs, allow_failures, runner)
    settings = FleetSettings(**overrides)
    try:
        validate_inputs(settings, instances, todo, install_knobs)
    except BlockNotFound as exc:  # the one line naming the register command, no traceback
        return failed_with_report(str(exc), exc, logger)  # type: ignore[return-value]
    except FleetError as exc:
        if plan:  # a plan's error: one line, no traceback (its caller exits 1)
            return failed_with_report(str(exc), exc, logger)  # type: ignore[return-value]
        raise
    if plan:  # reads only: nothing is created, no pool is started
        return plan_run(lambda: plan_deploy(Aws(settings), settings, instances, todo), logger)
    logger.info(
        "deployment %s: stages %s, %d instances of %s",
        settings.deployment_name,
        todo,
        instances,
        settings.instance_type,
    )
    request = DeployRequest(
        instances=instances,
        **install_knobs,
        runner=runner,
        allow_failures=allow_failures,
        settings_overrides=overrides,
    )

    # the install's process pool starts (and initialises Prefect in every worker) while the
    # stages before the install run; the install subflow adopts it
    installs = any(STAGES[n].subflow == install_tomcat.name for n in todo)
    pool = warm_install_pool(instances, runner, install_knobs) if installs else None
    progress = Progress(settings.deployment_name, todo)
    run = StageRun(settings, request, todo, progress)
    try:
        drive(Schedule(todo), run.start, run.wait, run.ended)
    finally:
        if pool is not None:
            pool.shutdown()  # no-op once the install adopted the pool

    report = build_report(
        settings.deployment_name,
        todo,
        set(run.results),
        run.failed,
        run.report_parts(),
        t0,
        CLOCK.of(str(flow_run.id)),
        CLOCK.summaries_of(str(flow_run.id)),
    )
    publish(report, read_local_view(settings.ca_bundle))  # the sandbox's curl lines
    logger.info(
        "deploy %s finished in %.1fs: %s",
        settings.deployment_name,
        report.seconds,
        {r.stage: r.status for r in report.stages},
    )
    if run.failed:
        first = min(n for n, why in run.failed.items() if why != UPSTREAM_FAILED)
        message = f"stage {first} ({NAMES[first]}) failed: {run.failed[first]}"
        return failed_with_report(message, report, logger)  # type: ignore[return-value]
    return report
