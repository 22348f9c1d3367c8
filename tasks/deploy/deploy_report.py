"""The deploy flow's report: one record per stage (status, start/end, detail), the URLs,
resources and install figures its stages' rooms report, and its artifacts."""

from __future__ import annotations

import time
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, Field

from tasks.artifacts import progress_key, stage_progress, url_links
from tasks.deploy.dag import STAGES
from tasks.deploy.scheduler import UPSTREAM_FAILED
from tasks.reach import LocalView, openings


class StageRecord(BaseModel):
    stage: int
    name: str
    group: str
    status: str = "not run"  # completed, failed, not run (not selected, or upstream failed)
    started_s: float | None = None  # seconds since the deploy started
    ended_s: float | None = None
    seconds: float | None = None
    detail: str = ""  # completed: what it did, in one line; else why it failed or did not run


class DeployReport(BaseModel):
    deployment: str
    stages: list[StageRecord]
    urls: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    install: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


class ReportPart(BaseModel):
    """What one stage's result adds to the report (its room's `report` makes it)."""

    urls: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    install: dict[str, Any] = Field(default_factory=dict)


def build_report(
    deployment: str,
    todo: list[int],
    completed: set[int],
    failed: dict[int, str],
    parts: list[ReportPart],
    t0: float,
    times: dict[int, list[float]],
    summaries: dict[int, str] | None = None,
) -> DeployReport:
    """The report of a deploy run: every stage of the table with its status (and start/end
    when it ran, and, when it completed, its one-line summary of what it did: `summaries`),
    and what its stages' results (and the results found for it) add, in stage order."""
    summaries = summaries or {}
    records = {
        n: StageRecord(stage=n, name=s.name, group=f"group-{s.group}") for n, s in STAGES.items()
    }
    for n, rec in records.items():
        if n not in todo:
            rec.detail = "not selected"
            continue
        start, end = times.get(n, [0.0, 0.0])
        if start:
            rec.started_s = round(start - t0, 2)
        if end:
            rec.ended_s = round(end - t0, 2)
        if start and end:
            rec.seconds = round(end - start, 2)
        if n in completed:
            rec.status = "completed"
            rec.detail = summaries.get(n, "")
        elif n in failed:
            rec.status = "failed" if failed[n] != UPSTREAM_FAILED else "not run"
            rec.detail = failed[n][:300]
        else:
            rec.status = "not run"
    report = DeployReport(
        deployment=deployment,
        stages=[records[n] for n in sorted(records)],
        seconds=round(time.time() - t0, 2),
    )
    for part in parts:
        report.urls.update(part.urls)
        report.resources.update(part.resources)
        report.install.update(part.install)
    return report


class Progress:
    """The run's progress artifact: created once, updated as each stage ends, whatever its
    outcome (completed, failed, or not run because what it needs failed)."""

    def __init__(self, deployment: str, todo: list[int]) -> None:
        self.todo, self.statuses = todo, dict[int, str]()
        percent, text = stage_progress({}, todo)
        made = create_progress_artifact(percent, key=progress_key(deployment), description=text)
        self.id = cast(UUID, made)  # a sync flow gets the id (async_dispatch's union type)

    def ended(self, stage: int, status: str) -> None:
        if stage in self.todo and stage not in self.statuses:
            self.statuses[stage] = status
            percent, text = stage_progress(self.statuses, self.todo, stage)
            update_progress_artifact(self.id, percent, description=text)


def publish(report: DeployReport, view: LocalView | None = None) -> None:
    """The report's markdown artifact and one link artifact per URL; with the sandbox's
    `view`, each URL also gets the `curl` line that opens it on this machine."""
    here = openings(report.urls, view) if view else {}
    url_lines = []
    for k, v in report.urls.items():
        url_lines.append(f"- {k}: {v}")
        if k in here and here[k].local_url != v:
            url_lines.append(f"  on this machine: `{here[k].curl}`")
    lines = [
        f"# deploy `{report.deployment}`",
        "",
        "| stage | group | status | start s | end s | seconds | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.stages:
        lines.append(
            f"| {r.stage} {r.name} | {r.group} | {r.status} | "
            f"{'' if r.started_s is None else r.started_s} | "
            f"{'' if r.ended_s is None else r.ended_s} | "
            f"{'' if r.seconds is None else r.seconds} | {r.detail} |"
        )
    lines += [
        "",
        "## URLs",
        *url_lines,
        "",
        "## Resources",
        *[f"- {k}: `{v}`" for k, v in report.resources.items()],
        "",
        "## Install",
        *[f"- {k}: {v}" for k, v in report.install.items()],
    ]
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=f"{report.deployment}-deploy-report",
        description=f"deploy {report.deployment}: stage timeline",
    )
    curls = {k: o.curl for k, o in here.items()}
    for link in url_links(report.deployment, report.urls, curls):
        create_link_artifact(
            link.url, link_text=link.text, key=link.key, description=link.description
        )
