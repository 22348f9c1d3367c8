"""The entries the stages share (a group's ingress rules, a one-instance role), from reads
given in the survey's cache: no AWS, no network."""

from __future__ import annotations

from typing import Any

from blocks.settings import FleetSettings
from tasks.deploy.survey import Survey
from tasks.models import Instance


def rule(port: int, *, cidr: str | None = None, group: str | None = None) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "IpRanges": [{"CidrIp": cidr}] if cidr else [],
        "UserIdGroupPairs": [{"GroupId": group}] if group else [],
    }


def survey(memo: dict[Any, Any]) -> Survey:
    settings = FleetSettings(deployment_name="d", state_dir="/nonexistent")
    return Survey(settings, aws=None, instances=2, memo=memo)  # type: ignore[arg-type]


def test_missing_rule_is_an_update_naming_the_ingress_rule() -> None:
    web = {"GroupId": "sg-web", "IpPermissions": [rule(22, cidr="1.2.3.4/32")]}
    s = survey({("group", "web"): web})
    e = s.ingress_entry(4, "web", [8080], "sg-alb", "d-alb")
    assert (e.action, e.kind, e.name, e.field) == (
        "update",
        "security-group",
        "d-web",
        "ingress rule",
    )
    assert e.reason == "add tcp 8080 from d-alb"
    web["IpPermissions"].append(rule(8080, group="sg-alb"))
    assert s.ingress_entry(4, "web", [8080], "sg-alb", "d-alb").action == "no-op"


def test_rules_on_a_missing_group_or_from_a_missing_source() -> None:
    s = survey({("group", "db"): None, ("group", "web"): {"GroupId": "sg-w", "IpPermissions": []}})
    assert s.ingress_entry(8, "db", [3306], "sg-j", "d-jumphost").action == "create"
    # the source group is not made yet: the rule cannot be there
    assert s.ingress_entry(4, "web", [8080], None, "d-alb").action == "update"


def test_controller_rules_when_this_machine_cannot_learn_its_address() -> None:
    web = {"GroupId": "sg-w", "IpPermissions": [rule(22, cidr="5.6.7.8/32")]}
    s = survey({("group", "web"): web, "cidr": None})
    assert s.controller_ingress_entry(2, "web", [22]).action == "no-op"
    e = s.controller_ingress_entry(2, "web", [22, 8080])
    assert e.action == "update" and "this controller" in e.reason


def test_a_role_instance_is_its_group_ssh_and_one_instance() -> None:
    group = {"GroupId": "sg-t", "IpPermissions": [rule(22, cidr="1.2.3.4/32")]}
    running = [Instance(instance_id="i-1", public_ip="127.0.0.1")]
    s = survey({("group", "traffic"): group, "cidr": "1.2.3.4/32", ("running", "traffic"): running})
    assert [(e.kind, e.action) for e in s.role_instance(6, "traffic")] == [
        ("security-group", "no-op"),
        ("security-group", "no-op"),
        ("ec2-instance", "no-op"),
    ]
    empty = survey({("group", "traffic"): None, "cidr": "1.2.3.4/32", ("running", "traffic"): []})
    assert {e.action for e in empty.role_instance(6, "traffic")} == {"create"}
