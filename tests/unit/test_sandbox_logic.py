"""Pure sandbox logic: token buckets, security-group evaluation, seeded faults, config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox.config import FaultRates, SandboxConfig
from sandbox.faults import host_faults
from sandbox.netpolicy import Rule, Source, allowed
from sandbox.throttle import Throttler, TokenBucket, action_class


def test_action_class() -> None:
    assert action_class("DescribeInstances") == "describe"
    assert action_class("RunInstances") == "mutating"


def test_token_bucket_refills_with_clock() -> None:
    now = [0.0]
    b = TokenBucket(2, 1.0, lambda: now[0])
    assert b.take() and b.take() and not b.take()
    now[0] = 1.0
    assert b.take() and not b.take()


def test_throttler_bucket_per_class() -> None:
    t = Throttler(0.0, {"mutating": (1, 0.001), "describe": (0, 1)}, clock=lambda: 0.0)
    assert t.admit("RunInstances") and not t.admit("TerminateInstances")
    assert all(t.admit("DescribeInstances") for _ in range(100))


def test_throttler_rate_is_seeded() -> None:
    a = Throttler(0.5, {}, seed=3)
    b = Throttler(0.5, {}, seed=3)
    assert [a.admit("X") for _ in range(50)] == [b.admit("X") for _ in range(50)]


def test_security_groups() -> None:
    rules = {
        "sg-web": [
            Rule("tcp", 22, 22, cidr="198.51.100.10/32"),
            Rule("tcp", 8080, 8080, source_group="sg-alb"),
        ],
        "sg-all": [Rule("-1", None, None, cidr="0.0.0.0/0")],
    }
    controller = Source(("198.51.100.10",))
    stranger = Source(("203.0.113.5",))
    alb = Source(("127.101.0.2",), frozenset({"sg-alb"}))
    assert allowed(rules, ["sg-web"], 22, controller)
    assert not allowed(rules, ["sg-web"], 22, stranger)
    assert not allowed(rules, ["sg-web"], 8080, controller)
    assert allowed(rules, ["sg-web"], 8080, alb)
    assert allowed(rules, ["sg-all"], 3306, stranger)
    assert not allowed(rules, [], 22, controller)


def test_host_faults_are_stable_per_seed() -> None:
    rates = FaultRates.profile("hostile")
    a = [host_faults(1, f"i-{n}", rates).never_boots for n in range(200)]
    b = [host_faults(1, f"i-{n}", rates).never_boots for n in range(200)]
    assert a == b and 0 < sum(a) < 40
    clean = FaultRates.profile("clean")
    assert not any(host_faults(1, f"i-{n}", clean).install_fails() for n in range(100))


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError, match="fault profile"):
        SandboxConfig(fault_profile="chaos")
    with pytest.raises(ValidationError):
        SandboxConfig(install_latency=-1)
    with pytest.raises(ValidationError, match="loopback"):
        SandboxConfig(public_ip_cidr="10.0.0.0/16")
