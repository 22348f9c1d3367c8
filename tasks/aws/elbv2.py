"""Elastic Load Balancing v2: load balancers, listeners and target groups of a deployment."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tasks.aws.cleanup import Cleanup, is_gone
from tasks.planning import chunked


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
