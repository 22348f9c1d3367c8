"""Elastic Load Balancing v2: load balancers, listeners and target groups of a deployment.
Each one found, created, changed or deleted gets one line (`tasks.actions`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.cleanup import TAG_KEY, Cleanup, is_gone, tag_dict
from tasks.aws.client import Aws, WaitTimeout
from tasks.aws.ec2 import StageError, deployment_tags
from tasks.aws.retry import error_code
from tasks.aws.s3 import LOG_PREFIX
from tasks.planning import chunked

HTTPS_PORT = 443
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def arn_name(arn: str) -> str:
    """The name inside a load balancer's or target group's ARN (`.../app/<name>/<id>`,
    `targetgroup/<name>/<id>`); the ARN itself when it has no such part."""
    parts = arn.rsplit(":", 1)[-1].split("/")
    return parts[-2] if len(parts) >= 3 else arn


# -- listeners --------------------------------------------------------------------------
def forwards_to(listener: dict[str, Any], tg_arn: str) -> bool:
    actions = listener.get("DefaultActions") or []
    if len(actions) != 1 or actions[0].get("Type") != "forward":
        return False
    action = actions[0]
    arns = [action["TargetGroupArn"]] if action.get("TargetGroupArn") else []
    arns += [
        t["TargetGroupArn"] for t in (action.get("ForwardConfig") or {}).get("TargetGroups", [])
    ]
    return set(arns) == {tg_arn}


def find_listener(aws: Aws, lb_arn: str, port: int) -> dict[str, Any] | None:
    elb = aws.client("elbv2")
    for li in elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]:
        if int(li["Port"]) == port:
            return dict(li)
    return None


def clean_actions(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listener actions as create_listener takes them (empty fields dropped)."""
    return [{k: v for k, v in a.items() if v not in (None, "", [], {})} for a in actions]


def ensure_https_listener(
    aws: Aws,
    lb_arn: str,
    cert_arn: str,
    default_actions: list[dict[str, Any]],
    tags: list[dict[str, str]],
    forward_to: str | None = None,
) -> str:
    """The load balancer's port-443 HTTPS listener with `cert_arn` and the TLS 1.3 policy;
    its ARN. Created with `default_actions` (and `tags`) if missing (a racing creator's
    listener is found); modified when protocol, certificate or policy differ, or, when
    `forward_to` names a target group, when it does not forward there."""
    elb = aws.client("elbv2")
    label = f"HTTPS:{HTTPS_PORT} of {arn_name(lb_arn)}"
    li = find_listener(aws, lb_arn, HTTPS_PORT)
    if li is None:
        try:
            created = elb.create_listener(
                LoadBalancerArn=lb_arn,
                Protocol="HTTPS",
                Port=HTTPS_PORT,
                SslPolicy=SSL_POLICY,
                Certificates=[{"CertificateArn": cert_arn}],
                DefaultActions=clean_actions(default_actions),
                Tags=tags,
            )["Listeners"][0]
            actions.created("listener", created["ListenerArn"], label, f"certificate {cert_arn}")
            return str(created["ListenerArn"])
        except ClientError as exc:
            if error_code(exc) != "DuplicateListener":
                raise
            li = find_listener(aws, lb_arn, HTTPS_PORT)
            assert li is not None, "DuplicateListener but no port-443 listener"
    certs = [c.get("CertificateArn") for c in li.get("Certificates") or []]
    drift = []
    if li.get("Protocol") != "HTTPS":
        drift.append(f"protocol HTTPS (was {li.get('Protocol')})")
    if certs[:1] != [cert_arn]:
        drift.append(f"certificate {cert_arn} (was {certs[0] if certs else 'none'})")
    if li.get("SslPolicy") != SSL_POLICY:
        drift.append(f"policy {SSL_POLICY} (was {li.get('SslPolicy')})")
    if forward_to is not None and not forwards_to(li, forward_to):
        drift.append(f"forwarding to {arn_name(forward_to)}")
    if not drift:
        actions.unchanged("listener", li["ListenerArn"], label, f"certificate {cert_arn}")
        return str(li["ListenerArn"])
    elb.modify_listener(
        ListenerArn=li["ListenerArn"],
        Port=HTTPS_PORT,
        Protocol="HTTPS",
        SslPolicy=SSL_POLICY,
        Certificates=[{"CertificateArn": cert_arn}],
        **({"DefaultActions": clean_actions(default_actions)} if forward_to else {}),
    )
    actions.changed("listener", li["ListenerArn"], label, ", ".join(drift))
    return str(li["ListenerArn"])


# -- find -------------------------------------------------------------------------------
def _tagged(c: Cleanup, items: list[dict[str, Any]], arn_key: str) -> list[dict[str, Any]]:
    elb = c.aws.client("elbv2")
    by_arn = {i[arn_key]: i for i in items}
    out = []
    for batch in chunked(list(by_arn), 20):
        for desc in elb.describe_tags(ResourceArns=batch)["TagDescriptions"]:
            if c.mine(desc.get("Tags")):
                out.append(by_arn[desc["ResourceArn"]])
    return out


def deployment_load_balancers(c: Cleanup) -> list[dict[str, Any]]:
    lbs = list(c.aws.client("elbv2").pages("describe_load_balancers", "LoadBalancers"))
    return _tagged(c, lbs, "LoadBalancerArn")


def deployment_target_groups(c: Cleanup) -> list[dict[str, Any]]:
    tgs = list(c.aws.client("elbv2").pages("describe_target_groups", "TargetGroups"))
    return _tagged(c, tgs, "TargetGroupArn")


# -- delete -----------------------------------------------------------------------------
def delete_load_balancing(c: Cleanup) -> None:
    """Listeners (HTTPS first), load balancers (waited until gone), then target groups."""
    elb = c.aws.client("elbv2")
    lbs = deployment_load_balancers(c)
    for lb in lbs:
        arn = lb["LoadBalancerArn"]
        try:
            listeners = list(elb.pages("describe_listeners", "Listeners", LoadBalancerArn=arn))
        except ClientError as exc:
            if is_gone(exc):
                actions.gone("load-balancer", lb["LoadBalancerName"])
                continue
            raise
        # HTTPS first (it holds the certificate), then HTTP and the rest
        listeners.sort(key=lambda li: (li.get("Protocol") != "HTTPS", li.get("Port", 0)))
        for li in listeners:
            c.attempt(
                "listener",
                f"{lb['LoadBalancerName']}:{li.get('Protocol')}:{li.get('Port')}",
                elb.delete_listener,
                ListenerArn=li["ListenerArn"],
            )
        c.attempt(
            "load-balancer", lb["LoadBalancerName"], elb.delete_load_balancer, LoadBalancerArn=arn
        )
    for lb in lbs:
        c.waiter(
            f"load balancer {lb['LoadBalancerName']} to be gone",
            "elbv2",
            "load_balancers_deleted",
            LoadBalancerArns=[lb["LoadBalancerArn"]],
        )
    for tg in deployment_target_groups(c):
        c.attempt(
            "target-group",
            tg["TargetGroupName"],
            c.retrying,
            {"ResourceInUse"},
            elb.delete_target_group,
            TargetGroupArn=tg["TargetGroupArn"],
        )


# -- ensure -------------------------------------------------------------------------------
APP_PORT = 8080


ELB_NAME_MAX = 32  # load balancer and target group names


def elb_name(settings: FleetSettings, suffix: str) -> str:
    """`<deployment>-<suffix>`, shortened with a stable hash when over 32 characters."""
    name = f"{settings.deployment_name}-{suffix}"
    if len(name) <= ELB_NAME_MAX:
        return name
    digest = hashlib.sha256(settings.deployment_name.encode()).hexdigest()[:6]
    keep = ELB_NAME_MAX - len(suffix) - len(digest) - 2
    return f"{settings.deployment_name[:keep].rstrip('-')}-{digest}-{suffix}"


def _elb_tags(elb: Any, arn: str) -> dict[str, str]:
    descs = elb.describe_tags(ResourceArns=[arn])["TagDescriptions"]
    return tag_dict(descs[0].get("Tags", [])) if descs else {}


def _check_owner(elb: Any, arn: str, what: str, settings: FleetSettings) -> None:
    if _elb_tags(elb, arn).get(TAG_KEY) != settings.deployment_name:
        raise StageError(
            f"{what} exists without tag {TAG_KEY}={settings.deployment_name}; it is not this "
            "deployment's: delete it or choose another deployment name"
        )


_HEALTH = {
    "HealthCheckProtocol": "HTTP",
    "HealthCheckPort": "traffic-port",
    "HealthCheckPath": "/",
    "HealthCheckIntervalSeconds": 10,
    "Matcher": {"HttpCode": "200"},
}


def find_by_name(describe: Any, key: str, name: str, missing: str) -> list[dict[str, Any]]:
    """The resources called `name` (describe_target_groups / describe_load_balancers), or
    [] when ELB answers `missing` (it refuses an unknown name rather than listing none)."""
    try:
        return list(describe(Names=[name])[key])
    except ClientError as exc:
        if error_code(exc) != missing:
            raise
        return []


def ensure_target_group(aws: Aws, settings: FleetSettings, vpc_id: str) -> str:
    elb = aws.client("elbv2")
    name = elb_name(settings, "tg")
    found = find_by_name(elb.describe_target_groups, "TargetGroups", name, "TargetGroupNotFound")
    if found:
        tg = found[0]
        arn = str(tg["TargetGroupArn"])
        _check_owner(elb, arn, f"target group {name}", settings)
        if (tg.get("Port"), tg.get("Protocol"), tg.get("VpcId")) != (APP_PORT, "HTTP", vpc_id):
            raise StageError(
                f"target group {name} exists as {tg.get('Protocol')}:{tg.get('Port')} in "
                f"{tg.get('VpcId')}, not HTTP:{APP_PORT} in {vpc_id}; delete it to recreate"
            )
        drift = (
            tg.get("HealthCheckProtocol") != _HEALTH["HealthCheckProtocol"]
            or tg.get("HealthCheckPath") != _HEALTH["HealthCheckPath"]
            or tg.get("HealthCheckIntervalSeconds") != _HEALTH["HealthCheckIntervalSeconds"]
            or (tg.get("Matcher") or {}).get("HttpCode") != "200"
        )
        if drift:
            elb.modify_target_group(TargetGroupArn=arn, **_HEALTH)
            was = f"{tg.get('HealthCheckProtocol')} {tg.get('HealthCheckPath')}"
            actions.changed("target group", arn, name, f"health check HTTP / (was {was})")
        else:
            actions.unchanged("target group", arn, name, f"HTTP:{APP_PORT}")
        return arn
    tg = elb.create_target_group(
        Name=name,
        Protocol="HTTP",
        Port=APP_PORT,
        VpcId=vpc_id,
        TargetType="instance",
        **_HEALTH,
        Tags=deployment_tags(settings, "tg"),
    )["TargetGroups"][0]
    actions.created("target group", tg["TargetGroupArn"], name, f"HTTP:{APP_PORT} in {vpc_id}")
    return str(tg["TargetGroupArn"])


def registered_targets(aws: Aws, tg_arn: str) -> set[tuple[str, int]]:
    """(instance id, port) of every target the group lists, draining ones left out (a
    draining target is on its way out)."""
    descs = aws.client("elbv2").describe_target_health(TargetGroupArn=tg_arn)
    return {
        (d["Target"]["Id"], int(d["Target"].get("Port", APP_PORT)))
        for d in descs["TargetHealthDescriptions"]
        if d["TargetHealth"]["State"] != "draining"
    }


DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"


def deregistration_delay(aws: Aws, tg_arn: str) -> int:
    """The target group's deregistration delay (seconds a deregistered target drains)."""
    attrs = aws.client("elbv2").describe_target_group_attributes(TargetGroupArn=tg_arn)
    have = {a["Key"]: a.get("Value", "") for a in attrs["Attributes"]}
    return int(have.get(DEREGISTRATION_DELAY) or 300)


def ensure_deregistration_delay(aws: Aws, tg_arn: str, seconds: int) -> None:
    """The target group drains deregistered targets for `seconds` (the setting
    `deregistration_delay_s`; AWS's default is 300)."""
    was = deregistration_delay(aws, tg_arn)
    if was == seconds:
        return
    aws.client("elbv2").modify_target_group_attributes(
        TargetGroupArn=tg_arn, Attributes=[{"Key": DEREGISTRATION_DELAY, "Value": str(seconds)}]
    )
    actions.changed(
        "target group", tg_arn, arn_name(tg_arn), f"deregistration delay {seconds}s (was {was}s)"
    )


def register_inventory(aws: Aws, tg_arn: str, instance_ids: list[str]) -> None:
    """Register every inventory instance on 8080 and drop targets no longer in it (a
    draining target is on its way out: registered again if wanted, else left to drain)."""
    elb = aws.client("elbv2")
    current = registered_targets(aws, tg_arn)
    wanted = {(iid, APP_PORT) for iid in instance_ids}
    missing = sorted(wanted - current)
    stale = sorted(current - wanted)
    for i in range(0, len(missing), 100):
        elb.register_targets(
            TargetGroupArn=tg_arn,
            Targets=[{"Id": iid, "Port": port} for iid, port in missing[i : i + 100]],
        )
    for i in range(0, len(stale), 100):
        elb.deregister_targets(
            TargetGroupArn=tg_arn,
            Targets=[{"Id": iid, "Port": port} for iid, port in stale[i : i + 100]],
        )
    name = arn_name(tg_arn)
    if not missing and not stale:
        actions.unchanged("targets of", name=name, why=f"all {len(wanted)} instances registered")
        return
    moved = [f"registered {_ids([i for i, _ in missing])}"] if missing else []
    moved += [f"deregistered {_ids([i for i, _ in stale])}"] if stale else []
    actions.changed("targets of", name=name, why="; ".join(moved))


def _ids(ids: list[str], shown: int = 5) -> str:
    """`3 (i-1, i-2, i-3)`, at most `shown` ids named."""
    more = f", +{len(ids) - shown}" if len(ids) > shown else ""
    return f"{len(ids)} ({', '.join(ids[:shown])}{more})"


def ensure_load_balancer(
    aws: Aws, settings: FleetSettings, subnets: list[str], group_id: str
) -> dict[str, Any]:
    elb = aws.client("elbv2")
    name = elb_name(settings, "alb")
    found = find_by_name(elb.describe_load_balancers, "LoadBalancers", name, "LoadBalancerNotFound")
    if found:
        lb: dict[str, Any] = found[0]
        _check_owner(elb, lb["LoadBalancerArn"], f"load balancer {name}", settings)
        if lb.get("Type", "application") != "application" or lb.get("Scheme") != (
            "internet-facing"
        ):
            raise StageError(
                f"load balancer {name} exists as {lb.get('Scheme')} {lb.get('Type')}, not an "
                "internet-facing application load balancer; delete it to recreate"
            )
        had = lb.get("SecurityGroups") or []
        if group_id not in had:
            elb.set_security_groups(
                LoadBalancerArn=lb["LoadBalancerArn"], SecurityGroups=[group_id]
            )
            why = f"security group {group_id} (was {', '.join(had) or 'none'})"
            actions.changed("load balancer", lb["LoadBalancerArn"], name, why)
        else:
            actions.unchanged("load balancer", lb["LoadBalancerArn"], name, lb.get("DNSName", ""))
        return lb
    made = dict(
        elb.create_load_balancer(
            Name=name,
            Subnets=subnets,
            SecurityGroups=[group_id],
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Tags=deployment_tags(settings, "alb"),
        )["LoadBalancers"][0]
    )
    actions.created("load balancer", made["LoadBalancerArn"], name, made.get("DNSName", ""))
    return made


_LOGS_ON = "access_logs.s3.enabled"


def access_logs_wanted(bucket: str) -> dict[str, str]:
    """The load balancer attributes that send its access logs to `bucket`."""
    return {
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": bucket,
        "access_logs.s3.prefix": LOG_PREFIX,
    }


def attributes(aws: Aws, lb_arn: str) -> dict[str, str]:
    """The load balancer's attributes, key -> value."""
    return {
        a["Key"]: a.get("Value", "")
        for a in aws.client("elbv2").describe_load_balancer_attributes(LoadBalancerArn=lb_arn)[
            "Attributes"
        ]
    }


def enable_access_logs(aws: Aws, lb_arn: str, bucket: str) -> None:
    elb = aws.client("elbv2")
    wanted = access_logs_wanted(bucket)
    have = attributes(aws, lb_arn)
    if any(have.get(k) != v for k, v in wanted.items()):
        elb.modify_load_balancer_attributes(
            LoadBalancerArn=lb_arn, Attributes=[{"Key": k, "Value": v} for k, v in wanted.items()]
        )
        why = f"access logs to s3://{bucket}/{LOG_PREFIX}/ (were {have.get(_LOGS_ON, 'false')})"
        actions.changed("load balancer", lb_arn, arn_name(lb_arn), why)


def ensure_http_listener(aws: Aws, settings: FleetSettings, lb_arn: str, tg_arn: str) -> str:
    elb = aws.client("elbv2")
    forward = [{"Type": "forward", "TargetGroupArn": tg_arn}]
    label = f"HTTP:80 of {arn_name(lb_arn)}"
    li = find_listener(aws, lb_arn, 80)
    if li is not None:
        if li.get("Protocol") != "HTTP" or not forwards_to(li, tg_arn):
            elb.modify_listener(
                ListenerArn=li["ListenerArn"], Protocol="HTTP", Port=80, DefaultActions=forward
            )
            why = f"HTTP forwarding to {arn_name(tg_arn)} (was {li.get('Protocol')})"
            actions.changed("listener", li["ListenerArn"], label, why)
        else:
            actions.unchanged("listener", li["ListenerArn"], label, f"to {arn_name(tg_arn)}")
        return str(li["ListenerArn"])
    created = elb.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=forward,
        Tags=deployment_tags(settings, "http"),
    )["Listeners"][0]
    actions.created("listener", created["ListenerArn"], label, f"forwarding to {arn_name(tg_arn)}")
    return str(created["ListenerArn"])


def wait_active(aws: Aws, lb_arn: str, deadline: float, timeout_s: float, poll_s: float) -> None:
    """Until the load balancer is active (boto3's `load_balancer_available` waiter, through
    the retrying client), within `deadline`; StageError with its state otherwise."""
    elb = aws.client("elbv2")
    try:
        elb.wait(
            "load_balancer_available",
            what=f"load balancer {arn_name(lb_arn)} to be active",
            deadline=deadline,
            delay_s=poll_s,
            LoadBalancerArns=[lb_arn],
        )
        return
    except WaitTimeout:
        pass  # the state below says why
    lb = elb.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"][0]
    state = (lb.get("State") or {}).get("Code", "active")
    if state == "active":
        return
    if state == "failed":
        reason = (lb.get("State") or {}).get("Reason", "no reason given")
        raise StageError(f"load balancer {lb['LoadBalancerName']} failed: {reason}")
    raise StageError(
        f"load balancer {lb['LoadBalancerName']} is still {state} after {timeout_s:.0f}s"
    )


def describe_health(aws: Aws, tg_arn: str, instance_ids: list[str]) -> list[dict[str, Any]]:
    elb = aws.client("elbv2")
    out: list[dict[str, Any]] = []
    for i in range(0, len(instance_ids), 100):
        batch = instance_ids[i : i + 100]
        out += elb.describe_target_health(
            TargetGroupArn=tg_arn, Targets=[{"Id": iid, "Port": APP_PORT} for iid in batch]
        )["TargetHealthDescriptions"]
    return out


def health_report(descs: list[dict[str, Any]]) -> str:
    """`healthy=4, unhealthy=2 [Target.Timeout x2: i-1, i-2]` — states and reasons."""
    states = Counter(d["TargetHealth"]["State"] for d in descs)
    parts = [f"{s}={n}" for s, n in sorted(states.items())]
    reasons: dict[str, list[str]] = {}
    for d in descs:
        th = d["TargetHealth"]
        if th["State"] != "healthy":
            key = th.get("Reason") or th["State"]
            if th.get("Description"):
                key += f" ({th['Description']})"
            reasons.setdefault(key, []).append(d["Target"]["Id"])
    details = [
        f"{reason} x{len(ids)}: {', '.join(sorted(ids)[:5])}{' ...' if len(ids) > 5 else ''}"
        for reason, ids in sorted(reasons.items())
    ]
    return ", ".join(parts) + (f" [{'; '.join(details)}]" if details else "")


def wait_healthy(
    aws: Aws, tg_arn: str, instance_ids: list[str], deadline: float, timeout_s: float, poll_s: float
) -> int:
    """Until every target is healthy (boto3's `target_in_service` waiter per batch of 100,
    through the retrying client), within `deadline`; StageError with each target's state
    and reason otherwise."""
    elb = aws.client("elbv2")
    try:
        for i in range(0, len(instance_ids), 100):
            elb.wait(
                "target_in_service",
                what=f"{len(instance_ids[i : i + 100])} target(s) of {arn_name(tg_arn)} "
                "to be healthy",
                deadline=deadline,
                delay_s=poll_s,
                TargetGroupArn=tg_arn,
                Targets=[{"Id": iid, "Port": APP_PORT} for iid in instance_ids[i : i + 100]],
            )
    except WaitTimeout:
        pass  # the report below says why
    descs = describe_health(aws, tg_arn, instance_ids)
    healthy = sum(1 for d in descs if d["TargetHealth"]["State"] == "healthy")
    if healthy == len(instance_ids):
        return healthy
    hint = ""
    if any(d["TargetHealth"].get("Reason") == "Target.Timeout" for d in descs):
        hint = (
            "; Target.Timeout usually means the instance's security group does not "
            f"admit the ALB's group on {APP_PORT}"
        )
    raise StageError(
        f"{healthy}/{len(instance_ids)} targets healthy after {timeout_s:.0f}s: "
        f"{health_report(descs)}{hint}"
    )
