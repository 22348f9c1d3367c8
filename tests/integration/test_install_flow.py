"""install-tomcat end to end on the sandbox: real Prefect server and process pool, real
boto3, paramiko over TCP, HTTP to every host. No mocks of project code."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from blocks.settings import FleetSettings
from flows.install_tomcat import install_tomcat
from sandbox import Sandbox, SandboxConfig
from tasks.aws import Aws
from tasks.aws.ec2 import (
    StageError,
    ensure_key_pair,
    ensure_security_group,
    launch_instances,
    preflight,
    wait_running,
)
from tasks.install_start import load_key
from tasks.models import InstallSummary, Instance
from tasks.runtime.outcome import outcome_of

from ..support import client, make_sandbox

N = 60


@pytest.fixture(scope="module")
def sb(tmp_path_factory: Any) -> Any:
    cfg = SandboxConfig(
        install_latency=0.2, boot_delay=0.3, cloud_init_seconds=0.3, drop_hold_seconds=3.0
    )
    with make_sandbox(cfg, env=True) as s:
        yield s


@pytest.fixture(scope="module")
def overrides(tmp_path_factory: Any) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("install")
    return {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": "flowtest",
    }


@pytest.fixture(scope="module")
def fleet(sb: Sandbox, overrides: dict[str, Any]) -> list[Instance]:
    settings = FleetSettings(**overrides)
    aws = Aws(settings)
    ensure_key_pair(aws, settings)
    sg = ensure_security_group(aws, settings)
    ids = launch_instances(aws, settings, N, sg, client_token="flowtest-60")
    return wait_running(aws, ids, timeout_s=60)


def test_sixty_hosts_across_chunks_and_processes(
    sb: Sandbox, fleet: list[Instance], overrides: dict[str, Any]
) -> None:
    summary = install_tomcat(
        fleet,
        chunk_size=10,
        max_workers=10,
        desired_count=2,
        runner="process",
        settings_overrides=overrides,
    )
    assert isinstance(summary, InstallSummary)
    assert (summary.hosts, summary.installed, summary.failed) == (N, N, 0)
    assert summary.total_chunks == 6 and summary.desired_count == 2
    for inst in fleet:
        with urllib.request.urlopen(f"http://{inst.public_ip}:8080/", timeout=5) as resp:
            assert resp.status == 200 and inst.instance_id in resp.read().decode()
    aggregate = Path(summary.aggregate_log).read_text()
    assert aggregate.count("===== chunk-") == 6
    pids = {
        line.split("(pid ")[1].split(")")[0]
        for line in aggregate.splitlines()
        if line.startswith("===== ")
    }
    assert len(pids) == 2  # two pool processes shared six chunks
    hosts = {h["instance_id"]: h for h in sb.state()["hosts"]}
    assert all(hosts[i.instance_id]["tomcat"] == "running" for i in fleet)


def test_second_run_reinstalls_nothing(
    sb: Sandbox, fleet: list[Instance], overrides: dict[str, Any]
) -> None:
    before = {h["instance_id"]: h["packages"] for h in sb.state()["hosts"]}
    summary = install_tomcat(fleet, chunk_size=20, runner="thread", settings_overrides=overrides)
    assert summary.already_installed == N and summary.installed == N
    assert all([s.name for s in r.steps] == ["probe"] for r in summary.results)
    after = {h["instance_id"]: h["packages"] for h in sb.state()["hosts"]}
    assert before == after


def test_artifacts_are_in_the_api(fleet: list[Instance], overrides: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        for key in (
            "flowtest-install-hosts",
            "flowtest-install-summary",
            "flowtest-install-progress",
        ):
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
            assert found, key
        table = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flowtest-install-hosts"]))
        )[0]
        assert str(table.data).count("i-") >= N


def test_wrong_key_fails_every_host_quickly(
    sb: Sandbox, fleet: list[Instance], overrides: dict[str, Any], tmp_path: Path
) -> None:
    other = client(sb, "ec2").create_key_pair(KeyName="not-the-fleets")["KeyMaterial"]
    (tmp_path / "wrong.pem").write_text(other)
    started = time.monotonic()
    state = install_tomcat(
        fleet[:20],
        chunk_size=10,
        desired_count=2,
        runner="process",
        settings_overrides={**overrides, "ssh_key_file": str(tmp_path / "wrong.pem")},
        return_state=True,
    )
    assert state.is_failed()
    summary = outcome_of(state)
    assert isinstance(summary, InstallSummary)
    assert summary.failed == 20
    assert all("authentication failed" in (r.reason or "") for r in summary.results)
    assert time.monotonic() - started < 60


def on_local_dask(hosts: list[Instance], overrides: dict[str, Any], **kw: Any) -> Any:
    """install_tomcat's final state, its chunks on a local cluster of two worker processes."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        return install_tomcat(
            hosts,
            runner="dask",
            dask_address=cluster.scheduler_address,
            settings_overrides=overrides,
            return_state=True,
            **kw,
        )


def test_dask_runner_on_a_local_cluster(fleet: list[Instance], overrides: dict[str, Any]) -> None:
    summary = outcome_of(on_local_dask(fleet[:12], overrides, chunk_size=6, desired_count=2))
    assert summary.runner == "dask" and summary.installed == 12


def test_dask_workers_read_the_key_from_the_secret_block(
    fleet: list[Instance], overrides: dict[str, Any]
) -> None:
    """Why it exists: with runner=dask the chunk tasks are pickled to whatever scheduler is
    given, so the SSH key must not be among their arguments. Two worker processes read it
    from the Prefect Secret block themselves; the key text is in no flow or task run the
    API holds. Small on purpose: 4 hosts, 2 chunks."""
    import os

    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )

    pem = FleetSettings(**overrides).key_file_path().read_text()
    Secret(value=pem).save("flowtest-dask-ssh-key", overwrite=True)
    settings = {**overrides, "ssh_key_block": "flowtest-dask-ssh-key"}
    state = on_local_dask(fleet[:4], settings, chunk_size=2, max_workers=2)
    summary = outcome_of(state)
    assert state.is_completed(), state.message
    assert isinstance(summary, InstallSummary)
    assert (summary.installed, summary.failed) == (4, 0)
    pids = {
        line.split("(pid ")[1].split(")")[0]
        for line in Path(summary.aggregate_log).read_text().splitlines()
        if line.startswith("===== ")
    }
    assert pids and str(os.getpid()) not in pids  # the chunks ran in the worker processes

    secret_lines = [line for line in pem.splitlines() if "PRIVATE KEY" not in line][1:4]
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
        flow_runs = [client.read_flow_run(flow_run_id), *children]
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in flow_runs]))
        )
    # the chunks are task runs of the install flow run itself (no subflow in between)
    assert not children
    assert len([t for t in task_runs if t.name.startswith("chunk ")]) == 2
    dumped = [r.model_dump_json() for r in [*flow_runs, *task_runs]]
    for text in dumped:
        assert not any(line in text for line in secret_lines)


def test_bad_input_fails_the_flow_before_any_host(
    sb: Sandbox, fleet: list[Instance], overrides: dict[str, Any]
) -> None:
    calls = sb.state()["api"]["total_calls"]
    state = install_tomcat(fleet, chunk_size=0, settings_overrides=overrides, return_state=True)
    assert state.is_failed() and "chunk_size" in str(state.message)
    assert sb.state()["api"]["total_calls"] == calls


def test_missing_key_file_and_unreachable_endpoint(overrides: dict[str, Any]) -> None:
    with pytest.raises(StageError, match="does not exist"):
        load_key(FleetSettings(**{**overrides, "ssh_key_file": "/nonexistent/key.pem"}))
    settings = FleetSettings(**{**overrides, "aws_endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(StageError, match=r"cannot reach the EC2 API at http://127.0.0.1:9"):
        preflight(Aws(settings))


def test_without_instances_the_saved_inventory_is_used(
    fleet: list[Instance], overrides: dict[str, Any]
) -> None:
    import json

    settings = FleetSettings(**overrides)
    path = Path(settings.state_dir) / settings.deployment_name / "inventory.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"instances": [i.model_dump() for i in fleet[:5]]}))
    summary = install_tomcat(runner="thread", settings_overrides=overrides)
    assert summary.hosts == 5 and summary.installed == 5
    path.unlink()
    state = install_tomcat(runner="thread", settings_overrides=overrides, return_state=True)
    assert state.is_failed() and "saved inventory" in str(state.message)
