"""Reliability under stress: throttling, hostile hosts and controller crashes, measured on
sandboxes and written to `docs/reliability.md`.

Three experiments, each on its own sandbox child
(`tasks.runtime.sandbox_process.SandboxProcess`, public IPs in `--public-ip-cidr`,
services in `--service-ip-cidr`), all reporting to one Prefect server
(`tasks.runtime.prefect_api.prefect_api()`); the flows run as their CLIs do, in subprocesses:

- throttle: for each refusal rate (fraction of EC2 calls answered RequestLimitExceeded) a
  `--hosts` install (`python -m flows install --instances N`, launching included)
  and a `--deploy-instances` deploy; completed or not, throttled calls (each one a retry
  taken by the back-off), API calls, wall seconds and seconds added over the 0 % run.
  Rates above `--raise-above` run with the raised retry budget (`--raised-retries`,
  `--raised-base`, `--raised-cap`); the settings used are reported per row.
- hostile: `--hostile-hosts` hosts on the `hostile` fault profile: an install with
  allow_failures 30 %, a deploy of stages 1-4 with a generous allowance (the ALB exists),
  the target group checked against the installed hosts (DescribeTargetHealth), then an
  install of the failed hosts only.
- crash: a clean reference deploy, then `--crashes` deployments each SIGKILLed (the whole
  process group) at a seeded random moment and re-run to completion; resources are counted
  through the AWS API and compared with the reference.

Prints a table per experiment and, last, one JSON line.

    python -m benchmarks.reliability                      # the full run (about 20 minutes)
    python -m benchmarks.reliability --hosts 8 --deploy-instances 8 --throttle-rates 0 0.5 \
        --hostile-hosts 10 --crashes 1 --no-write         # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import DOC, Config
from .harness import _last_json, recorded_run
from .report import print_tables, verdict, write_doc
from .scenarios import crash_experiment, hostile_experiment, throttle_experiment


# -- main -------------------------------------------------------------------------------
def run_all(cfg: Config, experiments: list[str]) -> dict[str, Any]:
    """Run the chosen experiments (inside one Prefect server); returns their results."""
    from tasks.runtime.prefect_api import prefect_api

    results: dict[str, Any] = {}
    with recorded_run(cfg, experiments) as run, prefect_api():
        results["run"] = run
        if "throttle" in experiments:
            results["throttle"] = throttle_experiment(cfg)
        if "hostile" in experiments:
            results["hostile"] = hostile_experiment(cfg)
        if "crash" in experiments:
            results["crash"] = crash_experiment(cfg)
    return results


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.reliability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Config(workdir=Path("."))
    ap.add_argument("--experiments", nargs="+", default=["throttle", "hostile", "crash"])
    ap.add_argument("--hosts", type=int, default=d.hosts)
    ap.add_argument("--deploy-instances", type=int, default=d.deploy_instances)
    ap.add_argument("--deploy-stages", default=d.deploy_stages)
    ap.add_argument("--throttle-rates", type=float, nargs="+", default=d.throttle_rates)
    ap.add_argument("--raise-above", type=float, default=d.raise_above)
    ap.add_argument("--raised-retries", type=int, default=d.raised_retries)
    ap.add_argument("--raised-base", type=float, default=d.raised_base)
    ap.add_argument("--raised-cap", type=float, default=d.raised_cap)
    ap.add_argument("--hostile-hosts", type=int, default=d.hostile_hosts)
    ap.add_argument("--ssh-wait-s", type=float, default=d.ssh_wait_s)
    ap.add_argument("--crashes", type=int, default=d.crashes)
    ap.add_argument("--crash-instances", type=int, default=d.crash_instances)
    ap.add_argument("--crash-stages", default=d.crash_stages)
    ap.add_argument("--install-latency", type=float, default=d.install_latency)
    ap.add_argument("--boot-delay", type=float, default=d.boot_delay)
    ap.add_argument("--cloud-init-seconds", type=float, default=d.cloud_init_seconds)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--public-ip-cidr", default=d.public_ip_cidr)
    ap.add_argument("--service-ip-cidr", default=d.service_ip_cidr)
    ap.add_argument("--workdir", default=None, help="default: a new temporary directory")
    ap.add_argument("--out", default=str(DOC), help="the markdown report to write")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the doc alone")
    ap.add_argument(
        "--results-from",
        default=None,
        help="a previous run's output (its last line is JSON): experiments not run now are "
        "taken from it, and the report says so",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="reliability-"))
    cfg = Config(
        workdir=workdir,
        hosts=args.hosts,
        deploy_instances=args.deploy_instances,
        deploy_stages=args.deploy_stages,
        throttle_rates=args.throttle_rates,
        raise_above=args.raise_above,
        raised_retries=args.raised_retries,
        raised_base=args.raised_base,
        raised_cap=args.raised_cap,
        hostile_hosts=args.hostile_hosts,
        ssh_wait_s=args.ssh_wait_s,
        crashes=args.crashes,
        crash_instances=args.crash_instances,
        crash_stages=args.crash_stages,
        install_latency=args.install_latency,
        boot_delay=args.boot_delay,
        cloud_init_seconds=args.cloud_init_seconds,
        seed=args.seed,
        public_ip_cidr=args.public_ip_cidr,
        service_ip_cidr=args.service_ip_cidr,
    )
    t0 = time.monotonic()
    results = run_all(cfg, args.experiments)
    if args.results_from:
        earlier = _last_json(Path(args.results_from).read_text())
        for key in ("throttle", "hostile", "crash"):
            if key not in results and key in earlier:
                results[key] = earlier[key]
                results.setdefault("reused", []).append(key)
                results["reused_run"] = earlier.get("run")
    print_tables(results)
    if not args.no_write:
        write_doc(results, Path(args.out))
        print(f"\nwrote {args.out}")
    summary = {
        "benchmark": "reliability",
        "wall_s": round(time.monotonic() - t0, 1),
        "workdir": str(workdir),
        "verdict": verdict(results),
        **results,
    }
    print(json.dumps(summary, default=str))
    return 0 if all(summary["verdict"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
