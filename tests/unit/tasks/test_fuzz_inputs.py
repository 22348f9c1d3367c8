"""Bad input fuzzing (hypothesis): install knobs, runners, allow_failures, stage specs,
instance counts and FleetSettings fields. Every input either validates or raises a
pydantic `ValidationError` / `PlanError` that names the offending field; nothing else
escapes, and nothing reaches the network (the deploy's network checks are stubbed).

Also the throttling properties the back-off promises, through the real botocore stack
(responses injected at botocore's `before-send`, so no request leaves the process).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from blocks.settings import FleetSettings
from flows.deploy import validate_inputs
from tasks.aws.client import RetryingClient
from tasks.aws.retry import (
    RetriesExhausted,
    RetryStats,
    backoff_delay,
    botocore_config,
    call_with_backoff,
)
from tasks.deploy.dag import NEEDS
from tasks.inputs import NAMES, parse_stages, with_prerequisites
from tasks.inputs import validate_install as validate
from tasks.models import Instance
from tasks.planning import (
    PlanError,
    chunked,
    default_shape,
    failures_within,
    parse_allow_failures,
    plan_pool,
    sample_points,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
KNOBS = ("chunk_size", "max_workers", "desired_count")


def names_field(exc: BaseException, fld: str) -> bool:
    """True when `exc` is a PlanError for `fld` (and says so) or a ValidationError whose
    first location is `fld`."""
    if isinstance(exc, PlanError):
        return exc.field == fld and fld in str(exc)
    if isinstance(exc, ValidationError):
        return bool(exc.errors()) and all(e["loc"][:1] == (fld,) for e in exc.errors())
    return False


# -- strategies -------------------------------------------------------------------------
knob = st.one_of(
    st.none(),
    st.integers(-3, 300),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 10**18, 2**63]),
)
odd_knob = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(2.0),
)
runner = st.one_of(st.sampled_from(["process", "thread", "dask"]), st.text(max_size=10))
allow = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\s?[0-9]{1,5}(\.[0-9]{0,3})?\s?%?\s?", fullmatch=True),
    st.integers(-5, 10**6).map(str),
    st.sampled_from(
        ["0", "10%", "100%", "100.0%", "100.1%", "-1", " 5 ", ".5%", "1e3", "%", "5 %", "9" * 5000]
    ),
)
dask_address = st.one_of(st.none(), st.just(""), st.just("tcp://127.0.0.1:8786"), st.text())
stage_text = st.one_of(
    st.from_regex(r"[0-9x,\- ]{0,14}", fullmatch=True),
    st.text(max_size=8),
    st.sampled_from(["1-5", "3,x", "0-12", "1-11", "11-1", "1-999999", "5-" + "9" * 5000, ""]),
)
stage_list = st.lists(
    st.one_of(st.integers(-3, 14), st.integers(), st.booleans(), st.floats(), st.text(max_size=2)),
    max_size=6,
)


def instances(n: int) -> list[Instance]:
    return [
        Instance(instance_id=f"i-{i:08x}", public_ip=f"127.0.{i // 250}.{i % 250}")
        for i in range(n)
    ]


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def expected_install_error(
    hosts: int, chunk: Any, workers: Any, count: Any, run: str, allow_spec: str, dask: Any
) -> str | None:
    """The field `validate` must name, or None when the inputs are valid (an oracle)."""
    if hosts == 0:
        return "instances"
    if run not in ("process", "thread", "dask"):
        return "runner"
    if run == "dask" and not dask:
        return "dask_address"
    try:
        parse_allow_failures(allow_spec)
    except PlanError:
        return "allow_failures"
    for name, v in (("chunk_size", chunk), ("max_workers", workers), ("desired_count", count)):
        if v is not None and not (_whole(v) and v >= 1):
            if name == "desired_count" and chunk is not None and not (_whole(chunk) and chunk >= 1):
                return "chunk_size"
            if name == "max_workers" and chunk is not None and not (_whole(chunk) and chunk >= 1):
                return "chunk_size"
            return name
    if chunk is None:  # "choose": hosts spread over one process per core
        chunk = default_shape(hosts, os.cpu_count() or 2)[0]
    if count is not None and count > math.ceil(hosts / chunk):
        return "desired_count"
    return None


# -- install knobs, runner, allow_failures, dask_address --------------------------------
@FUZZ
@given(
    hosts=st.integers(0, 600),
    chunk=knob,
    workers=knob,
    count=knob,
    run=runner,
    allow_spec=allow,
    dask=dask_address,
)
@example(hosts=10, chunk=0, workers=None, count=None, run="process", allow_spec="0", dask=None)
@example(hosts=10, chunk=None, workers=-1, count=None, run="process", allow_spec="0", dask=None)
@example(hosts=10, chunk=3, workers=None, count=99, run="thread", allow_spec="0", dask=None)
@example(hosts=1, chunk=2**70, workers=2**70, count=1, run="process", allow_spec="5", dask=None)
@example(hosts=5, chunk=None, workers=None, count=None, run="dask", allow_spec="1", dask="")
@example(hosts=5, chunk=None, workers=None, count=None, run="x", allow_spec="9" * 5000, dask=None)
def test_install_validate_names_the_field(
    hosts: int, chunk: Any, workers: Any, count: Any, run: str, allow_spec: str, dask: Any
) -> None:
    want = expected_install_error(hosts, chunk, workers, count, run, allow_spec, dask)
    try:
        plan = validate(instances(hosts), chunk, workers, count, run, allow_spec, dask)
    except PlanError as exc:
        assert want is not None, f"valid inputs refused: {exc}"
        assert names_field(exc, want), (want, exc.field, str(exc))
        return
    assert want is None, f"expected a PlanError naming {want}"
    assert plan.hosts == hosts
    assert plan.chunk_size >= 1 and plan.max_workers >= plan.chunk_size
    assert 1 <= plan.desired_count <= plan.total_chunks == math.ceil(hosts / plan.chunk_size)
    assert plan.initial_batch + plan.pooled == plan.total_chunks


@FUZZ
@given(
    hosts=st.integers(1, 50),
    which=st.sampled_from(KNOBS),
    value=odd_knob,
)
def test_non_integer_knobs_are_refused_by_name(hosts: int, which: str, value: Any) -> None:
    knobs: dict[str, Any] = dict.fromkeys(KNOBS)
    knobs[which] = value
    try:
        validate(instances(hosts), **knobs, runner="thread", allow_failures="0", dask_address=None)
    except PlanError as exc:
        assert exc.field in (which, "chunk_size") and exc.field in str(exc)
    else:
        pytest.fail(f"{which}={value!r} accepted")


def test_duplicate_instance_ids_are_refused() -> None:
    inst = instances(3)
    with pytest.raises(PlanError) as info:
        validate([*inst, inst[0]], None, None, None, "thread", "0", None)
    assert names_field(info.value, "instances")


@FUZZ
@given(spec=st.one_of(allow, st.integers(-(2**40), 2**40), st.booleans()))
def test_allow_failures_parses_or_names_the_field(spec: Any) -> None:
    try:
        kind, limit = parse_allow_failures(spec)
    except PlanError as exc:
        assert names_field(exc, "allow_failures")
        return
    assert (kind == "count" and limit >= 0 and limit == int(limit)) or (
        kind == "percent" and 0 <= limit <= 100
    )
    for failed, hosts in ((0, 0), (0, 10), (3, 10), (10, 10)):
        within = failures_within(spec, failed, hosts)
        assert within is (failed == 0 or failures_within(spec, failed, hosts))
    assert failures_within(spec, 0, 10)


@FUZZ
@given(hosts=st.integers(-5, 20000), cores=st.integers(-2, 512))
def test_default_shape_always_plans(hosts: int, cores: int) -> None:
    try:
        chunk, workers, count = default_shape(hosts, cores)
    except PlanError as exc:
        assert exc.field in ("hosts", "cores") and exc.field in str(exc)
        assert hosts < 1 or cores < 1
        return
    plan = plan_pool(hosts, chunk, workers, count)
    assert plan.warnings == () and plan.max_workers <= 256


@FUZZ
@given(items=st.lists(st.integers(), max_size=30), size=st.one_of(st.integers(-3, 40), odd_knob))
def test_chunked_keeps_order_or_names_chunk_size(items: list[int], size: Any) -> None:
    try:
        out = chunked(items, size)
    except PlanError as exc:
        assert names_field(exc, "chunk_size")
        return
    assert [x for c in out for x in c] == items and all(1 <= len(c) <= size for c in out)


@FUZZ
@given(runtime=st.floats(allow_nan=True, allow_infinity=True))
def test_sample_points_names_the_field(runtime: float) -> None:
    import random

    try:
        points = sample_points(runtime, random.Random(0))
    except PlanError as exc:
        assert names_field(exc, "expected_runtime_s")
        return
    assert [p[1] for p in points] == sorted(p[1] for p in points)


# -- stage specs ------------------------------------------------------------------------
@FUZZ
@given(spec=st.one_of(stage_text, stage_list))
@example(spec="1-999999")
@example(spec="5-" + "9" * 5000)
@example(spec=[True])
@example(spec=[2.0])
@example(spec=[])
def test_parse_stages_names_the_field(spec: Any) -> None:
    try:
        todo = parse_stages(spec)
    except PlanError as exc:
        assert names_field(exc, "stages")
        return
    assert todo == sorted(set(todo)) and all(type(n) is int and n in NAMES for n in todo)
    full = with_prerequisites(todo)
    assert all(set(NEEDS[n]) <= set(full) for n in full)  # prerequisites included
    if isinstance(spec, list):
        assert set(spec) == set(todo)  # exactly the stages named


def test_parse_stages_ranges_are_bounded_before_expanding() -> None:
    with pytest.raises(PlanError, match="stages"):
        parse_stages("1-999999")
    assert parse_stages("3") == [3]  # exactly the stages named
    assert parse_stages("1,2,5") == [1, 2, 5]
    assert with_prerequisites(parse_stages("3")) == [1, 2, 3]
    assert with_prerequisites(parse_stages("9")) == [1, 2, 3, 4, 5, 8, 9]


# -- the deploy's pre-network checks: instance counts and knobs -------------------------
class _ReachedNetwork(Exception):
    """Validation passed and the next step would talk to AWS."""


@contextmanager
def no_network() -> Iterator[None]:
    def refuse(*_: Any, **__: Any) -> Any:
        raise _ReachedNetwork

    with mock.patch("flows.deploy.Aws", refuse):
        yield


@functools.cache
def base_settings() -> FleetSettings:
    return FleetSettings(_env_file=None, hosted_zone="example.com")


@FUZZ
@given(
    count=st.one_of(st.integers(-10, 6000), st.integers(-(2**64), 2**64)),
    chunk=knob,
    workers=knob,
    desired=knob,
)
@example(count=0, chunk=None, workers=None, desired=None)
@example(count=5001, chunk=None, workers=None, desired=None)
@example(count=10, chunk=5, workers=None, desired=3)
def test_deploy_validate_inputs_names_the_field(
    count: int, chunk: Any, workers: Any, desired: Any
) -> None:
    knobs = {"chunk_size": chunk, "max_workers": workers, "desired_count": desired}
    try:
        with no_network():
            validate_inputs(base_settings(), count, list(NAMES), knobs)
    except _ReachedNetwork:
        assert 1 <= count <= 5000
        want = expected_install_error(count, chunk, workers, desired, "thread", "0", None)
        assert want is None, f"invalid {want} passed validation"
    except PlanError as exc:
        if not 1 <= count <= 5000:
            assert names_field(exc, "instances")
        else:
            want = expected_install_error(count, chunk, workers, desired, "thread", "0", None)
            assert want is not None and names_field(exc, want), (want, exc.field)


# -- FleetSettings fields ---------------------------------------------------------------
def make_settings(**kwargs: Any) -> FleetSettings:
    return FleetSettings(_env_file=None, **kwargs)


def settles_or_names(fld: str, value: Any) -> FleetSettings | None:
    """Build settings with one field set: the settings, or None after a ValidationError
    that names `fld` (any other exception fails the test)."""
    try:
        return make_settings(**{fld: value})
    except ValidationError as exc:
        assert names_field(exc, fld), exc.errors()
        return None


port = st.one_of(st.integers(-70000, 70000), st.sampled_from([0, 1, 22, 65535, 65536]))


@FUZZ
@given(value=st.one_of(port, st.text(max_size=6), st.floats(), st.none()))
def test_ssh_port(value: Any) -> None:
    s = settles_or_names("ssh_port", value)
    if s is not None:
        assert 1 <= s.ssh_port <= 65535


@FUZZ
@given(
    value=st.one_of(
        st.lists(port, max_size=6),
        st.lists(st.text(max_size=4), max_size=3),
        st.from_regex(r"[0-9, \[\]-]{0,16}", fullmatch=True),
    )
)
@example(value="22,8080")
@example(value="[22, 70000]")
@example(value="[22,")
def test_ingress_ports(value: Any) -> None:
    s = settles_or_names("ingress_ports", value)
    if s is not None:
        assert s.ingress_ports == sorted(set(s.ingress_ports))
        assert all(1 <= p <= 65535 for p in s.ingress_ports)


DEPLOYMENT_RE = re.compile(r"[a-z][a-z0-9-]{0,40}")


@FUZZ
@given(
    value=st.one_of(
        st.from_regex(r"[a-z0-9-]{0,44}", fullmatch=True),
        st.text(max_size=12),
        st.sampled_from(["1abc", "a--b", "abc-", "xn--abc", "a" * 41, "a" * 42, "Tomcat", ""]),
    )
)
def test_deployment_name_is_safe_for_every_aws_name(value: str) -> None:
    from tasks.aws.beanstalk import environment_name
    from tasks.aws.elbv2 import elb_name
    from tasks.aws.rds import db_instance_id
    from tasks.aws.s3 import log_bucket_name

    s = settles_or_names("deployment_name", value)
    if s is None:
        return
    name = s.deployment_name
    assert DEPLOYMENT_RE.fullmatch(name) and "--" not in name and not name.endswith("-")
    rds = db_instance_id(s)
    assert len(rds) <= 63 and rds[0].isalpha() and "--" not in rds and not rds.endswith("-")
    assert 4 <= len(environment_name(s)) <= 40
    assert all(len(elb_name(s, x)) <= 32 for x in ("alb", "tg"))
    bucket = log_bucket_name(s, "123456789012")
    assert 3 <= len(bucket) <= 63 and not bucket.startswith("xn--")


@FUZZ
@given(
    value=st.one_of(
        st.none(),
        st.text(max_size=20),
        st.ip_addresses().map(str),
        st.tuples(st.ip_addresses(v=4), st.integers(-2, 40)).map(lambda t: f"{t[0]}/{t[1]}"),
        st.sampled_from(
            ["0.0.0.0/0", "10.0.0.1/8", "::/0", "1.2.3.4/33", "not-a-cidr", " 1.2.3.4 "]
        ),
    )
)
def test_ingress_cidr_is_a_network(value: Any) -> None:
    import ipaddress

    s = settles_or_names("ingress_cidr", value)
    if s is not None and s.ingress_cidr is not None:
        assert str(ipaddress.ip_network(s.ingress_cidr)) == s.ingress_cidr


@FUZZ
@given(value=st.one_of(st.sampled_from(["strict", "tofu", "insecure"]), st.text(max_size=8)))
def test_host_key_policy(value: str) -> None:
    s = settles_or_names("host_key_policy", value)
    if s is not None:
        assert s.host_key_policy in ("strict", "tofu", "insecure")


step = st.fixed_dictionaries(
    {
        "name": st.one_of(st.from_regex(r"[a-z0-9-]{0,8}", fullmatch=True), st.text(max_size=4)),
        "command": st.text(max_size=10),
    },
    optional={
        "timeout_s": st.one_of(st.floats(), st.integers(-5, 5), st.text(max_size=3)),
        "transient_markers": st.one_of(st.lists(st.text(max_size=5), max_size=2), st.integers()),
    },
)


@FUZZ
@given(
    steps=st.lists(step, max_size=4),
    as_json=st.booleans(),
    garble=st.booleans(),
)
@example(steps=[], as_json=True, garble=False)
def test_install_steps_json(steps: list[dict[str, Any]], as_json: bool, garble: bool) -> None:
    """The recipe from TOMCAT_FLEET_INSTALL_STEPS (JSON) or from keyword arguments."""
    text = json.dumps(steps)
    if garble:
        text = text[:-1]
    try:
        if as_json:
            with mock.patch.dict(os.environ, {"TOMCAT_FLEET_INSTALL_STEPS": text}):
                s = make_settings()
        else:
            s = make_settings(install_steps=steps)
    except ValidationError as exc:
        assert names_field(exc, "install_steps"), exc.errors()
        return
    assert s.install_steps and all(st_.timeout_s > 0 for st_ in s.install_steps)
    assert not (garble and as_json)


@FUZZ
@given(
    fld=st.sampled_from(
        ["aws_retries", "aws_backoff_base_s", "aws_backoff_cap_s", "host_attempts", "ssh_wait_s"]
    ),
    value=st.one_of(
        st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=5), st.none()
    ),
)
def test_numeric_knobs(fld: str, value: Any) -> None:
    s = settles_or_names(fld, value)
    if s is not None:
        got = getattr(s, fld)
        assert math.isfinite(got) and got >= 0


def test_settings_from_environment_name_the_field() -> None:
    env = {"TOMCAT_FLEET_SSH_PORT": "ssh", "TOMCAT_FLEET_INGRESS_PORTS": "22,x"}
    with mock.patch.dict(os.environ, env), pytest.raises(ValidationError) as info:
        make_settings()
    assert {e["loc"][0] for e in info.value.errors()} == {"ssh_port", "ingress_ports"}


# -- throttling properties --------------------------------------------------------------
@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    attempt=st.integers(0, 10**6),
    base=st.floats(0, 1e6),
    cap=st.floats(0, 1e4),
    jitter=st.floats(0, 1e4),
    seed=st.integers(0, 2**32),
)
def test_backoff_never_sleeps_past_its_cap(
    attempt: int, base: float, cap: float, jitter: float, seed: int
) -> None:
    import random

    d = backoff_delay(attempt, base=base, cap=cap, jitter=jitter, rng=random.Random(seed))
    assert 0.0 <= d <= cap + jitter  # the cap bounds the exponential part; jitter is added


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "RunInstances")


@FUZZ
@given(
    retries=st.integers(0, 40),
    throttles=st.integers(0, 60),
    then=st.sampled_from(["ok", "InvalidAMIID.NotFound"]),
    cap=st.floats(0.0, 30.0),
)
def test_call_with_backoff_bounds_calls_and_sleeps(
    retries: int, throttles: int, then: str, cap: float
) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= throttles:
            raise _client_error("RequestLimitExceeded")
        if then != "ok":
            raise _client_error(then)
        return "ok"

    stats = RetryStats()
    try:
        result = call_with_backoff(fn, retries=retries, cap=cap, sleep=sleeps.append, stats=stats)
        outcome = result
    except RetriesExhausted as exc:
        outcome = "exhausted"
        assert exc.attempts == retries + 1
    except ClientError as exc:
        outcome = str(exc.response["Error"]["Code"])
    assert len(calls) <= retries + 1
    assert len(sleeps) == stats.retries == len(calls) - 1
    assert all(0 <= s <= cap + 1.0 for s in sleeps)  # cap + the default jitter
    if throttles > retries:
        assert outcome == "exhausted" and len(calls) == retries + 1
    else:
        assert outcome == then and len(calls) == throttles + 1


# the real stack: a botocore client (its own retries off) behind RetryingClient, with each
# HTTP response injected at `before-send` and counted
_EC2_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
    "<Message>{code}</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class Responder:
    """`before-send` handler: answers every request with (status, code), counting them."""

    def __init__(self) -> None:
        self.sent = 0
        self.status, self.code = 503, "RequestLimitExceeded"

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.sent += 1
        body = _EC2_ERROR.format(code=self.code).encode()
        headers: Any = {"Content-Type": "text/xml"}
        return AWSResponse(request.url, self.status, headers, _Raw(body))


@functools.cache
def ec2_stack() -> tuple[Any, Responder]:
    import boto3

    raw = boto3.session.Session().client(
        "ec2",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # never contacted: before-send answers
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore_config(),
    )
    responder = Responder()
    raw.meta.events.register("before-send", responder)  # type: ignore[arg-type]
    return raw, responder


@settings(max_examples=12, deadline=None, derandomize=True)
@given(retries=st.integers(0, 12))
def test_throttled_ec2_call_sends_at_most_retries_plus_one_requests(retries: int) -> None:
    raw, responder = ec2_stack()
    responder.status, responder.code, responder.sent = 503, "RequestLimitExceeded", 0
    stats = RetryStats()
    client = RetryingClient(raw, stats, retries=retries, base=1e-4, cap=1e-4)
    with pytest.raises(RetriesExhausted):
        client.describe_instances()
    assert responder.sent == retries + 1  # botocore added none of its own
    assert stats.retries == retries and stats.slept_s <= retries * 2e-4 + 1e-9


def test_permanent_ec2_error_is_raised_after_one_request() -> None:
    raw, responder = ec2_stack()
    responder.status, responder.code, responder.sent = 400, "InvalidAMIID.NotFound", 0
    stats = RetryStats()
    client = RetryingClient(raw, stats, retries=50, base=1e-4, cap=1e-4)
    with pytest.raises(ClientError) as info:
        client.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1)
    assert info.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    assert responder.sent == 1 and stats.retries == 0
