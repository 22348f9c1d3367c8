"""The plan's `--json` schema, exit codes and views."""

from __future__ import annotations

import json
from typing import Any

from tasks.plan import render
from tasks.plan.models import SCHEMA, Plan, PlanEntry


def entry(action: str, **kw: str) -> PlanEntry:
    return PlanEntry(stage=4, kind="target-group", name="d-tg", action=action, **kw)  # type: ignore[arg-type]


def test_json_schema_is_stable() -> None:
    plan = Plan(
        deployment_name="d",
        stages=[4],
        entries=[entry("no-op"), entry("update", field="target group membership", reason="r")],
    )
    doc = json.loads(plan.as_json())
    assert list(doc) == [
        "schema",
        "command",
        "deployment_name",
        "stages",
        "changes",
        "counts",
        "entries",
    ]
    assert doc["schema"] == SCHEMA == "tomcat-fleet.plan/1"
    assert doc["changes"] == 1 and doc["counts"] == {
        "create": 0,
        "update": 1,
        "delete": 0,
        "no-op": 1,
    }
    assert list(doc["entries"][1]) == ["stage", "kind", "name", "action", "field", "reason"]
    assert doc["entries"][1]["field"] == "target group membership"


def test_exit_codes_follow_detailed_exitcode() -> None:
    assert Plan(deployment_name="d").exit_code == 0
    assert Plan(deployment_name="d", entries=[entry("no-op")]).exit_code == 0
    for action in ("create", "update", "delete"):
        assert Plan(deployment_name="d", entries=[entry(action)]).exit_code == 2


def test_table_and_markdown_name_each_change() -> None:
    plan = Plan(
        deployment_name="d",
        entries=[
            entry("create", reason="HTTP:8080"),
            entry("update", field="ingress rule", reason="add tcp 8080 from d-alb"),
        ],
    )
    text = render.table(plan)
    assert "+  4" in text and "~  4" in text and "ingress rule" in text
    assert text.splitlines()[-1] == (
        "deploy plan of d: 1 to create, 1 to update, 0 to delete, 0 unchanged"
    )
    md = render.markdown(plan)
    assert "| 4 | update | target-group | `d-tg` | ingress rule | add tcp 8080 from d-alb |" in md
    assert render.artifact_key(Plan(deployment_name="My_Dep", command="teardown")) == (
        "my-dep-teardown-plan"
    )


def test_a_saved_json_plan_prints_as_the_table(tmp_path: Any, capsys: Any) -> None:
    plan = Plan(deployment_name="d", entries=[entry("create", reason="HTTP:8080")])
    path = tmp_path / "plan.json"
    path.write_text(plan.as_json())
    assert render.main([str(path)]) == 0
    assert capsys.readouterr().out == render.table(plan) + "\n"
    path.write_text("{}")
    assert render.main([str(path)]) == 1
