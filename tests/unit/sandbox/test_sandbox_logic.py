"""Pure sandbox logic: token buckets, security-group evaluation, seeded faults, config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox.config import FaultRates, SandboxConfig
from sandbox.faults import host_faults
from sandbox.netpolicy import Rule, Source, allowed
from sandbox.throttle import Ec2Limits, Limit, Throttler, TokenBucket, action_class, refusal


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
    limits = Ec2Limits(mutating=Limit(1, 0.001), describe=Limit(0, 1))
    t = Throttler(0.0, ec2=limits, clock=lambda: 0.0)
    assert t.admit("ec2", "TerminateInstances") and not t.admit("ec2", "TerminateInstances")
    assert t.admit("ec2", "StopInstances")  # each API has its own bucket, as on AWS
    assert all(t.admit("ec2", "DescribeInstances") for _ in range(100))


def test_throttler_rate_is_seeded() -> None:
    a = Throttler(0.5, buckets=False, seed=3)
    b = Throttler(0.5, buckets=False, seed=3)
    assert [a.admit("ec2", "X") for _ in range(50)] == [b.admit("ec2", "X") for _ in range(50)]


def test_default_buckets_are_aws_published_rates() -> None:
    now = [0.0]
    t = Throttler(0.0, clock=lambda: now[0])
    assert sum(t.admit("ec2", "DescribeInstances") for _ in range(150)) == 100
    assert sum(t.admit("ec2", "CreateTags") for _ in range(80)) == 50
    assert sum(t.admit("ec2", "RunInstances", 1) for _ in range(10)) == 5
    assert sum(t.admit("elasticloadbalancing", "DescribeTargetHealth") for _ in range(60)) == 40
    assert sum(t.admit("elasticloadbalancing", "RegisterTargets") for _ in range(30)) == 20
    assert sum(t.admit("route53", a) for a in ["GetChange", "ChangeResourceRecordSets"] * 5) == 5
    assert all(t.admit("rds", "DescribeDBInstances") for _ in range(500))  # not bucketed
    now[0] = 1.0  # one second refills 20 describe, 5 mutating, 2 RunInstances, 10 ELB reads
    assert sum(t.admit("ec2", "DescribeInstances") for _ in range(30)) == 20
    assert sum(t.admit("ec2", "CreateTags") for _ in range(30)) == 5
    assert sum(t.admit("ec2", "RunInstances", 1) for _ in range(30)) == 2
    assert sum(t.admit("elasticloadbalancing", "DescribeTargetHealth") for _ in range(30)) == 10


def test_run_instances_resource_tokens() -> None:
    now = [0.0]
    t = Throttler(0.0, clock=lambda: now[0])
    assert t.admit("ec2", "RunInstances", 1000)  # a 1000-instance bucket, full at start
    now[0] = 1.0  # request tokens refilled, but only 2 instance tokens came back
    assert not t.admit("ec2", "RunInstances", 3)
    assert t.admit("ec2", "RunInstances", 2)
    now[0] = 100.0
    assert t.admit("ec2", "TerminateInstances", 1000)


def test_buckets_off_and_refusals_look_like_aws() -> None:
    t = Throttler(0.0, buckets=False)
    assert all(t.admit("ec2", "RunInstances", 1000) for _ in range(100))
    status, body = refusal("ec2", "r1")
    assert status.startswith("503") and b"<Code>RequestLimitExceeded</Code>" in body
    for service in ("elasticloadbalancing", "route53", "rds"):
        status, body = refusal(service, "r2")
        assert status.startswith("400") and b"<Code>Throttling</Code>" in body


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


def test_account_profile_option() -> None:
    from sandbox.__main__ import build_parser, config_from_args

    assert SandboxConfig().account_profile == "fresh"
    busy = config_from_args(build_parser().parse_args(["--account-profile", "busy"]))
    assert busy.account_profile == "busy"
    with pytest.raises(ValidationError, match="account profile"):
        SandboxConfig(account_profile="crowded")
