"""What Elastic Beanstalk does with the caller's rights.

On AWS Elastic Beanstalk builds, describes and removes an environment with the caller's
credentials (AWS: "Elastic Beanstalk user policies"; the AWS managed policy
AdministratorAccess-AWSElasticBeanstalk): directly for its bucket and the environment's
CloudFormation stack (`aws:ViaAWSService` true, no `aws:CalledVia`: IAM does not record
Elastic Beanstalk there), and through CloudFormation (`aws:CalledVia`
cloudformation.amazonaws.com) for the stack's resources, which carry the environment's tags
and Elastic Beanstalk's (`sandbox.eb_names`). AWS finds a refusal when CloudFormation
fails, and reports it in the environment's events; the sandbox checks every action at the
call, and refuses the call with InsufficientPrivilegesException (`sandbox.iamauth`), naming
the action and the resource.

`CALLER_ACTIONS` is the documented set, per call: what the checks below may use. The
shipped policy grants the same set (`tasks.aws.grants.BEANSTALK_CALLER_ACTIONS`; a unit test
keeps the two equal). The resources are the ones the sandbox builds (`sandbox.beanstalk`):
at CreateEnvironment by their names (known from the environment's id, as Elastic Beanstalk
knows them when it calls CloudFormation; ids AWS has not assigned yet are `*`), at
TerminateEnvironment the ones that exist, with their tags.
"""

from __future__ import annotations

from typing import Any

import sandbox.authz.models.elb as elb
import sandbox.eb_names as names

from ..checks import BY_SERVICE, VIA_CLOUDFORMATION, Checks, tags_of
from ..slr import need_service_linked_role

WHY = "Elastic Beanstalk with the caller's rights"
_DIRECT = f"{WHY}, directly"
_VIA_CFN = f"{WHY}, through CloudFormation"

CALLER_ACTIONS: dict[str, tuple[str, ...]] = {
    "elasticbeanstalk:CreateEnvironment": (
        "s3:CreateBucket",
        "s3:PutObject",
        "s3:GetObject",
        "cloudformation:CreateStack",
        "cloudformation:DescribeStacks",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateTags",
        "ec2:CreateLaunchTemplate",
        "ec2:RunInstances",
        "autoscaling:CreateAutoScalingGroup",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:AddTags",
        "cloudwatch:PutMetricAlarm",
        "iam:CreateServiceLinkedRole",
    ),
    "elasticbeanstalk:TerminateEnvironment": (
        "cloudformation:DeleteStack",
        "autoscaling:DeleteAutoScalingGroup",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteLaunchTemplate",
        "cloudwatch:DeleteAlarms",
    ),
    "elasticbeanstalk:DescribeEnvironmentResources": (
        "cloudformation:DescribeStackResources",
        "autoscaling:DescribeAutoScalingGroups",
        "elasticloadbalancing:DescribeLoadBalancers",
        "ec2:DescribeInstances",
    ),
}


def is_caller_check(why: str) -> bool:
    """Was the check made by Elastic Beanstalk with the caller's rights?"""
    return why.startswith(WHY)


def _find(c: Checks, env_id: str) -> Any:
    from ...beanstalk import find

    return find(c.call.account, c.call.region, env_id)


def _ec2(c: Checks) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[c.call.account][c.call.region]


def _ec2_tags(c: Checks, resource_id: str) -> dict[str, str]:
    return tags_of(_ec2(c).tags.get(resource_id, {}))


def _stack_arn(c: Checks, env_id: str, found: Any) -> str:
    return found.stack_id or c.arn("stack", "cloudformation", StackName=names.stack_name(env_id))


def create_environment(c: Checks, app: str, env: str) -> None:
    """The environment's bucket, stack and the stack's resources, as Elastic Beanstalk and
    CloudFormation create them with the caller's rights."""
    env_arn = c.arn("environment", "elasticbeanstalk", ApplicationName=app, EnvironmentName=env)
    env_id = names.environment_id(env_arn)
    found = _find(c, env_id)
    tags = names.environment_tags(c.call.tags(), env, env_id)
    stack = names.stack_name(env_id)

    def created_tags(logical: str) -> dict[str, str]:  # a new resource's, once created
        return {**tags, **names.stack_tags(stack, "", logical)}

    with c.on_behalf(BY_SERVICE, _DIRECT):
        if not found.bucket_exists:
            bucket = c.arn("bucket", "s3", BucketName=found.bucket)
            c.add("bucket", bucket, action="s3:CreateBucket", why="its storage bucket")
        objects = c.arn(
            "object",
            "s3",
            BucketName=found.bucket,
            ObjectName=names.objects_prefix(env_id) + "*",
        )
        for action in ("s3:PutObject", "s3:GetObject"):
            c.add("object", objects, action=action, why="the environment's files")
        stack_arn = _stack_arn(c, env_id, found)
        c.add(
            "stack",
            stack_arn,
            action="cloudformation:CreateStack",
            request_tags=tags,
            why="the environment's stack",
        )
        c.add("stack", stack_arn, action="cloudformation:DescribeStacks", why="stack events")
    with c.on_behalf(VIA_CLOUDFORMATION, _VIA_CFN):
        _create_groups(c, tags, created_tags)
        _create_instances(c, env_id, tags, created_tags(names.LAUNCH_TEMPLATE))
        lb = elb.load_balancer_checks(c, names.balancer_name(env_id), tags)
        elb.target_group_checks(c, names.target_group_name(env_id), tags)
        # CloudFormation cannot tag a listener: none asked for, so no AddTags
        elb.listener_checks(c, lb, {}, lb_tags=created_tags(names.BALANCER))
        for logical in names.ALARMS:
            alarm = c.arn("alarm", "cloudwatch", AlarmName=names.physical_name(env_id, logical))
            c.add("alarm", alarm, action="cloudwatch:PutMetricAlarm", why=logical)


def _create_groups(c: Checks, tags: dict[str, str], created_tags: Any) -> None:
    """The balancer's and the instances' security groups, each with its ingress rule."""
    group = c.arn("security-group", "ec2")  # its id: not assigned yet
    vpc = _ec2(c).get_default_vpc()
    for logical in names.GROUPS:
        c.add(
            "security-group",
            group,
            action="ec2:CreateSecurityGroup",
            request_tags=tags,
            why=logical,
        )
        if vpc is not None:
            c.add(
                "vpc",
                c.arn("vpc", "ec2", VpcId=vpc.id),
                action="ec2:CreateSecurityGroup",
                resource_tags=_ec2_tags(c, vpc.id),
                why=f"{logical} in the default VPC",
            )
        c.add(
            "security-group",
            group,
            action="ec2:CreateTags",
            request_tags=tags,
            keys={"ec2:CreateAction": ["CreateSecurityGroup"]},
            why=f"{logical}: tags on create",
        )
        c.add(
            "security-group",
            group,
            action="ec2:AuthorizeSecurityGroupIngress",
            resource_tags=created_tags(logical),
            why=f"{logical}: port 80",
        )


def _create_instances(
    c: Checks, env_id: str, tags: dict[str, str], template_tags: dict[str, str]
) -> None:
    """The launch template, and the Auto Scaling group launching from it: Auto Scaling
    checks the caller may run instances from the template."""
    template = c.arn("launch-template", "ec2")  # its id: not assigned yet
    c.add(
        "launch-template",
        template,
        action="ec2:CreateLaunchTemplate",
        request_tags=tags,
        why=names.LAUNCH_TEMPLATE,
    )
    c.add(
        "launch-template",
        template,
        action="ec2:CreateTags",
        request_tags=tags,
        keys={"ec2:CreateAction": ["CreateLaunchTemplate"]},
        why=f"{names.LAUNCH_TEMPLATE}: tags on create",
    )
    group = names.physical_name(env_id, names.AUTO_SCALING_GROUP)
    c.add(
        "launch-template",
        template,
        action="ec2:RunInstances",
        resource_tags=template_tags,
        why=f"Auto Scaling group {group} launches from the template",
    )
    c.add(
        "instance",
        c.arn("instance", "ec2"),
        action="ec2:RunInstances",
        request_tags=tags,
        why=f"Auto Scaling group {group} launches instances with its tags",
    )
    c.add(
        "autoScalingGroup",
        c.arn("autoScalingGroup", "autoscaling", GroupFriendlyName=group),
        action="autoscaling:CreateAutoScalingGroup",
        request_tags=tags,
        why=names.AUTO_SCALING_GROUP,
    )
    need_service_linked_role(c, "autoscaling.amazonaws.com")


def terminate_environment(c: Checks, env: Any) -> None:
    """The stack's deletion and, through CloudFormation, of each resource it holds."""
    if env.status in ("Terminating", "Terminated"):
        return  # Elastic Beanstalk does nothing more
    found = _find(c, env.environment_id)
    if found.stack is not None:
        stack_tags = tags_of(found.stack.tags)
    else:  # not provisioned yet: the stack it is about to have
        stack_tags = names.environment_tags(
            tags_of(env.tags), env.environment_name, env.environment_id
        )
    with c.on_behalf(BY_SERVICE, _DIRECT):
        c.add(
            "stack",
            _stack_arn(c, env.environment_id, found),
            action="cloudformation:DeleteStack",
            resource_tags=stack_tags,
            why="the environment's stack",
        )
    with c.on_behalf(VIA_CLOUDFORMATION, _VIA_CFN):
        from moto.cloudwatch.models import cloudwatch_backends

        cw = cloudwatch_backends[c.call.account][c.call.region]
        for alarm in found.alarms:
            c.add(
                "alarm",
                alarm.alarm_arn,
                action="cloudwatch:DeleteAlarms",
                resource_tags=tags_of(cw.tagger.get_tag_dict_for_resource(alarm.alarm_arn)),
            )
        asg = found.auto_scaling_group
        if asg is not None:
            c.add(
                "autoScalingGroup",
                asg.arn,
                action="autoscaling:DeleteAutoScalingGroup",
                resource_tags=tags_of(asg.tags),
            )
        for listener in found.listeners:
            _elb_delete(c, "DeleteListener", listener.arn)
        if found.balancer is not None:
            _elb_delete(c, "DeleteLoadBalancer", found.balancer.arn)
        if found.target_group is not None:
            _elb_delete(c, "DeleteTargetGroup", found.target_group.arn)
        if found.launch_template is not None:
            lt = found.launch_template.id
            c.add(
                "launch-template",
                c.arn("launch-template", "ec2", LaunchTemplateId=lt),
                action="ec2:DeleteLaunchTemplate",
                resource_tags=_ec2_tags(c, lt),
            )
        for group in found.groups.values():
            c.add(
                "security-group",
                c.arn("security-group", "ec2", SecurityGroupId=group.id),
                action="ec2:DeleteSecurityGroup",
                resource_tags=_ec2_tags(c, group.id),
            )


def _elb_delete(c: Checks, action: str, arn: str) -> None:
    c.add(
        elb.rtype_of(arn),
        arn,
        action=f"elasticloadbalancing:{action}",
        resource_tags=elb.resource_tags(c, arn),
    )


def describe_environment_resources(c: Checks, env: Any) -> None:
    """Elastic Beanstalk reads the stack's resources and describes the group, the balancer
    and the instances (the last three: no resource, `*`)."""
    found = _find(c, env.environment_id)
    with c.on_behalf(BY_SERVICE, _DIRECT):
        c.add(
            "stack",
            _stack_arn(c, env.environment_id, found),
            action="cloudformation:DescribeStackResources",
            resource_tags=tags_of(found.stack.tags) if found.stack is not None else {},
        )
        for action in (
            "autoscaling:DescribeAutoScalingGroups",
            "elasticloadbalancing:DescribeLoadBalancers",
            "ec2:DescribeInstances",
        ):
            c.unscoped(action=action)
