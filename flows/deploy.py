"""Flow `deploy`: the eleven stages, each started as soon as what it needs is done.

    1 launch → 2 install (subflow) → 3 inventory → 4 ALB → 5 TLS → {6 ALB traffic,
    7 Beanstalk, 8 RDS}; 8 → 9 jumphost MySQL check; 7 → 10 Beanstalk HTTP; 7+5 → 11
    Beanstalk HTTPS.

The seed ran these as barrier groups (1, 2, 3, 4, 5, {6,7,8}, {9,10,11}); the groups stay
visible as tags (`group-N`), but here 9 starts when 8 is done, whatever 7 is doing. Every
stage is idempotent (finds before it creates), so a repeated or resumed run converges on
the same estate. Inputs are validated before anything is created.

`tomcat-fleet deploy --help` runs it standalone (see `tasks/cli/`).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m flows.deploy ...` is `tomcat-fleet deploy ...`
    import runpy
    import sys

    sys.argv[1:1] = ["deploy"]
    runpy.run_module("flows", run_name="__main__", alter_sys=True)

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.settings import FleetSettings
from flows.install_tomcat import install_tomcat, load_key, make_runner
from tasks.aws import Aws
from tasks.aws.ec2 import StageError, preflight
from tasks.deploy import found
from tasks.deploy.dag import NAMES, SEED_GROUP
from tasks.deploy.inventory import refresh_inventory, save_inventory
from tasks.deploy.launch import launch_fleet
from tasks.deploy.models import (
    AlbResult,
    BeanstalkResult,
    InventoryResult,
    JumphostResult,
    LaunchResult,
    RdsResult,
    TlsResult,
    TrafficResult,
)
from tasks.deploy.report import DeployReport, Progress, StageRecord, build_report, publish
from tasks.inputs import Runner, check_deploy_request, check_shape, resolve_shape
from tasks.models import InstallSummary
from tasks.planning import PlanError
from tasks.pool_runner import PreloadedProcessPoolTaskRunner
from tasks.runtime.outcome import failed_with_report, outcome_of
from tasks.runtime.run_names import deploy_run_name

T = TypeVar("T")


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
    if any(n >= 5 for n in stages):
        if not settings.hosted_zone:
            raise PlanError(
                "hosted_zone",
                "stages 5-11 need a Route53 hosted zone; set "
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


# -- stage timing -----------------------------------------------------------------------
class _Clock:
    """Start/end of each stage, per flow run (stages run in threads of this process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, dict[int, list[float]]] = {}

    def mark(self, stage: int, which: int) -> None:
        with self.lock:
            times = self.runs.setdefault(str(flow_run.id), {}).setdefault(stage, [0.0, 0.0])
            times[which] = time.time()

    def of(self, run_id: str) -> dict[int, list[float]]:
        with self.lock:
            return dict(self.runs.get(run_id, {}))


CLOCK = _Clock()


def timed(stage: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T:
            CLOCK.mark(stage, 0)
            try:
                return fn(*args, **kwargs)
            finally:
                CLOCK.mark(stage, 1)

        return run

    return wrap


def stage_task(stage: int, retries: int = 0) -> Callable[[Callable[..., T]], Any]:
    def wrap(fn: Callable[..., T]) -> Any:
        return task(
            name=f"stage-{stage:02d}-{NAMES[stage]}",
            task_run_name=f"{stage:02d} {NAMES[stage]}",
            tags=["deploy", f"stage-{stage}", f"group-{SEED_GROUP[stage]}"],
            cache_policy=NO_CACHE,
            retries=retries,
            retry_delay_seconds=5,
        )(timed(stage)(fn))

    return wrap


# -- the stages -------------------------------------------------------------------------
@stage_task(1, retries=1)
def launch_stage(settings: FleetSettings, count: int) -> LaunchResult:
    result = launch_fleet(Aws(settings), settings, count)
    get_run_logger().info(
        "%d instances running (%d launched now), group %s",
        len(result.instances),
        result.created,
        result.security_group_id,
    )
    return result


@stage_task(3)
def inventory_stage(
    settings: FleetSettings, launch: LaunchResult, install: InstallSummary
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


@stage_task(4, retries=1)
def alb_stage(settings: FleetSettings, inventory: InventoryResult) -> AlbResult:
    from tasks.deploy.alb import create_alb

    return create_alb(Aws(settings), settings, inventory)


@stage_task(5, retries=1)
def tls_stage(settings: FleetSettings, alb: AlbResult) -> TlsResult:
    from tasks.deploy.tls import enable_https

    return enable_https(Aws(settings), settings, alb)


@stage_task(6, retries=1)
def alb_traffic_stage(settings: FleetSettings, alb: AlbResult, tls: TlsResult) -> TrafficResult:
    from tasks.deploy.traffic import alb_traffic

    result = alb_traffic(Aws(settings), settings, load_key(settings), alb.url, tls.url)
    get_run_logger().info(
        "ALB answered %d/%d requests from %d distinct instances: %s",
        result.ok,
        result.requests,
        result.distinct_backends,
        result.by_scheme,
    )
    return result


@stage_task(7)
def beanstalk_stage(settings: FleetSettings, tls: TlsResult | None) -> BeanstalkResult:
    from tasks.deploy.beanstalk import create_beanstalk

    return create_beanstalk(Aws(settings), settings)


@stage_task(8)
def rds_stage(settings: FleetSettings, tls: TlsResult | None) -> RdsResult:
    from tasks.deploy.rds import create_rds

    return create_rds(Aws(settings), settings)


@stage_task(9, retries=1)
def jumphost_stage(settings: FleetSettings, rds: RdsResult) -> JumphostResult:
    from tasks.deploy.jumphost import jumphost_check

    result = jumphost_check(Aws(settings), settings, rds, load_key(settings))
    get_run_logger().info(
        "SELECT 1 through jumphost %s returned %s", result.instance_id, result.select_1
    )
    return result


@stage_task(10, retries=1)
def eb_http_stage(settings: FleetSettings, eb: BeanstalkResult) -> TrafficResult:
    from tasks.deploy.traffic import beanstalk_http

    return beanstalk_http(Aws(settings), settings, load_key(settings), eb)


@stage_task(11, retries=1)
def eb_https_stage(settings: FleetSettings, eb: BeanstalkResult, tls: TlsResult) -> TrafficResult:
    from tasks.deploy.traffic import beanstalk_https

    return beanstalk_https(Aws(settings), settings, load_key(settings), eb, tls)


def warm_install_pool(
    instances: int, runner: str, knobs: dict[str, int | None]
) -> PreloadedProcessPoolTaskRunner | None:
    """Start the install's process pool now; the install subflow adopts it."""
    if runner != "process":
        return None
    _, _, count = resolve_shape(
        instances, knobs["chunk_size"], knobs["max_workers"], knobs["desired_count"]
    )
    pool = make_runner(runner, count, None)
    return pool.warm_up() if isinstance(pool, PreloadedProcessPoolTaskRunner) else None


# stages that SSH into hosts (the install, and the jumphost and traffic generators)
KEY_STAGES = (2, 6, 9, 10, 11)


def check_key(settings: FleetSettings, stage: int, launching: bool) -> None:
    """The deployment's SSH key is there (stage 1 makes sure it exists); the stages that
    SSH read it themselves, so it is never a task argument."""
    try:
        load_key(settings)
    except StageError as exc:
        if launching:
            raise
        raise found.MissingStage(stage, 1, "SSH key", str(exc).split(";")[0]) from None


def run_later_stages(
    s: FleetSettings,
    aws: Aws,
    todo: list[int],
    key_error: str,
    results: dict[int, Any],
    failed: dict[int, str],
    progress: Progress,
) -> None:
    """Stages 4-11, each started when what it needs is done. An input from a stage not
    selected is found first (by name, tag or the saved inventory); when it is missing,
    that stage fails at once naming the stage to run, and the stages after it are not run.
    `key_error` says why the SSH key is missing (then the stages that SSH fail with it)."""
    futures: dict[int, Any] = {}

    def need(stage: int, producer: int, find: Callable[[], Any]) -> Any:
        if producer in todo:
            return futures[producer] if producer in futures else results.get(producer)
        if producer not in results:
            results[producer] = find()  # cached: several stages may need it
        return results[producer]

    def start(stage: int, submit: Callable[[], Any]) -> None:
        if stage not in todo:
            return
        if stage in KEY_STAGES and key_error:
            failed[stage] = key_error
            futures[stage] = None
            return
        try:
            futures[stage] = submit()
        except found.MissingStage as exc:
            failed[stage] = str(exc)
            futures[stage] = None
        except StageError as exc:
            failed[stage] = f"{type(exc).__name__}: {exc}"
            futures[stage] = None

    def upstream_ok(*stages: int) -> bool:
        return all(n not in todo or n < 4 or futures.get(n) is not None for n in stages)

    def submit_if(stage: int, deps: tuple[int, ...], submit: Callable[[], Any]) -> None:
        if stage not in todo:
            return
        if not upstream_ok(*deps):
            failed[stage] = "upstream failed"
            futures[stage] = None
            return
        start(stage, submit)

    find_alb = lambda n: need(n, 4, lambda: found.alb(aws, s, n))  # noqa: E731
    find_tls = lambda n: need(  # noqa: E731
        n, 5, lambda: found.tls(aws, s, n, None if 4 in todo else find_alb(n))
    )
    find_eb = lambda n: need(n, 7, lambda: found.beanstalk(aws, s, n))  # noqa: E731
    submit_if(4, (3,), lambda: alb_stage.submit(s, need(4, 3, lambda: found.inventory(s, 4))))
    submit_if(5, (4,), lambda: tls_stage.submit(s, find_alb(5)))
    submit_if(6, (4, 5), lambda: alb_traffic_stage.submit(s, find_alb(6), find_tls(6)))
    # 7 and 8 only wait for 5 (nothing of its result is used)
    submit_if(7, (5,), lambda: beanstalk_stage.submit(s, futures.get(5)))
    submit_if(8, (5,), lambda: rds_stage.submit(s, futures.get(5)))
    submit_if(9, (8,), lambda: jumphost_stage.submit(s, need(9, 8, lambda: found.rds(aws, s, 9))))
    submit_if(10, (7,), lambda: eb_http_stage.submit(s, find_eb(10)))
    submit_if(11, (7, 5), lambda: eb_https_stage.submit(s, find_eb(11), find_tls(11)))
    for n in futures:  # refused before they started
        if futures[n] is None:
            progress.ended(n, "not run" if failed.get(n) == "upstream failed" else "failed")
    running = {fut.task_run_id: n for n, fut in futures.items() if fut is not None}
    for fut in as_completed([f for f in futures.values() if f is not None]):  # as they end
        n = running[fut.task_run_id]
        fut.wait()  # done already; this keeps its final state (else read from the API)
        state = fut.state
        if state.is_completed():
            results[n] = fut.result()
        else:
            err = str(state.message or state.name)
            failed[n] = err if "upstream" not in str(err).lower() else "upstream failed"
        ended = "completed" if n in results else "failed"
        progress.ended(n, "not run" if failed.get(n) == "upstream failed" else ended)


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
) -> DeployReport:
    """Stand up (or converge) the whole estate for one deployment.

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
    """
    logger = get_run_logger()
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
    validate_inputs(settings, instances, todo, install_knobs)
    logger.info(
        "deployment %s: stages %s, %d instances of %s",
        settings.deployment_name,
        todo,
        instances,
        settings.instance_type,
    )

    results: dict[int, Any] = {}
    records = {
        n: StageRecord(stage=n, name=NAMES[n], group=f"group-{SEED_GROUP[n]}") for n in NAMES
    }
    for n in NAMES:
        if n not in todo:
            records[n].detail = "not selected"
    failed: dict[int, str] = {}
    progress = Progress(settings.deployment_name, todo)
    aws = Aws(settings)  # reads only: finding what a stage not selected made

    # 1-3 are a chain and 2 is a subflow: run them in the flow body. The install's process
    # pool starts (and initialises Prefect in every worker) while stage 1 launches.
    pool = warm_install_pool(instances, runner, install_knobs) if 2 in todo else None
    current = min(todo)
    try:
        if 1 in todo:
            current = 1
            results[1] = launch_stage(settings, instances)
            progress.ended(1, "completed")
        key_error = ""
        if any(n in todo for n in KEY_STAGES):
            try:
                check_key(settings, min(n for n in todo if n in KEY_STAGES), 1 in todo)
            except found.MissingStage as exc:
                key_error = str(exc)  # only the stages that SSH fail with it
        if 2 in todo or 3 in todo:
            current = 2 if 2 in todo else 3
            launch = results[1] if 1 in todo else found.launched(aws, settings, current)
        if 2 in todo:
            if key_error:
                raise StageError(key_error)
            CLOCK.mark(2, 0)
            install_state = install_tomcat(
                launch.instances,
                chunk_size=chunk_size,
                max_workers=max_workers,
                desired_count=desired_count,
                runner=runner,
                allow_failures=allow_failures,
                settings_overrides=overrides,
                return_state=True,
            )
            CLOCK.mark(2, 1)
            summary = outcome_of(install_state)
            if not isinstance(summary, InstallSummary) or install_state.is_failed():
                raise StageError(str(install_state.message or "install-tomcat failed"))
            results[2] = summary
            progress.ended(2, "completed")
        if 3 in todo:
            current = 3
            if 2 in todo:
                results[3] = inventory_stage(settings, launch, results[2])
            else:
                inv = refresh_inventory(settings, launch.instances)
                if inv is None:
                    raise found.MissingStage(3, 2, "install results", "no saved inventory")
                results[3] = inv
            progress.ended(3, "completed")
    except Exception as exc:
        failed[current] = f"{type(exc).__name__}: {exc}"
        progress.ended(current, "failed")
    finally:
        if pool is not None:
            pool.shutdown()  # no-op once the install adopted the pool

    if not failed:
        run_later_stages(settings, aws, todo, key_error, results, failed, progress)

    report = build_report(settings, todo, records, results, failed, t0, CLOCK.of(str(flow_run.id)))
    for r in report.stages:  # what never ran (after a failure) ends here
        progress.ended(r.stage, r.status)
    publish(report)
    logger.info(
        "deploy %s finished in %.1fs: %s",
        settings.deployment_name,
        report.seconds,
        {r.stage: r.status for r in report.stages},
    )
    if failed:
        first = min(failed)
        message = f"stage {first} ({NAMES[first]}) failed: {failed[first]}"
        return failed_with_report(message, report, logger)  # type: ignore[return-value]
    return report
