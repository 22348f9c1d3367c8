"""The deploy flow's report: one record per stage (status, start/end, detail), URLs,
resources and the install's figures, and its markdown artifact."""

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

from blocks.settings import FleetSettings
from tasks.artifacts import progress_key, stage_progress, url_links


class StageRecord(BaseModel):
    stage: int
    name: str
    group: str
    status: str = "not run"  # completed, failed, not run (not selected, or upstream failed)
    started_s: float | None = None  # seconds since the deploy started
    ended_s: float | None = None
    seconds: float | None = None
    detail: str = ""


class DeployReport(BaseModel):
    deployment: str
    stages: list[StageRecord]
    urls: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    install: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


def build_report(
    settings: FleetSettings,
    todo: list[int],
    records: dict[int, StageRecord],
    results: dict[int, Any],
    failed: dict[int, str],
    t0: float,
    times: dict[int, list[float]],
) -> DeployReport:
    """The report of a deploy run from its results, failures and stage start/end times."""
    for n in todo:
        rec = records[n]
        start, end = times.get(n, [0.0, 0.0])
        if start:
            rec.started_s = round(start - t0, 2)
        if end:
            rec.ended_s = round(end - t0, 2)
        if start and end:
            rec.seconds = round(end - start, 2)
        if n in results:
            rec.status = "completed"
        elif n in failed:
            rec.status = "failed" if failed[n] != "upstream failed" else "not run"
            rec.detail = failed[n][:300]
        else:
            rec.status = "not run"
    urls: dict[str, str] = {}
    resources: dict[str, Any] = {}
    if 1 in results:
        resources["instances"] = [i.instance_id for i in results[1].instances]
        resources["web_security_group"] = results[1].security_group_id
    if 4 in results:
        urls["alb_http"] = results[4].url
        resources["load_balancer"] = results[4].load_balancer_arn
        resources["target_group"] = results[4].target_group_arn
        resources["access_log_bucket"] = results[4].access_log_bucket
    if 5 in results:
        urls["alb_https"] = results[5].url
        resources["certificate"] = results[5].certificate_arn
    if 6 in results:
        resources["alb_traffic"] = results[6].model_dump(exclude={"target"})
    if 7 in results:
        urls["beanstalk_http"] = f"http://{results[7].cname}/"
        resources["beanstalk_environment"] = results[7].environment
    if 8 in results:
        resources["rds_endpoint"] = f"{results[8].endpoint}:{results[8].port}"
    if 9 in results:
        resources["jumphost"] = results[9].instance_id
        resources["select_1"] = results[9].select_1
    if 11 in results:
        urls["beanstalk_https"] = f"https://{settings.beanstalk_domain}/"
    install = {}
    if 2 in results:
        s = results[2]
        install = {
            "hosts": s.hosts,
            "installed": s.installed,
            "failed": s.failed,
            "already_installed": s.already_installed,
            "install_s": round(s.install_s, 2),
        }
    return DeployReport(
        deployment=settings.deployment_name,
        stages=[records[n] for n in sorted(records)],
        urls=urls,
        resources=resources,
        install=install,
        seconds=round(time.time() - t0, 2),
    )


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


def publish(report: DeployReport) -> None:
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
        *[f"- {k}: {v}" for k, v in report.urls.items()],
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
    for link in url_links(report.deployment, report.urls):
        create_link_artifact(
            link.url, link_text=link.text, key=link.key, description=link.description
        )
