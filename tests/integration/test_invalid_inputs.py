"""Every flow refuses invalid input before its first mutating AWS call (issue 12): hypothesis
generates invalid inputs for deploy, install-tomcat, teardown and benchmark; each flow is
called directly on one shared sandbox, where a deployment with one running instance and its
key exists (so a flow that skipped a check would have something to act on), and the
sandbox's per-action call log must show no mutating call (anything but Describe/Get/List)
across the run. Few examples per flow (15) keep it to about a minute."""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocks.settings import FleetSettings
from flows.benchmark import benchmark
from flows.deploy import deploy
from flows.install_tomcat import install_tomcat
from flows.teardown import teardown
from sandbox import Sandbox, SandboxConfig
from tasks.aws import Aws
from tasks.aws.ec2 import find_instances
from tasks.inputs import check_deploy_request
from tasks.models import Instance
from tasks.planning import PlanError, parse_allow_failures

from ..support import make_sandbox

NAME = "propcheck"
EXAMPLES = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
READS = ("Describe", "Get", "List")


@pytest.fixture(scope="module")
def sb(tmp_path_factory: Any) -> Any:
    cfg = SandboxConfig(install_latency=0.1, boot_delay=0.2, cloud_init_seconds=0.2)
    base = tmp_path_factory.mktemp("prop")
    saved = dict(os.environ)
    with make_sandbox(cfg, env=True) as s:
        os.environ.update(
            TOMCAT_FLEET_STATE_DIR=str(base / "state"),
            TOMCAT_FLEET_LOG_DIR=str(base / "logs"),
            TOMCAT_FLEET_DEPLOYMENT_NAME=NAME,
        )
        state = deploy(instances=1, stages="1", return_state=True)
        assert state.is_completed(), state.message
        yield s
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def fleet(sb: Sandbox) -> list[Instance]:
    found = find_instances(Aws(FleetSettings()), FleetSettings(), "web")
    assert len(found) == 1
    return found


def is_read(key: str) -> bool:
    """ "ec2:DescribeInstances" (query APIs) or "route53:GET /2013-04-01/..." (REST APIs)."""
    action = key.split(":", 1)[-1]
    return action.startswith(READS) or action.split(" ", 1)[0] in ("GET", "HEAD")


def mutating(sb: Sandbox) -> dict[str, int]:
    calls: dict[str, int] = sb.state()["api"]["calls"]
    return {k: v for k, v in calls.items() if not is_read(k)}


def refused_without_mutating(sb: Sandbox, call: Callable[[], Any]) -> None:
    before = mutating(sb)
    state = call()
    assert state.is_failed(), f"accepted: {state.message}"
    assert mutating(sb) == before, f"mutating calls on refused input: {state.message}"


def invalid(check: Callable[[Any], Any]) -> Callable[[Any], bool]:
    def bad(value: Any) -> bool:
        try:
            check(value)
        except (PlanError, ValueError, TypeError):
            return True
        return False

    return bad


bad_failures = st.text(string.printable, max_size=8).filter(invalid(parse_allow_failures))
bad_stages = st.text(string.printable, max_size=8).filter(
    invalid(lambda s: check_deploy_request(1, s, {}, "0"))
)
bad_name = st.text(string.ascii_letters + string.digits + "-_. ", max_size=45).filter(
    invalid(lambda n: FleetSettings(deployment_name=n))
)

deploy_inputs = st.one_of(
    st.integers(max_value=0).map(lambda n: {"instances": n}),
    st.integers(min_value=5001).map(lambda n: {"instances": n}),
    bad_stages.map(lambda s: {"stages": s}),
    bad_failures.map(lambda s: {"allow_failures": s}),
    st.just({"runner": "dask"}),
    st.integers(max_value=0).map(lambda n: {"chunk_size": n}),
    st.integers(max_value=0).map(lambda n: {"desired_count": n}),
    st.just({"instance_type": "zz9.nonexistent"}),
    st.just({"stages": "1-5", "hosted_zone": "no-such-zone.example"}),
    st.just({"stages": "1-5", "domain": "www.elsewhere.example"}),
    bad_name.map(lambda n: {"settings_overrides": {"deployment_name": n}}),
)


@EXAMPLES
@given(kw=deploy_inputs)
def test_deploy_refuses_without_mutating(sb: Sandbox, kw: dict[str, Any]) -> None:
    args = {"instances": 1, "stages": "1-3", **kw}
    refused_without_mutating(sb, lambda: deploy(**args, return_state=True))


ids = st.from_regex(r"\Ai-[0-9a-f]{17}\Z")


def install_inputs(fleet: list[Instance]) -> Any:
    real = fleet[0]
    return st.one_of(
        st.just({"instances": []}),
        st.just({"instances": [real, real]}),
        ids.map(lambda i: {"instances": [Instance(instance_id=i, public_ip="127.0.0.1")]}),
        st.just({"instances": [real.model_copy(update={"public_ip": "127.9.9.9"})]}),
        st.integers(max_value=0).map(lambda n: {"instances": fleet, "chunk_size": n}),
        st.just({"instances": fleet, "runner": "dask"}),
        bad_failures.map(lambda s: {"instances": fleet, "allow_failures": s}),
        bad_name.map(lambda n: {"instances": fleet, "settings_overrides": {"deployment_name": n}}),
    )


def test_install_refuses_without_mutating(sb: Sandbox, fleet: list[Instance]) -> None:
    @EXAMPLES
    @given(kw=install_inputs(fleet))
    def check(kw: dict[str, Any]) -> None:
        refused_without_mutating(sb, lambda: install_tomcat(**kw, return_state=True))

    check()


@EXAMPLES
@given(name=bad_name)
def test_teardown_refuses_without_mutating(sb: Sandbox, name: str) -> None:
    refused_without_mutating(sb, lambda: teardown(deployment_name=name, return_state=True))


benchmark_inputs = st.one_of(
    st.integers(max_value=0).map(lambda n: {"repeat": n}),
    st.just({"target": "mars"}),
    st.floats(max_value=-0.001).map(lambda f: {"install_latency": f}),
    st.floats(min_value=1.001).map(lambda f: {"throttle_rate": f}),
    st.text(string.printable, max_size=10).map(lambda s: {"public_ip_cidr": s + "/99"}),
    st.just({"matrix": "no-such-matrix.yaml"}),
)


@EXAMPLES
@given(kw=benchmark_inputs)
def test_benchmark_refuses_without_mutating(sb: Sandbox, tmp_path_factory: Any, kw: Any) -> None:
    out = str(tmp_path_factory.mktemp("bench"))
    args = {"target": "aws", "matrix": ["2/1"], "repeat": 1, "out_dir": out, **kw}
    refused_without_mutating(sb, lambda: benchmark(**args, return_state=True))
