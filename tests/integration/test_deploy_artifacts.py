"""The deploy flow's UI artifacts, read back through the Prefect API: one link artifact per
URL and a progress artifact across the eleven stages that reaches 100 % whatever each
stage's outcome. The stages are fakes (no sandbox, no SSH): this runs in seconds and checks
only what the flow publishes; the local start e2e test checks the same on a real deploy."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import flows.deploy as deploy_flow

from .fake_stages import stage_results, use_fake_stages

NAME = "uiartifacts"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    results = stage_results()
    results[7] = RuntimeError("never Ready")  # so 10 and 11 never run
    use_fake_stages(monkeypatch, results)


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
