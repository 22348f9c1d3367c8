"""Back-off and retry logic: fake sleep, seeded rng, botocore ClientErrors, no network."""

from __future__ import annotations

import pickle
import random
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tasks.aws.retry import (
    THROTTLING_CODES,
    RetriesExhausted,
    RetryStats,
    backoff_delay,
    botocore_config,
    call_with_backoff,
    error_code,
    is_retryable,
    is_throttle,
    with_backoff,
    worst_case_attempts,
    worst_case_sleep_s,
)


def client_error(code: str, op: str = "DescribeInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, op)


class Flaky:
    """Raises the given exceptions in order, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        self.last_args = (args, kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def test_throttling_codes_exact() -> None:
    assert {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
    } == THROTTLING_CODES


def test_error_code_and_is_throttle() -> None:
    assert error_code(client_error("RequestLimitExceeded")) == "RequestLimitExceeded"
    assert error_code(ValueError("x")) is None
    assert error_code(ClientError({}, "Op")) is None
    assert is_throttle(client_error("Throttling"))
    assert not is_throttle(client_error("InvalidAMIID.NotFound"))
    assert not is_throttle(RuntimeError("RequestLimitExceeded"))


@pytest.mark.parametrize("seed", range(20))
def test_backoff_delay_bounds(seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(0, 2000, 7):
        d = backoff_delay(attempt, base=1.0, cap=20.0, jitter=1.0, rng=rng)
        assert 0.0 <= d <= 20.0 + 1.0  # the cap bounds the exponential part, not the jitter
    for attempt in range(4):
        d = backoff_delay(attempt, rng=rng)
        assert 2**attempt <= d <= 2**attempt + 1.0


def test_backoff_delay_exact_and_validation() -> None:
    assert backoff_delay(3, base=0.5, jitter=0.0) == 4.0
    assert backoff_delay(10, cap=5.0, jitter=0.0) == 5.0
    assert backoff_delay(0, base=0.0, jitter=0.0) == 0.0
    with pytest.raises(ValueError):
        backoff_delay(-1)
    with pytest.raises(ValueError):
        backoff_delay(0, jitter=-1.0)


def test_throttle_then_success() -> None:
    fn = Flaky(client_error("RequestLimitExceeded"), client_error("Throttling"))
    sleep, stats = FakeSleep(), RetryStats()
    result = call_with_backoff(fn, "a", key="v", sleep=sleep, rng=random.Random(1), stats=stats)
    assert result == "ok"
    assert fn.calls == 3
    assert fn.last_args == (("a",), {"key": "v"})
    assert len(sleep.delays) == 2
    assert 1.0 <= sleep.delays[0] <= 2.0
    assert 2.0 <= sleep.delays[1] <= 3.0
    assert stats.retries == 2
    assert stats.slept_s == pytest.approx(sum(sleep.delays))
    assert stats.by_code == {"RequestLimitExceeded": 1, "Throttling": 1}


def test_permanent_error_not_retried_and_unchanged() -> None:
    err = client_error("InvalidAMIID.NotFound", "RunInstances")
    fn = Flaky(err)
    sleep, stats = FakeSleep(), RetryStats()
    with pytest.raises(ClientError) as info:
        call_with_backoff(fn, sleep=sleep, stats=stats)
    assert info.value is err
    assert fn.calls == 1
    assert sleep.delays == []
    assert stats.retries == 0


def test_permanent_after_throttle_propagates() -> None:
    err = KeyError("boom")
    fn = Flaky(client_error("SlowDown"), err)
    with pytest.raises(KeyError) as info:
        call_with_backoff(fn, sleep=FakeSleep())
    assert info.value is err
    assert fn.calls == 2


@pytest.mark.parametrize("retries", [0, 1, 3, 8])
def test_retries_exhausted(retries: int) -> None:
    errors = [client_error("RequestLimitExceeded") for _ in range(retries + 5)]
    fn = Flaky(*errors)
    sleep, stats = FakeSleep(), RetryStats()
    with pytest.raises(RetriesExhausted) as info:
        call_with_backoff(
            fn, retries=retries, cap=3.0, sleep=sleep, rng=random.Random(7), stats=stats
        )
    assert fn.calls == retries + 1
    assert len(sleep.delays) == retries
    assert all(0 <= d <= 3.0 + 1.0 for d in sleep.delays)  # cap + the default jitter
    assert stats.retries == retries
    exc = info.value
    assert exc.attempts == retries + 1
    assert exc.last_error is errors[retries]
    assert exc.__cause__ is errors[retries]
    assert "Flaky" in str(exc) and str(retries + 1) in str(exc)


def test_custom_retry_if_and_code_fallback() -> None:
    fn = Flaky(ConnectionError("reset"))
    stats = RetryStats()
    assert (
        call_with_backoff(
            fn,
            sleep=FakeSleep(),
            stats=stats,
            retry_if=lambda e: isinstance(e, ConnectionError),
        )
        == "ok"
    )
    assert stats.by_code == {"ConnectionError": 1}


def test_negative_retries_rejected() -> None:
    with pytest.raises(ValueError):
        call_with_backoff(Flaky(), retries=-1)
    with pytest.raises(ValueError):
        with_backoff(retries=-1)


def test_decorator() -> None:
    sleep, stats = FakeSleep(), RetryStats()
    calls: list[int] = []

    @with_backoff(retries=2, sleep=sleep, rng=random.Random(0), stats=stats)
    def describe(n: int, *, retries: int = 0) -> int:
        """Doc kept."""
        calls.append(n)
        if len(calls) < 3:
            raise client_error("ThrottlingException")
        return n + retries

    assert describe(1, retries=10) == 11  # the wrapped function's own `retries` kwarg
    assert describe.__doc__ == "Doc kept."
    assert len(calls) == 3 and len(sleep.delays) == 2 and stats.retries == 2

    @with_backoff(retries=1, sleep=sleep)
    def always() -> None:
        raise client_error("Throttling")

    with pytest.raises(RetriesExhausted, match="always") as info:
        always()
    assert info.value.attempts == 2


def test_stats_merge_dict_threads_and_pickle() -> None:
    a, b = RetryStats(), RetryStats()

    def work(stats: RetryStats) -> None:
        for _ in range(1000):
            stats.record("Throttling", 0.5)

    threads = [threading.Thread(target=work, args=(a,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.retries == 4000
    b.record("SlowDown", 1.0)
    b.record(None, 0.25)
    a.merge(b)
    assert a.as_dict() == {
        "retries": 4002,
        "slept_s": pytest.approx(2001.25),
        "by_code": {"SlowDown": 1, "Throttling": 4000, "unknown": 1},
    }
    c = pickle.loads(pickle.dumps(a))
    assert c.as_dict() == a.as_dict()
    c.record("Throttling", 1.0)
    assert c.retries == 4003


def test_retries_exhausted_pickles() -> None:
    exc = RetriesExhausted("DescribeInstances", 9, client_error("Throttling"))
    back = pickle.loads(pickle.dumps(exc))
    assert back.attempts == 9 and str(back) == str(exc)
    assert error_code(back.last_error) == "Throttling"


def test_botocore_config_disables_botocore_retries() -> None:
    cfg: Any = botocore_config(max_pool_connections=64, connect_timeout=5, read_timeout=30)
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 1}
    assert cfg.max_pool_connections == 64
    assert cfg.connect_timeout == 5
    assert cfg.read_timeout == 30
    default: Any = botocore_config()
    assert default.max_pool_connections == 50


def test_jitter_is_not_clipped_at_the_cap() -> None:
    """Issue 12: with the throttling rows' settings (cap 1 s) every sleep from attempt 2 on
    used to be exactly 1.000 s; now the sleeps at the cap spread over [cap, cap + jitter)."""
    rng = random.Random(7)
    at_cap = [backoff_delay(n, base=0.5, cap=1.0, jitter=1.0, rng=rng) for n in range(2, 202)]
    assert all(1.0 <= d <= 2.0 for d in at_cap)
    assert len({round(d, 6) for d in at_cap}) > 150  # not all equal
    assert max(at_cap) - min(at_cap) > 0.8  # spread over most of the jitter
    mean = sum(at_cap) / len(at_cap)
    assert 1.35 < mean < 1.65


def test_retry_classification() -> None:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    assert is_retryable(client_error("RequestLimitExceeded"))
    for code in ("InternalError", "ServiceUnavailable", "InternalFailure"):
        assert is_retryable(client_error(code)), code

    def with_status(code: str, status: int) -> ClientError:
        response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(response, "Op")

    http_503 = with_status("Whatever", 503)
    assert is_retryable(http_503)
    assert is_retryable(EndpointConnectionError(endpoint_url="http://x"))
    assert is_retryable(ConnectionClosedError(endpoint_url="http://x"))
    assert is_retryable(ReadTimeoutError(endpoint_url="http://x"))
    assert is_retryable(ConnectTimeoutError(endpoint_url="http://x"))
    http_400 = with_status("InvalidParameterValue", 400)
    assert not is_retryable(http_400)
    assert not is_retryable(client_error("InvalidAMIID.NotFound"))
    assert not is_retryable(ValueError("InternalError"))


def test_server_error_and_dropped_connection_are_retried() -> None:
    from botocore.exceptions import EndpointConnectionError

    fn = Flaky(client_error("InternalError"), EndpointConnectionError(endpoint_url="http://x"))
    sleep = FakeSleep()
    stats = RetryStats()
    assert call_with_backoff(fn, sleep=sleep, stats=stats, rng=random.Random(1)) == "ok"
    assert fn.calls == 3 and len(sleep.delays) == 2
    assert stats.by_code == {"InternalError": 1, "EndpointConnectionError": 1}


def test_worst_case_attempts_bound() -> None:
    from tasks.deploy.dag import NAMES, TASK_RETRIES

    assert worst_case_attempts(0, 0) == 1
    assert worst_case_attempts(8, 1) == 18  # the defaults: aws_retries 8, stage retries 1
    assert worst_case_attempts(8, 2) == 27
    with pytest.raises(ValueError):
        worst_case_attempts(-1, 0)
    # the bound holds for every stage with the default settings: at most 18 requests per call
    from blocks.settings import FleetSettings

    retries = FleetSettings.model_fields["aws_retries"].default
    assert set(TASK_RETRIES) == set(NAMES)
    assert max(worst_case_attempts(retries, r) for r in TASK_RETRIES.values()) <= 18
    # a call that is throttled forever makes exactly (retries + 1) requests per task run
    for task_retries in range(3):
        sent = 0
        for _run in range(task_retries + 1):
            fn = Flaky(*[client_error("Throttling")] * 100)
            with pytest.raises(RetriesExhausted):
                call_with_backoff(fn, retries=retries, sleep=FakeSleep())
            sent += fn.calls
        assert sent == worst_case_attempts(retries, task_retries)


def test_worst_case_sleep() -> None:
    # 0.5, 1, 2, 4, 8, 16, 20, 20 plus up to 1 s of jitter each
    assert worst_case_sleep_s(8, base=0.5, cap=20.0) == pytest.approx(71.5 + 8)
    assert worst_case_sleep_s(0, base=0.5, cap=20.0) == 0.0


def test_deploy_stage_task_retries_match_the_dag() -> None:
    """`TASK_RETRIES` (used for the attempt bound) is what the built stage tasks really set."""
    from tasks.deploy.dag import NAMES, TASK_RETRIES
    from tasks.deploy.stages import rooms

    found = {n: room.task.retries for n, room in rooms().items() if room.task is not None}
    assert found, "no stage tasks found in tasks.deploy.stages"
    for stage, retries in found.items():
        assert retries == TASK_RETRIES[stage], NAMES[stage]


def _stubbed_ec2() -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    from tasks.aws.client import RetryingClient

    raw = boto3.session.Session().client(
        "ec2",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore_config(),
    )
    stats = RetryStats()
    return RetryingClient(raw, stats, retries=3, base=1e-4, cap=1e-4), Stubber(raw)


def _one_instance(state: str) -> dict[str, Any]:
    return {"Reservations": [{"Instances": [{"InstanceId": "i-1", "State": {"Name": state}}]}]}


def test_waiter_poll_throttle_is_retried() -> None:
    client, stub = _stubbed_ec2()
    running, pending = _one_instance("running"), _one_instance("pending")
    stub.add_response("describe_instances", pending)
    stub.add_client_error("describe_instances", "RequestLimitExceeded", http_status_code=503)
    stub.add_client_error("describe_instances", "ServiceUnavailable", http_status_code=503)
    stub.add_response("describe_instances", running)
    with stub:
        client.wait(
            "instance_running",
            what="instances running",
            timeout_s=1,
            delay_s=0.01,
            InstanceIds=["i-1"],
        )
    stub.assert_no_pending_responses()
    assert client._stats.retries == 2


def test_waiter_deadline_names_what_it_waited_for() -> None:
    from tasks.aws.client import WaitTimeout

    client, stub = _stubbed_ec2()
    for _ in range(5):
        stub.add_response("describe_instances", _one_instance("pending"))
    with stub, pytest.raises(WaitTimeout, match=r"instances running: not done within"):
        client.wait("instance_running", what="instances running", timeout_s=0.02, delay_s=0.01)


def test_paginator_page_throttle_is_retried() -> None:
    client, stub = _stubbed_ec2()
    stub.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "a"}]})
    stub.add_response(
        "describe_instances", {"Reservations": [{"ReservationId": "r-1"}], "NextToken": "t"}
    )
    stub.add_client_error("describe_instances", "Throttling", http_status_code=400)
    stub.add_response("describe_instances", {"Reservations": [{"ReservationId": "r-2"}]})
    with stub:
        assert client.describe_key_pairs()["KeyPairs"][0]["KeyName"] == "a"
        got = [r["ReservationId"] for r in client.pages("describe_instances", "Reservations")]
    assert got == ["r-1", "r-2"]
    assert client._stats.retries == 1


def test_sessions_share_one_data_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `Aws` of a process parses a service model once: a second session's client
    reuses the first one's parsed JSON (no network: client creation only)."""
    from blocks.settings import FleetSettings
    from tasks.aws.client import Aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    settings = FleetSettings(aws_endpoint_url="http://127.0.0.1:9")
    one, two = Aws(settings), Aws(settings)
    assert one.session is not two.session
    loader = one.session._session.get_component("data_loader")
    assert two.session._session.get_component("data_loader") is loader
    one.client("ec2")
    cached = {key for key in loader._cache if "ec2" in key}
    assert cached  # EC2's model parsed once ...
    two.client("ec2")
    assert {key for key in loader._cache if "ec2" in key} == cached  # ... and reused
    model_one = one.client("ec2").meta.service_model
    model_two = two.client("ec2").meta.service_model
    assert model_one._service_description is model_two._service_description
