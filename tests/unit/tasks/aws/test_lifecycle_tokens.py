"""Issue 12: every launch's ClientToken is unique to the deployment's life. In-process moto,
no sandbox: a repeated deploy in one life creates nothing, a deploy after teardown launches
fresh instances."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from blocks.settings import FleetSettings

moto = pytest.importorskip("moto")


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("TOMCAT_FLEET_AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        from tasks.aws import Aws

        settings = FleetSettings(
            _env_file=None,
            deployment_name="lifetest",
            state_dir=str(tmp_path),
            ingress_cidr="10.0.0.0/8",
            ami_id="ami-12c6146b",
        )
        yield Aws(settings)


def _teardown(aws: Any) -> None:
    from tasks.aws.teardown import teardown

    report = teardown(aws, aws.settings, timeout_s=60, poll_s=0.05, log=logging.getLogger())
    assert not report.errors, report.errors


def test_token_is_per_life_role_and_short() -> None:
    from tasks.aws.ec2 import client_token

    s = FleetSettings(_env_file=None, deployment_name="x" * 41)
    t = client_token(s, "life1", "jumphost")
    assert len(t) <= 64 and t == client_token(s, "life1", "jumphost")
    assert t != client_token(s, "life2", "jumphost") != client_token(s, "life1", "traffic")


def test_role_instances_are_fresh_after_teardown_and_reused_within_a_life(aws: Any) -> None:
    from tasks.aws.ec2 import ensure_key_pair, ensure_role_instance, life_id
    from tasks.deploy.stages.s01_launch_instances import launch_fleet

    settings = aws.settings
    tokens: list[str] = []  # every RunInstances' ClientToken (plain moto does not honour them)

    def record(params: dict[str, Any], **_: Any) -> None:
        tokens.append(params["ClientToken"])

    aws.client("ec2").raw.meta.events.register("provide-client-params.ec2.RunInstances", record)
    fleet = launch_fleet(aws, settings, 2, timeout_s=60)
    life = life_id(aws, settings)
    jump, _ = ensure_role_instance(aws, settings, "jumphost", timeout_s=60)
    gen, _ = ensure_role_instance(aws, settings, "traffic", timeout_s=60)
    # the same life: nothing new
    assert launch_fleet(aws, settings, 2, timeout_s=60).created == 0
    assert ensure_role_instance(aws, settings, "jumphost", timeout_s=60)[0] == jump
    assert life_id(aws, settings) == life

    first_life = list(tokens)
    assert len(first_life) == 3 and len(set(first_life)) == 3  # fleet, jumphost, generator
    _teardown(aws)
    ensure_key_pair(aws, settings)  # stage 1 of the next life
    assert life_id(aws, settings) != life
    again = launch_fleet(aws, settings, 2, timeout_s=60)
    assert again.created == 2
    assert {i.instance_id for i in again.instances}.isdisjoint(
        {i.instance_id for i in fleet.instances}
    )
    jump2, _ = ensure_role_instance(aws, settings, "jumphost", timeout_s=60)
    gen2, _ = ensure_role_instance(aws, settings, "traffic", timeout_s=60)
    assert jump2.instance_id != jump.instance_id and gen2.instance_id != gen.instance_id
    assert len(tokens) == 6 and set(tokens[3:]).isdisjoint(first_life)
    _teardown(aws)


def test_a_key_pair_without_a_life_tag_is_read_not_tagged(aws: Any) -> None:
    """A key pair made before lives were tagged: its KeyPairId is its life, read the same
    every time, and nothing is tagged after the fact (no standalone ec2:CreateTags)."""
    from tasks.aws.cleanup import TAG_KEY
    from tasks.aws.ec2 import LIFE_TAG, life_id

    ec2 = aws.client("ec2")
    made = ec2.create_key_pair(
        KeyName="lifetest",
        TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": [{"Key": TAG_KEY, "Value": "lifetest"}]}
        ],
    )
    assert life_id(aws, aws.settings) == made["KeyPairId"] == life_id(aws, aws.settings)
    pair = ec2.describe_key_pairs(KeyNames=["lifetest"])["KeyPairs"][0]
    assert LIFE_TAG not in {t["Key"] for t in pair.get("Tags", [])}
