"""`python -m flows.install_tomcat`: run the install flow standalone.

    python -m flows.install_tomcat --sandbox --instances 60 --install-latency 0.5
    python -m flows.install_tomcat --inventory inventory.json      # existing instances

`--sandbox` starts a sandbox child process for the run (its options are accepted here);
without it the environment's settings are used (AWS, or a sandbox's env file). Without
PREFECT_API_URL one local Prefect server is started for the run. The last line printed is
a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flows.cli_common import Peak, add_sandbox_options, maybe_sandbox


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.install_tomcat",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--instances", type=int, help="launch N instances first")
    src.add_argument("--inventory", help="JSON file of instances (ids and public IPs)")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="hosts per chunk (default: hosts spread over one process per core)",
    )
    p.add_argument(
        "--max-workers", type=int, default=None, help="threads per chunk (default: chunk size)"
    )
    p.add_argument(
        "--desired-count",
        type=int,
        default=None,
        help="process-pool size (default: cores, at most the chunk count)",
    )
    p.add_argument("--runner", default="process", choices=["process", "thread", "dask"])
    p.add_argument("--dask-address", default=None)
    p.add_argument("--allow-failures", default="0", help="count or percent, e.g. 5 or 10%%")
    p.add_argument("--host-key-policy", choices=["strict", "tofu", "insecure"], default=None)
    p.add_argument("--deployment-name", default=None)
    p.add_argument("--state-dir", default=None)
    p.add_argument("--log-dir", default=None)
    add_sandbox_options(p)
    return p


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("host_key_policy", "deployment_name", "state_dir", "log_dir"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    return out


def launch(count: int, settings_overrides: dict[str, Any]) -> tuple[list[Any], int, int]:
    """Key pair, security group and `count` instances, waited until reachable."""
    from blocks.settings import FleetSettings
    from tasks.aws import Aws
    from tasks.aws.ec2 import ensure_key_pair, ensure_security_group, launch_instances, wait_running

    settings = FleetSettings(**settings_overrides)
    aws = Aws(settings)
    ensure_key_pair(aws, settings)
    sg = ensure_security_group(aws, settings)
    ids = launch_instances(aws, settings, count, sg, client_token=uuid.uuid4().hex)
    instances = wait_running(aws, ids)
    return instances, aws.api_calls, aws.stats.retries


def read_inventory(path: str) -> list[Any]:
    from tasks.models import Instance

    data = json.loads(Path(path).read_text())
    rows = data["instances"] if isinstance(data, dict) else data
    return [Instance(**row) for row in rows]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.instances is not None and args.instances < 1:
        print("install-tomcat: --instances must be at least 1", file=sys.stderr)
        return 2
    if args.inventory and not Path(args.inventory).is_file():
        print(f"install-tomcat: --inventory {args.inventory}: no such file", file=sys.stderr)
        return 2
    from flows.runtime import prefect_api

    t0 = time.monotonic()
    with maybe_sandbox(args) as sandbox_pid, prefect_api() as (_, server_pid):
        peak = Peak([p for p in (sandbox_pid, server_pid) if p])
        # Prefect reads its settings when first imported: only now is the API URL known
        from flows.install_tomcat import install_tomcat
        from tasks.planning import PlanError

        ov = overrides(args)
        api_calls = retries = 0
        try:
            if args.instances is not None:
                instances, api_calls, retries = launch(args.instances, ov)
            else:
                instances = read_inventory(args.inventory)
            state = install_tomcat(
                instances,
                chunk_size=args.chunk_size,
                max_workers=args.max_workers,
                desired_count=args.desired_count,
                runner=args.runner,
                allow_failures=args.allow_failures,
                dask_address=args.dask_address,
                settings_overrides=ov,
                return_state=True,
            )
        except (PlanError, RuntimeError, ValueError) as exc:
            print(f"install-tomcat: {exc}", file=sys.stderr)
            return 2
        summary = _summary_of(state)
        peak.stop.set()
    if summary is None:
        print(f"install-tomcat: flow ended {state.type.value}: {state.message}", file=sys.stderr)
        return 1
    out = {
        "hosts": summary.hosts,
        "installed": summary.installed,
        "failed": summary.failed,
        "already_installed": summary.already_installed,
        "install_s": round(summary.install_s, 2),
        "wall_s": round(time.monotonic() - t0, 2),
        "peak_rss_mb": round(peak.peak, 1),
        "chunk_size": summary.chunk_size,
        "max_workers": summary.max_workers,
        "desired_count": summary.desired_count,
        "runner": summary.runner,
        "api_calls": api_calls + summary.api_calls,
        "throttle_retries": retries + summary.throttle_retries,
        "flow_state": state.type.value,
    }
    print(json.dumps(out))
    return 0 if state.is_completed() else 1


def _summary_of(state: Any) -> Any:
    from flows.outcome import outcome_of
    from tasks.models import InstallSummary

    result = outcome_of(state)
    return result if isinstance(result, InstallSummary) else None
