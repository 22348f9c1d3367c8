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

import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from blocks.settings import FleetSettings, RuntimeSettings
from tasks.deploy.inventory import inventory_instances, inventory_path, update_inventory
from tasks.forked_runner import ForkedWorkerTaskRunner
from tasks.forked_workers import start_server
from tasks.inputs import Runner, validate_install
from tasks.install_chunk import install_chunk
from tasks.install_start import Begun, begin, chunk_kwargs
from tasks.models import ChunkResult, HostResult, InstallSummary, Instance
from tasks.planning import (
    PlanError,
    failures_within,
    sample_points,
)
from tasks.resources import Sampler, format_sample
from tasks.runtime import prefect_adjustments
from tasks.runtime.outcome import failed_with_report
from tasks.runtime.run_names import install_run_name

prefect_adjustments.install()  # every entry path: the flow engine imports this module first
if RuntimeSettings().pool_start_method != "spawn":
    start_server()  # the workers' fork server boots while the flow run is being set up


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


def run_chunks(
    task_runner: TaskRunner[Any], begun: Begun, progress_key: str | None = None
) -> list[ChunkResult | str]:
    """Map the chunks onto `task_runner` as task runs of this flow run (each attaches to
    its chunk's work when `begin` already sent it to the workers); a chunk that fails
    yields its error text. The runner is entered here, not given to a subflow: a flow run
    costs API round trips and, at its end, waits for its heartbeat thread (up to 1 s)."""
    logger = get_run_logger()
    total = len(begun.chunks)
    out: list[ChunkResult | str] = ["pending"] * total
    with task_runner:
        futures = {}
        for index in range(total):
            params = {**chunk_kwargs(begun, index), "attach_key": begun.attach_key(index)}
            fut = task_runner.submit(install_chunk, params)
            futures[fut.task_run_id] = (index, fut)
        progress: UUID = create_progress_artifact(  # type: ignore[assignment]
            0.0, key=progress_key, description=f"chunks finished of {total}"
        )
        for done, fut in enumerate(as_completed([f for _, f in futures.values()]), start=1):
            index, _ = futures[fut.task_run_id]
            try:
                out[index] = fut.result()
            except Exception as exc:  # a crashed worker must not lose its hosts
                out[index] = f"chunk task failed: {type(exc).__name__}: {exc}"
                logger.error("chunk %d failed: %s", index, exc)
            update_progress_artifact(progress, 100.0 * done / total)
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
    # the workers are forked now, off the install's critical path (a pool the deploy flow
    # forked during launch, or that the CLI's early `begin` started, is adopted instead)
    task_runner = make_runner(runner, plan.desired_count, dask_address)
    if isinstance(task_runner, ForkedWorkerTaskRunner):
        task_runner.warm_up()
    if runner == "dask" and not settings.ssh_key_block:
        logger.warning(
            "runner=dask without ssh_key_block: the Dask workers read the key file %s, "
            "which must exist on them; set TOMCAT_FLEET_SSH_KEY_BLOCK to have them read "
            "the Prefect Secret block instead",
            settings.key_file_path(),
        )
    # key, identity, hosts running, ingress, host keys; with the process runner the chunks
    # go to the workers right away (or went already: the CLI begins before Prefect starts)
    begun = begin(
        settings, instances, plan, dispatch=isinstance(task_runner, ForkedWorkerTaskRunner)
    )
    for line in [*plan.log_lines(), *begun.lines]:
        logger.info(line)
    import random

    sampler = Sampler(
        sample_points(expected_runtime_s, random.Random()),
        t0,
        on_sample=lambda s: logger.info("resources %s", format_sample(s)),
    )
    sampler.start()
    outcome = run_chunks(
        task_runner, begun, progress_key=f"{settings.deployment_name}-install-progress"
    )
    # the install phase: from the checks (maybe begun in the CLI) to the last chunk's end
    ends = [r.ended_at for r in outcome if isinstance(r, ChunkResult) and r.ended_at]
    install_s = (max(ends) if ends else time.time()) - begun.began_at
    if isinstance(task_runner, ForkedWorkerTaskRunner):
        task_runner.shutdown()  # a no-op once run_chunks adopted the workers

    results = account_for_every_host(instances, begun.chunks, outcome)
    sampler.stop()
    aggregate = aggregate_logs(begun.log_dir, outcome)
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
        api_calls=begun.api_calls,
        throttle_retries=begun.throttle_retries,
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
