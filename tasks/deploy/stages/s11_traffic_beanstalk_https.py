"""Stage 11, traffic-beanstalk-https: the Beanstalk name over HTTPS. A Route53 CNAME points
settings.beanstalk_domain at the environment (stage 7's), its load balancer gets an HTTPS
listener with stage 5's certificate (which covers that name), then the traffic generator
(tasks/deploy/traffic.py) requests https://<beanstalk_domain>/. Nothing takes its result."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.beanstalk import (
    application_name,
    environment_load_balancer,
    environment_name,
    find_environment,
)
from tasks.aws.ec2 import StageError, authorize_ingress, deployment_tags
from tasks.aws.elbv2 import HTTPS_PORT, ensure_https_listener, find_listener
from tasks.aws.route53 import existing_record, fqdn, upsert_records
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.models import BeanstalkResult, TlsResult, TrafficResult
from tasks.deploy.stages.room import Room, ssh_key, stage_task
from tasks.deploy.stages.s05_tls_listener import https_listener_drift
from tasks.deploy.survey import WORLD, Survey
from tasks.deploy.traffic import traffic_check
from tasks.plan import diff
from tasks.plan.models import PlanEntry

ROW = STAGES[11]


def ensure_https_endpoint(
    aws: Aws, settings: FleetSettings, eb: BeanstalkResult, tls: TlsResult, timeout_s: float
) -> str:
    """settings.beanstalk_domain CNAME -> the environment (waited until INSYNC, bounded by
    `timeout_s`), and an HTTPS listener with the ACM certificate (which covers that name)
    on the environment's load balancer, forwarding as its port-80 listener does; port 443
    opened on the balancer's security groups (Beanstalk's own group only admits 80).
    Returns the listener's ARN."""
    cname = {
        "Name": settings.beanstalk_domain,
        "Type": "CNAME",
        "TTL": 60,
        "ResourceRecords": [{"Value": eb.cname}],
    }
    upsert_records(
        aws, tls.hosted_zone_id, [cname], "tomcat-fleet beanstalk https", wait_s=timeout_s
    )
    http = find_listener(aws, eb.load_balancer_arn, 80)
    if http is None:
        raise StageError(
            f"load balancer {eb.load_balancer_arn} has no port-80 listener to copy the "
            "default actions from; is the Beanstalk environment ready?"
        )
    arn = ensure_https_listener(
        aws,
        eb.load_balancer_arn,
        tls.certificate_arn,
        http["DefaultActions"],
        deployment_tags(settings, "beanstalk-https"),
    )
    groups = (
        aws.client("elbv2")
        .describe_load_balancers(LoadBalancerArns=[eb.load_balancer_arn])["LoadBalancers"][0]
        .get("SecurityGroups", [])
    )
    if groups:
        authorize_ingress(aws, groups, [HTTPS_PORT], lambda _port: "0.0.0.0/0")
    return arn


def beanstalk_https(
    aws: Aws,
    settings: FleetSettings,
    key_pem: str,
    eb: BeanstalkResult,
    tls: TlsResult,
    timeout_s: float = ROW.timeout_s,
) -> TrafficResult:
    """CNAME settings.beanstalk_domain -> the environment, an HTTPS listener (the ACM
    certificate, which covers that name) on its load balancer, then requests to
    https://<beanstalk_domain>/."""
    domain = settings.beanstalk_domain
    ensure_https_endpoint(aws, settings, eb, tls, timeout_s=min(timeout_s, 300))
    return traffic_check(aws, settings, key_pem, [f"https://{domain}/"], timeout_s)


@stage_task(ROW)
def eb_https_stage(settings: FleetSettings, eb: BeanstalkResult, tls: TlsResult) -> TrafficResult:
    return beanstalk_https(Aws(settings), settings, ssh_key(settings), eb, tls)


def report(_: TrafficResult, settings: FleetSettings) -> ReportPart:
    return ReportPart(urls={"beanstalk_https": f"https://{settings.beanstalk_domain}/"})


def plan(s: Survey) -> list[PlanEntry]:
    """The Beanstalk name's CNAME, the HTTPS listener on the environment's balancer (stage
    5's certificate), 443 open on the balancer's groups, and the traffic generator."""
    n = ROW.number
    domain = s.settings.beanstalk_domain
    env = find_environment(s.aws, application_name(s.settings), environment_name(s.settings))
    lb_arn = environment_load_balancer(s.aws, str(env["EnvironmentId"])) if env else None
    cname = existing_record(s.aws, s.zone_id(), domain, "CNAME")
    values = [fqdn(r.get("Value", "")) for r in (cname or {}).get("ResourceRecords", [])]
    want = fqdn(str(env.get("CNAME") or "")) if env else ""
    cert = s.certificate()
    listener = find_listener(s.aws, lb_arn, HTTPS_PORT) if lb_arn else None
    lb_name = lb_arn.rsplit("/", 2)[-2] if lb_arn else "the environment's balancer"
    entries = [
        diff.resource(
            n,
            "route53-record",
            f"{domain} CNAME",
            exists=cname is not None,
            create="CNAME to the Beanstalk environment",
            drift=[("record value", f"record value -> {want}")] if env and values != [want] else [],
        ),
        diff.resource(
            n,
            "listener",
            f"{lb_name}:HTTPS:{HTTPS_PORT}",
            exists=listener is not None,
            create=f"HTTPS with the certificate for {domain}",
            drift=https_listener_drift(listener, str(cert["CertificateArn"]) if cert else None)
            if listener
            else [],
        ),
    ]
    groups = []
    if lb_arn:
        lb = s.aws.client("elbv2").describe_load_balancers(LoadBalancerArns=[lb_arn])
        groups = lb["LoadBalancers"][0].get("SecurityGroups", [])
    found = s.aws.client("ec2").describe_security_groups(GroupIds=groups) if groups else None
    for g in (found or {}).get("SecurityGroups", []):
        entries.append(
            s.ingress_entry(n, str(g["GroupId"]), [HTTPS_PORT], WORLD, WORLD, found=dict(g))
        )
    if not groups:
        entries.append(
            diff.resource(
                n,
                "security-group",
                f"{lb_name} groups",
                exists=False,
                create=f"ingress tcp {HTTPS_PORT} from {WORLD} (Beanstalk makes the group)",
            )
        )
    return entries + s.role_instance(n, "traffic")


ROOM = Room(ROW, task=eb_https_stage, report=report, plan=plan)
