"""`tomcat-fleet status`: the live estate of a deployment, read from AWS (no Prefect server,
no local state), as a table or `--json`. Exit 0 healthy or nothing deployed, 1 degraded
(each problem named), 2 bad input or an estate that could not be read (one line on
stderr). The `status` flow (flows/status.py) is the same check as a Prefect run."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated

from cyclopts import Parameter

from tasks.cli.flow_options import fleet_settings, reusable_server
from tasks.runtime import run_start  # no Prefect in it


def status(
    *,
    deployment_name: Annotated[str | None, Parameter(show_default=False)] = None,
    json: Annotated[bool, Parameter(name="--json", negative=())] = False,
) -> int:
    """Show what a deployment's live estate is: instances by state, target health, the ALB,
    Beanstalk and RDS state and their URLs (with the line that opens each on this machine),
    certificates, drift from what the deploy made. Exit 0 healthy or nothing deployed, 1
    degraded, 2 bad input or AWS unreadable.

    Args:
        deployment_name: The deployment to check (default: the settings').
        json: Print the report as one JSON object (schema tomcat-fleet.status/1) instead of
            the table.
    """
    settings = fleet_settings({"deployment_name": deployment_name} if deployment_name else {})
    from botocore.exceptions import BotoCoreError, ClientError

    from blocks.fleet_error import FleetError
    from tasks.status.check import check_estate
    from tasks.status.render import as_json, table

    server: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if settings.aws_credentials_block and not os.environ.get("PREFECT_API_URL"):
        server = run_start.prefect_server(reusable_server().plan())  # the block lives there
    try:
        with server:
            report = check_estate(settings)
    except (FleetError, BotoCoreError, ClientError) as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"tomcat-fleet status: cannot read the estate: {line}", file=sys.stderr)
        return 2
    print(as_json(report) if json else table(report))
    return report.exit_code
