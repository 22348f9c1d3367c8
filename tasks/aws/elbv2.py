"""Elastic Load Balancing v2: load balancers, listeners and target groups of a deployment."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tasks.aws.cleanup import Cleanup, is_gone
from tasks.aws.client import Aws
from tasks.aws.retry import error_code
from tasks.planning import chunked

HTTPS_PORT = 443
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


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
            return str(created["ListenerArn"])
        except ClientError as exc:
            if error_code(exc) != "DuplicateListener":
                raise
            li = find_listener(aws, lb_arn, HTTPS_PORT)
            assert li is not None, "DuplicateListener but no port-443 listener"
    certs = [c.get("CertificateArn") for c in li.get("Certificates") or []]
    if (
        li.get("Protocol") != "HTTPS"
        or certs[:1] != [cert_arn]
        or li.get("SslPolicy") != SSL_POLICY
        or (forward_to is not None and not forwards_to(li, forward_to))
    ):
        elb.modify_listener(
            ListenerArn=li["ListenerArn"],
            Port=HTTPS_PORT,
            Protocol="HTTPS",
            SslPolicy=SSL_POLICY,
            Certificates=[{"CertificateArn": cert_arn}],
            **({"DefaultActions": clean_actions(default_actions)} if forward_to else {}),
        )
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
def _lb_gone(c: Cleanup, arn: str) -> bool:
    elb = c.aws.client("elbv2")
    return not elb.describe_load_balancers(LoadBalancerArns=[arn]).get("LoadBalancers")


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
        c.wait(
            f"load balancer {lb['LoadBalancerName']} to be gone",
            _lb_gone,
            c,
            lb["LoadBalancerArn"],
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
