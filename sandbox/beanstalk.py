"""What Elastic Beanstalk creates behind an environment, made in moto by the sandbox.

An environment gets an application load balancer (visible in ELBv2 and through
DescribeEnvironmentResources) whose HTTP listener forwards to the environment's
application server, registered as an `ip` target. Called under the API lock.
CreateEnvironment's service role is checked in `eb_roles`.
"""

from __future__ import annotations

from moto.ec2.models import ec2_backends
from moto.elasticbeanstalk.models import eb_backends
from moto.elbv2.models import elbv2_backends

from .moto_patches import ACCOUNT


def provision_environment(region: str, env_name: str, address: str, port: int) -> tuple[str, str]:
    """Create the environment's balancer, target group and listener; mark it Ready.
    An environment terminated meanwhile is left alone (returns empty ARNs)."""
    ec2 = ec2_backends[ACCOUNT][region]
    elbv2 = elbv2_backends[ACCOUNT][region]
    env = next(
        (
            e
            for e in eb_backends[ACCOUNT][region].describe_environments()
            if e.environment_name == env_name and e.status == "Launching"
        ),
        None,
    )
    if env is None:
        return "", ""
    subnets = [s.id for s in ec2.describe_subnets(filters={"default-for-az": ["true"]})][:2]
    tags = [{"Key": "elasticbeanstalk:environment-name", "Value": env_name}] + [
        {"Key": k, "Value": v} for k, v in (env.tags or {}).items()
    ]
    short = env.environment_id.replace("-", "")[:12]
    lb = elbv2.create_load_balancer(
        name=f"awseb-{short}", security_groups=[], subnet_ids=subnets, tags=tags
    )
    tg = elbv2.create_target_group(
        name=f"awseb-{short}-tg",
        protocol="HTTP",
        port=port,
        vpc_id=lb.vpc_id,
        target_type="ip",
        healthcheck_path="/",
        tags=tags,
    )
    tg.register([{"Id": address, "Port": port}])
    elbv2.create_listener(
        load_balancer_arn=lb.arn,
        protocol="HTTP",
        port="80",
        ssl_policy="",
        certificate=None,
        actions=[{"Type": "forward", "TargetGroupArn": tg.arn}],
    )
    env.status = "Ready"
    env.health = "Green"
    env.health_status = "Ok"
    return lb.arn, tg.arn


def release_environment(region: str, lb_arn: str | None, tg_arn: str | None) -> None:
    elbv2 = elbv2_backends[ACCOUNT][region]
    if lb_arn and lb_arn in elbv2.load_balancers:
        elbv2.delete_load_balancer(lb_arn)
    if tg_arn and tg_arn in elbv2.target_groups:
        elbv2.target_groups.pop(tg_arn)
