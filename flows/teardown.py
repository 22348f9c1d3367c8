"""Flow `teardown`: delete everything a deployment created, found by its tag.

One task (`teardown-resources`, tasks/teardown_resources.py) runs
`tasks.aws.teardown.teardown`, whose every resource (deleted, already gone, kept, failed)
and every wait gets one line in the task's log
(`tasks.actions`); the flow logs what was removed per kind and the one-line summary,
writes a markdown artifact (`<deployment>-teardown`: kind, count, ids, errors) and fails,
with the report as its data, when any resource could not be removed.
A second run removes nothing and completes.

`tomcat-fleet teardown --help` runs it standalone (see `tasks/cli/`).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m flows.teardown ...` is `tomcat-fleet teardown ...`
    import runpy
    import sys

    sys.argv[1:1] = ["teardown"]
    runpy.run_module("flows", run_name="__main__", alter_sys=True)

import re
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from blocks.fleet_error import BlockNotFound
from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.teardown import TeardownReport, plan_teardown
from tasks.deployment_files import remove_local_state
from tasks.plan.models import Plan
from tasks.plan.render import plan_run
from tasks.runtime import prefect_adjustments
from tasks.runtime.outcome import failed_with_report
from tasks.runtime.run_names import teardown_run_name
from tasks.teardown_resources import teardown_resources

prefect_adjustments.install()  # every entry path: the flow engine imports this module first

MAX_IDS_IN_ARTIFACT = 50


def teardown_settings(
    deployment_name: str | None, settings_overrides: dict[str, Any] | None
) -> FleetSettings:
    overrides = dict(settings_overrides or {})
    if deployment_name is not None:  # "" is refused by the settings, not read as "default"
        overrides["deployment_name"] = deployment_name
    return FleetSettings(**overrides)


def artifact_key(deployment: str) -> str:
    """`<deployment>-teardown`, lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{deployment}-teardown".lower()).strip("-")


@flow(name="teardown", flow_run_name=teardown_run_name, log_prints=False)
def teardown(
    deployment_name: str | None = None,
    delete_secrets: bool = False,
    keep_local_state: bool = False,
    settings_overrides: dict[str, Any] | None = None,
    plan: bool = False,
) -> TeardownReport | Plan:
    """Remove every resource tagged for the deployment (the settings' one by default), then
    its local state (generated private key, known_hosts, inventory) once nothing is left
    that it describes; what is kept is in the report, with the reason.

    Args:
        deployment_name: The deployment to remove (default: TOMCAT_FLEET_DEPLOYMENT_NAME / .env).
        delete_secrets: Also delete the Prefect Secret block holding the RDS password.
        keep_local_state: Keep the local key, known_hosts and inventory (default: removed
            after a teardown that left nothing behind; kept when it left something).
        settings_overrides: FleetSettings fields to override for this run.
        plan: Change nothing: list what would be deleted (Describe/List/Get calls only),
            as a plan artifact.
    """
    logger = get_run_logger()
    logger.info(prefect_adjustments.describe())
    settings = teardown_settings(deployment_name, settings_overrides)
    deployment = settings.deployment_name
    poll_s = 0.5 if settings.aws_endpoint_url else 2.0  # a sandbox answers at once
    try:  # the credentials block, loaded here: missing, the run ends with one line
        Aws(settings)
    except BlockNotFound as exc:
        return failed_with_report(str(exc), exc, logger)  # type: ignore[return-value]
    if plan:
        block = settings.password_block if delete_secrets and secret_exists(settings) else None
        return plan_run(
            lambda: plan_teardown(Aws(settings), settings, secret=block, log=logger), logger
        )
    report = teardown_resources(settings, delete_secrets, 1200.0, poll_s)
    local = remove_local_state(settings, clean=not report.errors, keep=keep_local_state)
    report.local_removed, report.local_kept = local.removed, local.kept
    for path in local.removed:
        logger.info("removed local %s", path)
    for path, why in local.kept.items():
        logger.info("kept local %s: %s", path, why)
    for kind, ids in report.removed.items():
        if ids:
            logger.info("removed %d %s: %s", len(ids), kind, ", ".join(ids))
    logger.info(
        "teardown of %s: %d resource(s) removed in %.1fs, %d error(s): %s",
        deployment,
        report.total_removed,
        report.seconds,
        len(report.errors),
        report.summary,
    )
    publish(report, deployment)
    if report.errors:
        message = (
            f"teardown of {deployment}: {len(report.errors)} resource(s) could not be removed; "
            f"first: {report.errors[0]}"
        )
        return failed_with_report(message, report, logger)  # type: ignore[return-value]
    return report


def secret_exists(settings: FleetSettings) -> bool:
    """The Secret block holding the RDS password exists (read by name; its value is not)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_block_document_by_name(
                settings.password_block, block_type_slug="secret", include_secrets=False
            )
        except ObjectNotFound:
            return False
    return True


def publish(report: TeardownReport, deployment: str) -> None:
    rows = []
    for kind, ids in report.removed.items():
        shown = ", ".join(f"`{i}`" for i in ids[:MAX_IDS_IN_ARTIFACT])
        if len(ids) > MAX_IDS_IN_ARTIFACT:
            shown += f" … and {len(ids) - MAX_IDS_IN_ARTIFACT} more"
        rows.append(f"| {kind} | {len(ids)} | {shown} |")
    errors = "\n".join(f"- {e.replace('|', '/')}" for e in report.errors) or "none"
    create_markdown_artifact(
        key=artifact_key(deployment),
        description=f"teardown of {deployment}",
        markdown=(
            f"# teardown of `{deployment}`\n\n"
            f"{report.total_removed} resource(s) removed in {report.seconds:.1f}s.\n\n"
            "| kind | count | ids |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"## Errors\n{errors}\n\n## Local state\n"
            + "".join(f"- removed `{p}`\n" for p in report.local_removed)
            + "".join(f"- kept `{p}`: {why}\n" for p, why in report.local_kept.items())
        ),
    )
