"""What every stage room is made of: its Prefect task, built from its row of the stage table
(`stage_task`); the clock of the stages' start and end, and their one-line summaries; what a
stage is given when it starts (`Call`), what a finder is given (`Finding`) and what a
planner is given (`Survey`, tasks/deploy/survey.py); the `Room` each stage module exposes
as `ROOM`; and the SSH key, which the SSH stages read themselves
(never a task argument).

A stage runs inside `recorded`: every line `tasks.actions` writes while it runs (resources
found, created, changed; waits; retries), in its thread or in threads it starts with a copy
of its context, goes to its task run's log (Prefect's run logger, which carries the run's
ids, so any thread may use it), and its summary becomes the report's `detail`."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.ec2 import StageError
from tasks.deploy.dag import Stage
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.models import DeployRequest
from tasks.deploy.survey import Survey
from tasks.plan.models import PlanEntry
from tasks.remote.key_source import KeyUnavailable, read_key

T = TypeVar("T")


# -- stage timing -----------------------------------------------------------------------
class _Clock:
    """Start/end and summary of each stage, per flow run (stages run in threads of this
    process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, dict[int, list[float]]] = {}
        self.summaries: dict[str, dict[int, str]] = {}

    def mark(self, stage: int, which: int) -> None:
        with self.lock:
            times = self.runs.setdefault(str(flow_run.id), {}).setdefault(stage, [0.0, 0.0])
            times[which] = time.time()

    def note(self, stage: int, summary: str) -> None:
        """The stage's one-line summary (its last attempt's)."""
        with self.lock:
            self.summaries.setdefault(str(flow_run.id), {})[stage] = summary

    def of(self, run_id: str) -> dict[int, list[float]]:
        with self.lock:
            return dict(self.runs.get(run_id, {}))

    def summaries_of(self, run_id: str) -> dict[int, str]:
        with self.lock:
            return dict(self.summaries.get(run_id, {}))


CLOCK = _Clock()


def run_logger() -> Any:
    """The current task or flow run's logger (its records carry the run's ids, so threads
    without Prefect's context may use it too); None outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return None


@contextlib.contextmanager
def recorded(stage: int) -> Iterator[actions.ActionLog]:
    """Stage `stage`'s actions: each line to the run's log, the summary to `CLOCK` (and, when
    the stage completes, as its last line)."""
    sink = run_logger()
    with actions.recording(sink) as log:
        try:
            yield log
        finally:
            CLOCK.note(stage, log.summary())
        if sink is not None and log.actions:
            sink.info("stage %d did: %s", stage, log.summary(limit=2000))


def timed(stage: int, fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        CLOCK.mark(stage, 0)
        try:
            with recorded(stage):
                return fn(*args, **kwargs)
        finally:
            CLOCK.mark(stage, 1)

    return run


def stage_task(row: Stage) -> Callable[[Callable[..., T]], Any]:
    """The stage's Prefect task, with the name, tags and retries of its table row."""

    def wrap(fn: Callable[..., T]) -> Any:
        return task(
            name=row.task_name,
            task_run_name=row.run_name,
            tags=list(row.tags),
            cache_policy=NO_CACHE,
            retries=row.retries,
            retry_delay_seconds=row.retry_delay_s,
        )(timed(row.number, fn))

    return wrap


# -- what a room is given -----------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """A stage about to run in the flow body: the run's settings and parameters, the results
    of the stages it needs (by number), and the flows it may run as subflows (by name)."""

    settings: FleetSettings
    request: DeployRequest
    inputs: Mapping[int, Any]
    subflows: Mapping[str, Callable[..., Any]]


@dataclass(frozen=True)
class Finding:
    """A finder's question: this stage's result, for `stage` (named when it is missing);
    `get(n)` is another stage's result, this run's or found."""

    settings: FleetSettings
    aws: Aws
    stage: int
    get: Callable[[int], Any]


def _no_parameters(_: DeployRequest) -> tuple[Any, ...]:
    return ()


@dataclass(frozen=True)
class Room:
    """One stage: its row, and either its `task` (submitted with the settings, then
    `parameters(request)`, then the results of its `needs` in the table's order) or `run`
    (called in the flow body with a `Call`); `find`, its result when it is not run; `report`,
    what its result adds to the deploy report; `plan`, what it would create, update or
    leave alone, read without changing anything (`deploy --plan`)."""

    stage: Stage
    task: Any = None
    parameters: Callable[[DeployRequest], tuple[Any, ...]] = _no_parameters
    run: Callable[[Call], Any] | None = None
    find: Callable[[Finding], Any] | None = None
    report: Callable[[Any, FleetSettings], ReportPart] | None = None
    plan: Callable[[Survey], list[PlanEntry]] | None = None


# -- the SSH key ----------------------------------------------------------------------------
def ssh_key(settings: FleetSettings) -> str:
    """The deployment's private key PEM, from its Prefect Secret block or file. Never logged;
    read inside the stages that SSH, never passed to a task."""
    try:
        return read_key(settings.ssh_key_block, str(settings.key_file_path()))
    except KeyUnavailable as exc:
        raise StageError(str(exc)) from None
