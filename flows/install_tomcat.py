"""Flow `install-tomcat`: chunks of hosts on a process pool, threads inside, every host
accounted for.

Order of work: validate the shape and the inputs (nothing touched yet), check the SSH key
(the chunk tasks read it themselves, from the Secret block or key file, in their workers:
it is never a task argument), open security-group ingress once per group, then map the
chunks onto the chosen task runner (`process`, `thread` or `dask`) as task runs of this
flow run, and finally report: one row per host in a table artifact, a progress
artifact updated as chunks finish, the seed's orchestration lines and resource samples in
the run log, one aggregated log file.

`tomcat-fleet install --help` runs it standalone (see `tasks/cli/`).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m flows.install_tomcat ...` is `tomcat-fleet install ...`
    import runpy
    import sys

    sys.argv[1:1] = ["install"]
    runpy.run_module("flows", run_name="__main__", alter_sys=True)

import contextlib
import os
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.callables import get_call_parameters

from blocks.settings import FleetSettings, RuntimeSettings
from tasks.aws import Aws
from tasks.aws.ec2 import (
    StageError,
    authorize_ingress,
    console_fingerprints,
    controller_cidr,
    preflight,
)
from tasks.deploy.found import not_running
from tasks.deploy.inventory import inventory_instances, inventory_path, update_inventory
from tasks.forked_runner import ForkedWorkerTaskRunner
from tasks.inputs import Runner, validate_install
from tasks.install_chunk import chunk_label, install_chunk
from tasks.models import ChunkResult, HostResult, InstallSummary, Instance
from tasks.planning import (
    PlanError,
    chunked,
    failures_within,
    sample_points,
)
from tasks.remote.config import HostInstallConfig, remote_config
from tasks.remote.key_source import KeyUnavailable, read_key
from tasks.resources import Sampler, format_sample
from tasks.runtime import prefect_adjustments
from tasks.runtime.outcome import failed_with_report
from tasks.runtime.run_names import install_run_name
from tasks.waiting import WaitTimeout, wait_until

prefect_adjustments.install()  # every entry path: the flow engine imports this module first


def saved_inventory(settings: FleetSettings) -> list[Instance]:
    """Every host deploy's stage 3 saved for this deployment, failed ones included."""
    instances = inventory_instances(settings)
    if not instances:
        raise PlanError(
            "instances",
            f"no instances given and no saved inventory at {inventory_path(settings)}; "
            "pass instances or run deploy (stages 1-3, or 2,3 after 1) first",
        )
    return instances


def load_key(settings: FleetSettings) -> str:
    """The private key PEM, from a Prefect Secret block or a file. Never logged. The flow
    only checks it here: the chunk tasks read it again in their workers."""
    try:
        return read_key(settings.ssh_key_block, str(settings.key_file_path()))
    except KeyUnavailable as exc:
        raise StageError(str(exc)) from None


def make_runner(runner: str, desired_count: int, dask_address: str | None) -> TaskRunner[Any]:
    if runner == "process":
        if RuntimeSettings().pool_start_method == "spawn":
            # Prefect's stock process pool: each worker a new interpreter running Prefect's
            # engine (what the benchmark compares against)
            from prefect.task_runners import ProcessPoolTaskRunner

            return ProcessPoolTaskRunner(max_workers=desired_count)
        # task runs in threads here, each chunk's work in a forked worker (no Prefect there)
        return ForkedWorkerTaskRunner(desired_count)
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=desired_count)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=dask_address)


# The install's own tasks carry no tags: before a tagged task run starts, Prefect asks the
# API for that tag's concurrency slots. Against the CLI's local SQLite server, open-ingress
# took 2.2-2.6 s instead of 0.12-0.16 s in 4 of about 30 runs, the flow thread waiting in
# `acquire_concurrency_slots_with_lease` (py-spy), on the install's critical path. The flow run
# keeps its deployment's tags (prefect.yaml) for filtering.
@task(
    name="open-ingress",
    retries=2,
    retry_delay_seconds=5,
    cache_policy=NO_CACHE,
)
def open_ingress(settings: FleetSettings, group_ids: list[str]) -> dict[str, int]:
    """The install ports (22, 80, 8080 by default) from the controller's CIDR only, once
    per group; the load balancer reaches 8080 through its own group rule.
    Returns the AWS calls made and throttling retries taken."""
    aws = Aws(settings)
    cidr = controller_cidr(settings)
    added = authorize_ingress(aws, group_ids, settings.ingress_ports, lambda port: cidr)
    get_run_logger().info(
        "ingress %s from %s: rules added per group %s", settings.ingress_ports, cidr, added
    )
    return {"api_calls": aws.api_calls, "throttle_retries": aws.stats.retries}


@task(name="host-key-fingerprints", cache_policy=NO_CACHE)
def wait_fingerprints(
    settings: FleetSettings, ids: list[str], timeout_s: float
) -> dict[str, list[str]]:
    """strict policy: wait until every instance's console shows its host keys."""
    aws = Aws(settings)
    found: dict[str, list[str]] = {}

    def all_found() -> bool:
        found.update(console_fingerprints(aws, [i for i in ids if not found.get(i)]))
        return all(found.get(i) for i in ids)

    with contextlib.suppress(WaitTimeout):  # the caller judges the hosts still missing
        wait_until("host keys in the console output", all_found, timeout_s=timeout_s, poll_s=2.0)
    return found


def run_chunks(
    task_runner: TaskRunner[Any],
    chunks: list[list[Instance]],
    cfg: HostInstallConfig,
    max_workers: int,
    log_dir: str,
    progress_key: str | None = None,
) -> list[ChunkResult | str]:
    """Map the chunks onto `task_runner` as task runs of this flow run; a chunk that fails
    yields its error text. The runner is entered here, not given to a subflow: a flow run
    costs API round trips and, at its end, waits for its heartbeat thread (up to 1 s)."""
    logger = get_run_logger()
    progress: UUID = create_progress_artifact(  # type: ignore[assignment]
        0.0, key=progress_key, description=f"chunks finished of {len(chunks)}"
    )
    out: list[ChunkResult | str] = ["pending"] * len(chunks)
    with task_runner:
        futures = {}
        for index, chunk in enumerate(chunks):
            label = chunk_label(index, len(chunks), chunk)
            params = get_call_parameters(
                install_chunk.fn, (label, index, chunk, cfg, max_workers, log_dir), {}
            )
            fut = task_runner.submit(install_chunk, params)
            futures[fut.task_run_id] = (index, fut)
        for done, fut in enumerate(as_completed([f for _, f in futures.values()]), start=1):
            index, _ = futures[fut.task_run_id]
            try:
                out[index] = fut.result()
            except Exception as exc:  # a crashed worker must not lose its hosts
                out[index] = f"chunk task failed: {type(exc).__name__}: {exc}"
                logger.error("chunk %d failed: %s", index, exc)
            update_progress_artifact(progress, 100.0 * done / len(chunks))
    return out


@flow(name="install-tomcat", flow_run_name=install_run_name, log_prints=False)
def install_tomcat(
    instances: list[Instance] | None = None,
    chunk_size: int | None = None,
    max_workers: int | None = None,
    desired_count: int | None = None,
    runner: Runner = "process",
    allow_failures: str = "0",
    dask_address: str | None = None,
    expected_runtime_s: float = 120.0,
    settings_overrides: dict[str, Any] | None = None,
) -> InstallSummary:
    """Install, enable and verify Tomcat on every instance; fail past `allow_failures`.

    Without `instances`, every host of the deployment's saved inventory (deploy stage 3),
    failed ones included, is installed (hosts already serving are skipped by the probe), and
    the inventory takes their new statuses.

    Args:
        instances: The hosts to install (default: every host of the deployment's saved
            inventory, failed ones included).
        chunk_size: Hosts per chunk (default: hosts spread over one process per core).
        max_workers: Threads per chunk (default: the chunk size).
        desired_count: Process-pool size (default: cores, at most the chunk count).
        runner: Task runner of the chunks (process, thread or dask).
        allow_failures: Hosts allowed to fail, a count or a percent, e.g. 5 or 10%.
        dask_address: Scheduler address for runner=dask, e.g. tcp://host:8786.
        expected_runtime_s: Expected install seconds, for placing the resource samples.
        settings_overrides: FleetSettings fields to override for this run.
    """
    logger = get_run_logger()
    logger.info(prefect_adjustments.describe())
    t0 = time.monotonic()
    settings = FleetSettings(**(settings_overrides or {}))
    from_inventory = instances is None
    if instances is None:
        instances = saved_inventory(settings)
    plan = validate_install(
        instances, chunk_size, max_workers, desired_count, runner, str(allow_failures), dask_address
    )
    for warning in plan.warnings:
        logger.warning(warning)
    if settings.host_key_policy == "insecure":
        logger.warning(
            "HOST KEY CHECKING IS OFF (host_key_policy=insecure): any machine "
            "answering on these addresses will receive commands"
        )
    # start the process pool (and Prefect in each worker) now, off the install's critical
    # path; a pool the deploy flow started during launch is adopted instead
    task_runner = make_runner(runner, plan.desired_count, dask_address)
    if isinstance(task_runner, ForkedWorkerTaskRunner):
        task_runner.warm_up()
    load_key(settings)  # fail before any host when the key cannot be read
    if runner == "dask" and not settings.ssh_key_block:
        logger.warning(
            "runner=dask without ssh_key_block: the Dask workers read the key file %s, "
            "which must exist on them; set TOMCAT_FLEET_SSH_KEY_BLOCK to have them read "
            "the Prefect Secret block instead",
            settings.key_file_path(),
        )
    aws = Aws(settings)
    preflight(aws)
    bad = not_running(aws, instances)  # before any ingress rule or SSH session
    if bad:
        raise PlanError(
            "instances",
            f"{len(bad)} of {len(instances)} instances are not running at the address given: "
            f"{', '.join(bad[:3])}",
        )
    for line in plan.log_lines():
        logger.info(line)
    import random

    sampler = Sampler(
        sample_points(expected_runtime_s, random.Random()),
        t0,
        on_sample=lambda s: logger.info("resources %s", format_sample(s)),
    )
    sampler.start()

    groups = sorted({g for i in instances for g in i.security_groups})
    api = open_ingress(settings, groups) if groups else {}
    expected: dict[str, list[str]] = {}
    if settings.host_key_policy == "strict":
        expected = wait_fingerprints(
            settings, [i.instance_id for i in instances], settings.ssh_wait_s
        )
    # where the key is, not the key: each chunk task reads it in its worker
    cfg = remote_config(settings, None, expected_fingerprints=expected)
    log_dir = str(Path(settings.log_dir) / f"install-{int(time.time())}-{os.getpid()}")
    chunks = chunked(instances, plan.chunk_size)
    t_install = time.monotonic()
    outcome = run_chunks(
        task_runner,
        chunks,
        cfg,
        plan.max_workers,
        log_dir,
        progress_key=f"{settings.deployment_name}-install-progress",
    )
    install_s = time.monotonic() - t_install
    if isinstance(task_runner, ForkedWorkerTaskRunner):
        task_runner.shutdown()  # a no-op once run_chunks adopted the workers

    results = account_for_every_host(instances, chunks, outcome)
    sampler.stop()
    aggregate = aggregate_logs(log_dir, outcome)
    summary = InstallSummary(
        hosts=len(instances),
        installed=sum(r.status == "installed" for r in results),
        failed=sum(r.status == "failed" for r in results),
        already_installed=sum(r.already_installed for r in results),
        install_s=install_s,
        chunk_size=plan.chunk_size,
        max_workers=plan.max_workers,
        desired_count=plan.desired_count,
        total_chunks=plan.total_chunks,
        runner=runner,
        aggregate_log=aggregate,
        results=results,
        api_calls=api.get("api_calls", 0),
        throttle_retries=api.get("throttle_retries", 0),
    )
    report(summary, settings.deployment_name)
    if from_inventory:  # the saved inventory takes the hosts' new statuses
        update_inventory(settings, results)
    logger.info(
        "install-tomcat: %d hosts, %d installed (%d already serving), %d failed; "
        "install phase %.1fs, execution time %.1fs",
        summary.hosts,
        summary.installed,
        summary.already_installed,
        summary.failed,
        install_s,
        time.monotonic() - t0,
    )
    if not failures_within(str(allow_failures), summary.failed, summary.hosts):
        first = summary.failed_hosts[0]
        message = (
            f"{summary.failed} of {summary.hosts} hosts failed, more than "
            f"allow_failures={allow_failures}; first: {first.instance_id}: {first.reason}"
        )
        return failed_with_report(message, summary, logger)  # type: ignore[return-value]
    return summary


def account_for_every_host(
    instances: list[Instance], chunks: list[list[Instance]], outcome: list[ChunkResult | str]
) -> list[HostResult]:
    """One result per instance, in input order, whatever happened to its chunk."""
    by_id: dict[str, HostResult] = {}
    for chunk, res in zip(chunks, outcome, strict=True):
        if isinstance(res, ChunkResult):
            by_id.update({h.instance_id: h for h in res.hosts})
        for inst in chunk:
            if inst.instance_id not in by_id:
                reason = res if isinstance(res, str) else "no result from its chunk"
                by_id[inst.instance_id] = HostResult(
                    instance_id=inst.instance_id,
                    public_ip=inst.public_ip,
                    status="failed",
                    reason=reason,
                )
    return [by_id[i.instance_id] for i in instances]


def aggregate_logs(log_dir: str, outcome: list[ChunkResult | str]) -> str:
    path = Path(log_dir) / "aggregate.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for res in outcome:
            if isinstance(res, ChunkResult) and Path(res.log_file).exists():
                out.write(f"===== {Path(res.log_file).name} (pid {res.pid}) =====\n")
                out.write(Path(res.log_file).read_text())
    return str(path)


def report(summary: InstallSummary, deployment: str) -> None:
    rows = [
        {
            "instance_id": r.instance_id,
            "public_ip": r.public_ip,
            "status": r.status,
            "reason": r.reason or "",
            "attempts": r.attempts,
            "seconds": round(r.seconds, 2),
            "already_installed": r.already_installed,
            "steps": " ".join(f"{s.name}={s.seconds:.1f}s" for s in r.steps),
        }
        for r in summary.results
    ]
    create_table_artifact(
        table=rows,
        key=f"{deployment}-install-hosts",
        description=f"install-tomcat: one row per host ({summary.hosts})",
    )
    failed = (
        "\n".join(
            f"- `{r.instance_id}` {r.public_ip}: {r.reason}" for r in summary.failed_hosts[:50]
        )
        or "none"
    )
    create_markdown_artifact(
        key=f"{deployment}-install-summary",
        markdown=(
            f"# install-tomcat\n\n| hosts | installed | already serving | failed | "
            f"install s | shape |\n|---|---|---|---|---|---|\n| {summary.hosts} | "
            f"{summary.installed} | {summary.already_installed} | {summary.failed} | "
            f"{summary.install_s:.1f} | chunk {summary.chunk_size} × {summary.max_workers} "
            f"threads, {summary.desired_count} {summary.runner} workers |\n\n"
            f"## Failed hosts\n{failed}\n\nAggregated log: `{summary.aggregate_log}`\n"
        ),
    )
