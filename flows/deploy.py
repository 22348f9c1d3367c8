"""Flow `deploy`: the eleven stages, each started as soon as what it needs is done.

    1 launch → 2 install (subflow) → 3 inventory → 4 ALB → 5 TLS → {6 ALB traffic,
    7 Beanstalk, 8 RDS}; 8 → 9 jumphost MySQL check; 7 → 10 Beanstalk HTTP; 7+5 → 11
    Beanstalk HTTPS.

The seed ran these as barrier groups (1, 2, 3, 4, 5, {6,7,8}, {9,10,11}); the groups stay
visible as tags (`group-N`), but here 9 starts when 8 is done, whatever 7 is doing. Every
stage is idempotent (finds before it creates), so a repeated or resumed run converges on
the same estate. Inputs are validated before anything is created.

`tomcat-fleet deploy --help` runs it standalone (see `flows/cli.py`).
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
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from blocks.settings import FleetSettings
from flows.install_tomcat import install_tomcat, load_key, make_runner
from tasks.artifacts import progress_key, stage_progress, url_links
from tasks.aws import Aws
from tasks.aws.ec2 import StageError, preflight
from tasks.deploy.dag import NAMES, SEED_GROUP
from tasks.deploy.inventory import save_inventory
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
from tasks.inputs import Runner, check_shape, parse_stages, resolve_shape
from tasks.models import InstallSummary
from tasks.planning import PlanError
from tasks.pool_runner import PreloadedProcessPoolTaskRunner
from tasks.runtime.outcome import failed_with_report, outcome_of
from tasks.runtime.run_names import deploy_run_name

T = TypeVar("T")


class StageRecord(BaseModel):
    stage: int
    name: str
    group: str
    status: str = "not run"  # completed, failed, skipped, not run
    started_s: float | None = None  # seconds since the deploy started
    ended_s: float | None = None
    seconds: float | None = None
    detail: str = ""


class DeployReport(BaseModel):
    deployment: str
    stages: list[StageRecord]
    urls: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    install: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


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
def beanstalk_stage(settings: FleetSettings, tls: TlsResult) -> BeanstalkResult:
    from tasks.deploy.beanstalk import create_beanstalk

    return create_beanstalk(Aws(settings), settings)


@stage_task(8)
def rds_stage(settings: FleetSettings, tls: TlsResult) -> RdsResult:
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


class Progress:
    """The run's progress artifact: created once, updated as each stage ends, whatever its
    outcome (completed, failed, or not run because what it needs failed)."""

    def __init__(self, deployment: str, todo: list[int]) -> None:
        self.todo, self.statuses = todo, dict[int, str]()
        percent, text = stage_progress({}, todo)
        made = create_progress_artifact(percent, key=progress_key(deployment), description=text)
        self.id = cast(UUID, made)  # a sync flow gets the id (async_dispatch's union type)

    def ended(self, stage: int, status: str) -> None:
        if stage in self.todo and stage not in self.statuses:
            self.statuses[stage] = status
            percent, text = stage_progress(self.statuses, self.todo, stage)
            update_progress_artifact(self.id, percent, description=text)


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
        stages: Stages to run, e.g. 1-11, 1-5 or 1,2,3 (their prerequisites are added).
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
    settings = FleetSettings(**overrides)
    todo = parse_stages(stages)
    install_knobs = {
        "chunk_size": chunk_size,
        "max_workers": max_workers,
        "desired_count": desired_count,
    }
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
            records[n].status = "skipped"
    failed: dict[int, str] = {}
    progress = Progress(settings.deployment_name, todo)

    # 1-3 are a chain and 2 is a subflow: run them in the flow body. The install's process
    # pool starts (and initialises Prefect in every worker) while stage 1 launches.
    pool = warm_install_pool(instances, runner, install_knobs) if 2 in todo else None
    try:
        results[1] = launch_stage(settings, instances)
        progress.ended(1, "completed")
        load_key(settings)  # stage 1 made sure the key exists; SSH stages read it themselves
        CLOCK.mark(2, 0)
        install_state = install_tomcat(
            results[1].instances,
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
            failed[2] = str(install_state.message or "install-tomcat failed")
            raise StageError(failed[2])
        results[2] = summary
        progress.ended(2, "completed")
        if 3 in todo:
            results[3] = inventory_stage(settings, results[1], summary)
            progress.ended(3, "completed")
    except Exception as exc:
        first = min(n for n in (1, 2, 3) if n not in results)
        failed.setdefault(first, f"{type(exc).__name__}: {exc}")
        progress.ended(first, "failed")
    finally:
        if pool is not None:
            pool.shutdown()  # no-op once the install adopted the pool

    futures: dict[int, PrefectFuture[Any]] = {}
    if not failed:
        s = settings
        if 4 in todo:
            futures[4] = alb_stage.submit(s, results[3])
        if 5 in todo:
            futures[5] = tls_stage.submit(s, futures[4])
        if 6 in todo:
            futures[6] = alb_traffic_stage.submit(s, futures[4], futures[5])
        if 7 in todo:
            futures[7] = beanstalk_stage.submit(s, futures[5])
        if 8 in todo:
            futures[8] = rds_stage.submit(s, futures[5])
        if 9 in todo:
            futures[9] = jumphost_stage.submit(s, futures[8])
        if 10 in todo:
            futures[10] = eb_http_stage.submit(s, futures[7])
        if 11 in todo:
            futures[11] = eb_https_stage.submit(s, futures[7], futures[5])
        stage_of = {fut.task_run_id: n for n, fut in futures.items()}
        for fut in as_completed(list(futures.values())):  # in the order they end
            n = stage_of[fut.task_run_id]
            fut.wait()  # done already; this keeps its final state (else read from the API)
            state = fut.state
            if state.is_completed():
                results[n] = fut.result()
            else:
                err = str(state.message or state.name)
                failed[n] = err if "upstream" not in str(err).lower() else "upstream failed"
            ended = "completed" if n in results else "failed"
            progress.ended(n, "not run" if failed.get(n) == "upstream failed" else ended)

    report = build_report(settings, todo, records, results, failed, t0)
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
        logger.error(message)
        return failed_with_report(message, report)  # type: ignore[return-value]
    return report


def build_report(
    settings: FleetSettings,
    todo: list[int],
    records: dict[int, StageRecord],
    results: dict[int, Any],
    failed: dict[int, str],
    t0: float,
) -> DeployReport:
    times = CLOCK.of(str(flow_run.id))
    for n in todo:
        rec = records[n]
        start, end = times.get(n, [0.0, 0.0])
        if start:
            rec.started_s = round(start - t0, 2)
        if end:
            rec.ended_s = round(end - t0, 2)
        if start and end:
            rec.seconds = round(end - start, 2)
        if n in results:
            rec.status = "completed"
        elif n in failed:
            rec.status = "failed" if failed[n] != "upstream failed" else "not run"
            rec.detail = failed[n][:300]
        else:
            rec.status = "not run"
    urls: dict[str, str] = {}
    resources: dict[str, Any] = {}
    if 1 in results:
        resources["instances"] = [i.instance_id for i in results[1].instances]
        resources["web_security_group"] = results[1].security_group_id
    if 4 in results:
        urls["alb_http"] = results[4].url
        resources["load_balancer"] = results[4].load_balancer_arn
        resources["target_group"] = results[4].target_group_arn
        resources["access_log_bucket"] = results[4].access_log_bucket
    if 5 in results:
        urls["alb_https"] = results[5].url
        resources["certificate"] = results[5].certificate_arn
    if 6 in results:
        resources["alb_traffic"] = results[6].model_dump(exclude={"target"})
    if 7 in results:
        urls["beanstalk_http"] = f"http://{results[7].cname}/"
        resources["beanstalk_environment"] = results[7].environment
    if 8 in results:
        resources["rds_endpoint"] = f"{results[8].endpoint}:{results[8].port}"
    if 9 in results:
        resources["jumphost"] = results[9].instance_id
        resources["select_1"] = results[9].select_1
    if 11 in results:
        urls["beanstalk_https"] = f"https://{settings.beanstalk_domain}/"
    install = {}
    if 2 in results:
        s = results[2]
        install = {
            "hosts": s.hosts,
            "installed": s.installed,
            "failed": s.failed,
            "already_installed": s.already_installed,
            "install_s": round(s.install_s, 2),
        }
    return DeployReport(
        deployment=settings.deployment_name,
        stages=[records[n] for n in sorted(records)],
        urls=urls,
        resources=resources,
        install=install,
        seconds=round(time.time() - t0, 2),
    )


def publish(report: DeployReport) -> None:
    lines = [
        f"# deploy `{report.deployment}`",
        "",
        "| stage | group | status | start s | end s | seconds | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.stages:
        lines.append(
            f"| {r.stage} {r.name} | {r.group} | {r.status} | "
            f"{'' if r.started_s is None else r.started_s} | "
            f"{'' if r.ended_s is None else r.ended_s} | "
            f"{'' if r.seconds is None else r.seconds} | {r.detail} |"
        )
    lines += [
        "",
        "## URLs",
        *[f"- {k}: {v}" for k, v in report.urls.items()],
        "",
        "## Resources",
        *[f"- {k}: `{v}`" for k, v in report.resources.items()],
        "",
        "## Install",
        *[f"- {k}: {v}" for k, v in report.install.items()],
    ]
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=f"{report.deployment}-deploy-report",
        description=f"deploy {report.deployment}: stage timeline",
    )
    for link in url_links(report.deployment, report.urls):
        create_link_artifact(
            link.url, link_text=link.text, key=link.key, description=link.description
        )
