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
    is_throttle,
    with_backoff,
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
        assert 0.0 <= d <= 20.0
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
    assert all(0 <= d <= 3.0 for d in sleep.delays)
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
