"""What Elastic Beanstalk creates behind an environment, made in moto by the sandbox.

On AWS an environment is the CloudFormation stack `awseb-<env id>-stack`; for a
load-balanced environment with an application load balancer its resources are the ones made
here, named and tagged as CloudFormation names and tags them (`sandbox.eb_names`):

* the stack record (a minimal template: the sandbox makes the resources itself, moto's
  CloudFormation does not);
* Elastic Beanstalk's bucket `elasticbeanstalk-<region>-<account>`, if missing (it stays
  when the environment goes, as on AWS);
* two security groups: the balancer's (port 80 from anywhere) and the instances' (port 80
  from the balancer's group);
* a launch template and an Auto Scaling group of desired capacity 1 (the group's one
  instance is a host of the fleet like any other, tagged as Auto Scaling propagates tags);
* the application load balancer `awseb-AWSEB-...`, its target group and an HTTP:80
  listener; the target is the environment's application server (an `ip` target the fleet
  serves), not the group's instance, which runs no application in the sandbox;
* two CloudWatch alarms (the group's scale-up and scale-down triggers).

Everything taking tags carries the environment's tags, Elastic Beanstalk's
(`elasticbeanstalk:environment-name` / `-id`, `Name`) and CloudFormation's
(`aws:cloudformation:*`), except the listener: CloudFormation cannot tag a listener.
TerminateEnvironment removes them all. Every function here is called under the API lock.
CreateEnvironment's service role is checked in `eb_roles`.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from moto.autoscaling.models import autoscaling_backends
from moto.cloudformation.models import cloudformation_backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.ec2.models import ec2_backends
from moto.elasticbeanstalk.models import eb_backends
from moto.elbv2.models import elbv2_backends
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

import sandbox.eb_names as names

from .moto_patches import ACCOUNT

log = logging.getLogger("sandbox.beanstalk")

_TEMPLATE = json.dumps(
    {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Elastic Beanstalk environment (the sandbox makes its resources itself)",
        "Resources": {"AWSEBWaitHandle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
    }
)
INSTANCE_TYPE = "t3.micro"


@dataclass
class EbResources:
    """What exists of one environment's resources (None / empty: not, or no longer)."""

    env_id: str
    stack: Any = None
    bucket: str = ""
    bucket_exists: bool = False
    groups: dict[str, Any] = field(default_factory=dict)  # logical id -> security group
    launch_template: Any = None
    auto_scaling_group: Any = None
    instances: list[str] = field(default_factory=list)
    balancer: Any = None
    listeners: list[Any] = field(default_factory=list)  # the ones Beanstalk made
    target_group: Any = None
    alarms: list[Any] = field(default_factory=list)

    @property
    def stack_id(self) -> str:
        return str(self.stack.stack_id) if self.stack is not None else ""


def find(account: str, region: str, env_id: str) -> EbResources:
    """The resources of environment `env_id` that exist in moto, found by their names."""
    ec2 = ec2_backends[account][region]
    elbv2 = elbv2_backends[account][region]
    out = EbResources(env_id, bucket=names.bucket_name(region, account))
    out.bucket_exists = out.bucket in s3_backends[account][get_partition(region)].buckets
    stack = names.stack_name(env_id)
    cfn = cloudformation_backends[account][region]
    out.stack = next((s for s in list(cfn.stacks.values()) if s.name == stack), None)
    vpc = ec2.get_default_vpc()
    for logical in names.GROUPS:
        sg = ec2.get_security_group_from_name(
            names.physical_name(env_id, logical), vpc.id if vpc else None
        )
        if sg is not None:
            out.groups[logical] = sg
    lt_id = ec2.launch_template_name_to_ids.get(names.physical_name(env_id, names.LAUNCH_TEMPLATE))
    out.launch_template = ec2.launch_templates.get(lt_id) if lt_id else None
    asg_name = names.physical_name(env_id, names.AUTO_SCALING_GROUP)
    out.auto_scaling_group = autoscaling_backends[account][region].autoscaling_groups.get(asg_name)
    if out.auto_scaling_group is not None:
        out.instances = [
            s.instance.id
            for s in out.auto_scaling_group.instance_states
            if s.instance.state not in ("terminated", "shutting-down")
        ]
    lb_name, tg_name = names.balancer_name(env_id), names.target_group_name(env_id)
    out.balancer = next((b for b in elbv2.load_balancers.values() if b.name == lb_name), None)
    if out.balancer is not None:
        out.listeners = [
            li
            for li in out.balancer.listeners.values()
            if int(li.port) == 80 and (li.protocol or "").upper() == "HTTP"
        ]
    out.target_group = next((t for t in elbv2.target_groups.values() if t.name == tg_name), None)
    alarms = cloudwatch_backends[account][region].alarms
    out.alarms = [
        alarms[n] for n in (names.physical_name(env_id, a) for a in names.ALARMS) if n in alarms
    ]
    return out


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _image(ec2: Any) -> str:
    """An Amazon-owned image (Beanstalk's platform AMIs are Amazon Linux)."""
    owned = sorted(i for i, ami in ec2.amis.items() if str(ami.owner_alias) == "amazon")
    return owned[0] if owned else next(iter(ec2.amis))


def provision_environment(region: str, env_name: str, address: str, port: int) -> tuple[str, str]:
    """Create the environment's resources (module docstring); mark it Ready. Returns the
    balancer's and target group's ARNs. An environment terminated meanwhile is left alone
    (returns empty ARNs)."""
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
    env_id = env.environment_id
    ec2 = ec2_backends[ACCOUNT][region]
    base = names.environment_tags(dict(env.tags or {}), env_name, env_id)
    stack_name = names.stack_name(env_id)
    with warnings.catch_warnings():  # moto parses no WaitConditionHandle; nothing to parse
        warnings.simplefilter("ignore", UserWarning)
        stack = cloudformation_backends[ACCOUNT][region].create_stack(
            stack_name, _TEMPLATE, {}, tags=dict(base)
        )

    def tags(logical: str) -> dict[str, str]:
        return {**base, **names.stack_tags(stack_name, stack.stack_id, logical)}

    s3 = s3_backends[ACCOUNT][get_partition(region)]
    bucket = names.bucket_name(region, ACCOUNT)
    if bucket not in s3.buckets:
        s3.create_bucket(bucket, region)
    vpc = ec2.get_default_vpc()
    if vpc is None:
        raise RuntimeError("the sandbox's region has no default VPC")
    subnets = [s.id for s in ec2.describe_subnets(filters={"default-for-az": ["true"]})][:2]
    lb_sg = ec2.create_security_group(
        names.physical_name(env_id, names.BALANCER_GROUP),
        "Load Balancer Security Group",
        vpc.id,
        tags=tags(names.BALANCER_GROUP),
    )
    ec2.authorize_security_group_ingress(lb_sg.id, "tcp", "80", "80", [{"CidrIp": "0.0.0.0/0"}])
    sg = ec2.create_security_group(
        names.physical_name(env_id, names.INSTANCE_GROUP),
        "VPC Security Group",
        vpc.id,
        tags=tags(names.INSTANCE_GROUP),
    )
    ec2.authorize_security_group_ingress(
        sg.id, "tcp", "80", "80", [], source_groups=[{"GroupId": lb_sg.id}]
    )
    data: dict[str, Any] = {
        "ImageId": _image(ec2),
        "InstanceType": INSTANCE_TYPE,
        "SecurityGroupIds": [sg.id],
    }
    options = {
        o.get("OptionName"): o.get("Value") for o in getattr(env, "option_settings", None) or []
    }
    # DisableIMDSv1 (aws:autoscaling:launchconfiguration) makes the template require tokens
    imdsv2 = str(options.get("DisableIMDSv1", "false")).lower() == "true"
    data["MetadataOptions"] = {
        "HttpTokens": "required" if imdsv2 else "optional",
        "HttpEndpoint": "enabled",
    }
    profile = options.get("IamInstanceProfile")
    if profile:
        data["IamInstanceProfile"] = {"Name": profile}
    lt = ec2.create_launch_template(
        names.physical_name(env_id, names.LAUNCH_TEMPLATE),
        "",
        data,
        {"launch-template": tags(names.LAUNCH_TEMPLATE)},
    )
    asg_name = names.physical_name(env_id, names.AUTO_SCALING_GROUP)
    asg_tags: list[dict[str, Any]] = [
        {
            "Key": k,
            "Value": v,
            "PropagateAtLaunch": True,
            "ResourceId": asg_name,
            "ResourceType": "auto-scaling-group",
        }
        for k, v in tags(names.AUTO_SCALING_GROUP).items()
    ]
    asg = autoscaling_backends[ACCOUNT][region].create_auto_scaling_group(
        name=asg_name,
        availability_zones=[],
        desired_capacity=1,
        max_size=4,
        min_size=1,
        launch_config_name="",
        launch_template={"LaunchTemplateId": lt.id, "Version": "$Latest"},
        vpc_zone_identifier=",".join(subnets),
        default_cooldown=None,
        health_check_period=None,
        health_check_type="EC2",
        load_balancers=[],
        target_group_arns=[],  # the target is the app server (module docstring)
        placement_group=None,
        termination_policies=[],
        tags=asg_tags,
    )
    # moto's Auto Scaling launches without the template's metadata options; EC2 applies them
    from moto.ec2.models.instances import MetadataOptions

    for state in asg.instance_states:
        state.instance.metadata_options = MetadataOptions(data["MetadataOptions"])
    elbv2 = elbv2_backends[ACCOUNT][region]
    lb = elbv2.create_load_balancer(
        name=names.balancer_name(env_id),
        security_groups=[lb_sg.id],
        subnet_ids=subnets,
        tags=_tag_list(tags(names.BALANCER)),
    )
    tg = elbv2.create_target_group(
        name=names.target_group_name(env_id),
        protocol="HTTP",
        port=port,
        vpc_id=lb.vpc_id,
        target_type="ip",
        healthcheck_path="/",
        tags=_tag_list(tags(names.TARGET_GROUP)),
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
    cw = cloudwatch_backends[ACCOUNT][region]
    for logical, operator, threshold in (
        (names.ALARM_HIGH, "GreaterThanThreshold", 6000000.0),
        (names.ALARM_LOW, "LessThanThreshold", 2000000.0),
    ):
        cw.put_metric_alarm(
            names.physical_name(env_id, logical),
            "AWS/EC2",
            "NetworkOut",
            operator,
            1,
            300,
            threshold,
            "Average",
            f"ElasticBeanstalk Default Scale {'Up' if logical == names.ALARM_HIGH else 'Down'}"
            " alarm",
            [{"Name": "AutoScalingGroupName", "Value": asg.name}],
            [],
        )
    env.status = "Ready"
    env.health = "Green"
    env.health_status = "Ok"
    return lb.arn, tg.arn


def release_environment(region: str, env_id: str) -> None:
    """Delete what `provision_environment` made for `env_id`, in CloudFormation's order
    (dependents first); the bucket stays, as on AWS."""
    r = find(ACCOUNT, region, env_id)
    ec2, elbv2 = ec2_backends[ACCOUNT][region], elbv2_backends[ACCOUNT][region]
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "alarms",
            partial(cloudwatch_backends[ACCOUNT][region].delete_alarms, [a.name for a in r.alarms]),
        ),
    ]
    if r.auto_scaling_group is not None:  # its instances are terminated with it
        asb = autoscaling_backends[ACCOUNT][region]
        name = r.auto_scaling_group.name
        steps.append((name, partial(asb.delete_auto_scaling_group, name)))
    steps += [(li.arn, partial(elbv2.delete_listener, li.arn)) for li in r.listeners]
    if r.balancer is not None:  # with any listener added to it since
        steps.append((r.balancer.arn, partial(elbv2.delete_load_balancer, r.balancer.arn)))
    if r.target_group is not None:
        arn = r.target_group.arn
        steps.append((arn, partial(elbv2.delete_target_group, arn)))
    if r.launch_template is not None:
        lt = r.launch_template.id
        steps.append((lt, partial(ec2.delete_launch_template, "", lt)))
    for logical in (names.INSTANCE_GROUP, names.BALANCER_GROUP):  # the referring one first
        group = r.groups.get(logical)
        if group is not None:
            steps.append((group.id, partial(ec2.delete_security_group, group_id=group.id)))
    if r.stack is not None:
        cfn = cloudformation_backends[ACCOUNT][region]
        steps.append((r.stack_id, partial(cfn.delete_stack, r.stack_id)))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # gone meanwhile: the rest still goes
            log.warning("releasing %s: %s", what, exc)


def describe(region: str, env: Any) -> dict[str, Any]:
    """DescribeEnvironmentResources' answer: what exists of the environment's resources."""
    r = find(ACCOUNT, region, env.environment_id)
    return {
        "EnvironmentName": env.environment_name,
        "AutoScalingGroups": [{"Name": r.auto_scaling_group.name}]
        if r.auto_scaling_group is not None
        else [],
        "Instances": [{"Id": i} for i in r.instances],
        "LaunchConfigurations": [],
        "LaunchTemplates": [{"Id": r.launch_template.id}] if r.launch_template is not None else [],
        "LoadBalancers": [{"Name": r.balancer.arn}] if r.balancer is not None else [],
        "Triggers": [{"Name": a.name} for a in r.alarms],
        "Queues": [],
    }
