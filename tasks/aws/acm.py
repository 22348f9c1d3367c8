"""ACM: the deployment's certificates; one line per certificate found, requested or deleted
(`tasks.actions`)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.cleanup import TAG_KEY, Cleanup, StageError, dns, is_gone
from tasks.aws.client import Aws, WaitTimeout
from tasks.aws.ec2 import deployment_tags, life_id
from tasks.aws.route53 import fqdn
from tasks.aws.waiters import CERTIFICATE_DEAD_STATUSES

ALL_KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]


# -- find -------------------------------------------------------------------------------
def described_certificates(c: Cleanup) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(this deployment's certificates, everyone else's), each described."""
    acm = c.aws.client("acm")
    mine: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for summary in acm.pages(
        "list_certificates", "CertificateSummaryList", Includes={"keyTypes": ALL_KEY_TYPES}
    ):
        arn = summary["CertificateArn"]
        try:
            tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
            cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        except ClientError as exc:
            if is_gone(exc):
                continue
            raise
        (mine if c.mine(tags) else others).append(cert)
    return mine, others


def validation_cnames(certs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(name, value) of the DNS-validation CNAMEs of `certs`, normalised."""
    return {
        (dns(rr.get("Name")), dns(rr.get("Value")))
        for cert in certs
        for opt in cert.get("DomainValidationOptions", [])
        if (rr := opt.get("ResourceRecord")) and rr.get("Type", "CNAME") == "CNAME"
    }


# -- delete -----------------------------------------------------------------------------
def delete_certificates(c: Cleanup) -> None:
    acm = c.aws.client("acm")
    certs, _ = described_certificates(c)
    for cert in certs:
        arn = cert["CertificateArn"]
        c.attempt(
            "certificate",
            f"{cert.get('DomainName')} {arn.rsplit('/', 1)[-1]}",
            c.retrying,
            {"ResourceInUseException"},
            acm.delete_certificate,
            CertificateArn=arn,
        )


_LIVE_STATUSES = ["PENDING_VALIDATION", "ISSUED"]


_DEAD_STATUSES = frozenset(CERTIFICATE_DEAD_STATUSES)


def idempotency_token(settings: FleetSettings, domains: list[str], life: str = "") -> str:
    """Alphanumeric, at most 32: the deployment name and a digest of what is requested in
    which life of the deployment (ACM remembers a token for an hour: after a teardown the
    same token would name the deleted certificate)."""
    stem = re.sub(r"[^A-Za-z0-9]", "", settings.deployment_name)[:20]
    raw = "|".join([settings.deployment_name, life, *domains])
    digest = hashlib.sha256(raw.encode()).hexdigest()
    return (stem + digest)[:32]


def find_certificate(aws: Aws, settings: FleetSettings, domains: list[str]) -> str | None:
    """A live certificate of this deployment for domains[0] covering every domain."""
    acm = aws.client("acm")
    want = {d.lower() for d in domains}
    for summary in acm.pages(
        "list_certificates", "CertificateSummaryList", CertificateStatuses=_LIVE_STATUSES
    ):
        if str(summary.get("DomainName", "")).lower() != domains[0].lower():
            continue
        arn = str(summary["CertificateArn"])
        tags = {
            t["Key"]: t.get("Value", "")
            for t in acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
        }
        if tags.get(TAG_KEY) != settings.deployment_name:
            continue
        cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        if want <= {s.lower() for s in cert.get("SubjectAlternativeNames", [])}:
            return arn
    return None


def ensure_certificate(aws: Aws, settings: FleetSettings, domains: list[str]) -> str:
    found = find_certificate(aws, settings, domains)
    names = ", ".join(domains)
    if found:
        actions.found("certificate", found, domains[0], f"covers {names}")
        return found
    arn = str(
        aws.client("acm").request_certificate(
            DomainName=domains[0],
            SubjectAlternativeNames=domains,
            ValidationMethod="DNS",
            IdempotencyToken=idempotency_token(settings, domains, life_id(aws, settings)),
            Options={"CertificateTransparencyLoggingPreference": "ENABLED"},
            Tags=deployment_tags(settings, "cert"),
        )["CertificateArn"]
    )
    actions.created("certificate", arn, domains[0], f"requested for {names}, DNS validation")
    return arn


def cert_id(arn: str) -> str:
    """The certificate's id: the last part of its ARN."""
    return arn.rsplit("/", 1)[-1]


def record_text(rr: dict[str, Any]) -> str:
    return f"{rr['Name']} {rr['Type']} {rr['Value']}"


def _all_records(cert: dict[str, Any]) -> bool:
    options = cert.get("DomainValidationOptions") or []
    return bool(options) and all(o.get("ResourceRecord") for o in options)


def validation_records(
    aws: Aws, arn: str, deadline: float, timeout_s: float, poll_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The certificate and its DNS validation records, once ACM has issued them all (the
    `certificate_validation_records` waiter, through the retrying client)."""
    acm = aws.client("acm")
    try:
        cert = acm.wait(
            "certificate_validation_records",
            what=f"DNS validation records of certificate {cert_id(arn)}",
            deadline=deadline,
            delay_s=poll_s,
            CertificateArn=arn,
        )["Certificate"]
    except WaitTimeout:  # the certificate below says why
        cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    if cert["Status"] in _DEAD_STATUSES:
        raise StageError(
            f"certificate {arn} is {cert['Status']}"
            f"{': ' + cert['FailureReason'] if cert.get('FailureReason') else ''}; "
            "delete it and run again"
        )
    options = cert.get("DomainValidationOptions") or []
    if not _all_records(cert):
        waiting = [o.get("DomainName", "?") for o in options if not o.get("ResourceRecord")]
        raise StageError(
            f"ACM gave no DNS validation record for {waiting or 'any domain'} of {arn} "
            f"after {timeout_s:.0f}s (status {cert['Status']})"
        )
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for o in options:
        rr = o["ResourceRecord"]
        records.setdefault((fqdn(rr["Name"]), rr["Type"]), rr)
    return cert, list(records.values())


def wait_issued(
    aws: Aws,
    arn: str,
    records: list[dict[str, Any]],
    deadline: float,
    timeout_s: float,
    poll_s: float,
) -> None:
    """Until the certificate is ISSUED (the `certificate_issued` waiter, through the
    retrying client), within `deadline`; StageError with each domain's validation status
    and the records to check otherwise."""
    acm = aws.client("acm")
    try:
        acm.wait(
            "certificate_issued",
            what=f"certificate {cert_id(arn)} to be issued",
            deadline=deadline,
            delay_s=poll_s,
            CertificateArn=arn,
        )
        return
    except WaitTimeout:
        pass  # the certificate below says why
    cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    status = cert["Status"]
    if status == "ISSUED":
        return
    pending = [
        f"{o.get('DomainName')}={o.get('ValidationStatus')}"
        for o in cert.get("DomainValidationOptions") or []
        if o.get("ValidationStatus") != "SUCCESS"
    ]
    why = "" if status in _DEAD_STATUSES else f" after {timeout_s:.0f}s"
    raise StageError(
        f"certificate {arn} is {status}{why} ({', '.join(pending) or 'no detail'}); "
        f"validation records: {'; '.join(record_text(r) for r in records)} — check "
        "they resolve publicly (the zone must be delegated to Route53)"
    )
