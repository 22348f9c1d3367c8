"""Deploy stage 5: HTTPS on the ALB with a DNS-validated ACM certificate, and the web name.

`enable_https` checks the hosted zone and the names first (nothing is created when they
are wrong), then finds or requests the certificate for the web name (with the Beanstalk
name as a second SAN, so stage 9 can reuse it), writes its validation CNAMEs into the zone,
waits for ISSUED, adds the 443 listener and points the web name at the ALB with an alias
record. A second call finds everything and changes nothing.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.ec2 import TAG_KEY, StageError, deployment_tags
from tasks.aws.elbv2 import ensure_https_listener
from tasks.aws.retry import error_code
from tasks.aws.route53 import fqdn, upsert_records
from tasks.deploy.models import AlbResult, TlsResult

_LIVE_STATUSES = ["PENDING_VALIDATION", "ISSUED"]
_DEAD_STATUSES = {"FAILED", "VALIDATION_TIMED_OUT", "REVOKED", "EXPIRED", "INACTIVE"}


def in_zone(name: str, zone: str) -> bool:
    n, z = fqdn(name), fqdn(zone)
    return n == z or n.endswith("." + z)


def find_hosted_zone(aws: Aws, zone: str) -> str:
    """The id (without `/hostedzone/`) of the public zone named exactly `zone`."""
    r53 = aws.client("route53")
    want = fqdn(zone)
    resp = r53.list_hosted_zones_by_name(DNSName=want, MaxItems="100")
    for hz in resp.get("HostedZones", []):
        if fqdn(hz["Name"]) == want and not (hz.get("Config") or {}).get("PrivateZone"):
            return str(hz["Id"]).split("/")[-1]
    raise StageError(
        f"hosted zone {zone.rstrip('.')} not found in Route53; create it or set "
        "TOMCAT_FLEET_HOSTED_ZONE"
    )


def idempotency_token(settings: FleetSettings, domains: list[str]) -> str:
    """Alphanumeric, at most 32: the deployment name and a digest of what is requested."""
    stem = re.sub(r"[^A-Za-z0-9]", "", settings.deployment_name)[:20]
    digest = hashlib.sha256("|".join([settings.deployment_name, *domains]).encode()).hexdigest()
    return (stem + digest)[:32]


# -- certificate ------------------------------------------------------------------------
def find_certificate(aws: Aws, settings: FleetSettings, domains: list[str]) -> str | None:
    """A live certificate of this deployment for domains[0] covering every domain."""
    acm = aws.client("acm")
    want = {d.lower() for d in domains}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"CertificateStatuses": _LIVE_STATUSES}
        if token:
            kwargs["NextToken"] = token
        page = acm.list_certificates(**kwargs)
        for summary in page.get("CertificateSummaryList", []):
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
        token = page.get("NextToken")
        if not token:
            return None


def ensure_certificate(aws: Aws, settings: FleetSettings, domains: list[str]) -> str:
    found = find_certificate(aws, settings, domains)
    if found:
        return found
    return str(
        aws.client("acm").request_certificate(
            DomainName=domains[0],
            SubjectAlternativeNames=domains,
            ValidationMethod="DNS",
            IdempotencyToken=idempotency_token(settings, domains),
            Options={"CertificateTransparencyLoggingPreference": "ENABLED"},
            Tags=deployment_tags(settings, "cert"),
        )["CertificateArn"]
    )


def _record_text(rr: dict[str, Any]) -> str:
    return f"{rr['Name']} {rr['Type']} {rr['Value']}"


def validation_records(
    aws: Aws, arn: str, deadline: float, timeout_s: float, poll_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The certificate and its DNS validation records, once ACM has issued them all."""
    acm = aws.client("acm")
    while True:
        cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        if cert["Status"] in _DEAD_STATUSES:
            raise StageError(
                f"certificate {arn} is {cert['Status']}"
                f"{': ' + cert['FailureReason'] if cert.get('FailureReason') else ''}; "
                "delete it and run again"
            )
        options = cert.get("DomainValidationOptions") or []
        if options and all(o.get("ResourceRecord") for o in options):
            records: dict[tuple[str, str], dict[str, Any]] = {}
            for o in options:
                rr = o["ResourceRecord"]
                records.setdefault((fqdn(rr["Name"]), rr["Type"]), rr)
            return cert, list(records.values())
        if time.monotonic() > deadline:
            waiting = [o.get("DomainName", "?") for o in options if not o.get("ResourceRecord")]
            raise StageError(
                f"ACM gave no DNS validation record for {waiting or 'any domain'} of {arn} "
                f"after {timeout_s:.0f}s (status {cert['Status']})"
            )
        time.sleep(poll_s)


def upsert_validation_records(
    aws: Aws, zone_id: str, zone: str, records: list[dict[str, Any]]
) -> int:
    """UPSERT the CNAMEs that are missing or differ, in one change batch; returns how many."""
    for rr in records:
        if not in_zone(rr["Name"], zone):
            raise StageError(
                f"validation record {_record_text(rr)} is outside hosted zone {zone}; "
                "the certificate's names must all live in that zone"
            )
    wanted = [
        {
            "Name": rr["Name"],
            "Type": rr["Type"],
            "TTL": 300,
            "ResourceRecords": [{"Value": rr["Value"]}],
        }
        for rr in records
    ]
    return upsert_records(aws, zone_id, wanted, "tomcat-fleet ACM DNS validation")


def wait_issued(
    aws: Aws,
    arn: str,
    records: list[dict[str, Any]],
    deadline: float,
    timeout_s: float,
    poll_s: float,
) -> None:
    acm = aws.client("acm")
    while True:
        cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        status = cert["Status"]
        if status == "ISSUED":
            return
        if status in _DEAD_STATUSES or time.monotonic() > deadline:
            pending = [
                f"{o.get('DomainName')}={o.get('ValidationStatus')}"
                for o in cert.get("DomainValidationOptions") or []
                if o.get("ValidationStatus") != "SUCCESS"
            ]
            why = "" if status in _DEAD_STATUSES else f" after {timeout_s:.0f}s"
            raise StageError(
                f"certificate {arn} is {status}{why} ({', '.join(pending) or 'no detail'}); "
                f"validation records: {'; '.join(_record_text(r) for r in records)} — check "
                "they resolve publicly (the zone must be delegated to Route53)"
            )
        time.sleep(poll_s)


# -- name ------------------------------------------------------------------------------
def upsert_alias(aws: Aws, zone_id: str, name: str, alb: AlbResult) -> bool:
    """Point `name` (A, alias) at the ALB; returns whether a change was sent."""
    lb = aws.client("elbv2").describe_load_balancers(LoadBalancerArns=[alb.load_balancer_arn])[
        "LoadBalancers"
    ][0]
    target = {
        "HostedZoneId": lb["CanonicalHostedZoneId"],
        "DNSName": lb["DNSName"],
        "EvaluateTargetHealth": False,
    }
    record = {"Name": name, "Type": "A", "AliasTarget": target}
    return upsert_records(aws, zone_id, [record], "tomcat-fleet web name") > 0


# -- the stage --------------------------------------------------------------------------
def enable_https(
    aws: Aws,
    settings: FleetSettings,
    alb: AlbResult,
    timeout_s: float = 300,
    poll_s: float = 1.0,
) -> TlsResult:
    """Stage 5: https://<web domain>/ served by the ALB with an ACM certificate."""
    if not settings.hosted_zone:
        raise StageError("no hosted zone: set TOMCAT_FLEET_HOSTED_ZONE to a Route53 public zone")
    zone = settings.hosted_zone.rstrip(".").lower()
    zone_id = find_hosted_zone(aws, zone)
    domain = settings.web_domain
    domains = [domain, *[d for d in [settings.beanstalk_domain] if d != domain]]
    outside = [d for d in domains if not in_zone(d, zone)]
    if outside:
        raise StageError(
            f"{', '.join(outside)} not inside hosted zone {zone}; set TOMCAT_FLEET_DOMAIN / "
            "TOMCAT_FLEET_EB_DOMAIN to names in the zone, or use the zone they belong to"
        )

    deadline = time.monotonic() + timeout_s
    cert_arn = ensure_certificate(aws, settings, domains)
    cert, records = validation_records(aws, cert_arn, deadline, timeout_s, poll_s)
    upsert_validation_records(aws, zone_id, zone, records)
    if cert["Status"] != "ISSUED":
        wait_issued(aws, cert_arn, records, deadline, timeout_s, poll_s)

    try:
        listener_arn = ensure_https_listener(
            aws,
            alb.load_balancer_arn,
            cert_arn,
            [{"Type": "forward", "TargetGroupArn": alb.target_group_arn}],
            deployment_tags(settings, "https"),
            forward_to=alb.target_group_arn,
        )
    except ClientError as exc:
        if error_code(exc) in ("CertificateNotFound", "UnsupportedCertificate"):
            raise StageError(
                f"the ALB would not take certificate {cert_arn}: {exc}; it must be ISSUED "
                f"in {settings.region}"
            ) from None
        raise
    upsert_alias(aws, zone_id, domain, alb)
    return TlsResult(
        certificate_arn=cert_arn,
        domain=domain,
        https_listener_arn=listener_arn,
        hosted_zone_id=zone_id,
        url=f"https://{domain}/",
    )
