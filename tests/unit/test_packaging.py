"""Running it the way users do: prefect.yaml, the Dockerfile, GitLab CI (the blocks:
tests/integration/test_blocks_register.py; the one-command local start end to end:
tests/e2e/test_local_start.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REQUIRED = {
    "deploy/full",
    "deploy/infra",
    "install-tomcat/default",
    "teardown/default",
    "status/default",
    "rollout/default",
    "benchmark/nightly",
}
FLOW_OF = {  # entrypoint -> the flow name it must define
    "flows/deploy.py:deploy": "deploy",
    "flows/install_tomcat.py:install_tomcat": "install-tomcat",
    "flows/teardown.py:teardown": "teardown",
    "flows/status.py:status": "status",
    "flows/rollout.py:rollout": "rollout",
    "flows/benchmark.py:benchmark": "benchmark",
}
BEING_WRITTEN = {"flows/benchmark.py:benchmark"}  # may not exist yet: skipped, not failed


def prefect_yaml() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "prefect.yaml").read_text()))


def deployment_ids(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """'<flow>/<deployment>' -> its config (the flow named by its entrypoint)."""
    return {f"{FLOW_OF[d['entrypoint']]}/{d['name']}": d for d in doc["deployments"]}


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not path:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]' installs it)")
    return path


# -- prefect.yaml ------------------------------------------------------------------------
def test_prefect_yaml_has_the_deployments_pools_and_schedule() -> None:
    doc = prefect_yaml()
    deps = deployment_ids(doc)
    assert set(deps) >= REQUIRED
    assert {f"{k}-docker" for k in REQUIRED} <= set(deps)
    assert deps["deploy/full"]["parameters"]["stages"] == "1-11"
    assert deps["deploy/infra"]["parameters"]["stages"] == "1-5"
    for key, d in deps.items():
        pool = d["work_pool"]
        if key.endswith("-docker"):
            assert pool["name"] == "tomcat-fleet-docker"
            assert pool["job_variables"]["image"]
            assert d["pull"][0]["prefect.deployments.steps.set_working_directory"] == {
                "directory": "/app"
            }
        else:
            assert pool["name"] == "tomcat-fleet-process"
        assert pool["job_variables"]["env"]["TOMCAT_FLEET_AWS_CREDENTIALS_BLOCK"]
    for key in ("benchmark/nightly", "benchmark/nightly-docker"):
        (schedule,) = deps[key]["schedules"]
        assert len(schedule["cron"].split()) == 5


def test_no_secret_in_prefect_yaml_dockerfile_or_ci() -> None:
    pattern = re.compile(
        r"PRIVATE KEY|aws_secret_access_key\s*[:=]|AKIA[0-9A-Z]{16}|password\s*[:=]\s*\S", re.I
    )
    for name in ("prefect.yaml", "Dockerfile", ".gitlab-ci.yml", "docker/entrypoint.sh"):
        assert not pattern.search((ROOT / name).read_text()), name


@pytest.mark.parametrize("entrypoint", sorted(FLOW_OF))
def test_every_entrypoint_imports(entrypoint: str) -> None:
    used = {d["entrypoint"] for d in prefect_yaml()["deployments"]}
    assert entrypoint in used
    path = ROOT / entrypoint.split(":")[0]
    if entrypoint in BEING_WRITTEN and not path.exists():
        pytest.skip(f"{path.name} does not exist yet (being written)")
    # a fresh interpreter, as a worker loads it: Prefect's own entrypoint loader
    code = (
        "import sys; from prefect.flows import load_flow_from_entrypoint; "
        "f = load_flow_from_entrypoint(sys.argv[1]); print(type(f).__name__, f.name)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, entrypoint],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-2:] == ["Flow", FLOW_OF[entrypoint]]


# -- CI and image ------------------------------------------------------------------------
def test_gitlab_ci_validates_against_gitlab_schema() -> None:
    checker = tool("check-jsonschema")
    res = subprocess.run(
        [checker, "--builtin-schema", "vendor.gitlab-ci", str(ROOT / ".gitlab-ci.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert "./scripts/test.sh" in ci["lint-test"]["script"]
    deploy_script = " ".join(ci["prefect-deploy"]["script"])
    assert "prefect --no-prompt deploy" in deploy_script
    assert 'prefect deployment run "$TOMCAT_FLEET_RUN"' in deploy_script
    assert ci["prefect-deploy"]["variables"]["TOMCAT_FLEET_RUN"] == "deploy/full-docker"
    assert "--overwrite" not in deploy_script  # the pool is created only when missing
    assert all(r.get("when") == "manual" for r in ci["prefect-deploy"]["rules"])
    assert any("schedule" in r["if"] for r in ci["benchmark"]["rules"])
    # merge requests get the deploy's plan (reads only), kept as plan.json; the deploy job
    # shows the plan it applies before it deploys
    plan = ci["plan"]
    assert plan["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    plan_script = " ".join(plan["script"])
    assert "deploy --plan --json" in plan_script and "> plan.json" in plan_script
    assert "python -m tasks.plan.render plan.json" in plan_script  # the summary in the log
    assert "plan.json" in plan["artifacts"]["paths"]
    assert ci["prefect-deploy"]["script"][0] == plan["script"][0]
    assert deploy_script.index("deploy --plan") < deploy_script.index("prefect deployment run")
    assert ci["stages"].index("plan") < ci["stages"].index("deploy")
    assert {"out/", "logs/"} <= set(ci["benchmark"]["artifacts"]["paths"])


def test_dockerfile_passes_hadolint() -> None:
    res = subprocess.run(
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M), "non-root user"
    assert re.search(r"python:\d+\.\d+\.\d+-slim", text), "base pinned to a full version"
