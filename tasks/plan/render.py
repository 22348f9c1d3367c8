"""A plan as the CLI's table and as the markdown of its Prefect artifact."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from tasks.plan.models import Plan

_SIGN = {"create": "+", "update": "~", "delete": "-", "no-op": " "}


def summary(plan: Plan) -> str:
    """One line: `deploy plan of web1: 3 to create, 1 to update, 0 to delete, 20 unchanged`."""
    c = plan.counts()
    return (
        f"{plan.command} plan of {plan.deployment_name}: {c['create']} to create, "
        f"{c['update']} to update, {c['delete']} to delete, {c['no-op']} unchanged"
    )


def table(plan: Plan) -> str:
    """One line per entry (`+` create, `~` update, `-` delete), then the summary."""
    rows = [("", "stage", "kind", "name", "field", "reason")]
    rows += [
        (_SIGN[e.action], str(e.stage), e.kind, e.name, e.field, e.reason) for e in plan.entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=False)) + "  " + r[5]
        for r in rows
    ]
    return "\n".join([*(ln.rstrip() for ln in lines), "", summary(plan)])


def markdown(plan: Plan) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "/") or " "

    head = [
        f"# {plan.command} plan of `{plan.deployment_name}`",
        "",
        summary(plan) + ".",
        "",
        "| stage | action | kind | name | field | reason |",
        "|---|---|---|---|---|---|",
    ]
    rows = [
        f"| {e.stage} | {e.action} | {cell(e.kind)} | `{cell(e.name)}` | {cell(e.field)} "
        f"| {cell(e.reason)} |"
        for e in plan.entries
    ]
    return "\n".join([*head, *rows, ""])


def artifact_key(plan: Plan) -> str:
    """`<deployment>-<command>-plan`, lowercase letters, digits and dashes only."""
    raw = f"{plan.deployment_name}-{plan.command}-plan".lower()
    return re.sub(r"[^a-z0-9-]+", "-", raw).strip("-")


def publish_plan(plan: Plan) -> None:
    """The plan as the run's markdown artifact (Prefect is imported here, when called)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key=artifact_key(plan), markdown=markdown(plan), description=summary(plan)
    )


def plan_run(make: Callable[[], Plan], logger: Any) -> Any:
    """How a flow ends a plan run: the plan `make()` reads, published and summarised in the
    run's log and returned; or, when reading fails, the Failed state with one line (no
    traceback; the CLI exits 1)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from tasks.errors import FleetError
    from tasks.runtime.outcome import failed_with_report

    try:
        found = make()
    except (FleetError, ClientError, BotoCoreError) as exc:
        line = f"cannot plan: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        return failed_with_report(line, exc, logger)
    publish_plan(found)
    logger.info("%s", summary(found))
    return found


def main(argv: list[str]) -> int:
    """`python -m tasks.plan.render plan.json`: a saved `--json` plan as the table (CI
    prints it in the job log)."""
    import json
    from pathlib import Path

    if len(argv) != 1:
        print("usage: python -m tasks.plan.render PLAN_JSON", file=sys.stderr)
        return 2
    try:
        plan = Plan.model_validate(json.loads(Path(argv[0]).read_text()))
    except (OSError, ValueError) as exc:
        print(f"{argv[0]}: not a plan: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(table(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
