"""The stage table (tasks/deploy/dag.py) is the one source of the stages: the rooms build
their tasks from it, take the results of the stages it says they need, find what it says
they find; the deploy flow's docstring, docs/stages.md and `--stages` parsing follow it."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tasks.deploy import dag
from tasks.deploy.dag import STAGES
from tasks.deploy.models import DeployRequest
from tasks.deploy.stages import rooms
from tasks.deploy.stages.room import Room

ROOT = Path(__file__).resolve().parents[4]
STAGES_DIR = ROOT / "tasks" / "deploy" / "stages"


def test_every_room_is_a_row_and_every_row_a_room() -> None:
    modules = {p.stem for p in STAGES_DIR.glob("*.py")} - {"__init__", "room"}
    assert modules == {s.room for s in STAGES.values()}
    assert sorted(rooms()) == sorted(STAGES)


def test_room_module_names_are_unique_in_the_project() -> None:
    names = [
        p.stem
        for top in ("flows", "tasks", "blocks", "sandbox", "benchmarks")
        for p in (ROOT / top).rglob("*.py")
    ]
    for s in STAGES.values():
        assert names.count(s.room) == 1, s.room
    assert names.count("room") == 1


@pytest.mark.parametrize("n", sorted(STAGES))
def test_the_stage_task_has_the_tables_options(n: int) -> None:
    row, room = STAGES[n], rooms()[n]
    assert room.stage is row
    if row.runs_in_flow:
        assert room.task is None and room.run is not None
        return
    task = room.task
    assert room.run is None and task is not None
    assert task.name == row.task_name == f"stage-{n:02d}-{row.name}"
    assert task.task_run_name == f"{n:02d} {row.name}"
    assert task.retries == row.retries
    assert task.retry_delay_seconds == row.retry_delay_s
    assert set(task.tags) == {"deploy", f"stage-{n}", f"group-{row.group}"}
    assert task.timeout_seconds is None  # see dag.py: timeout_s bounds the stage's waits


def _hints(fn: Any) -> dict[str, Any]:
    return typing.get_type_hints(inspect.unwrap(fn))


def _types(hint: Any) -> set[Any]:
    return set(typing.get_args(hint)) or {hint}


def _made(room: Room) -> Any:
    return _hints(room.task.fn if room.task is not None else room.run)["return"]


@pytest.mark.parametrize("n", sorted(STAGES))
def test_a_stage_takes_typed_results_of_what_it_needs(n: int) -> None:
    """Its task's parameters after the settings (and the flow parameters it takes) are the
    results of its needs, in the table's order, typed as the producer makes them and as
    its finder finds them."""
    room = rooms()[n]
    if room.task is None:
        return
    params = list(inspect.signature(inspect.unwrap(room.task.fn)).parameters)
    hints = _hints(room.task.fn)
    extra = len(room.parameters(dag_request()))
    inputs = params[1 + extra :]
    assert params[0] == "settings" and len(inputs) == len(STAGES[n].needs), params
    for name, producer in zip(inputs, STAGES[n].needs, strict=True):
        made, found = _made(rooms()[producer]), _hints(rooms()[producer].find)["return"]
        assert {made, found} <= _types(hints[name]), (n, name, producer)
        assert issubclass(made, BaseModel) and issubclass(found, BaseModel)


def dag_request() -> DeployRequest:
    return DeployRequest(instances=1)


def test_a_room_finds_exactly_what_the_table_says_is_found() -> None:
    for n, room in rooms().items():
        assert (room.find is not None) == bool(STAGES[n].found), n
    taken = {p for s in STAGES.values() for p in s.needs}
    assert taken <= {n for n, s in STAGES.items() if s.found}


def test_the_stages_reading_the_ssh_key_are_the_tables_ssh_stages() -> None:
    import importlib

    readers = {
        n
        for n, s in STAGES.items()
        if "ssh_key(" in inspect.getsource(importlib.import_module(f"tasks.deploy.stages.{s.room}"))
    }
    ssh = {n for n, s in STAGES.items() if s.ssh}
    assert readers <= ssh
    assert ssh - readers == {n for n in ssh if STAGES[n].runs_in_flow}  # the subflow reads it


def test_the_flow_has_every_subflow_the_table_names() -> None:
    from flows.deploy import SUBFLOWS

    for s in STAGES.values():
        if s.subflow:
            assert SUBFLOWS[s.subflow].name == s.subflow


def test_the_flow_docstring_lists_the_table() -> None:
    from flows.deploy import deploy

    doc = inspect.cleandoc(deploy.fn.__doc__ or "")
    block = re.search(r"\nStages \(.*?\):\n((?:    .*\n)+)", doc)
    assert block, doc
    assert [line.strip() for line in block.group(1).splitlines()] == dag.docstring_lines()
    # Prefect still reads the parameters' descriptions from the docstring's Args:
    described = deploy.parameters.properties
    assert "Exactly the stages to run" in described["stages"]["description"]
    assert f"stages {dag.span(dag.zone_stages())} " in described["hosted_zone"]["description"]


def test_docs_stages_md_is_current() -> None:
    doc = ROOT / "docs" / "stages.md"
    assert doc.read_text() == dag.markdown(), (
        "docs/stages.md is stale: python -m tasks.deploy.dag --markdown > docs/stages.md"
    )
    for s in STAGES.values():
        assert f"| {s.number} | {s.name} | `{s.room}` |" in doc.read_text()


def test_stage_parsing_and_prerequisites_follow_the_table() -> None:
    from tasks.inputs import parse_stages, with_prerequisites

    assert parse_stages(f"1-{len(STAGES)}") == list(STAGES)
    for n, s in STAGES.items():
        assert dag.NEEDS[n] == s.waits
        assert with_prerequisites([n]) == sorted({n} | dag.upstream(n))
    assert with_prerequisites([11]) == [1, 2, 3, 4, 5, 7, 11]


def test_the_hosted_zone_is_checked_for_the_stages_that_need_it() -> None:
    assert dag.zone_stages() == list(range(5, 12))
    assert dag.span([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"
