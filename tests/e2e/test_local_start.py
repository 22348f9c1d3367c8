"""The one-command local start end to end (server + sandbox + worker, `prefect deployment run
deploy/full` through the Prefect CLI, checked through the Prefect API, everything stopped)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGES = [
    "01 launch-instances",
    "03 save-inventory",
    "04 application-load-balancer",
    "05 tls-listener",
    "06 traffic-alb",
    "07 elastic-beanstalk",
    "08 rds",
    "09 jumphost-mysql-check",
    "10 traffic-beanstalk-http",
    "11 traffic-beanstalk-https",
]


# -- the local start, end to end ---------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=15) as resp:
        return json.loads(resp.read())


def run_tree(api_url: str, root: str) -> dict[str, dict[str, Any]]:
    """The flow run and every subflow run under it, by id."""
    runs = {r["id"]: r for r in api(f"{api_url}/flow_runs/filter", {"limit": 200})}
    tasks = {t["id"]: t for t in api(f"{api_url}/task_runs/filter", {"limit": 200})}
    tree = {root: runs[root]}
    grew = True
    while grew:
        grew = False
        for rid, r in runs.items():
            parent_task = tasks.get(r.get("parent_task_run_id") or "")
            if rid not in tree and parent_task and parent_task["flow_run_id"] in tree:
                tree[rid] = r
                grew = True
    return tree


def tracked_pids(state_dir: Path) -> list[psutil.Process]:
    out = []
    for e in json.loads((state_dir / "processes.json").read_text()):
        try:
            proc = psutil.Process(e["pid"])
            out.append(proc)
            out.extend(proc.children(recursive=True))
        except psutil.Error:
            pass
    return out


# The sandbox runs without the right to bind ports below 1024, as for any non-root user:
# its balancers fall back to 8080/8443 and every URL printed and used must follow. As root
# the capability is dropped from the sandbox process only (a test-only command prefix of
# the local start); this run is the "deploy without low ports" check of issue 14, rather
# than one more full deploy.
SETPRIV = shutil.which("setpriv")
DROP_BIND = (
    [SETPRIV, "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service"]
    if SETPRIV and os.geteuid() == 0
    else []
)
NO_LOW_PORTS = bool(DROP_BIND) or os.geteuid() != 0


@pytest.mark.e2e
@pytest.mark.timeout(500)
def test_local_start_end_to_end(tmp_path: Path) -> None:
    state_dir = tmp_path / "local"
    ports = {"--prefect-port": free_port(), "--sandbox-port": free_port()}
    ports["--ssh-port"] = free_port()
    deployment = "e2elocal"
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_LEVEL"},
        # what the flow runs write goes under tmp_path, not the checkout
        "TOMCAT_FLEET_DEPLOYMENT_NAME": deployment,
        "TOMCAT_FLEET_STATE_DIR": str(tmp_path / "state"),
        "TOMCAT_FLEET_LOG_DIR": str(tmp_path / "logs"),
        "TOMCAT_FLEET_TRAFFIC_REQUESTS": "12",
        "TOMCAT_FLEET_LOCAL_SANDBOX_PREFIX": shlex.join(DROP_BIND),
    }
    cmd = [sys.executable, "-m", "flows", "local", "up", "--state-dir", str(state_dir)]
    for opt, port in ports.items():
        cmd += [opt, str(port)]
    cmd += ["--instances", "3", "--install-latency", "0.2", "--boot-delay", "0.2"]
    t0 = time.monotonic()
    launcher = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert launcher.stdout is not None
        for line in launcher.stdout:
            lines.append(line)
            if line.startswith("LOCAL START READY"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    started: list[psutil.Process] = []
    try:
        assert ready.wait(240), "launcher never got ready:\n" + "".join(lines[-60:])
        ready_line = next(x for x in lines if x.startswith("LOCAL START READY"))
        fields = dict(kv.split("=", 1) for kv in ready_line.split()[3:])
        assert fields["state"] == "COMPLETED", "".join(lines[-60:])
        # the printed ALB URL answers on loopback, served by one of the instances
        with urllib.request.urlopen(fields["alb"], timeout=10) as resp:
            assert resp.status == 200
            assert re.search(r"i-[0-9a-f]{8,}", resp.read().decode())
        assert fields["ui"] in "".join(lines)
        if NO_LOW_PORTS:  # the balancers fell back to high ports, the printed URLs follow
            sandbox_env = (state_dir / "sandbox.env").read_text()
            assert "TOMCAT_FLEET_SANDBOX_LB_PORTS=80:8080,443:8443" in sandbox_env, sandbox_env
            assert re.match(r"^http://127\.[\d.]+:8080/$", fields["alb"]), fields["alb"]
            hint = next(x for x in lines if "--connect-to" in x and ":443:" in x)
            assert re.search(r"--connect-to \S+:443:127\.[\d.]+:8443 https://", hint), hint
            https = next(x for x in lines if x.strip().startswith("ALB (HTTPS)"))
            assert re.search(r"-> HTTP/1\.1 200", https), https
        started = tracked_pids(state_dir)
        assert {"prefect-server", "sandbox", "worker"} <= {
            e["name"] for e in json.loads((state_dir / "processes.json").read_text())
        }

        # the bare CLI, with the server and worker up
        api_url = f"http://127.0.0.1:{ports['--prefect-port']}/api"
        cli_env = {**env, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(state_dir / "prefect")}
        res = subprocess.run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "deploy/full",
                "--param",
                "instances=3",
                "--watch",
                "--watch-timeout",
                "150",
            ],
            cwd=tmp_path,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=200,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        m = re.search(r"UUID:\s*([0-9a-f-]{36})", res.stdout)
        assert m, res.stdout[-2000:]
        run_id = m.group(1)

        # through the API: completed, eleven stages, the artifacts
        run = api(f"{api_url}/flow_runs/{run_id}")
        assert run["state_type"] == "COMPLETED"
        assert run["parameters"]["instances"] == 3
        assert "tomcat-fleet" in run["tags"] or "deploy" in run["tags"]
        tree = run_tree(api_url, run_id)
        tasks = api(
            f"{api_url}/task_runs/filter",
            {"task_runs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200},
        )
        stage_runs = {t["name"]: t for t in tasks if re.match(r"^\d\d ", t["name"])}
        assert sorted(stage_runs) == STAGES
        assert all(t["state_type"] == "COMPLETED" for t in stage_runs.values())
        assert all("deploy" in t["tags"] for t in stage_runs.values())
        flows = {f["id"]: f["name"] for f in api(f"{api_url}/flows/filter", {})}
        install = [r for r in tree.values() if flows[r["flow_id"]] == "install-tomcat"]
        assert len(install) == 1 and install[0]["state_type"] == "COMPLETED"  # stage 2
        arts = api(f"{api_url}/artifacts/filter", {"limit": 200})
        keys = {a["key"] for a in arts if a["flow_run_id"] in tree and a["key"]}
        for key in ("deploy-report", "install-hosts", "install-progress"):
            assert f"{deployment}-{key}" in keys, keys
        # the UI: one link artifact per URL, a progress artifact across the eleven stages
        mine = {a["key"]: a for a in arts if a["flow_run_id"] == run_id and a["key"]}
        links = {k: a for k, a in mine.items() if k.endswith(("-http", "-https"))}
        names = ("alb-http", "alb-https", "beanstalk-http", "beanstalk-https")
        assert set(links) == {f"{deployment}-{n}" for n in names}, links
        for a in links.values():  # Prefect stores a link as markdown: [text](url)
            assert re.match(r"^\[[^\]]+\]\(https?://\S+\)$", str(a["data"])), a
            # a worker's run on the sandbox: the line that opens it from a plain shell
            assert "on this machine: `curl " in str(a["description"]), a

        # `tomcat-fleet status` from a plain shell with the sandbox's env file: healthy,
        # each URL at the address it answers on now
        sandbox_vars = dict(
            ln.split("=", 1)
            for ln in (state_dir / "sandbox.env").read_text().splitlines()
            if "=" in ln and not ln.startswith("#")
        )
        assert sandbox_vars["TOMCAT_FLEET_SANDBOX_DNS"].startswith("127.0.0.1:")
        res = subprocess.run(
            [sys.executable, "-m", "flows", "status", "--json"],
            cwd=tmp_path,
            env={**cli_env, **sandbox_vars},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        got = json.loads(res.stdout.strip().splitlines()[-1])
        assert got["verdict"] == "healthy" and got["deployment"] == deployment, got["problems"]
        by_name = {u["name"]: u for u in got["urls"]}
        assert set(by_name) == {n.replace("-", "_") for n in names}, by_name
        with urllib.request.urlopen(by_name["alb_http"]["local_url"], timeout=10) as resp:
            assert resp.status == 200
        progress = mine[f"{deployment}-deploy-progress"]
        assert progress["type"] == "progress" and progress["data"] == 100, progress
        assert "11/11 stages ended (11 completed)" in progress["description"], progress
        deadline = time.monotonic() + 15  # logs are shipped in batches
        while not (
            logs := api(
                f"{api_url}/logs/filter",
                {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200},
            )
        ):
            assert time.monotonic() < deadline, "the run's logs never reached the API"
            time.sleep(1)
        assert any("deploy e2elocal finished" in x["message"] for x in logs), logs[-5:]
        adjusted = "prefect adjustments: heartbeat_unjoined=on, shared_tls_context=on"
        assert any(x["message"] == adjusted for x in logs), [x["message"] for x in logs[:5]]

        # the install deployment through the same process worker (the saved inventory):
        # the same flow code, with the same Prefect adjustments in force
        res = subprocess.run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "install-tomcat/default",
                "--watch",
                "--watch-timeout",
                "120",
            ],
            cwd=tmp_path,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=160,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        m = re.search(r"UUID:\s*([0-9a-f-]{36})", res.stdout)
        assert m, res.stdout[-2000:]
        install_id = m.group(1)
        assert api(f"{api_url}/flow_runs/{install_id}")["state_type"] == "COMPLETED"
        deadline = time.monotonic() + 15
        while True:
            logs = api(
                f"{api_url}/logs/filter",
                {"logs": {"flow_run_id": {"any_": [install_id]}}, "limit": 200},
            )
            messages = [x["message"] for x in logs]
            if adjusted in messages or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert adjusted in messages, messages[:5]
        chunks = api(
            f"{api_url}/task_runs/filter",
            {"task_runs": {"flow_run_id": {"any_": [install_id]}}, "limit": 50},
        )
        assert chunks and all(t["name"].startswith("chunk ") for t in chunks), chunks
        assert all(t["state_type"] == "COMPLETED" for t in chunks)
    finally:
        stop = subprocess.run(
            [sys.executable, "-m", "flows", "local", "stop", "--state-dir", str(state_dir)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise
    print(f"local start e2e: {time.monotonic() - t0:.0f}s", file=sys.stderr)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert launcher.returncode is not None
    assert not (state_dir / "processes.json").exists()
    time.sleep(0.5)
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"still running: {[(p.pid, p.cmdline()[:4]) for p in alive]}"


def test_missing_credentials_block_is_one_line_naming_the_register_command() -> None:
    from blocks.aws_credentials import BlockNotFound
    from blocks.settings import FleetSettings
    from tasks.aws import Aws

    with pytest.raises(BlockNotFound) as info:
        Aws(FleetSettings(aws_credentials_block="no-such-block"))
    msg = str(info.value)
    assert "\n" not in msg and "python -m blocks.register" in msg and "no-such-block" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
