"""The deploy flow's UI artifacts, read back through the Prefect API: one link artifact per
URL and a progress artifact across the eleven stages that reaches 100 % whatever each
stage's outcome. The stages are fakes (no sandbox, no SSH): this runs in seconds and checks
only what the flow publishes; the local start e2e test checks the same on a real deploy."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.states import Completed

import flows.deploy as deploy_flow
from tasks.deploy.models import (
    AlbResult,
    InventoryResult,
    JumphostResult,
    LaunchResult,
    RdsResult,
    TlsResult,
    TrafficResult,
)
from tasks.models import InstallSummary, Instance

NAME = "uiartifacts"


def _traffic(*_: Any) -> TrafficResult:
    return TrafficResult(target="x", requests=1, ok=1)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    inst = Instance(instance_id="i-0123456789abcdef0", public_ip="127.0.0.9")
    alb = AlbResult(
        load_balancer_arn="arn:lb",
        dns_name="ui-alb-1.elb.example",
        security_group_id="sg-1",
        target_group_arn="arn:tg",
        http_listener_arn="arn:l80",
        url="http://ui-alb-1.elb.example/",
    )
    tls = TlsResult(
        certificate_arn="arn:cert",
        domain="www.example.com",
        https_listener_arn="arn:l443",
        hosted_zone_id="Z1",
        url="https://www.example.com/",
    )
    rds = RdsResult(
        db_instance_id="db",
        endpoint="db.example",
        port=3306,
        security_group_id="sg-2",
        master_username="admin",
        password_secret_block="pw",
    )
    summary = InstallSummary(
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
    )

    def fake(stage: int, result: Any) -> Any:
        def run(*_: Any) -> Any:
            if isinstance(result, Exception):
                raise result
            return result

        return task(name=f"fake-{stage}", task_run_name=f"{stage:02d} fake")(run)

    stages = {
        "launch_stage": LaunchResult(instances=[inst], security_group_id="sg-1", key_name="k"),
        "inventory_stage": InventoryResult(path="inv", instances=[inst], security_group_ids=[]),
        "alb_stage": alb,
        "tls_stage": tls,
        "alb_traffic_stage": _traffic(),
        "beanstalk_stage": RuntimeError("never Ready"),  # so 10 and 11 never run
        "rds_stage": rds,
        "jumphost_stage": JumphostResult(
            instance_id="i-j", public_ip="127.0.0.8", security_group_id="sg-3", select_1="1"
        ),
        "eb_http_stage": _traffic(),
        "eb_https_stage": _traffic(),
    }
    for i, (name, result) in enumerate(stages.items()):
        monkeypatch.setattr(deploy_flow, name, fake(i, result))
    monkeypatch.setattr(deploy_flow, "validate_inputs", lambda *_: None)
    monkeypatch.setattr(deploy_flow, "load_key", lambda *_: "not a key")
    monkeypatch.setattr(deploy_flow, "install_tomcat", lambda *_, **__: Completed(data=summary))


def test_links_and_progress_through_the_api(fakes: None) -> None:
    state = deploy_flow.deploy(
        instances=1,
        runner="thread",
        settings_overrides={"deployment_name": NAME, "hosted_zone": "example.com"},
        return_state=True,
    )
    assert state.is_failed() and "stage 7" in str(state.message), state.message
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in arts if a.key}
    # a link artifact is stored as markdown: [text](url)
    links = {k: str(a.data) for k, a in by_key.items() if k.endswith(("-http", "-https"))}
    assert links == {
        f"{NAME}-alb-http": "[ALB (HTTP)](http://ui-alb-1.elb.example/)",
        f"{NAME}-alb-https": "[ALB (HTTPS)](https://www.example.com/)",
    }
    progress = by_key[f"{NAME}-deploy-progress"]
    assert progress.type == "progress" and progress.data == 100
    assert progress.description is not None
    assert "11/11 stages ended (8 completed, 1 failed, 2 not run)" in progress.description
