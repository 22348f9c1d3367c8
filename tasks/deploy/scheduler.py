"""Which selected stage starts when, from the stage table alone: pure (no Prefect, no clock).

A selected stage starts once every selected stage it depends on (directly, or through
stages not selected: `dag.upstream`) has completed; when one of them failed, or was not run
because of its own upstream, the stage is `upstream failed` and never starts. Nothing else
orders the stages: two stages with no path between them in the table run side by side.

`drive` is the whole loop; the deploy flow gives it a `start` that submits a Prefect task
(or runs a subflow in the flow body) and a `wait` that returns the next stage to end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tasks.deploy.dag import STAGES, upstream

COMPLETED, FAILED, UPSTREAM_FAILED, STARTED = "completed", "failed", "upstream failed", "started"


def waits_in(todo: Iterable[int]) -> dict[int, frozenset[int]]:
    """For each selected stage, the selected stages it waits for."""
    chosen = frozenset(todo)
    return {n: upstream(n) & chosen for n in sorted(chosen)}


class Schedule:
    """The state of one run's stages; `startable` and `ended` move it on."""

    def __init__(self, todo: Iterable[int]) -> None:
        self.waits = waits_in(todo)
        self.state: dict[int, str] = {}  # started, completed, failed, upstream failed

    def startable(self) -> list[int]:
        """The stages that may start now (marked started): subflows run in the flow body
        last, so that the tasks ready with them are submitted first."""
        ready = [
            n
            for n, waits in self.waits.items()
            if n not in self.state and all(self.state.get(w) == COMPLETED for w in waits)
        ]
        for n in ready:
            self.state[n] = STARTED
        return sorted(ready, key=lambda n: (STAGES[n].runs_in_flow, n))

    def ended(self, stage: int, ok: bool) -> list[int]:
        """Record how `stage` ended; returns the stages that can now never start."""
        self.state[stage] = COMPLETED if ok else FAILED
        if ok:
            return []
        blocked = [n for n, w in self.waits.items() if n not in self.state and stage in w]
        for n in blocked:
            self.state[n] = UPSTREAM_FAILED
        return blocked

    @property
    def running(self) -> list[int]:
        return [n for n, s in self.state.items() if s == STARTED]


def drive(
    schedule: Schedule,
    start: Callable[[int], bool | None],
    wait: Callable[[], tuple[int, bool]],
    ended: Callable[[int, str], None],
) -> None:
    """Run every stage of `schedule`. `start(n)` starts stage n and returns None while it
    runs on (then `wait()` reports it when it ends, as `(n, ok)`), or whether it succeeded
    when it ended at once (ran in the flow body, or was refused before it started).
    `ended(n, status)` is told every stage's outcome: completed, failed or upstream failed."""

    def record(n: int, ok: bool) -> None:
        ended(n, COMPLETED if ok else FAILED)
        for m in schedule.ended(n, ok):
            ended(m, UPSTREAM_FAILED)

    while True:
        ready = schedule.startable()
        for n in ready:
            ok = start(n)
            if ok is not None:
                record(n, ok)
        if ready:
            continue
        if not schedule.running:
            return
        record(*wait())
