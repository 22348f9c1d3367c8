"""Stage 5, tls-listener: HTTPS on the ALB with a DNS-validated ACM certificate, and the web
name.

`enable_https` checks the hosted zone and the names first (nothing is created when they
are wrong), then finds or requests the certificate for the web name (with the Beanstalk
name as a second SAN, so stage 9 can reuse it), writes its validation CNAMEs into the zone,
waits for ISSUED, adds the 443 listener and points the web name at the ALB with an alias
record. A second call finds everything and changes nothing. Not run, the certificate is
found by its names and tag, and the ALB's port-443 listener by its port (`find`).
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.acm import (
    ensure_certificate,
    find_certificate,
    record_text,
    validation_records,
    wait_issued,
)
from tasks.aws.ec2 import StageError, deployment_tags
from tasks.aws.elbv2 import (
    HTTPS_PORT,
    SSL_POLICY,
    elb_name,
    ensure_https_listener,
    find_listener,
    forwards_to,
)
from tasks.aws.retry import error_code
from tasks.aws.route53 import existing_record, find_hosted_zone, fqdn, in_zone, upsert_records
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.found import MissingStage
from tasks.deploy.models import AlbResult, TlsResult
from tasks.deploy.stages.room import Finding, Room, stage_task
from tasks.deploy.survey import Survey
from tasks.plan import diff
from tasks.plan.models import PlanEntry

ROW = STAGES[5]


# -- certificate validation records ---------------------------------------------------
def upsert_validation_records(
    aws: Aws, zone_id: str, zone: str, records: list[dict[str, Any]]
) -> int:
    """UPSERT the CNAMEs that are missing or differ, in one change batch; returns how many."""
    for rr in records:
        if not in_zone(rr["Name"], zone):
            raise StageError(
                f"validation record {record_text(rr)} is outside hosted zone {zone}; "
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


def enable_https(
    aws: Aws,
    settings: FleetSettings,
    alb: AlbResult,
    timeout_s: float = ROW.timeout_s,
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
    actions.result(f"https://{domain}/ served by the ALB")
    return TlsResult(
        certificate_arn=cert_arn,
        domain=domain,
        https_listener_arn=listener_arn,
        hosted_zone_id=zone_id,
        url=f"https://{domain}/",
    )


@stage_task(ROW)
def tls_stage(settings: FleetSettings, alb: AlbResult) -> TlsResult:
    return enable_https(Aws(settings), settings, alb)


def find(q: Finding) -> TlsResult:
    """The certificate (by its names and tag), the hosted zone, and the HTTPS listener on
    stage 4's ALB (this run's, or found)."""
    domain = q.settings.web_domain
    domains = [domain, *[d for d in [q.settings.beanstalk_domain] if d != domain]]
    cert = find_certificate(q.aws, q.settings, domains)
    if cert is None:
        raise MissingStage(q.stage, ROW.number, "certificate", f"none for {domain}")
    lb: AlbResult = q.get(4)
    listener = find_listener(q.aws, lb.load_balancer_arn, HTTPS_PORT)
    if listener is None:
        raise MissingStage(
            q.stage, ROW.number, "HTTPS listener", "the ALB has no port-443 listener"
        )
    return TlsResult(
        certificate_arn=cert,
        domain=domain,
        https_listener_arn=str(listener["ListenerArn"]),
        hosted_zone_id=find_hosted_zone(q.aws, q.settings.hosted_zone or ""),
        url=f"https://{domain}/",
    )


def report(result: TlsResult, _: FleetSettings) -> ReportPart:
    return ReportPart(
        urls={"alb_https": result.url}, resources={"certificate": result.certificate_arn}
    )


def https_listener_drift(
    listener: dict[str, Any], cert_arn: str | None, forward_to: str | None = None
) -> list[diff.Drift]:
    """What `ensure_https_listener` would change on a found port-443 listener."""
    certs = [c.get("CertificateArn") for c in listener.get("Certificates") or []]
    out = diff.value("protocol", "HTTPS", listener.get("Protocol"))
    if cert_arn is None or certs[:1] != [cert_arn]:
        have = certs[0] if certs else "none"
        out.append(("listener certificate", f"certificate {cert_arn or 'new'} (was {have})"))
    out += diff.value("ssl policy", SSL_POLICY, listener.get("SslPolicy"))
    if forward_to is not None and not forwards_to(listener, forward_to):
        out.append(("default action", f"forward to {forward_to.rsplit('/', 2)[-2]}"))
    return out


def _record_drift(have: dict[str, Any] | None, value: str, field: str) -> list[diff.Drift]:
    if have is None:
        return []
    alias = (have.get("AliasTarget") or {}).get("DNSName")
    values = [alias] if alias else [r.get("Value") for r in have.get("ResourceRecords", [])]
    if [fqdn(str(v)) for v in values] == [fqdn(value)]:
        return []
    return [(field, f"{field} {', '.join(map(str, values)) or 'none'} -> {value}")]


def plan(s: Survey) -> list[PlanEntry]:
    """The certificate (ISSUED) and its validation records, the ALB's HTTPS listener on
    it, and the web name's alias to the ALB."""
    n = ROW.number
    cert, zone_id, domain = s.certificate(), s.zone_id(), s.settings.web_domain
    lb, tg = s.alb(), s.target_group()
    cert_arn = str(cert["CertificateArn"]) if cert else None
    status = str(cert.get("Status")) if cert else ""
    entries = [
        diff.resource(
            n,
            "certificate",
            domain,
            exists=cert is not None,
            create=f"DNS-validated, for {', '.join(s.domains())}",
            drift=[("status", f"wait for ISSUED (now {status})")] if status != "ISSUED" else [],
            ok="ISSUED",
        )
    ]
    records = [
        opt["ResourceRecord"]
        for opt in (cert or {}).get("DomainValidationOptions", [])
        if opt.get("ResourceRecord")
    ]
    for rr in records or [{"Name": f"validation of {d}", "Value": ""} for d in s.domains()]:
        have = existing_record(s.aws, zone_id, rr["Name"], "CNAME") if cert else None
        entries.append(
            diff.resource(
                n,
                "route53-record",
                f"{rr['Name'].rstrip('.')} CNAME",
                exists=have is not None,
                create="the certificate's DNS validation record",
                drift=_record_drift(have, rr["Value"], "record value"),
            )
        )
    listener = find_listener(s.aws, lb["LoadBalancerArn"], HTTPS_PORT) if lb else None
    tg_arn = str(tg["TargetGroupArn"]) if tg else None
    alias = existing_record(s.aws, zone_id, domain, "A")
    entries += [
        diff.resource(
            n,
            "listener",
            f"{elb_name(s.settings, 'alb')}:HTTPS:{HTTPS_PORT}",
            exists=listener is not None,
            create=f"HTTPS with the certificate for {domain}",
            drift=https_listener_drift(listener, cert_arn, tg_arn) if listener else [],
            ok=f"certificate {cert_arn}",
        ),
        diff.resource(
            n,
            "route53-record",
            f"{domain} A",
            exists=alias is not None,
            create="alias to the ALB",
            drift=_record_drift(alias, str(lb["DNSName"]), "alias target") if lb else [],
            ok="alias to the ALB",
        ),
    ]
    return entries


ROOM = Room(ROW, task=tls_stage, find=find, report=report, plan=plan)
