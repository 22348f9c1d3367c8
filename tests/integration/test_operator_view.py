"""What an operator sees (issue "What an operator sees", parts 2-4), on a real deploy of
stages 1-5 and 7 in the sandbox: every URL artifact's name resolves through the sandbox's
DNS and answers 200 at that address; the link artifacts carry the `curl` line a plain
shell opens them with; `tomcat-fleet status` says healthy (0), then degraded naming a
stopped instance (1), then, after the teardown, nothing deployed (0)."""

from __future__ import annotations

import http.client
import json
import logging
import shlex
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import pytest
from dnslib import QTYPE, DNSRecord
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.flow_engine import run_flow

from blocks.fleet_error import BlockNotFound
from blocks.settings import FleetSettings
from flows.deploy import DeployReport, deploy
from flows.status import status as status_flow
from flows.teardown import teardown
from sandbox import Sandbox, SandboxConfig
from tasks.aws import Aws
from tasks.cli.app import main
from tasks.runtime.outcome import FlowFailed, outcome_of
from tasks.status.model import StatusReport

from ..support import client, make_sandbox, wait_for

NAME = "opsview"


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        eb_launch_seconds=0.3,
        health_check_interval=0.3,
    )
    with make_sandbox(cfg, env=True) as s:
        yield s


def resolve(sb: Sandbox, name: str, tcp: bool = False) -> str | None:
    host, port = sb.dns_address.split(":")
    raw = DNSRecord.question(name, "A").send(host, int(port), tcp=tcp, timeout=5)
    answers = [rr for rr in DNSRecord.parse(raw).rr if rr.rtype == QTYPE.A]
    return str(answers[0].rdata) if answers else None


def fetch(sb: Sandbox, url: str, addr: str) -> int:
    """GET `url` from `addr` (the balancer's port as the sandbox binds it), by its name."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = int(sb.state()["lb_ports"][str(parts.port or (443 if https else 80))])
    conn: http.client.HTTPConnection
    if https:
        ctx = ssl.create_default_context(cafile=sb.ca.ca_path)
        conn = _Pinned(addr, parts.hostname or "", port, ctx)
    else:
        conn = http.client.HTTPConnection(addr, port, timeout=10)
    conn.request("GET", parts.path or "/", headers={"Host": parts.hostname or ""})
    status = conn.getresponse().status
    conn.close()
    return status


class _Pinned(http.client.HTTPSConnection):
    """HTTPS to `addr`, verified against `name` (as `curl --resolve name:port:addr`)."""

    def __init__(self, addr: str, name: str, port: int, ctx: ssl.SSLContext) -> None:
        super().__init__(name, port, timeout=10, context=ctx)
        self.addr, self.ctx = addr, ctx

    def connect(self) -> None:
        raw = socket.create_connection((self.addr, self.port), self.timeout)
        self.sock = self.ctx.wrap_socket(raw, server_hostname=self.host)


def cli_status(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["status", "--deployment-name", NAME, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1])


def run_artifacts(flow_run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in arts if a.key}


def test_urls_open_and_status_follows_the_estate(
    sb: Sandbox, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ov = {
        "state_dir": str(tmp_path / "state"),
        "log_dir": str(tmp_path / "logs"),
        "deployment_name": NAME,
    }
    state = deploy(
        instances=2, stages="1-5,7", runner="thread", settings_overrides=ov, return_state=True
    )
    report = outcome_of(state)
    assert isinstance(report, DeployReport) and state.is_completed(), state.message
    assert set(report.urls) == {"alb_http", "alb_https", "beanstalk_http"}, report.urls

    # every URL's name resolves through the sandbox's DNS (UDP and TCP) and answers there
    names = sb.state()["names"]
    for url in report.urls.values():
        host = urlsplit(url).hostname or ""
        addr = resolve(sb, host)
        assert addr is not None and addr == names[host], (url, addr)
        assert resolve(sb, host, tcp=True) == addr
        assert fetch(sb, url, addr) == 200, url
    assert resolve(sb, "no-such-name.example.com") is None

    # the link artifacts: the URL, and the curl line that opens it here
    arts = run_artifacts(state.state_details.flow_run_id)
    for name, url in report.urls.items():
        link = arts[f"{NAME}-{name.replace('_', '-')}"]
        assert str(link.data).endswith(f"({url})"), link.data
        assert "on this machine: `curl " in str(link.description), link.description
        curl = str(link.description).split("`")[1]
        words = shlex.split(curl)
        host = urlsplit(url).hostname
        route = (
            words[words.index("--resolve") + 1]
            if "--resolve" in words
            else words[words.index("--connect-to") + 1]
        )
        assert route.split(":")[0] == host and route.split(":")[2] == names[host], curl
        assert words[-1] == url
    assert "on this machine: `curl" in str(arts[f"{NAME}-deploy-report"].data)

    # status: healthy, every URL beside the address a plain client opens
    code, got = cli_status(capsys)
    assert code == 0 and got["verdict"] == "healthy", got["problems"]
    assert got["schema"] == "tomcat-fleet.status/1" and got["sandbox"] is True
    assert set(got["instances_by_state"]) == {"running"}  # web hosts and Beanstalk's
    assert [i["state"] for i in got["instances"] if i["role"] == "web"] == ["running"] * 2
    assert got["alb"]["state"] == "active" and 443 in got["alb"]["listeners"]
    assert [c["status"] for c in got["certificates"]] == ["ISSUED"]
    assert got["beanstalk"][0]["status"] == "Ready"
    assert {u["name"] for u in got["urls"]} == set(report.urls)
    for u in got["urls"]:
        assert u["address"] and u["curl"].startswith("curl ")
        if u["url"].startswith("http://"):
            conn = http.client.HTTPConnection(*_host_port(u["local_url"]), timeout=10)
            conn.request("GET", "/")
            assert conn.getresponse().status == 200, u
    assert main(["status", "--deployment-name", NAME]) == 0
    table = capsys.readouterr().out
    assert "healthy" in table and "load balancer" in table and "curl --" in table

    # one instance stopped behind the flows' back: degraded, naming it
    web = [i["id"] for i in got["instances"] if i["role"] == "web"]
    client(sb, "ec2").stop_instances(InstanceIds=[web[0]])
    code, got = cli_status(capsys)
    assert code == 1 and got["verdict"] == "degraded", got
    assert any(web[0] in p for p in got["problems"]), got["problems"]
    flow_state = status_flow(deployment_name=NAME, return_state=True)
    assert flow_state.is_failed() and web[0] in str(flow_state.message), flow_state.message
    degraded = outcome_of(flow_state)
    assert isinstance(degraded, StatusReport) and degraded.exit_code == 1
    md = run_artifacts(flow_state.state_details.flow_run_id)[f"{NAME}-status"]
    assert "degraded" in str(md.data) and web[0] in str(md.data)

    # after the teardown: nothing live, exit 0
    down = teardown(deployment_name=NAME, settings_overrides=ov, return_state=True)
    assert down.is_completed(), down.message
    code, got = cli_status(capsys)
    assert code == 0 and got["verdict"] == "nothing deployed" and got["deployed"] is False, got
    wait_for(
        lambda: all(resolve(sb, urlsplit(u).hostname or "") is None for u in report.urls.values()),
        timeout=10,
    )


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", int(parts.port or 80)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@flow(name="needs-credentials")
def _needs_credentials() -> None:
    Aws(FleetSettings(aws_credentials_block="no-such-block"))


@pytest.mark.filterwarnings("ignore:Logger 'prefect.flow_runs' attempted to send logs")
def test_a_missing_credentials_block_is_one_line_without_traceback(tmp_path: Any) -> None:
    """As a worker runs a deployment (the engine re-raises what ended the run, through the
    run's logger): one line naming the register command, no traceback logged anywhere."""
    records = _Records()
    logging.getLogger("prefect").addHandler(records)
    ov = {"aws_credentials_block": "no-such-block", "state_dir": str(tmp_path)}
    run_logger = logging.getLogger("prefect.flow_runs")
    try:
        for fl, params in (
            (deploy, {"instances": 1, "stages": "1", "settings_overrides": ov}),
            (teardown, {"deployment_name": "nocreds", "settings_overrides": ov}),
            (status_flow, {"deployment_name": "nocreds", "settings_overrides": ov}),
        ):
            with pytest.raises(FlowFailed) as info:
                run_flow(fl, parameters=params, error_logger=run_logger)
            message = str(info.value)
            assert "\n" not in message and "python -m blocks.register" in message, message
            assert "no-such-block" in message
        with pytest.raises(BlockNotFound):  # raised in a flow's body (install-tomcat's way)
            run_flow(_needs_credentials, error_logger=run_logger)
    finally:
        logging.getLogger("prefect").removeHandler(records)
    errors = [r for r in records.records if r.levelno >= logging.ERROR]
    assert errors, "nothing was logged"
    assert any("no-such-block" in r.getMessage() for r in errors)
    shown = "\n".join(logging.Formatter().format(r) for r in records.records)
    assert "Traceback" not in shown, shown[-3000:]
