"""Stage 11, traffic-beanstalk-https: the Beanstalk name over HTTPS. A Route53 CNAME points
settings.beanstalk_domain at the environment (stage 7's), its load balancer gets an HTTPS
listener with stage 5's certificate (which covers that name), then the traffic generator
(tasks/deploy/traffic.py) requests https://<beanstalk_domain>/. Nothing takes its result."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.ec2 import StageError, authorize_ingress, deployment_tags
from tasks.aws.elbv2 import HTTPS_PORT, ensure_https_listener, find_listener
from tasks.aws.route53 import upsert_records
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.models import BeanstalkResult, TlsResult, TrafficResult
from tasks.deploy.stages.room import Room, ssh_key, stage_task
from tasks.deploy.traffic import traffic_check

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


ROOM = Room(ROW, task=eb_https_stage, report=report)
