"""The deploy flow starts each stage when the stage table says, and nothing else orders them:
every stage starts only after all the selected stages it waits for have ended, and stages
with no path between them in the table run side by side. Read from the report's start/end
times (taken inside each stage) and, for the tasks, from the Prefect API's task runs. Once
with fake stages (all eleven, seconds), once on a sandbox with the real ones."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

import flows.deploy as deploy_flow
from sandbox import Sandbox, SandboxConfig
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import DeployReport, StageRecord
from tasks.deploy.scheduler import waits_in
from tasks.runtime.outcome import outcome_of

from ..support import make_sandbox
from .fake_stages import stage_results, use_fake_stages

# no stage waits on anything but the table: a stage starts this soon after it may. Not
# sooner: before a tagged task run starts, Prefect takes its tags' concurrency slots from the
# API, which against the test server took up to 2.6 s (0.0-0.1 s untagged; 2 cores)
START_LAG_S = 5.0


def run(**kw: Any) -> tuple[Any, DeployReport]:
    state = deploy_flow.deploy(return_state=True, **kw)
    report = outcome_of(state)
    assert isinstance(report, DeployReport), state.message
    return state, report


def check_follows_the_table(report: DeployReport, todo: list[int]) -> dict[int, StageRecord]:
    st = {r.stage: r for r in report.stages}
    for n, waits in waits_in(todo).items():
        rec = st[n]
        assert rec.status == "completed", (n, rec)
        assert rec.started_s is not None and rec.ended_s is not None, rec
        ready = max((st[w].ended_s or 0.0 for w in waits), default=None)
        if ready is not None:
            assert rec.started_s >= ready, f"stage {n} started before what it waits for ended"
            assert rec.started_s - ready < START_LAG_S, f"stage {n} waited on something else"
    return st


def overlap(a: StageRecord, b: StageRecord) -> bool:
    assert a.started_s is not None and a.ended_s is not None
    assert b.started_s is not None and b.ended_s is not None
    return a.started_s < b.ended_s and b.started_s < a.ended_s


def task_run_times(flow_run_id: Any) -> dict[int, tuple[float, float]]:
    """Start and end of each stage's task run, from the Prefect API."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    by_name = {s.run_name: n for n, s in STAGES.items()}
    return {
        by_name[r.name]: (r.start_time.timestamp(), r.end_time.timestamp())
        for r in runs
        if r.name in by_name and r.start_time and r.end_time
    }


def test_fake_stages_start_as_the_table_says(monkeypatch: pytest.MonkeyPatch) -> None:
    # Beanstalk (7) is slow: 9 (after 8) must not wait for it, 10 and 11 must. 6, 7 and 8
    # may start up to START_LAG_S apart, so each span is longer than that lag and the
    # overlaps hold whatever the lag: 6 (18 s) outlasts 8 + 9's start; 7 (24 s) outlasts 9
    seconds = {n: 0.3 for n in STAGES} | {6: 18.0, 7: 24.0, 8: 6.0, 9: 1.0}
    use_fake_stages(monkeypatch, stage_results(), seconds)
    state, report = run(
        instances=1,
        runner="thread",
        settings_overrides={"deployment_name": "fakeorder", "hosted_zone": "example.com"},
    )
    assert state.is_completed(), state.message
    st = check_follows_the_table(report, list(STAGES))
    assert overlap(st[6], st[7]) and overlap(st[6], st[8]) and overlap(st[7], st[8])
    assert overlap(st[7], st[9]) and overlap(st[6], st[9])
    assert st[9].ended_s is not None and st[7].ended_s is not None
    assert st[9].ended_s < st[7].ended_s  # 9 needed only 8

    # the same order in the task runs Prefect recorded
    api = task_run_times(state.state_details.flow_run_id)
    assert set(api) == {n for n, s in STAGES.items() if not s.runs_in_flow}
    for n in api:
        for w in STAGES[n].waits:
            if w in api:
                assert api[n][0] >= api[w][1], f"task run of {n} started before {w} ended"
    assert api[9][1] < api[7][1] and api[8][0] < api[6][1]


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        rds_create_seconds=0.3,
        eb_launch_seconds=12.0,  # past RDS + jumphost on a loaded 2-core box
        health_check_interval=0.3,
    )
    with make_sandbox(cfg, env=True) as s:
        yield s


def test_sandbox_deploy_follows_the_table(sb: Sandbox, tmp_path: Any) -> None:
    todo = [1, 2, 3, 4, 5, 7, 8, 9]
    state, report = run(
        instances=2,
        stages="1-5,7-9",
        runner="thread",
        settings_overrides={
            "state_dir": str(tmp_path / "state"),
            "log_dir": str(tmp_path / "logs"),
            "deployment_name": "tableorder",
        },
    )
    assert state.is_completed(), state.message
    st = check_follows_the_table(report, todo)
    assert overlap(st[7], st[8]) and overlap(st[7], st[9])
    assert st[9].ended_s is not None and st[7].ended_s is not None
    assert st[9].ended_s < st[7].ended_s  # 9 needed only 8
    assert {r.stage for r in report.stages if r.detail == "not selected"} == {6, 10, 11}
