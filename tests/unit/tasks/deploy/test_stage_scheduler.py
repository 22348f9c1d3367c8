"""The scheduler of the deploy's stages, without Prefect: given the stage table, a fake
`start` and a fake clock, which stage starts when and which are `upstream failed`."""

from __future__ import annotations

import heapq

import pytest

from tasks.deploy.dag import NAMES, STAGES, upstream
from tasks.deploy.scheduler import (
    COMPLETED,
    FAILED,
    UPSTREAM_FAILED,
    Schedule,
    drive,
    waits_in,
)


class FakeRun:
    """Stages that take `seconds[n]` on a fake clock and end ok unless in `fails`;
    `refused` end at once, failing (an input not found, say)."""

    def __init__(
        self,
        seconds: dict[int, float] | None = None,
        fails: set[int] | None = None,
        refused: set[int] | None = None,
    ) -> None:
        self.seconds = seconds or {}
        self.fails, self.refused = fails or set(), refused or set()
        self.now = 0.0
        self.ends: list[tuple[float, int]] = []
        self.started: dict[int, float] = {}
        self.ended_at: dict[int, float] = {}
        self.outcome: dict[int, str] = {}

    def start(self, n: int) -> bool | None:
        assert n not in self.started, f"stage {n} started twice"
        self.started[n] = self.now
        if n in self.refused:
            self.ended_at[n] = self.now
            return False
        if STAGES[n].runs_in_flow:  # blocks the caller until it is done
            self.now += self.seconds.get(n, 1.0)
            self.ended_at[n] = self.now
            return n not in self.fails
        heapq.heappush(self.ends, (self.now + self.seconds.get(n, 1.0), n))
        return None

    def wait(self) -> tuple[int, bool]:
        self.now, n = heapq.heappop(self.ends)
        self.ended_at[n] = self.now
        return n, n not in self.fails

    def ended(self, n: int, status: str) -> None:
        assert n not in self.outcome, f"stage {n} ended twice"
        self.outcome[n] = status

    def drive(self, todo: list[int]) -> FakeRun:
        drive(Schedule(todo), self.start, self.wait, self.ended)
        return self


def test_the_table_is_a_dag_in_number_order() -> None:
    for n, stage in STAGES.items():
        assert all(w < n for w in upstream(n))
        assert stage.name == NAMES[n]
    assert upstream(9) == {1, 2, 3, 4, 5, 8}  # not 6 or 7: 9 needs only 8
    assert upstream(11) == {1, 2, 3, 4, 5, 7}


def test_each_stage_starts_when_what_it_waits_for_has_ended_and_not_later() -> None:
    seconds = {n: 1.0 for n in STAGES} | {7: 10.0, 8: 2.0}  # Beanstalk is the slow one
    run = FakeRun(seconds).drive(list(STAGES))
    assert run.outcome == {n: COMPLETED for n in STAGES}
    for n in STAGES:
        ready = max((run.ended_at[w] for w in STAGES[n].waits), default=0.0)
        assert run.started[n] == ready, n  # nothing but the table delays a stage
    # 6, 7 and 8 start together when 5 ends; 9 runs while 7 is still running
    assert run.started[6] == run.started[7] == run.started[8] == run.ended_at[5]
    assert run.started[9] == run.ended_at[8] < run.ended_at[7]
    assert run.started[10] == run.started[11] == run.ended_at[7]


def test_a_failure_stops_what_depends_on_it_only() -> None:
    run = FakeRun(fails={7}).drive(list(STAGES))
    assert run.outcome[7] == FAILED
    assert run.outcome[10] == run.outcome[11] == UPSTREAM_FAILED
    assert all(run.outcome[n] == COMPLETED for n in (1, 2, 3, 4, 5, 6, 8, 9))
    assert 10 not in run.started and 11 not in run.started

    run = FakeRun(fails={4}).drive(list(STAGES))
    assert run.outcome == {1: COMPLETED, 2: COMPLETED, 3: COMPLETED, 4: FAILED} | {
        n: UPSTREAM_FAILED for n in range(5, 12)
    }


def test_a_subflow_failing_in_the_flow_body_stops_the_rest() -> None:
    run = FakeRun(fails={2}).drive(list(STAGES))
    assert run.outcome[1] == COMPLETED and run.outcome[2] == FAILED
    assert all(run.outcome[n] == UPSTREAM_FAILED for n in range(3, 12))
    assert set(run.started) == {1, 2}


def test_a_stage_refused_before_it_starts_fails_and_blocks_its_dependents() -> None:
    # --stages 6,9: 6's inputs (4, 5) are not found; 9's (8) is
    run = FakeRun(refused={6}).drive([6, 9])
    assert run.outcome == {6: FAILED, 9: COMPLETED}
    run = FakeRun(refused={8}).drive([8, 9])
    assert run.outcome == {8: FAILED, 9: UPSTREAM_FAILED}


@pytest.mark.parametrize(
    ("todo", "waits"),
    [
        # the table's order holds through stages not selected
        ([1, 4], {1: set(), 4: {1}}),
        ([4, 8], {4: set(), 8: {4}}),
        ([2, 3], {2: set(), 3: {2}}),
        ([6, 7, 8, 9], {6: set(), 7: set(), 8: set(), 9: {8}}),
        ([3, 10, 11], {3: set(), 10: {3}, 11: {3}}),
    ],
)
def test_selected_stages_wait_for_selected_stages_only(
    todo: list[int], waits: dict[int, set[int]]
) -> None:
    assert waits_in(todo) == waits
    run = FakeRun().drive(todo)
    assert run.outcome == {n: COMPLETED for n in todo}
    for n, ws in waits.items():
        assert run.started[n] == max((run.ended_at[w] for w in ws), default=0.0)


def test_upstream_failure_reaches_through_stages_not_selected() -> None:
    run = FakeRun(fails={1}).drive([1, 4])
    assert run.outcome == {1: FAILED, 4: UPSTREAM_FAILED}
    assert 4 not in run.started


def test_tasks_ready_with_a_subflow_are_started_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2 runs in the flow body and blocks it: a task ready at the same moment goes first (no
    # stage of today's table is independent of 2: pretend 8 were)
    from tasks.deploy import scheduler

    monkeypatch.setattr(scheduler, "waits_in", lambda todo: {n: frozenset() for n in todo})
    schedule = Schedule([2, 8])
    assert schedule.startable() == [8, 2]
    assert set(schedule.running) == {2, 8}
    assert schedule.startable() == []


def test_every_selected_stage_ends_exactly_once() -> None:
    import itertools

    for fails in itertools.combinations(STAGES, 2):
        run = FakeRun(fails=set(fails)).drive(list(STAGES))
        assert set(run.outcome) == set(STAGES)
        for n, status in run.outcome.items():
            blocked = any(run.outcome[w] != COMPLETED for w in upstream(n))
            assert (status == UPSTREAM_FAILED) == blocked, (fails, n)
