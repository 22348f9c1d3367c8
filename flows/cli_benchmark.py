"""`python -m flows.benchmark`: run the benchmark flow standalone.

    python -m flows.benchmark --matrix nightly --out out/benchmark
    python -m flows.benchmark --matrix scenarios.yaml --repeat 3 --install-latency 2

`--matrix` is a named matrix (nightly, seed) or a YAML/JSON file: a list of scenarios, or
{scenarios: [...], install_latency: ...}; a scenario is the seed's notation ("250/50",
"250/50@4" for chunk_size 4) or a mapping of hosts/chunk_size/max_workers/desired_count/
shape (flow|seed|floor)/name/repeat. Without PREFECT_API_URL one local Prefect server is
started for the run. Prints the summary table, then, last, one JSON line
{csv, png, runs_csv, timeline_csv, rows: [one summary row per scenario]}.

`--serve-nightly` serves the scheduled deployment `benchmark/nightly` instead.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sandbox.config import FAULT_PROFILES

JSON_ROW_KEYS = (
    "scenario",
    "shape",
    "notation",
    "hosts",
    "processes",
    "default",
    "status",
    "reason",
    "runs",
    "wall_s",
    "install_s",
    "install_s_min",
    "install_s_max",
    "peak_rss_mb",
    "peak_rss_mb_min",
    "peak_rss_mb_max",
    "swap_used_mb",
    "hosts_failed",
    "throttle_retries",
    "api_calls",
    "install_x_floor",
    "rss_x_floor",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--matrix", default="nightly", help="nightly, seed, or a YAML/JSON file")
    p.add_argument("--repeat", type=int, default=1, help="runs per scenario (medians reported)")
    p.add_argument("--out", default="out/benchmark", help="directory for CSV, PNG, timeline")
    p.add_argument(
        "--install-latency",
        type=float,
        default=None,
        help="sandbox seconds per install (default: the matrix's, else 0.5)",
    )
    p.add_argument("--fault-profile", default="clean", choices=list(FAULT_PROFILES))
    p.add_argument("--throttle-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, help="sandbox fault seed")
    p.add_argument("--no-peers", action="store_true", help="skip the seed twins and the floor")
    p.add_argument(
        "--target",
        default="sandbox",
        choices=["sandbox", "aws"],
        help="aws: the environment's settings (real AWS), instances terminated after use",
    )
    p.add_argument("--public-ip-cidr", default="127.140.0.0/16")
    p.add_argument("--service-ip-cidr", default="127.141.0.0/16")
    p.add_argument("--serve-nightly", action="store_true", help="serve benchmark/nightly")
    # child mode: one seed/floor shape in this process (no Prefect), used by the flow
    p.add_argument("--child", choices=["seed", "floor"], help=argparse.SUPPRESS)
    p.add_argument("--inventory", help=argparse.SUPPRESS)
    p.add_argument("--chunk-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--max-workers", type=int, help=argparse.SUPPRESS)
    p.add_argument("--desired-count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--deployment-name", default=None, help=argparse.SUPPRESS)
    p.add_argument("--state-dir", default=None, help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------- child mode (no Prefect)

_CFG: Any = None


def _install_chunk(args: tuple[list[dict[str, Any]], int]) -> list[str]:
    """Seed worker: one chunk in a pool process, `max_workers` threads."""
    from tasks.models import Instance
    from tasks.remote.recipe import install_host

    rows, workers = args
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [r.status for r in pool.map(lambda r: install_host(Instance(**r), _CFG), rows)]


def child(args: argparse.Namespace) -> int:
    """Install on the inventory with the seed's shape (a fork pool of `desired_count`
    processes, one chunk per task) or the floor's (one thread pool); print JSON."""
    global _CFG
    from blocks.settings import FleetSettings
    from tasks.remote.config import remote_config

    overrides = {
        k: v
        for k, v in (("deployment_name", args.deployment_name), ("state_dir", args.state_dir))
        if v is not None
    }
    settings = FleetSettings(**overrides)
    _CFG = remote_config(settings, settings.key_file_path().read_text(), host_key_policy="insecure")
    rows = json.loads(Path(args.inventory).read_text())
    t0 = time.monotonic()
    if args.child == "floor":
        statuses = _install_chunk((rows, max(1, args.max_workers or len(rows))))
    else:
        chunk = args.chunk_size
        tasks = [(rows[i : i + chunk], args.max_workers) for i in range(0, len(rows), chunk)]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes=min(args.desired_count, len(tasks))) as pool:
            statuses = [s for part in pool.map(_install_chunk, tasks, chunksize=1) for s in part]
    install_s = time.monotonic() - t0
    print(
        json.dumps(
            {
                "installed": statuses.count("installed"),
                "failed": len(statuses) - statuses.count("installed"),
                "install_s": round(install_s, 2),
            }
        )
    )
    return 0


# ---------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child(args)
    if args.repeat < 1:
        print("benchmark: --repeat must be at least 1", file=sys.stderr)
        return 2
    from tasks.bench_matrix import MatrixError, load_matrix

    try:
        _, matrix_settings = load_matrix(args.matrix)
    except MatrixError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 2
    latency = args.install_latency
    if latency is None:
        latency = float(matrix_settings.get("install_latency", 0.5))

    from flows.runtime import prefect_api

    with prefect_api():
        # Prefect reads its settings when first imported: only now is the API URL known
        from flows.benchmark import benchmark, format_table, nightly_deployment

        if args.serve_nightly:
            from prefect import serve

            serve(nightly_deployment())
            return 0
        state = benchmark(
            matrix=args.matrix,
            repeat=args.repeat,
            install_latency=latency,
            fault_profile=args.fault_profile,
            throttle_rate=args.throttle_rate,
            out_dir=args.out,
            include_peers=not args.no_peers,
            target=args.target,
            seed=args.seed,
            public_ip_cidr=args.public_ip_cidr,
            service_ip_cidr=args.service_ip_cidr,
            return_state=True,
        )
        try:
            result = state.result(raise_on_failure=False)
        except Exception as exc:
            result = exc
    if not isinstance(result, dict):
        print(f"benchmark: flow ended {state.type.value}: {result}", file=sys.stderr)
        return 1
    print(format_table(result["rows"]))
    print(
        json.dumps(
            {
                "csv": result["csv"],
                "png": result["png"],
                "runs_csv": result["runs_csv"],
                "timeline_csv": result["timeline_csv"],
                "elapsed_s": result["elapsed_s"],
                "rows": [{k: r.get(k) for k in JSON_ROW_KEYS} for r in result["rows"]],
            }
        )
    )
    return 0
