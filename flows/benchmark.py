"""Flow `benchmark`: the seed's scaling experiments, reproducible, plotted, scheduled.

A matrix of scenarios (the seed's "processes/pooled" notation or explicit knobs, see
`tasks.bench.matrix`) runs on one sandbox (or on AWS with ``target="aws"``): per scenario
and repeat, fresh instances are launched and the shape runs in its own child process, so
the peak RSS measured (the child's process tree) is its own; the sandbox and the Prefect
server are services outside every tree. Shapes: ``flow`` (`python -m flows install`
with the scenario's knobs), ``bare`` (the same knobs on a plain fork pool, no Prefect:
flow ÷ bare is Prefect's own cost), ``seed`` (the seed's multiprocessing pool, no Prefect)
and ``floor`` (one thread pool). Memory is the process tree's peak PSS (shared pages
counted once) with the peak RSS sum beside it. A host monitor (`tasks.hostmonitor`)
samples swap traffic, kswapd CPU, memory pressure and CPU per core across the run; its
samples are joined to the scenario timeline.

Outputs in `out_dir`: `benchmark.csv` (one row per scenario: medians over repeats with
min/max, ratios to the floor and flow ÷ bare), `runs.csv` (one row per repeat), `host-timeline.csv`,
`benchmark.png` (install seconds and peak RSS against processes, one line per shape), and
the Prefect artifacts `benchmark-scenarios` (table), `benchmark-summary` (markdown) and
`benchmark-plot` (markdown showing the PNG itself, as a data: URI image).
Invalid scenarios are rows with a reason, never a crash.

`tomcat-fleet benchmark --matrix nightly --out-dir DIR` runs it standalone (see
`tasks/cli/`); `nightly_deployment()` is the scheduled `benchmark/nightly`.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m flows.benchmark ...` is `tomcat-fleet benchmark ...`
    import runpy
    import sys

    sys.argv[1:1] = ["benchmark"]
    runpy.run_module("flows", run_name="__main__", alter_sys=True)

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.artifacts import png_markdown
from tasks.bench.matrix import load_matrix, plan_matrix
from tasks.bench.report import format_table, plot, report, summary_rows, write_csv
from tasks.bench.run import (
    NIGHTLY_CRON,
    RUN_COLUMNS,
    SUMMARY_COLUMNS,
    BenchHostKeys,
    run_scenario,
    sandbox_args,
)
from tasks.hostmonitor import TIMELINE_COLUMNS, HostMonitor, join_timeline, summarize_span
from tasks.inputs import check_benchmark_request
from tasks.runtime import prefect_adjustments
from tasks.runtime.run_names import benchmark_run_name

prefect_adjustments.install()  # every entry path: the flow engine imports this module first


@flow(name="benchmark", flow_run_name=benchmark_run_name, log_prints=False)
def benchmark(
    matrix: str | list[Any] = "nightly",
    repeat: int = 1,
    install_latency: float = 0.5,
    fault_profile: Literal["clean", "flaky", "hostile"] = "clean",
    throttle_rate: float = 0.0,
    out_dir: str = "out/benchmark",
    include_peers: bool = True,
    target: Literal["sandbox", "aws"] = "sandbox",
    seed: int = 0,
    public_ip_cidr: str = "127.140.0.0/16",
    service_ip_cidr: str = "127.141.0.0/16",
    host_key_policy: BenchHostKeys = "tofu",
) -> dict[str, Any]:
    """Run every scenario of `matrix` `repeat` times on fresh instances; write CSV, PNG and
    artifacts; return {csv, png, runs_csv, timeline_csv, rows}.

    Args:
        matrix: A named matrix (nightly, seed), a YAML/JSON file, or a list of scenarios
            ("250/50", "250/50@4", or mappings of hosts/chunk_size/max_workers/desired_count/
            shape/name/repeat).
        repeat: Runs per scenario (medians reported).
        install_latency: Sandbox seconds per install.
        fault_profile: Sandbox fault profile.
        throttle_rate: Sandbox API throttling probability.
        out_dir: Directory for the CSVs, the PNG and the host timeline.
        include_peers: Also run each flow scenario's bare twin and the floor.
        target: sandbox (a sandbox child for the run) or aws (the environment's settings;
            instances terminated after use).
        seed: Sandbox fault seed.
        public_ip_cidr: Sandbox: the instances' public addresses.
        service_ip_cidr: Sandbox: the load balancers' addresses.
        host_key_policy: SSH host keys of the fresh instances: tofu (recorded on first
            contact) or insecure (not checked), on either target.
    """
    logger = get_run_logger()
    logger.info(prefect_adjustments.describe())
    check_benchmark_request(
        repeat, target, install_latency, throttle_rate, public_ip_cidr, service_ip_cidr
    )
    if host_key_policy not in ("tofu", "insecure"):
        raise ValueError(f"host_key_policy={host_key_policy!r} is not one of tofu, insecure")
    entries, _ = load_matrix(matrix)
    planned = plan_matrix(entries, os.cpu_count() or 2, include_peers)
    valid = [p for p in planned if p.valid]
    for p in planned:
        if not p.valid:
            logger.warning("scenario %s is invalid: %s", p.scenario.label, p.reason)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    runs: list[dict[str, Any]] = []
    saved = dict(os.environ)
    monitor = HostMonitor(interval=0.5)
    with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:
        state_dir = None if target == "aws" else str(Path(workdir) / "state")
        sandbox: Any = None
        try:
            if target == "sandbox":
                from tasks.runtime.sandbox_process import SandboxProcess

                sandbox = SandboxProcess(
                    sandbox_args(
                        install_latency,
                        fault_profile,
                        throttle_rate,
                        seed,
                        public_ip_cidr,
                        service_ip_cidr,
                    )
                ).__enter__()
                os.environ.update(sandbox.env)
                logger.info("sandbox pid %d: %s", sandbox.pid, sandbox.env.get("AWS_ENDPOINT_URL"))
            monitor.start()
            for p in valid:
                for rep in range(1, (p.scenario.repeat or repeat) + 1):
                    name = f"scenario {p.scenario.notation} {p.scenario.shape} rep {rep}"
                    if p.scenario.name:
                        name += f" ({p.scenario.name})"
                    runs.append(
                        run_scenario.with_options(task_run_name=name)(
                            p, rep, workdir, state_dir, monitor.t0, host_key_policy
                        )
                    )
        finally:
            samples = monitor.stop() if monitor.t0 else []
            if sandbox is not None:
                sandbox.__exit__(None, None, None)
            os.environ.clear()
            os.environ.update(saved)
    for r in runs:
        r.update(summarize_span(samples, r["start_s"], r["end_s"]))
    timeline = join_timeline(
        samples,
        [
            (f"{r['scenario']} [{r['shape']}] rep {r['rep']}", r["start_s"], r["end_s"])
            for r in runs
        ],
    )
    rows = summary_rows(planned, runs, repeat)
    csv_path, runs_csv, timeline_csv, png = (
        out / "benchmark.csv",
        out / "runs.csv",
        out / "host-timeline.csv",
        out / "benchmark.png",
    )
    write_csv(csv_path, rows, SUMMARY_COLUMNS)
    write_csv(runs_csv, runs, RUN_COLUMNS)
    write_csv(timeline_csv, timeline, TIMELINE_COLUMNS)
    plot(rows, png, install_latency, fault_profile, repeat)
    meta: dict[str, Any] = {
        "matrix": matrix if isinstance(matrix, str) else f"{len(entries)} scenarios",
        "install_latency": install_latency,
        "fault_profile": fault_profile,
        "throttle_rate": throttle_rate,
        "repeat": repeat,
        "target": target,
        "host_key_policy": host_key_policy,
        "elapsed_s": time.monotonic() - t_start,
    }
    report(rows, png, csv_path, meta)
    if png.exists():  # the plot itself on the run's page, not only its path
        create_markdown_artifact(
            key="benchmark-plot",
            markdown=png_markdown(png, "benchmark plot", f"`{png}` · CSV `{csv_path}`"),
            description="benchmark: install seconds and peak RSS against processes",
        )
    for line in format_table(rows).splitlines():
        logger.info(line)
    return {
        "csv": str(csv_path),
        "png": str(png),
        "runs_csv": str(runs_csv),
        "timeline_csv": str(timeline_csv),
        "elapsed_s": round(meta["elapsed_s"], 1),
        "rows": rows,
    }


def nightly_deployment() -> Any:
    """`benchmark/nightly`: the small matrix every night (serve it with
    `tomcat-fleet benchmark --serve-nightly`)."""
    return benchmark.to_deployment(
        name="nightly",
        cron=NIGHTLY_CRON,
        parameters={"matrix": "nightly", "repeat": 1, "out_dir": "out/benchmark/nightly"},
        tags=["benchmark"],
        description="The nightly benchmark matrix (6 scenarios, peers, < 10 minutes).",
    )
