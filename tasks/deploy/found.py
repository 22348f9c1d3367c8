"""What a selected stage needs from a stage that was not selected (`deploy --stages`): found
by tag, by name or in the saved inventory, read-only. When it is not there, `MissingStage`
names the stage to run first; `not_running` checks instances given to install-tomcat.
Nothing here creates anything."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.acm import find_certificate
from tasks.aws.beanstalk import application_name, environment_load_balancer, environment_name
from tasks.aws.beanstalk import find_environment as find_eb_environment
from tasks.aws.ec2 import StageError, find_instances
from tasks.aws.elbv2 import HTTPS_PORT, elb_name, find_by_name, find_listener
from tasks.aws.iam import profile_name, role_name
from tasks.aws.rds import DB_PORT, db_instance_id, describe_db
from tasks.aws.route53 import find_hosted_zone
from tasks.deploy.dag import NAMES
from tasks.deploy.inventory import load_inventory
from tasks.deploy.models import (
    AlbResult,
    BeanstalkResult,
    InventoryResult,
    LaunchResult,
    RdsResult,
    TlsResult,
)
from tasks.models import Instance
from tasks.planning import chunked


class MissingStage(StageError):
    """A selected stage's input is missing because the stage making it was not run."""

    def __init__(self, stage: int, needs: int, what: str, detail: str = "") -> None:
        self.stage, self.needs = stage, needs
        super().__init__(
            f"stage {stage} ({NAMES[stage]}) needs stage {needs}'s {what}"
            f"{' (' + detail + ')' if detail else ''}: run --stages {needs} first or include it"
        )


def launched(aws: Aws, settings: FleetSettings, stage: int) -> LaunchResult:
    """Stage 1's instances, found by the deployment's tags."""
    instances = find_instances(aws, settings, "web")
    if not instances:
        raise MissingStage(stage, 1, "instances", "no running instance of this deployment")
    groups = sorted({g for i in instances for g in i.security_groups})
    return LaunchResult(
        instances=instances,
        security_group_id=groups[0] if groups else "",
        key_name=settings.key_name,
    )


def inventory(settings: FleetSettings, stage: int) -> InventoryResult:
    """Stage 3's saved inventory."""
    inv = load_inventory(settings)
    if inv is None:
        raise MissingStage(stage, 3, "inventory", "no saved inventory")
    return inv


def alb(aws: Aws, settings: FleetSettings, stage: int) -> AlbResult:
    """Stage 4's load balancer, target group and HTTP listener, found by name."""
    elb = aws.client("elbv2")
    name = elb_name(settings, "alb")
    lbs = find_by_name(elb.describe_load_balancers, "LoadBalancers", name, "LoadBalancerNotFound")
    tgs = find_by_name(
        elb.describe_target_groups, "TargetGroups", elb_name(settings, "tg"), "TargetGroupNotFound"
    )
    if not lbs or not tgs:
        raise MissingStage(stage, 4, "load balancer", f"{name} not found")
    lb, tg = lbs[0], tgs[0]
    http = find_listener(aws, lb["LoadBalancerArn"], 80)
    if http is None:
        raise MissingStage(stage, 4, "load balancer", f"{name} has no HTTP listener")
    dns = str(lb["DNSName"])
    return AlbResult(
        load_balancer_arn=str(lb["LoadBalancerArn"]),
        dns_name=dns,
        security_group_id=(lb.get("SecurityGroups") or [""])[0],
        target_group_arn=str(tg["TargetGroupArn"]),
        http_listener_arn=str(http["ListenerArn"]),
        url=f"http://{dns}/",
    )


def tls(aws: Aws, settings: FleetSettings, stage: int, lb: AlbResult | None) -> TlsResult:
    """Stage 5's certificate (by domain and tag), hosted zone and HTTPS listener."""
    domain = settings.web_domain
    domains = [domain, *[d for d in [settings.beanstalk_domain] if d != domain]]
    cert = find_certificate(aws, settings, domains)
    if cert is None:
        raise MissingStage(stage, 5, "certificate", f"none for {domain}")
    listener = ""
    if lb is not None:
        li = find_listener(aws, lb.load_balancer_arn, HTTPS_PORT)
        if li is None:
            raise MissingStage(stage, 5, "HTTPS listener", "the ALB has no port-443 listener")
        listener = str(li["ListenerArn"])
    return TlsResult(
        certificate_arn=cert,
        domain=domain,
        https_listener_arn=listener,
        hosted_zone_id=find_hosted_zone(aws, settings.hosted_zone or ""),
        url=f"https://{domain}/",
    )


def beanstalk(aws: Aws, settings: FleetSettings, stage: int) -> BeanstalkResult:
    """Stage 7's environment, found by name; it must be Ready."""
    app, name = application_name(settings), environment_name(settings)
    env = find_eb_environment(aws, app, name)
    if env is None or env.get("Status") != "Ready":
        state = "not found" if env is None else f"status {env.get('Status')}"
        raise MissingStage(stage, 7, "Beanstalk environment", f"{name} {state}")
    lb = environment_load_balancer(aws, str(env["EnvironmentId"]))
    if lb is None:
        raise MissingStage(stage, 7, "Beanstalk environment", f"{name} has no load balancer")
    return BeanstalkResult(
        application=app,
        environment=name,
        cname=str(env.get("CNAME") or env.get("EndpointURL") or ""),
        load_balancer_arn=lb,
        instance_profile=profile_name(settings),
        role=role_name(settings),
    )


def rds(aws: Aws, settings: FleetSettings, stage: int) -> RdsResult:
    """Stage 8's DB instance, found by its identifier; it must be available."""
    ident = db_instance_id(settings)
    db = describe_db(aws, ident)
    if db is None or db.get("DBInstanceStatus") != "available":
        state = "not found" if db is None else f"status {db.get('DBInstanceStatus')}"
        raise MissingStage(stage, 8, "RDS instance", f"{ident} {state}")
    groups = [g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])]
    return RdsResult(
        db_instance_id=ident,
        endpoint=str(db["Endpoint"]["Address"]),
        port=int(db["Endpoint"].get("Port") or DB_PORT),
        security_group_id=groups[0] if groups else "",
        master_username=str(db.get("MasterUsername") or settings.db_master_username),
        password_secret_block=settings.password_block,
    )


def not_running(aws: Aws, instances: list[Instance]) -> list[str]:
    """ "<id> (why)" for each given instance not running at the given public IP (reads; a
    filter, not InstanceIds, so an unknown id is no error)."""
    seen: dict[str, tuple[str | None, str | None]] = {}
    for batch in chunked([i.instance_id for i in instances], 200):
        res = aws.client("ec2").describe_instances(
            Filters=[{"Name": "instance-id", "Values": batch}]
        )
        for r in res["Reservations"]:
            for d in r["Instances"]:
                seen[d["InstanceId"]] = (d.get("State", {}).get("Name"), d.get("PublicIpAddress"))
    bad = []
    for inst in instances:
        state, ip = seen.get(inst.instance_id, ("no such instance", None))
        if state != "running":
            bad.append(f"{inst.instance_id} ({state})")
        elif ip != inst.public_ip:
            bad.append(f"{inst.instance_id} (its public IP is {ip})")
    return bad
