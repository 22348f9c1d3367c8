"""`python -m flows.deploy`: run the deploy flow standalone.

    python -m flows.deploy --sandbox --instances 50
    python -m flows.deploy --instances 10 --stages 1-5      # AWS or a running sandbox

`--sandbox` starts a sandbox child process for the run; without it the environment's
settings are used (AWS, or `set -a; . .sandbox.env`). Without PREFECT_API_URL one local
Prefect server is started for the run. The last line printed is JSON: per-stage status and
seconds, and the URLs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tasks.runtime.sandbox_child import add_sandbox_options, maybe_sandbox


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--stages", default="1-11", help="e.g. 1-11, 1-5 or 1,2,3")
    p.add_argument("--instance-type", default=None)
    p.add_argument("--hosted-zone", default=None)
    p.add_argument("--domain", default=None)
    p.add_argument("--deployment-name", default=None)
    p.add_argument("--state-dir", default=None)
    p.add_argument("--log-dir", default=None)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--max-workers", type=int, default=None)
    p.add_argument("--desired-count", type=int, default=None)
    p.add_argument("--runner", default="process", choices=["process", "thread", "dask"])
    p.add_argument("--allow-failures", default="0")
    add_sandbox_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tasks.runtime.prefect_api import prefect_api

    t0 = time.monotonic()
    with maybe_sandbox(args), prefect_api():
        from flows.deploy import DeployReport, deploy
        from tasks.planning import PlanError

        overrides: dict[str, Any] = {
            k: getattr(args, k)
            for k in ("deployment_name", "state_dir", "log_dir")
            if getattr(args, k) is not None
        }
        state = deploy(
            instances=args.instances,
            stages=args.stages,
            instance_type=args.instance_type,
            hosted_zone=args.hosted_zone,
            domain=args.domain,
            chunk_size=args.chunk_size,
            max_workers=args.max_workers,
            desired_count=args.desired_count,
            runner=args.runner,
            allow_failures=args.allow_failures,
            settings_overrides=overrides,
            return_state=True,
        )
        from tasks.runtime.outcome import outcome_of

        report = outcome_of(state)
        if not isinstance(report, DeployReport):
            print(f"deploy: {state.message}", file=sys.stderr)
            return 2 if isinstance(report, PlanError) else 1
    out = {
        "deployment": report.deployment,
        "state": state.type.value,
        "seconds": round(time.monotonic() - t0, 2),
        "stages": {
            str(r.stage): {"name": r.name, "status": r.status, "seconds": r.seconds}
            for r in report.stages
        },
        "urls": report.urls,
        "install": report.install,
    }
    print(json.dumps(out))
    return 0 if state.is_completed() else 1
