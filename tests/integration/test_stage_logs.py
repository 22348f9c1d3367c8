"""What an operator sees in the Prefect UI: every stage's task run logs what it found, created
or changed, what it waited for and how long, and every retry; the deploy report's `detail`
holds each completed stage's one-line summary; a teardown logs each resource and wait the
same way. Read back through the session's Prefect API, as the UI reads them.

One module-scoped run on the sandbox (two instances, EC2 throttling on so back-off retries
happen): deploy stages 1-5, drift the target group's health check, deploy 4-5 again (found,
unchanged, changed), tear down. `-s` prints sample lines and each stage's line count."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest

from flows.deploy import DeployReport, deploy
from flows.teardown import teardown
from sandbox import SandboxConfig
from tasks.aws.teardown import TeardownReport
from tasks.runtime.outcome import outcome_of

from ..support import client, make_sandbox

N = 2
D = "stagelogs"
# Prefect's own task-run lines: what the UI showed before (and all it showed for 3, 4, 5, ...)
PREFECT_LINES = re.compile(
    r"^(Finished in state|Created task run|Task run .*(failed|retry)|Encountered exception|"
    r"Received non-final state|Retrying|Beginning|Executing)"
)
KINDS = {  # sample kind -> how its lines start
    "created/found/changed": ("created ", "found ", "changed "),
    "wait": ("waited ",),
    "retry": ("retry ",),
}


@dataclass
class Run:
    """One flow run's task runs (id -> name) and its log lines (task run id or None, text)."""

    name: str
    state: Any
    task_runs: dict[UUID, str] = field(default_factory=dict)
    lines: list[tuple[UUID | None, str]] = field(default_factory=list)

    def own_lines(self, task_run: UUID) -> list[str]:
        """The task run's lines beyond Prefect's own state lines."""
        return [m for t, m in self.lines if t == task_run and not PREFECT_LINES.match(m)]

    def by_task(self) -> dict[str, list[str]]:
        return {name: self.own_lines(tid) for tid, name in sorted(self.task_runs.items(), key=str)}


@contextlib.contextmanager
def _run_logs_at_info() -> Iterator[None]:
    """The session runs Prefect at WARNING (tests/conftest.py); the UI's default is INFO."""
    names = ("prefect.task_runs", "prefect.flow_runs")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.INFO)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _all_pages(read: Any, **kw: Any) -> list[Any]:
    out: list[Any] = []
    while True:
        batch = read(limit=200, offset=len(out), **kw)
        out += batch
        if len(batch) < 200:
            return out


def read_back(run: Run) -> Run:
    """The run's task runs and logs, from the Prefect API (logs arrive in batches: read until
    their count settles)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    flow_run_id = run.state.state_details.flow_run_id
    with get_client(sync_client=True) as pc:
        trs = pc.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        run.task_runs = {tr.id: tr.name for tr in trs}
        logs: list[Any] = []
        deadline = time.monotonic() + 20
        while True:
            now = _all_pages(
                pc.read_logs,
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            )
            if (logs and len(now) == len(logs)) or time.monotonic() > deadline:
                break
            logs = now
            time.sleep(1.0)
    run.lines = [(log.task_run_id, log.message) for log in now]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("stagelogs")
    overrides = {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": D,
        "aws_backoff_base_s": 0.05,
        "aws_backoff_cap_s": 0.5,
    }
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        health_check_interval=0.3,
        throttle_rate=0.15,  # EC2 refuses some calls: the client backs off and says so
    )
    out: dict[str, Run] = {}
    with make_sandbox(cfg, env=True) as sb, _run_logs_at_info():
        kw: dict[str, Any] = {"instances": N, "runner": "thread", "return_state": True}
        out["deploy"] = Run("deploy 1-5", deploy(stages="1-5", settings_overrides=overrides, **kw))
        elb = client(sb, "elbv2")
        tg = elb.describe_target_groups(Names=[f"{D}-tg"])["TargetGroups"][0]
        elb.modify_target_group(TargetGroupArn=tg["TargetGroupArn"], HealthCheckPath="/drift")
        out["again"] = Run("deploy 4-5", deploy(stages="4,5", settings_overrides=overrides, **kw))
        td = teardown(deployment_name=D, settings_overrides=overrides, return_state=True)
        out["teardown"] = Run("teardown", td)
        for run in out.values():
            read_back(run)
    return out


def samples(runs: dict[str, Run]) -> dict[str, list[str]]:
    """Three lines of each kind: one created, one found, one changed; the three longest
    waits; the first three retries."""
    lines = [m for run in runs.values() for _, m in run.lines]
    out = {kind: [m for m in lines if m.startswith(starts)] for kind, starts in KINDS.items()}
    out["created/found/changed"] = [
        next((m for m in lines if m.startswith(verb)), "")
        for verb in ("created target group", "found load balancer", "changed target group")
    ]
    out["wait"].sort(key=lambda m: -float(m.split()[1].rstrip("s")))
    return {kind: [m for m in got if m][:3] for kind, got in out.items()}


def show(runs: dict[str, Run]) -> str:
    """Lines per task run and three samples of each kind (printed; quoted by the lead)."""
    text = ["lines beyond Prefect's state lines, per stage task run:"]
    for run in runs.values():
        for name, own in run.by_task().items():
            if re.match(r"^\d\d |teardown-resources", name):
                text.append(f"  {run.name}: {name}: {len(own)}")
        body = [m for t, m in run.lines if t is None and re.match(r"^(stage 2 did|Tomcat on)", m)]
        if body:  # stage 2 runs its subflow in the flow body: its lines are the flow run's
            text.append(f"  {run.name}: 02 install-tomcat (flow run's log): {body}")
    for kind, lines in samples(runs).items():
        text.append(f"sample {kind} lines:")
        text += [f"  {line}" for line in lines]
    return "\n".join(text)


def test_every_stage_task_run_logs_what_it_did(runs: dict[str, Run]) -> None:
    print("\n" + show(runs))
    for key in ("deploy", "again"):
        run = runs[key]
        assert run.state.is_completed(), run.state.message
        stages = {tid: name for tid, name in run.task_runs.items() if re.match(r"^\d\d ", name)}
        expected = {"01 launch-instances", "03 save-inventory"} if key == "deploy" else set()
        assert set(stages.values()) == expected | {
            "04 application-load-balancer",
            "05 tls-listener",
        }, run.task_runs
        for tid, name in stages.items():
            own = run.own_lines(tid)
            assert own, f"{run.name}: {name} logged only Prefect's state lines\n{show(runs)}"
            assert any(m.startswith(f"stage {int(name[:2])} did: ") for m in own), own


def test_the_lines_say_what_was_created_found_changed_waited_for_and_retried(
    runs: dict[str, Run],
) -> None:
    got = samples(runs)
    assert len(got["created/found/changed"]) == 3 and len(got["wait"]) == 3, show(runs)
    assert got["retry"], f"no retry line (EC2 throttling is on)\n{show(runs)}"
    every = [m for run in runs.values() for _, m in run.lines]
    assert any(re.match(rf"created target group {D}-tg \(arn:", m) for m in every), show(runs)
    assert any(re.match(rf"found load balancer {D}-alb \(arn:.*\), unchanged", m) for m in every)
    changed = [m for m in every if m.startswith(f"changed target group {D}-tg")]
    assert any(m.endswith("health check HTTP / (was HTTP /drift)") for m in changed), changed
    waits = [m for m in every if m.startswith("waited ")]
    assert any(
        re.match(r"waited \d+\.\ds for 2 target\(s\) of .* to be healthy: done", m) for m in waits
    )
    assert all(
        re.match(r"retry \d+/\d+ of \w+\.\w+ in \d+\.\d\ds after \S+", m) for m in got["retry"]
    )


def test_the_report_detail_is_each_completed_stages_summary(runs: dict[str, Run]) -> None:
    for key in ("deploy", "again"):
        report = outcome_of(runs[key].state)
        assert isinstance(report, DeployReport)
        done = [r for r in report.stages if r.status == "completed"]
        assert {r.stage for r in done} == ({1, 2, 3, 4, 5} if key == "deploy" else {4, 5})
        for r in done:
            assert r.detail and r.detail != "not selected", (r.stage, r.detail)
        print(f"\n{runs[key].name} details:")
        for r in done:
            print(f"  {r.stage} {r.name}: {r.detail}")
    first = {r.stage: r.detail for r in outcome_of(runs["deploy"].state).stages}
    assert first[4].startswith(f"ALB {D}-alb: 2/2 targets healthy; created "), first[4]
    assert f"target group {D}-tg" in first[4] and "waited " in first[4], first[4]
    assert "created key pair" in first[1] and "2 instances" in first[1], first[1]
    assert "Tomcat on 2/2 hosts" in first[2], first[2]


def test_a_teardown_logs_each_resource_and_wait(runs: dict[str, Run]) -> None:
    run = runs["teardown"]
    assert run.state.is_completed(), run.state.message
    report = outcome_of(run.state)
    assert isinstance(report, TeardownReport) and not report.errors, report
    (tid,) = [t for t, name in run.task_runs.items() if name.startswith("teardown-resources")]
    own = run.own_lines(tid)
    print("\nteardown lines:\n  " + "\n  ".join(own))
    print(f"teardown summary: {report.summary}")
    deleted = [m for m in own if m.startswith("deleted ")]
    assert len(deleted) == report.total_removed, (deleted, report.removed)
    assert any(m.startswith(f"deleted load-balancer {D}-alb") for m in own), own
    assert any(re.match(r"waited \d+\.\ds for load balancer .* to be gone: done", m) for m in own)
    assert report.summary.startswith("deleted "), report.summary
