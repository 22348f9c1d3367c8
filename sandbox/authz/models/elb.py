"""Elastic Load Balancing (v2): load balancers, target groups, listeners, tags.

Tags given at creation need `elasticloadbalancing:AddTags` with
`elasticloadbalancing:CreateAction`; the first load balancer or target group of an account
needs the ELB service-linked role (`sandbox.authz.slr`).
"""

from __future__ import annotations

from typing import Any

from ..checks import Checks, tags_of
from ..slr import need_service_linked_role

_LB_TYPES = {"application": "app", "network": "net", "gateway": "gwy"}


def _backend(c: Checks) -> Any:
    from moto.elbv2.models import elbv2_backends

    return elbv2_backends[c.call.account][c.call.region]


def resource_tags(c: Checks, arn: str) -> dict[str, str]:
    return tags_of(_backend(c).tagging_service.get_tag_dict_for_resource(arn))


def rtype_of(arn: str) -> str:
    """The reference's resource type of an ELB ARN (loadbalancer/app/, listener/app, ...)."""
    res = arn.split(":", 5)[-1]
    kind, _, rest = res.partition("/")
    if kind == "targetgroup":
        return "targetgroup"
    lb = rest.split("/", 1)[0]
    if kind == "loadbalancer":
        return f"loadbalancer/{lb}/"
    return f"{kind}/{lb}"  # listener/app, listener-rule/app


def _existing(c: Checks, arn: str, request_tags: dict[str, str] | None = None) -> None:
    c.add(rtype_of(arn), arn, resource_tags=resource_tags(c, arn), request_tags=request_tags)


def tag_on_create(c: Checks, rtype: str, arn: str, tags: dict[str, str], create: str) -> None:
    """elasticloadbalancing:AddTags of the tags `create` (CreateLoadBalancer, ...) gives."""
    if tags:
        c.add(
            rtype,
            arn,
            action="elasticloadbalancing:AddTags",
            request_tags=tags,
            keys={"elasticloadbalancing:CreateAction": [create]},
            why="tags on create",
        )


def load_balancer_checks(c: Checks, name: str, tags: dict[str, str], kind: str = "app") -> str:
    """The checks of CreateLoadBalancer `name` with `tags` (whoever calls it); its ARN."""
    rtype = f"loadbalancer/{kind}/"
    arn = c.arn(rtype, "elasticloadbalancing", LoadBalancerName=name)
    c.add(rtype, arn, action="elasticloadbalancing:CreateLoadBalancer", request_tags=tags)
    tag_on_create(c, rtype, arn, tags, "CreateLoadBalancer")
    need_service_linked_role(c, "elasticloadbalancing.amazonaws.com")
    return arn


def target_group_checks(c: Checks, name: str, tags: dict[str, str]) -> str:
    """The checks of CreateTargetGroup `name` with `tags`; its ARN."""
    arn = c.arn("targetgroup", "elasticloadbalancing", TargetGroupName=name)
    c.add("targetgroup", arn, action="elasticloadbalancing:CreateTargetGroup", request_tags=tags)
    tag_on_create(c, "targetgroup", arn, tags, "CreateTargetGroup")
    need_service_linked_role(c, "elasticloadbalancing.amazonaws.com")
    return arn


def listener_checks(
    c: Checks, lb: str, tags: dict[str, str], lb_tags: dict[str, str] | None = None
) -> None:
    """The checks of CreateListener on balancer `lb` (its tags: moto's unless given)."""
    current = resource_tags(c, lb) if lb_tags is None else lb_tags
    c.add(
        rtype_of(lb),
        lb,
        action="elasticloadbalancing:CreateListener",
        request_tags=tags or None,
        resource_tags=current,
    )
    kind = rtype_of(lb).split("/")[1]
    listener = lb.replace(":loadbalancer/", ":listener/", 1) + "/*"
    tag_on_create(c, f"listener/{kind}", listener, tags, "CreateListener")


def create_load_balancer(c: Checks) -> None:
    p = c.call.params
    kind = _LB_TYPES.get(p.get("Type") or "application", "app")
    load_balancer_checks(c, p.get("Name", "*"), c.call.tags(), kind)


def create_target_group(c: Checks) -> None:
    target_group_checks(c, c.call.params.get("Name", "*"), c.call.tags())


def create_listener(c: Checks) -> None:
    listener_checks(c, c.call.params.get("LoadBalancerArn", ""), c.call.tags())


def by_param(param: str) -> Any:
    def model(c: Checks) -> None:
        value = c.call.params.get(param)
        for arn in value if isinstance(value, list) else [value]:
            if arn:
                _existing(c, arn)

    return model


def add_tags(c: Checks) -> None:
    tags = c.call.tags()
    for arn in c.call.params.get("ResourceArns") or []:
        c.add(rtype_of(arn), arn, request_tags=tags, resource_tags=resource_tags(c, arn))


MODELS = {
    "CreateLoadBalancer": create_load_balancer,
    "CreateTargetGroup": create_target_group,
    "CreateListener": create_listener,
    "DeleteLoadBalancer": by_param("LoadBalancerArn"),
    "ModifyLoadBalancerAttributes": by_param("LoadBalancerArn"),
    "SetSecurityGroups": by_param("LoadBalancerArn"),
    "SetSubnets": by_param("LoadBalancerArn"),
    "DeleteTargetGroup": by_param("TargetGroupArn"),
    "ModifyTargetGroup": by_param("TargetGroupArn"),
    "ModifyTargetGroupAttributes": by_param("TargetGroupArn"),
    "RegisterTargets": by_param("TargetGroupArn"),
    "DeregisterTargets": by_param("TargetGroupArn"),
    "DeleteListener": by_param("ListenerArn"),
    "ModifyListener": by_param("ListenerArn"),
    "AddTags": add_tags,
    "RemoveTags": by_param("ResourceArns"),
}
