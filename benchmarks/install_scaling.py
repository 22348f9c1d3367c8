"""Install shapes side by side on one sandbox, in one run: this flow, the seed's shape and a
bare thread pool (the floor).

- flow:  `install-tomcat` as users run it: processes ≈ cores (ProcessPoolTaskRunner),
         one chunk per process, as many threads as hosts in a chunk.
- seed:  the replaced system's shape: chunk_size 2, one process per chunk with 2 threads,
         up to `--seed-processes` at once (multiprocessing.Pool, no Prefect), as its
         notes describe.
- floor: one process, one ThreadPoolExecutor, paramiko, nothing else.
- bare:  the flow's exact default shape (processes, chunk size, threads from
         `tasks.planning.default_shape`) on a plain fork pool, no Prefect: flow / bare is
         Prefect's own cost.
- flow-spawn: the flow with Prefect's stock process pool (TOMCAT_FLEET_POOL_START_METHOD=
         spawn: each worker a new interpreter running Prefect's engine) instead of the
         forked workers: Prefect's runner vs ours.

Two times per shape: the install phase (as the shape reports it) and the whole command
(the child's process start to its exit, measured here; the Prefect server and the
sandbox are already up). Memory is the peak of the shape's process tree as PSS (shared
pages counted once) with the summed RSS beside it.

Every shape installs on fresh instances (same sandbox, same latency) with the same
per-host code (`tasks.remote.recipe.install_host`). Each shape runs in its own child process
so its peak RSS (process tree) is its own; the sandbox and Prefect server are shared
services outside every tree. Prints a table and, last, one JSON line.

    python -m benchmarks.install_scaling --hosts 250 500 --install-latency 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.bench.child import last_json, shape_command
from tasks.resources import PeakTreeRss


def run_shape(
    shape: str,
    rows: list[dict[str, Any]],
    settings_json: dict[str, Any],
    seed_processes: int,
    workdir: Path,
    flow_shape: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    inventory = workdir / f"{shape}-{len(rows)}.json"
    inventory.write_text(json.dumps(rows))
    env = {**os.environ, **{f"TOMCAT_FLEET_{k.upper()}": str(v) for k, v in settings_json.items()}}
    if shape == "flow-spawn":
        env["TOMCAT_FLEET_POOL_START_METHOD"] = "spawn"
    if shape.startswith("flow"):
        knobs = flow_shape  # None: the flow chooses its default shape
    elif shape == "bare":  # the flow's default shape on the seed child's fork pool
        from tasks.planning import default_shape

        knobs = flow_shape or default_shape(len(rows), os.cpu_count() or 2)
    else:  # the same seed/floor child the benchmark flow uses (no Prefect in it)
        knobs = (2, 2 if shape == "seed" else min(len(rows), 500), seed_processes)
    cmd = shape_command(
        "flow" if shape.startswith("flow") else shape,
        inventory,
        knobs,
        deployment=settings_json["deployment_name"],
        state_dir=settings_json["state_dir"],
        host_key_policy="insecure",
        log_dir=workdir / "logs",
    )
    started = time.monotonic()
    with (
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as child,
        PeakTreeRss(child.pid) as peak,
    ):
        stdout, stderr = child.communicate(timeout=1800)
    (workdir / f"{shape}-{len(rows)}.log").write_text(stderr)  # the child's log, kept
    result = last_json(stdout)
    result.setdefault("peak_rss_mb", round(peak.peak_mb, 1))
    result.setdefault("peak_pss_mb", round(peak.peak_pss_mb, 1))
    result["wall_s"] = round(time.monotonic() - started, 2)
    if shape.startswith("flow"):
        result["shape"] = (
            f"{result['desired_count']} procs x chunk {result['chunk_size']} "
            f"x {result['max_workers']} threads"
        )
    elif shape == "bare":
        chunk, threads, procs = knobs or (None, None, None)
        result["shape"] = f"{procs} procs x chunk {chunk} x {threads} threads (fork)"
    elif shape == "seed":
        result["shape"] = f"{min(seed_processes, len(rows) // 2)} procs x chunk 2 x 2 threads"
    else:
        result["shape"] = f"1 proc x {min(len(rows), 500)} threads"
    return result


def launch(settings: Any, count: int) -> list[dict[str, Any]]:
    """Fresh instances for one shape (the benchmark flow's launcher; Prefect is configured
    by now, so importing the flow module is safe)."""
    from tasks.bench.run import launch_fleet

    rows, _, _ = launch_fleet(settings, count)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hosts", type=int, nargs="+", default=[250, 500])
    ap.add_argument("--install-latency", type=float, default=2.0)
    ap.add_argument(
        "--shapes",
        nargs="+",
        default=["floor", "bare", "flow", "flow-spawn", "seed"],
        choices=["floor", "bare", "flow", "flow-spawn", "seed"],
    )
    ap.add_argument(
        "--seed-processes",
        type=int,
        default=50,
        help="the seed's desired_count (its notes tested 30-125)",
    )
    ap.add_argument(
        "--flow-shape",
        type=int,
        nargs=3,
        metavar=("CHUNK", "THREADS", "PROCS"),
        help="run flow, flow-spawn and bare at this shape instead of the defaults",
    )
    ap.add_argument("--public-ip-cidr", default="127.152.0.0/16")
    args = ap.parse_args()
    flow_shape = tuple(args.flow_shape) if args.flow_shape else None

    from tasks.runtime.prefect_api import prefect_api
    from tasks.runtime.sandbox_process import SandboxProcess

    workdir = Path(tempfile.mkdtemp(prefix="install-scaling-"))
    sandbox_args = [
        "--install-latency",
        str(args.install_latency),
        "--boot-delay",
        "1",
        "--cloud-init-seconds",
        "1",
        "--public-ip-cidr",  # not the default range other sandboxes on this machine use
        args.public_ip_cidr,
        # launching 1000 fresh instances per shape drains RunInstances' token bucket; the
        # launches are not measured, and the install phase makes no RunInstances calls
        "--no-token-buckets",
    ]
    rows_out: list[dict[str, Any]] = []
    with SandboxProcess(sandbox_args) as sandbox, prefect_api():
        os.environ.update(sandbox.env)
        from blocks.settings import FleetSettings

        settings_json: dict[str, Any] = {
            "state_dir": str(workdir / "state"),
            "deployment_name": "bench",
        }
        settings = FleetSettings(**settings_json)
        for hosts in args.hosts:
            for shape in args.shapes:
                rows = launch(settings, hosts)
                res = run_shape(
                    shape,
                    rows,
                    settings_json,
                    args.seed_processes,
                    workdir,
                    flow_shape,
                )
                res.update({"hosts": hosts, "runner": shape})
                rows_out.append(res)
                print(
                    f"  {shape:<10} {hosts:>4} hosts: install {res['install_s']:>7.1f}s  "
                    f"PSS {res['peak_pss_mb']:>6.0f} MB  RSS {res['peak_rss_mb']:>6.0f} MB  "
                    f"installed {res['installed']}",
                    flush=True,
                )
    print()
    print(
        f"{'hosts':>5} {'runner':<10} {'shape':<40} {'installed':>9} {'install_s':>9} "
        f"{'x_floor':>7} {'x_bare':>6} {'whole_s':>7} {'whole_x_floor':>13} {'PSS_MB':>7} "
        f"{'RSS_MB':>7} {'x_flow_pss':>10}"
    )
    summary: dict[str, Any] = {
        "benchmark": "install_scaling",
        "install_latency_s": args.install_latency,
        "rows": [],
    }
    for hosts in args.hosts:
        by = {r["runner"]: r for r in rows_out if r["hosts"] == hosts}
        floor = by.get("floor", {}).get("install_s")
        floor_whole = by.get("floor", {}).get("wall_s")
        bare = by.get("bare", {}).get("install_s")
        flow_mem = by.get("flow", {}).get("peak_pss_mb")
        for runner, r in by.items():
            x_floor = r["install_s"] / floor if floor else None
            x_bare = r["install_s"] / bare if bare else None
            x_mem = r["peak_pss_mb"] / flow_mem if flow_mem else None
            x_whole = r["wall_s"] / floor_whole if floor_whole else None
            print(
                f"{hosts:>5} {runner:<10} {r['shape']:<40} {r['installed']:>9} "
                f"{r['install_s']:>9.1f} {x_floor or 0:>7.2f} {x_bare or 0:>6.2f} "
                f"{r['wall_s']:>7.2f} {x_whole or 0:>13.2f} "
                f"{r['peak_pss_mb']:>7.0f} {r['peak_rss_mb']:>7.0f} {x_mem or 0:>10.2f}"
            )
            summary["rows"].append(
                {
                    "hosts": hosts,
                    "runner": runner,
                    "shape": r["shape"],
                    "installed": r["installed"],
                    "failed": r["failed"],
                    "install_s": r["install_s"],
                    "peak_rss_mb": r["peak_rss_mb"],
                    "peak_pss_mb": r["peak_pss_mb"],
                    "install_x_floor": round(x_floor, 2) if x_floor else None,
                    "install_x_bare": round(x_bare, 2) if x_bare else None,
                    "whole_s": r["wall_s"],
                    "whole_x_floor": round(x_whole, 2) if x_whole else None,
                    "pss_x_flow": round(x_mem, 2) if x_mem else None,
                }
            )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
