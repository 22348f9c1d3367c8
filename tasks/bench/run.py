"""Running benchmark scenarios: the sandbox's arguments, fresh instances
per run, each shape in its own child process, measured from outside."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.bench.child import last_json, shape_command
from tasks.bench.matrix import Planned
from tasks.resources import PeakTreeRss

# the benchmark's host-key policy: `tofu` (default, both targets) records each fresh
# instance's key in the run's known_hosts; `insecure` only when asked for (a parameter, the
# same code on either target). `strict` needs console fingerprints the children do not fetch.
BenchHostKeys = Literal["tofu", "insecure"]
NIGHTLY_CRON = "30 2 * * *"
CHILD_TIMEOUT_S = 1800.0
DEPLOYMENT = "bench"
RUN_METRICS = (
    "wall_s",
    "install_s",
    "launch_s",
    "peak_rss_mb",
    "peak_pss_mb",
    "swap_used_mb",
    "swap_in_per_s",
    "swap_out_per_s",
    "kswapd_cpu_pct",
    "psi_some_avg10",
    "psi_full_avg10",
    "cpu_mean_pct",
    "throttle_retries",
    "hosts_failed",
    "installed",
    "api_calls",
)
SUMMARY_COLUMNS = [
    "scenario",
    "shape",
    "notation",
    "hosts",
    "chunk_size",
    "max_workers",
    "desired_count",
    "processes",
    "pooled",
    "default",
    "peer",
    "status",
    "reason",
    "runs",
    "errors",
    *[f"{m}{s}" for m in RUN_METRICS for s in ("", "_min", "_max")],
    "cpu_per_core",
    "install_x_floor",
    "wall_x_floor",
    "rss_x_floor",
    "install_x_bare",
    "pss_x_bare",
]
RUN_COLUMNS = [
    "scenario",
    "shape",
    "notation",
    "rep",
    "status",
    "error",
    "start_s",
    "end_s",
    *RUN_METRICS,
    "cpu_per_core",
]

# ---------------------------------------------------------------- fleet


def sandbox_args(
    install_latency: float,
    fault_profile: str,
    throttle_rate: float,
    seed: int,
    public_ip_cidr: str,
    service_ip_cidr: str,
) -> list[str]:
    return [
        "--install-latency",
        str(install_latency),
        "--fault-profile",
        fault_profile,
        "--throttle-rate",
        str(throttle_rate),
        "--seed",
        str(seed),
        "--boot-delay",
        "1",
        "--cloud-init-seconds",
        "1",
        "--public-ip-cidr",
        public_ip_cidr,
        "--service-ip-cidr",
        service_ip_cidr,
    ]


def sandbox_counters() -> tuple[int, int] | None:
    """(API calls, throttled calls) the sandbox has served, or None off the sandbox."""
    from blocks.settings import RuntimeSettings

    url = RuntimeSettings().sandbox_state_url
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            api = json.loads(resp.read())["api"]
        return int(api["total_calls"]), int(api["total_throttled"])
    except (OSError, ValueError, KeyError):
        return None


def launch_fleet(settings: Any, count: int) -> tuple[list[dict[str, Any]], int, int]:
    """Key pair, security group open to SSH/8080 from this controller's CIDR only
    (`controller_cidr`: TOMCAT_FLEET_INGRESS_CIDR, else the address the controller-IP URL
    reports; the sandbox answers that URL too), `count` fresh instances, waited until
    reachable. Returns (instances, API calls, throttling retries)."""
    from tasks.aws import Aws
    from tasks.aws.ec2 import (
        authorize_ingress,
        controller_cidr,
        ensure_key_pair,
        ensure_security_group,
        launch_instances,
        wait_running,
    )

    aws = Aws(settings)
    ensure_key_pair(aws, settings)
    sg = ensure_security_group(aws, settings)
    cidr = controller_cidr(settings)
    authorize_ingress(aws, [sg], [22, 8080], lambda _p: cidr)
    ids: list[str] = []
    while len(ids) < count:
        n = min(500, count - len(ids))
        ids += launch_instances(aws, settings, n, sg, client_token=uuid.uuid4().hex)
    rows = [i.model_dump() for i in wait_running(aws, ids, timeout_s=600)]
    return rows, aws.api_calls, aws.stats.retries


def terminate(settings: Any, ids: list[str]) -> None:
    """Best effort: a scenario's instances go once it is measured."""
    from tasks.aws import Aws

    ec2 = Aws(settings).client("ec2")
    for i in range(0, len(ids), 500):
        try:
            ec2.terminate_instances(InstanceIds=ids[i : i + 500])
        except Exception as exc:
            get_run_logger().warning("terminate %d instances: %s", len(ids[i : i + 500]), exc)


def child_command(
    p: Planned,
    inventory: Path,
    workdir: Path,
    state_dir: str,
    host_key_policy: BenchHostKeys = "tofu",
) -> list[str]:
    """The child's command line for the scenario's shape, with `host_key_policy`."""
    sc = p.scenario
    return shape_command(
        sc.shape,
        inventory,
        (sc.chunk_size, sc.max_workers, sc.desired_count),
        deployment=DEPLOYMENT,
        state_dir=state_dir,
        host_key_policy=host_key_policy,
        log_dir=workdir / "logs",
    )


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float, float, float]:
    """Run one shape; (its JSON line, wall seconds, peak RSS sum and peak PSS in MB of
    its process tree)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with PeakTreeRss(proc.pid, interval=0.2) as peak:
        try:
            out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"child timed out after {CHILD_TIMEOUT_S:.0f}s") from None
    wall = time.monotonic() - t0
    try:
        result = last_json(out)
    except RuntimeError:
        tail = (err or out).strip().splitlines()[-3:]
        raise RuntimeError(f"child exited {proc.returncode}: {' | '.join(tail)}") from None
    return result, wall, peak.peak_mb, peak.peak_pss_mb


# ---------------------------------------------------------------- one scenario


@task(name="benchmark-scenario", tags=["benchmark"], cache_policy=NO_CACHE)
def run_scenario(
    planned: Planned,
    rep: int,
    workdir: str,
    state_dir: str | None,
    t0: float,
    host_key_policy: BenchHostKeys = "tofu",
) -> dict[str, Any]:
    """Fresh instances, the shape in a child process, the counters around it. Never raises:
    a failed run is a row with `status=error`."""
    from blocks.settings import FleetSettings

    sc = planned.scenario
    logger = get_run_logger()
    row: dict[str, Any] = {
        "scenario": sc.label,
        "shape": sc.shape,
        "notation": sc.notation,
        "rep": rep,
        "status": "ok",
        "error": "",
        "start_s": round(time.monotonic() - t0, 3),
    }
    overrides: dict[str, Any] = {"deployment_name": DEPLOYMENT}
    if state_dir:
        overrides["state_dir"] = state_dir
    settings = FleetSettings(**overrides)
    before = sandbox_counters()
    ids: list[str] = []
    try:
        t_launch = time.monotonic()
        instances, launch_calls, launch_retries = launch_fleet(settings, sc.hosts)
        ids = [i["instance_id"] for i in instances]
        row["launch_s"] = round(time.monotonic() - t_launch, 2)
        inventory = Path(workdir) / f"inventory-{uuid.uuid4().hex[:8]}.json"
        inventory.write_text(json.dumps(instances))
        env = {**os.environ, "TOMCAT_FLEET_DEPLOYMENT_NAME": DEPLOYMENT}
        cmd = child_command(
            planned, inventory, Path(workdir), str(settings.state_dir), host_key_policy
        )
        result, wall, peak, pss = run_child(cmd, env)
        after = sandbox_counters()
        row.update(
            wall_s=round(wall, 2),
            install_s=result.get("install_s"),
            peak_rss_mb=round(peak, 1),
            peak_pss_mb=round(pss, 1),
            installed=result.get("installed"),
            hosts_failed=result.get("failed"),
        )
        if before is not None and after is not None:
            row["api_calls"] = after[0] - before[0]
            row["throttle_retries"] = after[1] - before[1]
        else:
            row["api_calls"] = launch_calls + int(result.get("api_calls", 0))
            row["throttle_retries"] = launch_retries + int(result.get("throttle_retries", 0))
        logger.info(
            "%s %s rep %d: install %.1fs, wall %.1fs, peak PSS %.0f MB (RSS sum %.0f MB), "
            "%s installed, %s failed",
            sc.notation,
            sc.shape,
            rep,
            row["install_s"] or 0.0,
            wall,
            pss,
            peak,
            row["installed"],
            row["hosts_failed"],
        )
    except Exception as exc:
        row.update(status="error", error=f"{type(exc).__name__}: {exc}"[:500])
        logger.error("%s %s rep %d failed: %s", sc.notation, sc.shape, rep, row["error"])
    finally:
        row["end_s"] = round(time.monotonic() - t0, 3)
        if ids:
            terminate(settings, ids)
    return row
