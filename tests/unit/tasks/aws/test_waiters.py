"""The project's own waiter models (`tasks.aws.waiters`), run through `RetryingClient.wait`
against botocore's Stubber: which answers succeed, fail at once or are polled again."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.stub import Stubber

from tasks.aws.client import RetryingClient, WaitTimeout
from tasks.aws.retry import RetryStats, botocore_config
from tasks.aws.waiters import WAITER_MODELS, custom_waiter

ARN = "arn:aws:acm:us-east-1:123456789012:certificate/abc"


def stubbed(service: str) -> tuple[RetryingClient, Stubber]:
    import boto3

    raw = boto3.session.Session().client(
        service,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore_config(),
    )
    return RetryingClient(raw, RetryStats(), retries=3, base=1e-4, cap=1e-4), Stubber(raw)


def cert(status: str, *options: dict[str, Any]) -> dict[str, Any]:
    """A DescribeCertificate answer (no options at all while ACM has not listed them)."""
    out: dict[str, Any] = {"CertificateArn": ARN, "Status": status}
    if options:
        out["DomainValidationOptions"] = list(options)
    return {"Certificate": out}


def option(
    domain: str, record: bool = True, validation: str = "PENDING_VALIDATION"
) -> dict[str, Any]:
    out: dict[str, Any] = {"DomainName": domain, "ValidationStatus": validation}
    if record:
        out["ResourceRecord"] = {"Name": f"_x.{domain}.", "Type": "CNAME", "Value": "_y.acm."}
    return out


def env(status: str, env_id: str = "e-1") -> dict[str, Any]:
    return {"EnvironmentName": "d-env", "EnvironmentId": env_id, "Status": status}


def wait(client: RetryingClient, name: str, timeout_s: float = 1.0, **kwargs: Any) -> Any:
    return client.wait(name, what="the thing", timeout_s=timeout_s, delay_s=0.01, **kwargs)


def test_custom_names_resolve_per_service_and_do_not_shadow_botocore() -> None:
    assert custom_waiter("acm", "certificate_issued") is not None
    assert custom_waiter("acm", "certificate_validation_records") is not None
    assert custom_waiter("elasticbeanstalk", "environment_ready") is not None
    assert custom_waiter("acm", "environment_ready") is None
    assert custom_waiter("ec2", "instance_running") is None
    import boto3
    from botocore import xform_name

    for service, model in WAITER_MODELS.items():
        raw = boto3.session.Session().client(service, region_name="us-east-1")
        for name in model.waiter_names:
            assert custom_waiter(service, xform_name(name)) is not None
            assert xform_name(name) not in raw.waiter_names


# -- ACM: DNS validation records -----------------------------------------------------------
def test_validation_records_waits_for_every_domain_and_returns_the_certificate() -> None:
    client, stub = stubbed("acm")
    params = {"CertificateArn": ARN}
    stub.add_response("describe_certificate", cert("PENDING_VALIDATION"), params)
    stub.add_response(
        "describe_certificate",
        cert("PENDING_VALIDATION", option("a.example.com"), option("b.example.com", record=False)),
        params,
    )
    stub.add_client_error("describe_certificate", "ThrottlingException", http_status_code=400)
    done = cert("PENDING_VALIDATION", option("a.example.com"), option("b.example.com"))
    stub.add_response("describe_certificate", done, params)
    with stub:
        got = wait(client, "certificate_validation_records", CertificateArn=ARN)
    stub.assert_no_pending_responses()
    assert got["Certificate"] == done["Certificate"]
    assert client._stats.retries == 1  # the throttled poll was retried by the client


@pytest.mark.parametrize(
    "status", ["FAILED", "VALIDATION_TIMED_OUT", "REVOKED", "EXPIRED", "INACTIVE"]
)
def test_validation_records_fails_at_once_on_a_dead_certificate(status: str) -> None:
    client, stub = stubbed("acm")
    stub.add_response("describe_certificate", cert(status, option("a.example.com")))
    with stub, pytest.raises(WaitTimeout, match=r"^the thing: failed \("):
        wait(client, "certificate_validation_records", timeout_s=60, CertificateArn=ARN)
    stub.assert_no_pending_responses()


def test_validation_records_times_out_while_a_record_is_missing() -> None:
    client, stub = stubbed("acm")
    for _ in range(3):
        stub.add_response(
            "describe_certificate",
            cert("PENDING_VALIDATION", option("a.example.com", record=False)),
        )
    with stub, pytest.raises(WaitTimeout, match=r"^the thing: not done within 0s"):
        wait(client, "certificate_validation_records", timeout_s=0.02, CertificateArn=ARN)


def test_a_passed_deadline_polls_once_and_times_out() -> None:
    # a shared budget already spent: one look, then the timeout (no wait past the deadline)
    client, stub = stubbed("acm")
    stub.add_response(
        "describe_certificate", cert("PENDING_VALIDATION", option("a.example.com", record=False))
    )
    with stub, pytest.raises(WaitTimeout, match=r"^the thing: not done within 0s"):
        client.wait(
            "certificate_validation_records",
            what="the thing",
            deadline=time.monotonic() - 1.0,
            delay_s=0.01,
            CertificateArn=ARN,
        )
    stub.assert_no_pending_responses()


# -- ACM: issued ----------------------------------------------------------------------------
def test_issued_waits_for_the_certificate_status_not_the_domains() -> None:
    client, stub = stubbed("acm")
    # every domain validated, the certificate not issued yet: botocore's
    # certificate_validated would stop here; an HTTPS listener needs ISSUED
    stub.add_response(
        "describe_certificate",
        cert("PENDING_VALIDATION", option("a.example.com", validation="SUCCESS")),
    )
    stub.add_response(
        "describe_certificate", cert("ISSUED", option("a.example.com", validation="SUCCESS"))
    )
    with stub:
        assert wait(client, "certificate_issued", CertificateArn=ARN)["Certificate"]["Status"] == (
            "ISSUED"
        )
    stub.assert_no_pending_responses()


def test_issued_fails_at_once_on_validation_timed_out() -> None:
    client, stub = stubbed("acm")
    stub.add_response(
        "describe_certificate",
        cert("VALIDATION_TIMED_OUT", option("a.example.com", validation="FAILED")),
    )
    with stub, pytest.raises(WaitTimeout, match="failed"):
        wait(client, "certificate_issued", timeout_s=60, CertificateArn=ARN)


def test_an_unexpected_error_fails_the_wait_naming_its_code() -> None:
    client, stub = stubbed("acm")
    stub.add_client_error("describe_certificate", "ResourceNotFoundException")
    with stub, pytest.raises(WaitTimeout, match=r"failed \(ResourceNotFoundException\)"):
        wait(client, "certificate_issued", timeout_s=60, CertificateArn=ARN)


# -- Elastic Beanstalk: Ready -----------------------------------------------------------------
def test_environment_ready_polls_through_launching_and_updating() -> None:
    client, stub = stubbed("elasticbeanstalk")
    for status in ("Launching", "Updating", "Ready"):
        stub.add_response("describe_environments", {"Environments": [env(status)]})
    with stub:
        got = wait(client, "environment_ready", EnvironmentNames=["d-env"])
    assert got["Environments"][0]["Status"] == "Ready"
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("environments", [[], [env("Terminating")], [env("Terminated")]])
def test_environment_ready_fails_at_once_when_terminating_or_gone(
    environments: list[dict[str, Any]],
) -> None:
    client, stub = stubbed("elasticbeanstalk")
    stub.add_response("describe_environments", {"Environments": environments})
    with stub, pytest.raises(WaitTimeout, match="failed"):
        wait(client, "environment_ready", timeout_s=60, EnvironmentNames=["d-env"])
    stub.assert_no_pending_responses()


# -- Cleanup: one deadline per teardown ------------------------------------------------------
def _cleanup(timeout_s: float) -> Any:
    import logging

    from blocks.settings import FleetSettings
    from tasks.aws.cleanup import Cleanup

    log = logging.getLogger("test")
    return Cleanup(None, FleetSettings(), ["x"], timeout_s=timeout_s, poll_s=0.05, log=log)  # type: ignore[arg-type]


def test_cleanup_retrying_gives_up_at_its_deadline_with_the_error_itself() -> None:
    import time

    from botocore.exceptions import ClientError

    from tasks.aws.retry import error_code

    c = _cleanup(0.3)
    calls = 0

    def in_use() -> None:
        nonlocal calls
        calls += 1
        raise ClientError({"Error": {"Code": "DependencyViolation"}}, "DeleteSecurityGroup")

    t0 = time.monotonic()
    with pytest.raises(ClientError) as info:
        c.retrying({"DependencyViolation"}, in_use)
    assert error_code(info.value) == "DependencyViolation"  # what `attempt` records
    assert calls >= 2
    assert time.monotonic() - t0 < 1.0
    assert c.retrying({"DependencyViolation"}, lambda: None) is None  # a None result is one


def test_cleanup_wait_records_the_teardown_deadline() -> None:
    c = _cleanup(0.1)
    assert c.wait("the thing", lambda: True)
    assert not c.wait("the other thing", lambda: False)
    assert c.errors == ["waiting for the other thing: not done within the 0s deadline"]
