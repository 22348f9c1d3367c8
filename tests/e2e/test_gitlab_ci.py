"""The pipeline's deploy job (`prefect-deploy` in .gitlab-ci.yml), run for real.

gitlab-ci-local (npm, 4.62.0: the last one for Node 20) runs the job with
`--force-shell-executor` against the test session's Prefect server and a sandbox. The pool,
image and targets come from CI variables (`--variable`), as they do on GitLab, so the job
under test is the one that deploys from GitLab. The test starts a process worker on the
pool the job creates; the worker's environment has no hosted zone, so stage 5 can only
get one through the deployment's saved parameters.

gitlab-ci-local is installed into `.tools/` when missing (`npm install --prefix .tools
gitlab-ci-local@4.62.0`); without npm (or rsync, which it needs) the test is skipped,
saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[2]
VERSION = "4.62.0"
POOL = "ci-test-process"
DEPLOYMENT = "citest"
INSTANCES = 2

pytestmark = pytest.mark.e2e


def gitlab_ci_local() -> str:
    """The gitlab-ci-local binary: .tools/ (installed there when missing) or PATH."""
    if shutil.which("rsync") is None:  # it copies the checkout into its build dir
        pytest.skip("rsync is not installed: gitlab-ci-local needs it (apt-get install rsync)")
    local = ROOT / ".tools" / "node_modules" / ".bin" / "gitlab-ci-local"
    if local.exists():
        return str(local)
    npm = shutil.which("npm")
    if npm is None:
        found = shutil.which("gitlab-ci-local")
        if found:
            return found
        pytest.skip("npm is not installed: cannot install gitlab-ci-local")
    res = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(ROOT / ".tools"),
            f"gitlab-ci-local@{VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return str(local)


def api(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        url.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    # loopback ranges of its own: another sandbox (another test file) may be up at once
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        health_check_interval=0.3,
        public_ip_cidr="127.180.0.0/16",
        service_ip_cidr="127.181.0.0/16",
    )
    with Sandbox(cfg) as s:
        yield s


def test_pipeline_deploy_job_deploys_through_a_worker(sb: Sandbox, tmp_path: Path) -> None:
    glci = gitlab_ci_local()
    api_url = os.environ["PREFECT_API_URL"]
    env_sb = sb.env()
    bindir = str(Path(sys.executable).parent)
    base_env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }
    # CI/CD variables, as a project would set them (AWS_* go into the credentials block)
    variables = {
        "PREFECT_API_URL": api_url,
        "AWS_ACCESS_KEY_ID": env_sb["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env_sb["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": env_sb["AWS_REGION"],
        "AWS_ENDPOINT_URL": env_sb["AWS_ENDPOINT_URL"],
        "TOMCAT_FLEET_HOSTED_ZONE": sb.cfg.hosted_zone,
        "TOMCAT_FLEET_INSTANCES": str(INSTANCES),
        "TOMCAT_FLEET_WORK_POOL": POOL,
        "TOMCAT_FLEET_WORK_POOL_TYPE": "process",
        "TOMCAT_FLEET_IMAGE": "unused-by-the-process-pool",
        "TOMCAT_FLEET_ESTATE_DEPLOYMENTS": "deploy/infra",
        "TOMCAT_FLEET_OTHER_DEPLOYMENTS": "teardown/default",
        "TOMCAT_FLEET_RUN": "deploy/infra",
        "CI_DEFAULT_BRANCH": subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
    }
    # the job's own environment: nothing of the sandbox's but what the variables say
    job_env = {k: v for k, v in base_env.items() if k not in env_sb}
    # its state and build copy in tmp_path, not in the checkout (a path relative to cwd)
    state_dir = os.path.relpath(tmp_path / "gitlab-ci-local", ROOT)
    cmd = [glci, "--force-shell-executor", "--state-dir", state_dir]
    for k, v in variables.items():
        cmd += ["--variable", f"{k}={v}"]
    cmd.append("prefect-deploy")
    log = tmp_path / "job.log"

    # the worker: the sandbox's settings except the hosted zone and the AWS credentials
    # (those reach the flow through the deployment's parameters and the block)
    worker_env = {
        **base_env,
        **{k: v for k, v in env_sb.items() if not k.startswith("AWS_")},
        "TOMCAT_FLEET_DEPLOYMENT_NAME": DEPLOYMENT,
        "TOMCAT_FLEET_STATE_DIR": str(tmp_path / "state"),
        "TOMCAT_FLEET_LOG_DIR": str(tmp_path / "logs"),
    }
    worker_env.pop("TOMCAT_FLEET_HOSTED_ZONE")
    worker: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    with open(log, "wb") as out, open(tmp_path / "worker.log", "wb") as wout:
        job = subprocess.Popen(cmd, cwd=ROOT, env=job_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            # the job creates the pool (only when missing); then a worker serves it
            while api(api_url, f"/work_pools/{POOL}") is None:
                assert job.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() - t0 < 240, log.read_text()[-4000:]
                time.sleep(1)
            worker = subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
                cwd=tmp_path,
                env=worker_env,
                stdout=wout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            rc = job.wait(timeout=600)
        finally:
            if job.poll() is None:
                job.kill()
            if worker is not None:
                worker.terminate()
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
    text = log.read_text()
    worker_log = (tmp_path / "worker.log").read_text() if worker else ""
    assert rc == 0, text[-6000:] + "\n--- worker ---\n" + worker_log[-4000:]
    assert "Flow run finished successfully in 'Completed'" in text, (
        text[-6000:] + "\n--- worker ---\n" + worker_log[-6000:]
    )
    # the job showed the plan it applies before applying it: a fresh account, all to create
    shown = text.find("deploy --plan: exit 2 (0 nothing to do, 2 changes)")
    assert 0 <= shown < text.index("Flow run finished successfully"), text[-6000:]
    assert re.search(r"deploy plan of \S+: [1-9]\d* to create, 0 to update, 0 to delete", text)

    pool = api(api_url, f"/work_pools/{POOL}")
    assert pool["type"] == "process"
    dep = api(api_url, "/deployments/name/deploy/infra")
    assert dep["work_pool_name"] == POOL
    assert dep["parameters"]["hosted_zone"] == sb.cfg.hosted_zone
    assert dep["parameters"]["instances"] == INSTANCES
    assert api(api_url, "/deployments/name/teardown/default")["work_pool_name"] == POOL

    # what the run built, seen through the AWS API: the instances and the TLS listener
    import boto3

    ec2 = boto3.client(
        "ec2",
        endpoint_url=sb.endpoint,
        region_name=sb.cfg.region,
        aws_access_key_id=env_sb["SANDBOX_ADMIN_AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env_sb["SANDBOX_ADMIN_AWS_SECRET_ACCESS_KEY"],
    )
    tag = [{"Name": "tag:tomcat-fleet:deployment", "Values": [DEPLOYMENT]}]
    running = [
        i
        for r in ec2.describe_instances(Filters=tag)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    assert len(running) == INSTANCES
