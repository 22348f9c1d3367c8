"""Flow `status`: what a deployment's live estate is, read from AWS by its tag (no local
state): instances by state, target health, ALB / Beanstalk / RDS state and URLs,
certificates, drift from what the deploy made (tasks/status/).

It publishes a markdown artifact `<deployment>-status` and returns the report; a degraded
estate ends the run Failed with the report as its data and one line naming what is wrong
(an automation on Failed runs sees it), a healthy one or nothing deployed Completed.

`tomcat-fleet status` prints the same report without Prefect (see `tasks/cli/`).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m flows.status ...` is `tomcat-fleet status ...`
    import runpy
    import sys

    sys.argv[1:1] = ["status"]
    runpy.run_module("flows", run_name="__main__", alter_sys=True)

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from blocks.fleet_error import BlockNotFound
from blocks.settings import FleetSettings
from tasks.artifacts import artifact_key
from tasks.runtime.outcome import failed_with_report
from tasks.runtime.run_names import status_run_name
from tasks.status.check import check_estate
from tasks.status.model import StatusReport
from tasks.status.render import markdown


@flow(name="status", flow_run_name=status_run_name, log_prints=False)
def status(
    deployment_name: str | None = None,
    settings_overrides: dict[str, Any] | None = None,
) -> StatusReport:
    """Report what the deployment's live estate is (read-only): healthy, degraded (naming
    what) or nothing deployed.

    Args:
        deployment_name: The deployment to check (default: TOMCAT_FLEET_DEPLOYMENT_NAME / .env).
        settings_overrides: FleetSettings fields to override for this run.
    """
    logger = get_run_logger()
    overrides = dict(settings_overrides or {})
    if deployment_name is not None:
        overrides["deployment_name"] = deployment_name
    settings = FleetSettings(**overrides)
    try:  # in the flow body: a task's failure would log Prefect's traceback first
        report = check_estate(settings)
    except BlockNotFound as exc:  # one line, no traceback: the register command to run
        return failed_with_report(str(exc), exc, logger)  # type: ignore[return-value]
    create_markdown_artifact(
        markdown=markdown(report),
        key=artifact_key(settings.deployment_name, "status"),
        description=f"status of {settings.deployment_name}: {report.verdict}",
    )
    for p in report.problems:
        logger.warning("%s", p)
    logger.info("deployment %s: %s", settings.deployment_name, report.verdict)
    if report.verdict == "degraded":
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        message = f"{settings.deployment_name} is degraded: {first}{more}"
        return failed_with_report(message, report, logger)  # type: ignore[return-value]
    return report
