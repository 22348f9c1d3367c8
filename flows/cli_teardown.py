"""`python -m flows.teardown`: run the teardown flow standalone.

    python -m flows.teardown --deployment-name web1
    python -m flows.teardown --deployment-name web1 --delete-secrets

Settings come from the environment / `.env` (AWS, or a sandbox's env file); without
PREFECT_API_URL one local Prefect server is started for the run. The last line printed is
JSON: {"removed": {kind: count}, "seconds": s, "errors": n}. Exit status 0 when everything
of the deployment is gone, 1 when something could not be removed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.teardown",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--deployment-name",
        default=None,
        help="deployment to remove (default: TOMCAT_FLEET_DEPLOYMENT_NAME / .env)",
    )
    p.add_argument(
        "--delete-secrets",
        action="store_true",
        help="also delete the Prefect Secret block holding the RDS password",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from blocks.settings import FleetSettings

    try:  # bad settings fail here, before a Prefect server is started
        overrides = {"deployment_name": args.deployment_name} if args.deployment_name else {}
        deployment = FleetSettings(**overrides).deployment_name
    except ValidationError as exc:
        print(f"teardown: invalid settings: {exc}", file=sys.stderr)
        return 2
    from flows.runtime import prefect_api

    with prefect_api():
        # Prefect reads its settings when first imported: only now is the API URL known
        from flows.teardown import teardown

        state = teardown(
            deployment_name=deployment,
            delete_secrets=args.delete_secrets,
            return_state=True,
        )
        report = _report_of(state)
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # send buffered run logs while the server is still up
    if report is None:
        print(f"teardown: flow ended {state.type.value}: {state.message}", file=sys.stderr)
        return 1
    for error in report.errors:
        print(f"teardown: {error}", file=sys.stderr)
    print(
        json.dumps(
            {
                "removed": report.counts(),
                "seconds": round(report.seconds, 2),
                "errors": len(report.errors),
            }
        )
    )
    return 0 if state.is_completed() else 1


def _report_of(state: Any) -> Any:
    from flows.outcome import outcome_of
    from tasks.aws.teardown import TeardownReport

    result = outcome_of(state)
    return result if isinstance(result, TeardownReport) else None
