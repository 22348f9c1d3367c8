"""Read one deployment's live estate into `Facts`: read-only AWS calls, every one in the
shipped IAM policy (docs/iam-operations.json), nothing local.

Instances, certificates, Beanstalk environments and RDS instances are found by the
deployment tag (the teardown's finders, tasks/aws/*, given a `Cleanup` that only reads);
the ALB and its target group by the names stage 4 gives them, the security groups by
theirs, each checked to carry the tag.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.acm import described_certificates
from tasks.aws.beanstalk import deployment_environments, environment_load_balancer
from tasks.aws.cleanup import TAG_KEY, Cleanup, tag_dict
from tasks.aws.ec2 import StageError, controller_cidr
from tasks.aws.elbv2 import elb_name, find_by_name, find_listener
from tasks.aws.retry import error_code
from tasks.status.model import (
    AlbFact,
    BeanstalkFact,
    CertificateFact,
    DatabaseFact,
    Facts,
    GroupFact,
    InstanceFact,
    RuleFact,
    TargetFact,
)

log = logging.getLogger(__name__)
GONE = ("terminated",)  # instances AWS still lists for a while after they are gone


def read_facts(aws: Aws, settings: FleetSettings) -> Facts:
    finder = Cleanup(aws, settings, (), timeout_s=60.0, poll_s=1.0, log=log)  # reads only
    alb_group = _group(aws, settings, "alb")
    return Facts(
        deployment=settings.deployment_name,
        region=settings.region,
        instances=_instances(aws, settings),
        alb=_alb(aws, settings),
        certificates=[_certificate(c) for c in described_certificates(finder)[0]],
        beanstalk=_environments(aws, finder),
        databases=_databases(aws, finder),
        web_group=_group(aws, settings, "web"),
        alb_group_id=alb_group.id if alb_group else None,
        ingress_ports=list(settings.ingress_ports),
        ingress_cidr=_ingress_cidr(settings),
        web_domain=_domain(settings, "web_domain"),
        beanstalk_domain=_domain(settings, "beanstalk_domain"),
    )


def _domain(settings: FleetSettings, which: str) -> str | None:
    try:
        return str(getattr(settings, which))
    except ValueError:  # no hosted zone, no domain: no HTTPS URL to show
        return None


def _ingress_cidr(settings: FleetSettings) -> str | None:
    """The CIDR the flows open the install ports to (the setting, else this controller's
    address): None when it cannot be learnt here (then any single source is accepted)."""
    try:
        return controller_cidr(settings, timeout=5.0)
    except StageError:
        return None


def _role(tags: dict[str, str]) -> str:
    if "tomcat-fleet:role" in tags:
        return tags["tomcat-fleet:role"]
    return "beanstalk" if "elasticbeanstalk:environment-name" in tags else ""


def _instances(aws: Aws, settings: FleetSettings) -> list[InstanceFact]:
    out = []
    pages = aws.client("ec2").pages(
        "describe_instances",
        "Reservations",
        Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [settings.deployment_name]}],
    )
    for reservation in pages:
        for i in reservation["Instances"]:
            state = str(i["State"]["Name"])
            if state in GONE:
                continue
            out.append(
                InstanceFact(
                    id=i["InstanceId"],
                    role=_role(tag_dict(i.get("Tags", []))),
                    state=state,
                    public_ip=i.get("PublicIpAddress"),
                )
            )
    return sorted(out, key=lambda x: (x.role, x.id))


def _alb(aws: Aws, settings: FleetSettings) -> AlbFact | None:
    elb = aws.client("elbv2")
    name = elb_name(settings, "alb")
    lbs = find_by_name(elb.describe_load_balancers, "LoadBalancers", name, "LoadBalancerNotFound")
    if not lbs:
        return None
    lb = lbs[0]
    arn = str(lb["LoadBalancerArn"])
    listeners = sorted(
        int(li["Port"]) for li in elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]
    )
    fact = AlbFact(
        name=name,
        arn=arn,
        dns_name=str(lb["DNSName"]),
        state=str((lb.get("State") or {}).get("Code", "unknown")),
        listeners=listeners,
    )
    tg_name = elb_name(settings, "tg")
    tgs = find_by_name(elb.describe_target_groups, "TargetGroups", tg_name, "TargetGroupNotFound")
    if tgs:
        fact.target_group = tg_name
        descs = elb.describe_target_health(TargetGroupArn=tgs[0]["TargetGroupArn"])
        fact.targets = [
            TargetFact(
                id=str(d["Target"]["Id"]),
                port=int(d["Target"].get("Port") or 0),
                state=str(d["TargetHealth"].get("State", "unknown")),
                reason=str(d["TargetHealth"].get("Reason") or ""),
            )
            for d in descs["TargetHealthDescriptions"]
        ]
    return fact


def _certificate(cert: dict[str, Any]) -> CertificateFact:
    return CertificateFact(
        arn=str(cert["CertificateArn"]),
        domain=str(cert.get("DomainName", "")),
        status=str(cert.get("Status", "")),
        names=[str(n) for n in cert.get("SubjectAlternativeNames", [])],
    )


def _environments(aws: Aws, finder: Cleanup) -> list[BeanstalkFact]:
    out = []
    for env in deployment_environments(finder):
        if env.get("Status") == "Terminated":
            continue
        https = False
        if env.get("Status") == "Ready":
            lb = environment_load_balancer(aws, str(env["EnvironmentId"]))
            https = lb is not None and find_listener(aws, lb, 443) is not None
        out.append(
            BeanstalkFact(
                name=str(env["EnvironmentName"]),
                status=str(env.get("Status", "")),
                health=str(env.get("Health", "")),
                cname=str(env.get("CNAME") or ""),
                https=https,
            )
        )
    return out


def _databases(aws: Aws, finder: Cleanup) -> list[DatabaseFact]:
    out = []
    for db in aws.client("rds").pages("describe_db_instances", "DBInstances"):
        if not finder.mine(db.get("TagList")):
            continue
        endpoint = db.get("Endpoint") or {}
        out.append(
            DatabaseFact(
                id=str(db["DBInstanceIdentifier"]),
                status=str(db.get("DBInstanceStatus", "")),
                endpoint=endpoint.get("Address"),
                port=endpoint.get("Port"),
            )
        )
    return out


def _rules(perms: list[dict[str, Any]]) -> list[RuleFact]:
    out = []
    for p in perms:
        proto = str(p.get("IpProtocol", "-1"))
        ports = {"from_port": p.get("FromPort"), "to_port": p.get("ToPort")}
        if proto == "-1":
            ports = {"from_port": None, "to_port": None}
        sources = [r["CidrIp"] for r in p.get("IpRanges", [])]
        sources += [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
        sources += [g["GroupId"] for g in p.get("UserIdGroupPairs", [])]
        sources += [pl["PrefixListId"] for pl in p.get("PrefixListIds", [])]
        out += [RuleFact(protocol=proto, source=s, **ports) for s in sources]
    return out


def _group(aws: Aws, settings: FleetSettings, role: str) -> GroupFact | None:
    name = f"{settings.deployment_name}-{role}"
    try:
        groups = aws.client("ec2").describe_security_groups(
            Filters=[
                {"Name": "group-name", "Values": [name]},
                {"Name": f"tag:{TAG_KEY}", "Values": [settings.deployment_name]},
            ]
        )["SecurityGroups"]
    except ClientError as exc:
        if error_code(exc) in ("InvalidGroup.NotFound", "InvalidGroupId.NotFound"):
            return None
        raise
    if not groups:
        return None
    g = groups[0]
    return GroupFact(id=g["GroupId"], name=name, rules=_rules(g.get("IpPermissions", [])))
