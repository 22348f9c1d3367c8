"""The pure half of a plan: wanted vs found as entries (no AWS, no Prefect)."""

from __future__ import annotations

from tasks.plan import diff


def test_missing_is_create_found_is_noop() -> None:
    made = diff.resource(4, "target-group", "web-tg", exists=False, create="HTTP:8080")
    assert (made.action, made.reason, made.field) == ("create", "HTTP:8080", "")
    kept = diff.resource(4, "target-group", "web-tg", exists=True, ok="all 2 registered")
    assert (kept.action, kept.reason) == ("no-op", "all 2 registered")
    assert not kept.changes and made.changes


def test_drift_is_one_update_naming_every_field() -> None:
    drift = diff.members(
        "target group membership",
        ["i-1", "i-2"],
        ["i-2", "i-9"],
        add="register",
        remove="deregister",
    )
    drift += diff.value("health check", "/ every 10s", "/health every 30s")
    e = diff.resource(4, "target-group", "web-tg", exists=True, drift=drift)
    assert e.action == "update"
    assert e.field == "target group membership, health check"
    assert e.reason == "register i-1; deregister i-9; health check /health every 30s -> / every 10s"


def test_members_without_removal_and_value_equal() -> None:
    assert (
        diff.members("ingress rule", ["tcp 22 from a"], ["tcp 22 from a", "x"], remove=None) == []
    )
    assert diff.members("ingress rule", ["tcp 8080 from alb"], []) == [
        ("ingress rule", "add tcp 8080 from alb")
    ]
    assert diff.value("protocol", "HTTPS", "HTTPS") == []
    assert diff.value("protocol", "HTTPS", None) == [("protocol", "protocol none -> HTTPS")]


def test_count_launches_what_is_missing_and_never_terminates() -> None:
    assert diff.count(1, "ec2-instance", "d-web", 4, 0, "web").action == "create"
    grow = diff.count(1, "ec2-instance", "d-web", 4, 1, "web")
    assert (grow.action, grow.field) == ("update", "instance count")
    assert "1 -> 4 (launch 3)" in grow.reason
    assert diff.count(1, "ec2-instance", "d-web", 2, 5, "web").action == "no-op"


def test_shown_caps_the_names() -> None:
    assert diff.shown([f"i-{n}" for n in range(7)]) == "i-0, i-1, i-2, i-3, i-4, +2"


def test_same_finding_listed_once_under_the_first_stage() -> None:
    a = diff.resource(6, "ec2-instance", "d-traffic", exists=False, create="x")
    b = a.model_copy(update={"stage": 10})
    c = diff.resource(4, "security-group", "d-web", exists=True, drift=[("ingress rule", "add 1")])
    d = diff.resource(2, "security-group", "d-web", exists=True, drift=[("ingress rule", "add 2")])
    assert diff.deduplicated([a, b, c, d]) == [a, c, d]


def test_teardown_entries_are_deletes() -> None:
    got = diff.deletes([(1, "key-pair", "d"), (4, "load-balancer", "d-alb")])
    assert [(e.stage, e.kind, e.name, e.action) for e in got] == [
        (1, "key-pair", "d", "delete"),
        (4, "load-balancer", "d-alb", "delete"),
    ]
