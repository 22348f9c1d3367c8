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
    _HEALTH,
    APP_PORT,
    access_logs_wanted,
    arn_name,
    attributes,
    elb_name,
    enable_access_logs,
    ensure_deregistration_delay,
    ensure_http_listener,
    ensure_load_balancer,
    ensure_target_group,
    find_by_name,
    find_listener,
    forwards_to,
    register_inventory,
    registered_targets,
    wait_active,
    wait_healthy,
)
from tasks.aws.s3 import ensure_log_bucket, find_log_bucket
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.found import MissingStage
from tasks.deploy.models import AlbResult, InventoryResult
from tasks.deploy.stages.room import Finding, Room, stage_task
from tasks.deploy.survey import WORLD, Survey
from tasks.plan import diff
from tasks.plan.models import PlanEntry

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


def _targets(s: Survey) -> tuple[list[str], str]:
    """The instances the target group should hold (the saved inventory's installed hosts,
    else the running web hosts) and what stage 1 is still to launch."""
    installed = s.installed()
    want = installed if installed is not None else sorted(i.instance_id for i in s.running("web"))
    launched = max(0, s.instances - len(s.running("web")))
    return want, f"the {launched} hosts stage 1 launches" if launched else ""


def plan(s: Survey) -> list[PlanEntry]:
    """Its groups and their rules, the log bucket, the target group and its members, the
    ALB (security group, access logs) and its HTTP listener."""
    n = ROW.number
    alb_sg = s.group("alb")
    alb_sg_id = str(alb_sg["GroupId"]) if alb_sg else None
    bucket, tags = find_log_bucket(s.aws, s.settings)
    tg, lb = s.target_group(), s.alb()
    want, launching = _targets(s)

    tg_drift: list[diff.Drift] = []
    if tg is not None:
        have = sorted(i for i, port in registered_targets(s.aws, tg["TargetGroupArn"]))
        tg_drift = diff.members(
            "target group membership", want, have, add="register", remove="deregister"
        )
        if launching:
            tg_drift.append(("target group membership", f"register {launching}"))
        health = (tg.get("HealthCheckPath"), tg.get("HealthCheckIntervalSeconds"))
        tg_drift += diff.value(
            "health check",
            f"{_HEALTH['HealthCheckPath']} every {_HEALTH['HealthCheckIntervalSeconds']}s",
            f"{health[0]} every {health[1]}s",
        )
    lb_drift: list[diff.Drift] = []
    http: dict[str, object] | None = None
    if lb is not None:
        had = lb.get("SecurityGroups") or []
        if alb_sg_id is None or alb_sg_id not in had:
            lb_drift.append(("security groups", f"security group {s.name}-alb"))
        logs = attributes(s.aws, lb["LoadBalancerArn"])
        if any(logs.get(k) != v for k, v in access_logs_wanted(bucket).items()):
            lb_drift.append(("access logs", f"access logs to s3://{bucket}/"))
        http = find_listener(s.aws, lb["LoadBalancerArn"], 80)
    tg_name = elb_name(s.settings, "tg")
    lb_name = elb_name(s.settings, "alb")
    http_drift: list[diff.Drift] = []
    if http is not None and (tg is None or not forwards_to(http, str(tg["TargetGroupArn"]))):
        http_drift.append(("default action", f"forward to {tg_name}"))
    return [
        s.group_entry(n, "alb"),
        s.ingress_entry(n, "alb", [80, 443], WORLD, WORLD),
        s.ingress_entry(n, "web", [APP_PORT], alb_sg_id, f"{s.name}-alb"),
        diff.resource(
            n,
            "s3-bucket",
            bucket,
            exists=tags is not None,
            create="private, encrypted ALB access-log bucket",
            ok="ALB access logs (its settings are put again)",
        ),
        diff.resource(
            n,
            "target-group",
            tg_name,
            exists=tg is not None,
            create=f"HTTP:{APP_PORT}, registering {len(want)} instances"
            + (f" and {launching}" if launching else ""),
            drift=tg_drift,
            ok=f"all {len(want)} instances registered",
        ),
        diff.resource(
            n,
            "load-balancer",
            lb_name,
            exists=lb is not None,
            create="internet-facing ALB with access logs",
            drift=lb_drift,
            ok=str(lb.get("DNSName", "")) if lb else "",
        ),
        diff.resource(
            n,
            "listener",
            f"{lb_name}:HTTP:80",
            exists=http is not None,
            create=f"forwarding to {tg_name}",
            drift=http_drift,
            ok=f"forwarding to {arn_name(str(tg['TargetGroupArn'])) if tg else tg_name}",
        ),
    ]


ROOM = Room(ROW, task=alb_stage, find=find, report=report, plan=plan)
