"""The `tomcat-fleet` command line: bad input refused fast, before any Prefect server; every
option's help shows its default; every flow parameter carries a description (the same
docstring feeds the CLI help and the Prefect UI)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[4]
FLOWS = {
    "deploy": ("flows/deploy.py", "deploy"),
    "install": ("flows/install_tomcat.py", "install_tomcat"),
    "teardown": ("flows/teardown.py", "teardown"),
    "benchmark": ("flows/benchmark.py", "benchmark"),
    "rollout": ("flows/rollout.py", "rollout"),
}


def cli(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    base.update(TOMCAT_FLEET_PREFECT_DIR=str(tmp / "prefect"), COLUMNS="250", **env)
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=base,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "--instances", "0"],
        ["deploy", "--instances", "ten"],
        ["deploy", "--stages", "1-x"],
        ["deploy", "--stages", "99"],
        ["deploy", "--stages", "3-1"],
        ["status", "--deployment-name", "Not_Valid!"],
        ["deploy", "--allow-failures", "ten"],
        ["deploy", "--runner", "bogus"],
        ["deploy", "--chunk-size", "0"],
        ["install", "--instances", "0"],
        ["install"],
        ["install", "--inventory", "/nonexistent.json"],
        ["install", "--instances", "3", "--runner", "dask"],
        ["teardown", "--deployment-name", "Not_Valid!"],
        ["benchmark", "--target", "mars"],
        ["benchmark", "--fault-profile", "nasty"],
        ["benchmark", "--repeat", "0"],
        ["benchmark", "--matrix", "no-such-matrix"],
        ["rollout", "--waves", "0"],
        ["rollout", "--max-errors", "120%"],
        ["rollout", "--waves", "1,x%"],
        ["deploy", "--no-such-option", "1"],
    ],
)
def test_bad_input_refused_fast_without_server(args: list[str], tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = cli(args, tmp_path)
    elapsed = time.monotonic() - t0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert 1 <= len(lines) <= 2, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()
    assert "Prefect server" not in proc.stderr
    assert not (tmp_path / "prefect").exists()  # no server was started or planned on disk
    assert elapsed < 3.0, f"{elapsed:.1f}s"


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "--plan", "--instances", "0"],
        ["deploy", "--plan", "--stages", "99", "--json"],
        ["deploy", "--plan", "--no-such-option", "1"],
        ["teardown", "--plan", "--deployment-name", "Not_Valid!"],
    ],
)
def test_bad_input_to_a_plan_exits_1(args: list[str], tmp_path: Path) -> None:
    """A plan's exit 2 means "changes" (`terraform plan -detailed-exitcode`): refused input
    is 1 there, still one line and no traceback."""
    proc = cli(args, tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, proc.stderr
    assert 1 <= len(lines) <= 2 and "Traceback" not in proc.stderr, proc.stderr
    assert not proc.stdout.strip()


@pytest.mark.parametrize("command", ["deploy", "teardown"])
def test_json_without_plan_is_refused(command: str, tmp_path: Path) -> None:
    proc = cli([command, "--json"], tmp_path)
    assert proc.returncode == 2 and "--json goes with --plan" in proc.stderr, proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["server", "status"], {"TOMCAT_FLEET_POOL_START_METHOD": "bogus"}),
        (["deploy", "--instances", "1"], {"TOMCAT_FLEET_LOCAL_SSH_PORT": "0"}),
        (["local", "status"], {"TOMCAT_FLEET_LOCAL_PREFECT_PORT": "http"}),
    ],
)
def test_bad_runtime_settings_refused_in_one_line(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    """RuntimeSettings (the CLI's and the local start's TOMCAT_FLEET_*) are checked as input
    is: one line, exit 2, before any server is planned or started."""
    proc = cli(args, tmp_path, **env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "invalid settings:" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "prefect").exists()


def test_help_shows_every_default(tmp_path: Path) -> None:
    """Each option shows its default once: cyclopts' "[default: ...]", or the help text's
    own "(default: ...)" (then not also "[default: None]")."""
    for command in [*FLOWS, "status", "local up", "local stop", "local status"]:
        proc = cli([*command.split(), "--help"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("│ --")]
        assert rows, proc.stdout
        for row in rows:
            if row.startswith("│ --help"):
                continue
            shown = ("[default:" in row) + ("(default:" in row)
            assert shown == 1 or "[required]" in row, f"{command}: {row}"
    deploy = cli(["deploy", "--help"], tmp_path).stdout
    assert "[default: 4]" in deploy and "[default: 1-11]" in deploy
    assert "[choices: process, thread, dask]" in deploy
    assert "[default: None]" not in deploy


def _flows() -> dict[str, Any]:
    from flows.benchmark import benchmark
    from flows.deploy import deploy
    from flows.install_tomcat import install_tomcat
    from flows.rollout import rollout
    from flows.teardown import teardown

    return {
        "deploy": deploy,
        "install": install_tomcat,
        "teardown": teardown,
        "benchmark": benchmark,
        "rollout": rollout,
    }


def test_every_flow_parameter_has_a_description() -> None:
    from prefect.utilities.callables import parameter_schema

    for name, flow in _flows().items():
        schema = parameter_schema(flow.fn).model_dump_for_openapi()
        props = schema["properties"]
        assert set(props) == set(inspect.signature(flow.fn).parameters), name
        missing = [p for p, spec in props.items() if not spec.get("description")]
        assert not missing, f"{name}: no description for {missing}"


def test_choices_are_literals_in_the_ui_schema() -> None:
    from prefect.utilities.callables import parameter_schema

    flows = _flows()
    deploy = parameter_schema(flows["deploy"].fn).model_dump_for_openapi()["properties"]
    assert deploy["runner"]["enum"] == ["process", "thread", "dask"]
    bench = parameter_schema(flows["benchmark"].fn).model_dump_for_openapi()["properties"]
    assert bench["target"]["enum"] == ["sandbox", "aws"]
    assert bench["fault_profile"]["enum"] == ["clean", "flaky", "hostile"]


def test_signature_read_from_source_matches_the_flow() -> None:
    from tasks.runtime.flow_signature import flow_signature

    for name, flow in _flows().items():
        path, func = FLOWS[name]
        read, doc = flow_signature(ROOT / path, func)
        real = inspect.signature(flow.fn, eval_str=True)
        assert list(read.parameters) == list(real.parameters), name
        assert doc == inspect.getdoc(flow.fn), name
        for p in real.parameters.values():
            q = read.parameters[p.name]
            assert q.default == p.default, (name, p.name)
            if not isinstance(q.annotation, str):
                assert q.annotation == p.annotation, (name, p.name)
        # the aliases the CLI's choices come from resolve (imported ones too: `Runner`)
        for param in ("runner", "target", "fault_profile", "host_key_policy"):
            if param in read.parameters:
                assert read.parameters[param].annotation == real.parameters[param].annotation


def test_server_status_and_stop_without_a_server(tmp_path: Path) -> None:
    status = cli(["server", "status"], tmp_path)
    assert status.returncode == 1 and "no Prefect server running" in status.stdout
    stop = cli(["server", "stop"], tmp_path)
    assert stop.returncode == 0 and "no Prefect server running" in stop.stdout


def test_sandbox_command_delegates_to_python_m_sandbox(tmp_path: Path) -> None:
    proc = cli(["sandbox", "--help"], tmp_path)
    assert proc.returncode == 0 and "--install-latency" in proc.stdout
    bad = cli(["sandbox", "--no-such-option"], tmp_path)  # its exit status is passed through
    assert bad.returncode == 2 and "python -m sandbox: error" in bad.stderr


def test_the_cli_starts_without_prefect_boto3_or_the_sandbox() -> None:
    """Importing the command tree loads none of them (a flow command imports its flow,
    and so Prefect, only once its input is valid)."""
    code = (
        "import sys, tasks.cli.app; "
        "print(sorted(m for m in ('prefect', 'boto3', 'botocore', 'paramiko', 'sandbox') "
        "if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_one_local_server_is_reused_and_stoppable(tmp_path: Path, monkeypatch: Any) -> None:
    """The CLI's server: started once under its home, found again by the next run (same
    URL, not restarted), stopped by `server stop`."""
    from tasks.runtime.prefect_api import LocalServer

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    first = LocalServer(tmp_path / "prefect")
    url = first.plan()
    assert url and os.environ["PREFECT_API_URL"] == url
    try:
        _, pid, started = first.ensure(url)
        assert started and (tmp_path / "prefect" / "server.json").is_file()
        monkeypatch.delenv("PREFECT_API_URL")
        again = LocalServer(tmp_path / "prefect")
        assert again.plan() == url
        assert again.ensure(url) == (url, pid, False)
        status = cli(["server", "status"], tmp_path)
        assert status.returncode == 0 and url in status.stdout
    finally:
        stop = cli(["server", "stop"], tmp_path)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert LocalServer(tmp_path / "prefect").running() is None
