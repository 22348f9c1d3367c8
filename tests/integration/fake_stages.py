"""The deploy flow with fake stages: each stage's room keeps its row of the stage table (its
task is built by the same `stage_task`, so it is named, tagged, retried and timed as the real
one) but its work is a sleep that returns a canned result. No sandbox, no SSH: a deploy runs
in seconds and shows only what the flow does with the table."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from prefect.states import Completed

import flows.deploy as deploy_flow
from tasks.deploy.models import (
    AlbResult,
    BeanstalkResult,
    InventoryResult,
    JumphostResult,
    LaunchResult,
    RdsResult,
    TlsResult,
    TrafficResult,
)
from tasks.deploy.stages import rooms
from tasks.deploy.stages.room import stage_task
from tasks.models import InstallSummary, Instance


def stage_results() -> dict[int, Any]:
    """A plausible result of every stage."""
    inst = Instance(instance_id="i-0123456789abcdef0", public_ip="127.0.0.9")
    traffic = TrafficResult(target="x", requests=1, ok=1)
    return {
        1: LaunchResult(instances=[inst], security_group_id="sg-1", key_name="k"),
        2: InstallSummary(
            hosts=1,
            installed=1,
            failed=0,
            already_installed=0,
            install_s=0.1,
            chunk_size=1,
            max_workers=1,
            desired_count=1,
            total_chunks=1,
            runner="thread",
        ),
        3: InventoryResult(path="inv", instances=[inst], security_group_ids=[]),
        4: AlbResult(
            load_balancer_arn="arn:lb",
            dns_name="ui-alb-1.elb.example",
            security_group_id="sg-1",
            target_group_arn="arn:tg",
            http_listener_arn="arn:l80",
            url="http://ui-alb-1.elb.example/",
        ),
        5: TlsResult(
            certificate_arn="arn:cert",
            domain="www.example.com",
            https_listener_arn="arn:l443",
            hosted_zone_id="Z1",
            url="https://www.example.com/",
        ),
        6: traffic,
        7: BeanstalkResult(
            application="app",
            environment="env",
            cname="env.elasticbeanstalk.example",
            load_balancer_arn="arn:eb-lb",
            instance_profile="p",
            role="r",
        ),
        8: RdsResult(
            db_instance_id="db",
            endpoint="db.example",
            port=3306,
            security_group_id="sg-2",
            master_username="admin",
            password_secret_block="pw",
        ),
        9: JumphostResult(
            instance_id="i-j", public_ip="127.0.0.8", security_group_id="sg-3", select_1="1"
        ),
        10: traffic,
        11: traffic,
    }


def use_fake_stages(
    monkeypatch: pytest.MonkeyPatch,
    results: dict[int, Any],
    seconds: dict[int, float] | None = None,
) -> None:
    """Every stage of the deploy flow sleeps `seconds[n]` (default none) and returns
    `results[n]`, or raises it when it is an exception; no validation reads, no SSH key."""
    seconds = seconds or {}

    def work(n: int) -> Any:
        time.sleep(seconds.get(n, 0.0))
        if isinstance(results[n], Exception):
            raise results[n]
        return results[n]

    for n, room in rooms().items():
        if room.task is not None:

            def fake(*_: Any, n: int = n) -> Any:
                return work(n)

            monkeypatch.setitem(rooms(), n, replace(room, task=stage_task(room.stage)(fake)))
        else:
            subflow = room.stage.subflow
            monkeypatch.setitem(
                deploy_flow.SUBFLOWS,
                subflow,
                lambda *_, n=n, **__: Completed(data=work(n)),
            )
    monkeypatch.setattr(deploy_flow, "validate_inputs", lambda *_: None)
    monkeypatch.setattr(deploy_flow, "ssh_key", lambda *_: "not a key")
