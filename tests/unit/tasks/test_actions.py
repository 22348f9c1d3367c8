"""The action log (`tasks.actions`): one line per resource found/created/changed/deleted, per
wait and per retry, to the open recording's sink (else the `tomcat_fleet.actions` logger),
kept for the stage's one-line summary; threads started with a copy of the context report to
the same recording. The wait helper, the retry loop and the client's waiter report
themselves."""

from __future__ import annotations

import contextvars
import logging
import random
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tasks import actions
from tasks.aws.client import RetryingClient
from tasks.aws.retry import RetryStats, botocore_config, call_with_backoff
from tasks.waiting import WaitTimeout, wait_until


class Sink(logging.Handler):
    """A logger's records, as (level, message)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.lines]


@pytest.fixture
def sink() -> Any:
    """A logger to record into, and its handler."""
    logger = logging.getLogger("tests.actions.sink")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Sink()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def throttle(op: str = "DescribeInstances") -> ClientError:
    return ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, op)


# -- lines --------------------------------------------------------------------------------
def test_each_verb_has_one_line_naming_kind_id_name_and_why() -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/d-tg/abc"
    cases = {
        actions.Action("created", "target group", arn, "d-tg", "for 4 instances"): (
            f"created target group d-tg ({arn}): for 4 instances"
        ),
        actions.Action("unchanged", "load balancer", "arn:lb", "d-alb"): (
            "found load balancer d-alb (arn:lb), unchanged"
        ),
        actions.Action("changed", "listener", "arn:l", "HTTPS:443", "certificate b (was a)"): (
            "changed listener HTTPS:443 (arn:l): certificate b (was a)"
        ),
        actions.Action("found", "security group", "sg-1", "d-web"): (
            "found security group d-web (sg-1)"
        ),
        actions.Action("deleted", "key-pair", "d"): "deleted key-pair d",
        actions.Action("gone", "listener", "d:HTTP:80"): "listener d:HTTP:80 already gone",
        actions.Action("kept", "iam-role", "r", why="not ours"): "kept iam-role r: not ours",
        actions.Action("failed", "s3-bucket b", why="AccessDenied: no"): (
            "failed: s3-bucket b: AccessDenied: no"
        ),
        actions.Action("waited", "load balancer d-alb to be active", why="done", seconds=6.25): (
            "waited 6.2s for load balancer d-alb to be active: done"
        ),
        actions.Action("retried", "ec2.run_instances", "Throttling", "2/8", seconds=1.5): (
            "retry 2/8 of ec2.run_instances in 1.50s after Throttling"
        ),
        actions.Action("result", "", why="4/4 targets healthy"): "4/4 targets healthy",
    }
    for action, line in cases.items():
        assert action.line() == line


def test_outside_a_recording_lines_go_to_the_tomcat_fleet_logger_waits_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert actions.current() is None
    with caplog.at_level(logging.DEBUG, logger="tomcat_fleet.actions"):
        actions.created("bucket", "b1", why="ALB access logs")
        actions.waited("public IPs", 1.0, "done")
        actions.retried("ec2.describe_instances", "Throttling", 0.5, 1, 8, throttled=True)
    got = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert got == [
        ("tomcat_fleet.actions", logging.INFO, "created bucket b1: ALB access logs"),
        ("tomcat_fleet.actions", logging.DEBUG, "waited 1.0s for public IPs: done"),
        (
            "tomcat_fleet.actions",
            logging.DEBUG,
            "retry 1/8 of ec2.describe_instances in 0.50s after Throttling",
        ),
    ]


# -- recordings ---------------------------------------------------------------------------
def test_a_recording_keeps_the_actions_and_sends_lines_to_its_sink(sink: Any) -> None:
    logger, handler = sink
    with actions.recording(logger) as log:
        actions.found("security group", "sg-1", "d-web", "in vpc-1")
        actions.waited("targets of d-tg to be healthy", 2.0, "not done within 2s", ok=False)
        actions.retried("elbv2.describe_tags", "ServiceUnavailable", 0.25, 1, 8, throttled=False)
        actions.retried("elbv2.describe_tags", "Throttling", 0.5, 2, 8, throttled=True)
        actions.failed("listener d:HTTPS:443", why="ResourceInUse: busy")
    assert actions.current() is None
    assert [a.verb for a in log.actions] == ["found", "waited", "retried", "retried", "failed"]
    assert handler.lines == [
        (logging.INFO, "found security group d-web (sg-1): in vpc-1"),
        (logging.WARNING, "waited 2.0s for targets of d-tg to be healthy: not done within 2s"),
        (
            logging.WARNING,
            "retry 1/8 of elbv2.describe_tags in 0.25s after ServiceUnavailable",
        ),
        (logging.INFO, "retry 2/8 of elbv2.describe_tags in 0.50s after Throttling"),
        (logging.ERROR, "failed: listener d:HTTPS:443: ResourceInUse: busy"),
    ]


def test_nested_recordings_share_the_sink_and_report_to_the_outer_one(sink: Any) -> None:
    logger, handler = sink
    with actions.recording(logger) as outer:
        actions.created("instance", "i-1")
        with actions.recording() as inner:
            actions.deleted("key-pair", "d")
        assert actions.current() is outer
    assert [a.verb for a in inner.actions] == ["deleted"]
    assert [a.verb for a in outer.actions] == ["created", "deleted"]
    assert handler.messages == ["created instance i-1", "deleted key-pair d"]  # once each


def test_threads_started_with_a_copy_of_the_context_report_to_the_recording(sink: Any) -> None:
    logger, handler = sink
    with actions.recording(logger) as log:
        ctx = contextvars.copy_context()
        copied = threading.Thread(target=ctx.run, args=(actions.created, "instance", "i-copied"))
        raw = threading.Thread(target=actions.created, args=("instance", "i-raw"))
        for t in (copied, raw):
            t.start()
            t.join()
    assert [a.ident for a in log.actions] == ["i-copied"]  # a raw thread has no recording
    assert handler.messages == ["created instance i-copied"]


# -- the summary --------------------------------------------------------------------------
def test_the_summary_says_what_was_concluded_created_changed_found_waited_retried() -> None:
    with actions.recording() as log:
        actions.found("security group", "sg-1", "d-alb")
        actions.created("target group", "arn:tg", "d-tg")
        actions.created("load balancer", "arn:lb", "d-alb")
        actions.created("listener", "arn:l", "HTTP:80 of d-alb")
        for i in range(4):
            actions.created("instance", f"i-{i}")
        actions.changed("security group", "sg-2", why="opened ingress tcp 8080 from sg-1")
        actions.waited("load balancer d-alb to be active", 0.5, "done")
        actions.waited("4 target(s) of d-tg to be healthy", 6.2, "done")
        actions.retried("elbv2.describe_target_health", "Throttling", 0.4, 1, 8, throttled=True)
        actions.result("ALB d-alb serves http://d-alb.elb/: 4/4 targets healthy")
    assert log.summary(limit=1000) == (
        "ALB d-alb serves http://d-alb.elb/: 4/4 targets healthy; "
        "created target group d-tg, load balancer d-alb, listener HTTP:80 of d-alb, "
        "4 instances; changed security group sg-2; "
        "waited 6.7s in 2 waits, longest 4 target(s) of d-tg to be healthy (6.2s); "
        "1 retry (Throttling x1; 0.4s); found security group d-alb"
    )
    short = log.summary(limit=40)
    assert len(short) == 40 and short.endswith("…")


def test_the_summary_names_a_resource_once_and_every_wait_not_done() -> None:
    with actions.recording() as log:
        actions.found("security group", "sg-1", "d-alb")
        actions.unchanged("security group", "sg-1", "d-alb", why="ingress open")
        actions.found("security group", "sg-2", "d-web")
        actions.created("instance", "i-1", "d-web")
        actions.created("instance", "i-2", "d-web")
        actions.waited("public IPs", 3.0, "not done within 3s", ok=False)
    assert log.summary() == (
        "created 2 instances; waited 3.0s for public IPs; not done: public IPs (3.0s); "
        "found 2 security groups"
    )


def test_the_summary_of_a_teardown_counts_deleted_gone_kept_and_failed() -> None:
    with actions.recording() as log:
        for i in range(3):
            actions.deleted("ec2-instance", f"i-{i}")
        actions.gone("listener", "d:HTTP:80")
        actions.kept("iam-role", "d-eb-ec2-role", why="not this deployment's")
        actions.failed("s3-bucket d-logs", why="AccessDenied: no")
    assert log.summary() == (
        "failed s3-bucket d-logs; deleted 3 ec2-instances; already gone listener d:HTTP:80; "
        "kept iam-role d-eb-ec2-role"
    )
    with actions.recording() as empty:
        pass
    assert empty.summary() == ""


# -- the wait helper, the retry loop and the client's waiter report themselves -------------
def test_wait_until_reports_each_wait_once_with_its_duration_and_outcome(sink: Any) -> None:
    logger, handler = sink
    clock = FakeClock()
    answers = iter([None, None, "ready"])
    with actions.recording(logger) as log:
        got = wait_until(
            "the thing", lambda: next(answers), timeout_s=10, poll_s=1.0, jitter=0,
            clock=clock, sleep=clock.sleep,
        )  # fmt: skip
        with pytest.raises(WaitTimeout):
            wait_until(
                "waiting for the other thing", lambda: None, timeout_s=3, poll_s=1.0, jitter=0,
                clock=clock, sleep=clock.sleep,
            )  # fmt: skip
    assert got == "ready"
    assert handler.lines == [
        (logging.INFO, "waited 2.0s for the thing: done after 3 check(s)"),
        (logging.WARNING, "waited 3.0s for the other thing: not done within 3s"),
    ]
    assert [(a.seconds, a.ok) for a in log.of("waited")] == [(2.0, True), (3.0, False)]


def test_a_wait_stopped_by_an_error_says_which(sink: Any) -> None:
    logger, handler = sink
    clock = FakeClock()

    def boom() -> None:
        raise throttle()

    with actions.recording(logger), pytest.raises(ClientError):
        wait_until("the thing", boom, timeout_s=3, poll_s=1, clock=clock, sleep=clock.sleep)
    assert handler.messages == ["waited 0.0s for the thing: stopped by Throttling after 1 check(s)"]


def test_every_backoff_retry_is_one_line_with_the_call_its_code_and_delay(sink: Any) -> None:
    logger, handler = sink
    errors = [throttle(), throttle()]

    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    slept: list[float] = []
    with actions.recording(logger) as log:
        result = call_with_backoff(
            flaky,
            retries=8,
            base=0.5,
            jitter=0.0,
            sleep=slept.append,
            rng=random.Random(1),
            operation="ec2.describe_instances",
        )
    assert result == "ok"
    assert handler.lines == [
        (logging.INFO, "retry 1/8 of ec2.describe_instances in 0.50s after Throttling"),
        (logging.INFO, "retry 2/8 of ec2.describe_instances in 1.00s after Throttling"),
    ]
    assert [a.seconds for a in log.of("retried")] == slept


def test_the_clients_waiter_reports_its_wait_and_its_poll_retries(sink: Any) -> None:
    import boto3

    logger, handler = sink
    raw = boto3.session.Session().client(
        "ec2",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore_config(),
    )
    client = RetryingClient(raw, RetryStats(), retries=3, base=1e-4, cap=1e-4, jitter=0.0)
    stub = Stubber(raw)

    def instance(state: str) -> dict[str, Any]:
        return {"Reservations": [{"Instances": [{"InstanceId": "i-1", "State": {"Name": state}}]}]}

    stub.add_response("describe_instances", instance("pending"))
    stub.add_client_error("describe_instances", "RequestLimitExceeded", http_status_code=503)
    stub.add_response("describe_instances", instance("running"))
    with stub, actions.recording(logger):
        client.wait(
            "instance_running", what="i-1 to run", timeout_s=5, delay_s=0.01, InstanceIds=["i-1"]
        )
    assert len(handler.lines) == 2, handler.lines
    assert handler.lines[0] == (
        logging.INFO,
        "retry 1/3 of ec2.describe_instances in 0.00s after RequestLimitExceeded",
    )
    level, line = handler.lines[1]
    assert level == logging.INFO
    assert line.startswith("waited ") and line.endswith("s for i-1 to run: done"), line
