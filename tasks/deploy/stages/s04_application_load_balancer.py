"""Stage 4, application-load-balancer: an internet-facing ALB in front of the fleet.

`create_alb` finds or creates, in order: the ALB security group (80/443 from anywhere) and
the rule letting it reach the instances on 8080, the access-log bucket (private, public
access blocked, SSE-S3, writable by ELB log delivery only), the target group (draining for
`deregistration_delay_s`) with every inventory instance registered, the load balancer with
access logs on, and its HTTP listener. Then it waits until the balancer is active and every
registered target is healthy. Every resource is found by name and checked for the
deployment tag before anything is created, so a second call creates nothing and returns the
same ids. Not run, the ALB, its target group and HTTP listener are found by name (`find`).
"""

from __future__ import annotations

import time

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.ec2 import (
    StageError,
    authorize_ingress,
    default_subnets,
    default_vpc,
    ensure_security_group,
)
from tasks.aws.elbv2 import (
    APP_PORT,
    elb_name,
    enable_access_logs,
    ensure_deregistration_delay,
    ensure_http_listener,
    ensure_load_balancer,
    ensure_target_group,
    find_by_name,
    find_listener,
    register_inventory,
    wait_active,
    wait_healthy,
)
from tasks.aws.s3 import ensure_log_bucket
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.found import MissingStage
from tasks.deploy.models import AlbResult, InventoryResult
from tasks.deploy.stages.room import Finding, Room, stage_task

ROW = STAGES[4]


def create_alb(
    aws: Aws,
    settings: FleetSettings,
    inventory: InventoryResult,
    timeout_s: float = ROW.timeout_s,
    poll_s: float = 1.0,
) -> AlbResult:
    """Stage 4: the ALB serving every inventory instance over HTTP on port 80."""
    if not inventory.instances:
        raise StageError(f"inventory {inventory.path} lists no instances to put behind the ALB")
    instance_ids = sorted({i.instance_id for i in inventory.instances})
    groups = sorted(set(inventory.security_group_ids))
    if not groups:
        raise StageError(f"inventory {inventory.path} names no security groups for the instances")

    vpc = default_vpc(aws)
    subnets = default_subnets(aws, vpc)
    alb_sg = ensure_security_group(aws, settings, role="alb")
    authorize_ingress(aws, [alb_sg], [80, 443], lambda _p: "0.0.0.0/0")
    authorize_ingress(aws, groups, [APP_PORT], lambda _p: alb_sg, description="tomcat-fleet alb")

    bucket = ensure_log_bucket(aws, settings)
    tg_arn = ensure_target_group(aws, settings, vpc)
    ensure_deregistration_delay(aws, tg_arn, settings.deregistration_delay_s)
    register_inventory(aws, tg_arn, instance_ids)
    lb = ensure_load_balancer(aws, settings, subnets, alb_sg)
    lb_arn = str(lb["LoadBalancerArn"])
    enable_access_logs(aws, lb_arn, bucket)
    listener_arn = ensure_http_listener(aws, settings, lb_arn, tg_arn)

    deadline = time.monotonic() + timeout_s
    wait_active(aws, lb_arn, deadline, timeout_s, poll_s)
    healthy = wait_healthy(aws, tg_arn, instance_ids, deadline, timeout_s, poll_s)
    dns = str(lb["DNSName"])
    name = lb.get("LoadBalancerName", lb_arn)
    actions.result(f"ALB {name}: {healthy}/{len(instance_ids)} targets healthy")
    return AlbResult(
        load_balancer_arn=lb_arn,
        dns_name=dns,
        security_group_id=alb_sg,
        target_group_arn=tg_arn,
        http_listener_arn=listener_arn,
        registered=instance_ids,
        healthy=healthy,
        access_log_bucket=bucket,
        url=f"http://{dns}/",
    )


@stage_task(ROW)
def alb_stage(settings: FleetSettings, inventory: InventoryResult) -> AlbResult:
    return create_alb(Aws(settings), settings, inventory)


def find(q: Finding) -> AlbResult:
    """The load balancer, target group and HTTP listener, found by name."""
    elb = q.aws.client("elbv2")
    name = elb_name(q.settings, "alb")
    lbs = find_by_name(elb.describe_load_balancers, "LoadBalancers", name, "LoadBalancerNotFound")
    tgs = find_by_name(
        elb.describe_target_groups,
        "TargetGroups",
        elb_name(q.settings, "tg"),
        "TargetGroupNotFound",
    )
    if not lbs or not tgs:
        raise MissingStage(q.stage, ROW.number, "load balancer", f"{name} not found")
    lb, tg = lbs[0], tgs[0]
    http = find_listener(q.aws, lb["LoadBalancerArn"], 80)
    if http is None:
        raise MissingStage(q.stage, ROW.number, "load balancer", f"{name} has no HTTP listener")
    dns = str(lb["DNSName"])
    return AlbResult(
        load_balancer_arn=str(lb["LoadBalancerArn"]),
        dns_name=dns,
        security_group_id=(lb.get("SecurityGroups") or [""])[0],
        target_group_arn=str(tg["TargetGroupArn"]),
        http_listener_arn=str(http["ListenerArn"]),
        url=f"http://{dns}/",
    )


def report(result: AlbResult, _: FleetSettings) -> ReportPart:
    return ReportPart(
        urls={"alb_http": result.url},
        resources={
            "load_balancer": result.load_balancer_arn,
            "target_group": result.target_group_arn,
            "access_log_bucket": result.access_log_bucket,
        },
    )


ROOM = Room(ROW, task=alb_stage, find=find, report=report)
