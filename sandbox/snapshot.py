"""Read moto's backends into plain data the fleet can act on without touching moto again.

Called under the API lock (moto is not thread-safe); everything returned is a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moto.acm.models import acm_backends
from moto.ec2.models import ec2_backends
from moto.elasticbeanstalk.models import eb_backends
from moto.elbv2.models import elbv2_backends
from moto.rds.models import rds_backends

from .moto_patches import ACCOUNT
from .netpolicy import Rule


@dataclass(frozen=True)
class InstanceInfo:
    id: str
    state: str
    public_ip: str | None
    private_ip: str | None
    key_name: str | None
    public_key: str | None  # OpenSSH public key of the launch key pair
    groups: tuple[str, ...]
    image_id: str | None = None  # the AMI it was launched from (sandbox.ssm_seed.IMAGES)


@dataclass(frozen=True)
class ListenerInfo:
    arn: str
    port: int
    protocol: str
    certificate_arns: tuple[str, ...]
    target_group_arns: tuple[str, ...]


@dataclass(frozen=True)
class LoadBalancerInfo:
    arn: str
    name: str
    dns_name: str
    groups: tuple[str, ...]
    listeners: tuple[ListenerInfo, ...]


@dataclass(frozen=True)
class TargetGroupInfo:
    arn: str
    port: int
    protocol: str
    health_path: str
    health_port: str  # "traffic-port" or a number
    targets: tuple[tuple[str, int], ...]  # (instance id, port)


@dataclass(frozen=True)
class DatabaseInfo:
    id: str
    address: str
    port: int
    user: str
    password: str = field(repr=False)
    groups: tuple[str, ...]
    status: str
    public: bool


@dataclass(frozen=True)
class EnvironmentInfo:
    name: str
    arn: str
    status: str
    cname: str
    tags: tuple[tuple[str, str], ...]


@dataclass
class Snapshot:
    instances: list[InstanceInfo]
    rules: dict[str, list[Rule]]
    load_balancers: list[LoadBalancerInfo]
    target_groups: dict[str, TargetGroupInfo]
    databases: list[DatabaseInfo]
    environments: list[EnvironmentInfo]
    certificates: dict[str, list[str]]  # ISSUED certificates: arn -> domains (CN first)
    records: list[tuple[str, str, str]]  # Route53 (name, type, target) for A-alias and CNAME


def _rules(ec2: Any) -> dict[str, list[Rule]]:
    rules: dict[str, list[Rule]] = {}
    for by_vpc in list(ec2.groups.values()):
        for gid, group in list(by_vpc.items()):
            rules[gid] = [
                Rule(
                    protocol=_proto(r.ip_protocol),
                    from_port=r.from_port,
                    to_port=r.to_port,
                    cidr=(r.ip_range or {}).get("CidrIp"),
                    source_group=(r.source_group or {}).get("GroupId"),
                )
                for r in list(group.ingress_rules)
            ]
    return rules


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _proto(p: str | None) -> str:
    p = (p or "-1").lower()
    return {"6": "tcp", "all": "-1", "17": "udp", "1": "icmp"}.get(p, p)


def _targets_of(action: Any) -> list[str]:
    data = getattr(action, "data", {}) or {}
    arns = [data["TargetGroupArn"]] if data.get("TargetGroupArn") else []
    for tg in (data.get("ForwardConfig") or {}).get("TargetGroups", []) or []:
        if tg.get("TargetGroupArn"):
            arns.append(tg["TargetGroupArn"])
    return arns


def _listener(listener: Any) -> ListenerInfo:
    certs = []
    for c in listener.certificates or []:
        certs.append(c["CertificateArn"] if isinstance(c, dict) else str(c))
    tgs: list[str] = []
    for action in listener.default_actions or []:
        tgs.extend(_targets_of(action))
    return ListenerInfo(
        arn=listener.arn,
        port=int(listener.port),
        protocol=(listener.protocol or "HTTP").upper(),
        certificate_arns=tuple(certs),
        target_group_arns=tuple(tgs),
    )


def take(region: str) -> Snapshot:
    """Copy what the fleet needs out of moto. Call with the API lock held."""
    ec2 = ec2_backends[ACCOUNT][region]
    keys = {k.key_name: k.material_public for k in list(ec2.key_pairs.values())}
    instances = [
        InstanceInfo(
            id=i.id,
            state=i.state,
            public_ip=i.public_ip,
            private_ip=i.private_ip,
            key_name=i.key_name,
            public_key=_text(keys.get(i.key_name)) if i.key_name else None,
            groups=tuple(g.id for g in i.security_groups),
            image_id=i.image_id,
        )
        for i in ec2.all_instances()
    ]
    elbv2 = elbv2_backends[ACCOUNT][region]
    lbs = [
        LoadBalancerInfo(
            arn=lb.arn,
            name=lb.name,
            dns_name=lb.dns_name,
            groups=tuple(lb.security_groups or ()),
            listeners=tuple(_listener(li) for li in list(lb.listeners.values())),
        )
        for lb in list(elbv2.load_balancers.values())
    ]
    tgs = {
        tg.arn: TargetGroupInfo(
            arn=tg.arn,
            port=int(tg.port or 80),
            protocol=(tg.protocol or "HTTP").upper(),
            health_path=tg.health_check_path or "/",
            health_port=str(tg.health_check_port or "traffic-port"),
            targets=tuple((t["Id"], int(t["Port"])) for t in list(tg.targets.values())),
        )
        for tg in list(elbv2.target_groups.values())
    }
    rds = rds_backends[ACCOUNT][region]
    dbs = [
        DatabaseInfo(
            id=db.db_instance_identifier,
            address=db.address,
            port=int(db.port or 3306),
            user=db.master_username or "",
            password=getattr(db, "_master_user_password", None) or "",
            groups=tuple(db.vpc_security_group_ids or ()),
            status=db.status,
            public=bool(db.publicly_accessible),
        )
        for db in list(rds.databases.values())
    ]
    eb = eb_backends[ACCOUNT][region]
    envs = [
        EnvironmentInfo(
            name=e.environment_name,
            arn=e.environment_arn,
            status=e.status,
            cname=e.cname,
            tags=tuple(sorted((e.tags or {}).items())),
        )
        for e in eb.describe_environments()
    ]
    acm = acm_backends[ACCOUNT][region]
    certs = {}
    for arn, c in list(acm._certificates.items()):
        c.check()  # ACM issues on its own once validation succeeds, not only when asked
        if c.status == "ISSUED":  # a listener never serves a certificate ACM has not issued
            certs[arn] = [c.common_name, *[s for s in c.sans if s != c.common_name]]
    return Snapshot(instances, _rules(ec2), lbs, tgs, dbs, envs, certs, _records())


def _records() -> list[tuple[str, str, str]]:
    from moto.route53.models import route53_backends

    out = []
    for zone in list(route53_backends[ACCOUNT]["aws"].zones.values()):
        for rr in list(zone.rrsets):
            name = rr.name.rstrip(".").lower()
            kind = str(rr.type).upper()
            if rr.alias_target and kind in ("A", "AAAA"):
                out.append((name, kind, str(rr.alias_target.get("DNSName", ""))))
            elif kind == "CNAME" and rr.records:
                out.append((name, kind, str(rr.records[0])))
    return out
