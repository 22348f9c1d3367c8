"""Elastic Beanstalk with the caller's rights: stage 7 as the operator holding the shipped
policy builds what Beanstalk builds on AWS (its bucket, the CloudFormation stack, security
groups, launch template, Auto Scaling group, balancer, alarms), tagged as Beanstalk and
CloudFormation tag them; TerminateEnvironment removes all of it; a policy without
cloudformation:CreateStack gets InsufficientPrivilegesException naming the action and the
stack. In-process sandboxes, real boto3, no mocks of project code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from sandbox import Sandbox, SandboxConfig
from sandbox import eb_names as names
from sandbox.authz.authorizer import checks_for
from sandbox.authz.evaluate import evaluate
from sandbox.authz.models.eb_caller import CALLER_ACTIONS, is_caller_check
from sandbox.authz.request import Call
from sandbox.moto_patches import ACCOUNT
from tasks.aws import Aws
from tasks.aws.ec2 import TAG_KEY
from tasks.aws.policy import POLICY_PATH
from tasks.deploy.models import BeanstalkResult
from tasks.deploy.stages.s07_elastic_beanstalk import create_beanstalk

from ..support import client, make_sandbox

D = "ebcaller"
CFN = "cloudformation.amazonaws.com"


def _cfg(**kw: Any) -> SandboxConfig:
    return SandboxConfig(
        install_latency=0.05, boot_delay=0.2, eb_launch_seconds=0.3, drop_hold_seconds=2, **kw
    )


@pytest.fixture(scope="module")
def sb() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        # moto attaches AWS managed policies (AWSElasticBeanstalkWebTier, ...) only when it
        # loads them; real IAM always has them
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with make_sandbox(_cfg(), env=True) as s:
            yield s


@pytest.fixture(scope="module")
def settings(sb: Sandbox, tmp_path_factory: Any) -> FleetSettings:
    return FleetSettings(
        state_dir=str(tmp_path_factory.mktemp("ebcaller") / "state"), deployment_name=D
    )


@pytest.fixture(scope="module")
def aws(settings: FleetSettings) -> Aws:
    return Aws(settings)


@pytest.fixture(scope="module")
def stage7(sb: Sandbox, aws: Aws, settings: FleetSettings) -> BeanstalkResult:
    return create_beanstalk(aws, settings, timeout_s=60, poll_s=0.2)


@pytest.fixture(scope="module")
def env(sb: Sandbox, stage7: BeanstalkResult) -> dict[str, Any]:
    eb = client(sb, "elasticbeanstalk")
    (found,) = eb.describe_environments(EnvironmentNames=[stage7.environment])["Environments"]
    return dict(found)


def _tags(raw: list[dict[str, Any]]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in raw}


def _propagated(env: dict[str, Any]) -> dict[str, str]:
    """What every resource Beanstalk's stack makes carries (besides CloudFormation's)."""
    return {
        TAG_KEY: D,
        "tomcat-fleet:role": "env",
        "elasticbeanstalk:environment-name": env["EnvironmentName"],
        "elasticbeanstalk:environment-id": env["EnvironmentId"],
        "Name": env["EnvironmentName"],
    }


def _stack_tags_of(tags: dict[str, str], stack: str, logical: str) -> None:
    assert tags["aws:cloudformation:stack-name"] == stack
    assert tags["aws:cloudformation:logical-id"] == logical
    assert tags["aws:cloudformation:stack-id"].split("/")[1] == stack


def built(sb: Sandbox, env_id: str) -> dict[str, list[str]]:
    """Everything of environment `env_id` that exists, through the admin's API."""
    stack = names.stack_name(env_id)
    ec2, elb = client(sb, "ec2"), client(sb, "elbv2")
    flt = [{"Name": "tag:aws:cloudformation:stack-name", "Values": [stack]}]
    out: dict[str, list[str]] = {}
    stacks = client(sb, "cloudformation").list_stacks()["StackSummaries"]
    out["stacks"] = [
        s["StackId"]
        for s in stacks
        if s["StackName"] == stack and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    groups = client(sb, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    out["auto-scaling-groups"] = [
        g["AutoScalingGroupName"] for g in groups if g["AutoScalingGroupName"].startswith(stack)
    ]
    out["instances"] = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=flt)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    out["security-groups"] = [
        g["GroupId"] for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]
    ]
    out["launch-templates"] = [
        t["LaunchTemplateId"]
        for t in ec2.describe_launch_templates()["LaunchTemplates"]
        if t["LaunchTemplateName"].startswith(stack)
    ]
    out["load-balancers"] = [
        lb["LoadBalancerArn"]
        for lb in elb.describe_load_balancers()["LoadBalancers"]
        if lb["LoadBalancerName"] == names.balancer_name(env_id)
    ]
    out["target-groups"] = [
        tg["TargetGroupArn"]
        for tg in elb.describe_target_groups()["TargetGroups"]
        if tg["TargetGroupName"] == names.target_group_name(env_id)
    ]
    alarms = client(sb, "cloudwatch").describe_alarms(AlarmNamePrefix=stack)["MetricAlarms"]
    out["alarms"] = [a["AlarmName"] for a in alarms]
    return out


# -- the shipped policy: stage 7 builds what Beanstalk builds, tagged ---------------------
def test_stage7_with_the_shipped_policy_builds_the_stack_and_its_resources(
    sb: Sandbox, stage7: BeanstalkResult, env: dict[str, Any]
) -> None:
    env_id = env["EnvironmentId"]
    assert env["Status"] == "Ready"
    assert env_id == names.environment_id(env["EnvironmentArn"])
    have = built(sb, env_id)
    assert {k: len(v) for k, v in have.items()} == {
        "stacks": 1,
        "auto-scaling-groups": 1,
        "instances": 1,  # the group's desired capacity
        "security-groups": 2,  # the balancer's and the instances'
        "launch-templates": 1,
        "load-balancers": 1,
        "target-groups": 1,
        "alarms": 2,
    }, have
    assert have["load-balancers"] == [stage7.load_balancer_arn]
    assert names.balancer_name(env_id).startswith("awseb-AWSEB-")
    client(sb, "s3").head_bucket(Bucket=f"elasticbeanstalk-{sb.cfg.region}-{ACCOUNT}")
    roles = [r["RoleName"] for r in client(sb, "iam").list_roles()["Roles"]]
    assert "AWSServiceRoleForAutoScaling" in roles  # created on the caller's behalf

    # what Elastic Beanstalk answers the operator (its own rights, through the caller's)
    res = operator_eb(sb).describe_environment_resources(EnvironmentId=env_id)
    resources = res["EnvironmentResources"]
    assert [g["Name"] for g in resources["AutoScalingGroups"]] == have["auto-scaling-groups"]
    assert [i["Id"] for i in resources["Instances"]] == have["instances"]
    assert [t["Id"] for t in resources["LaunchTemplates"]] == have["launch-templates"]
    assert [lb["Name"] for lb in resources["LoadBalancers"]] == have["load-balancers"]
    assert sorted(t["Name"] for t in resources["Triggers"]) == sorted(have["alarms"])


def operator_eb(sb: Sandbox) -> Any:
    """Elastic Beanstalk as the operator (the env file's keys: the shipped policy)."""
    import boto3

    env = sb.env()
    return boto3.client(
        "elasticbeanstalk",
        endpoint_url=sb.endpoint,
        region_name=sb.cfg.region,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def test_resources_carry_the_environment_and_cloudformation_tags(
    sb: Sandbox, env: dict[str, Any]
) -> None:
    env_id, want = env["EnvironmentId"], _propagated(env)
    stack = names.stack_name(env_id)
    ec2, elb = client(sb, "ec2"), client(sb, "elbv2")
    have = built(sb, env_id)

    (st,) = client(sb, "cloudformation").describe_stacks(StackName=stack)["Stacks"]
    assert _tags(st["Tags"]) == want  # what Beanstalk gives the stack
    checked = 0
    for g in ec2.describe_security_groups(GroupIds=have["security-groups"])["SecurityGroups"]:
        tags = _tags(g["Tags"])
        assert want.items() <= tags.items()
        _stack_tags_of(tags, stack, g["GroupName"].split("-")[4])
        checked += 1
    (lt,) = ec2.describe_launch_templates(LaunchTemplateIds=have["launch-templates"])[
        "LaunchTemplates"
    ]
    assert want.items() <= _tags(lt["Tags"]).items()
    _stack_tags_of(_tags(lt["Tags"]), stack, names.LAUNCH_TEMPLATE)
    (group,) = client(sb, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=have["auto-scaling-groups"]
    )["AutoScalingGroups"]
    assert group["DesiredCapacity"] == 1
    assert all(t["PropagateAtLaunch"] for t in group["Tags"])
    assert want.items() <= _tags(group["Tags"]).items()
    (instance,) = [
        i
        for r in ec2.describe_instances(InstanceIds=have["instances"])["Reservations"]
        for i in r["Instances"]
    ]
    tags = _tags(instance["Tags"])
    assert want.items() <= tags.items()
    _stack_tags_of(tags, stack, names.AUTO_SCALING_GROUP)
    assert tags["aws:autoscaling:groupName"] == group["AutoScalingGroupName"]
    assert {g["GroupId"] for g in instance["SecurityGroups"]} < set(have["security-groups"])
    arns = have["load-balancers"] + have["target-groups"]
    for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]:
        assert want.items() <= _tags(d["Tags"]).items()
        checked += 1
    (listener,) = elb.describe_listeners(LoadBalancerArn=have["load-balancers"][0])["Listeners"]
    assert listener["Port"] == 80
    # CloudFormation cannot tag a listener
    assert (
        elb.describe_tags(ResourceArns=[listener["ListenerArn"]])["TagDescriptions"][0]["Tags"]
        == []
    )
    assert checked == 4


def test_checks_carry_who_calls_on_whose_behalf(sb: Sandbox, env: dict[str, Any]) -> None:
    """Beanstalk's own calls: aws:ViaAWSService without aws:CalledVia; CloudFormation's:
    aws:CalledVia too; every action one of the documented set."""
    create = {
        "ApplicationName": env["ApplicationName"],
        "EnvironmentName": f"{D}-other-env",
        "Tags": [{"Key": TAG_KEY, "Value": D}],
    }
    by_id = {"EnvironmentId": env["EnvironmentId"]}
    shipped = json.loads(POLICY_PATH.read_text())
    for action, params in (
        ("CreateEnvironment", create),
        ("DescribeEnvironmentResources", by_id),
        ("TerminateEnvironment", by_id),
    ):
        call = Call(
            prefix="elasticbeanstalk",
            action=action,
            params=params,
            account=ACCOUNT,
            region=sb.cfg.region,
            principal=sb.operator.arn,
        )
        checks = sb._locked(lambda call=call: checks_for(call)).items
        caller = [ch for ch in checks if is_caller_check(ch.why)]
        used = {ch.action for ch in caller}
        if action == "CreateEnvironment":  # the bucket and the Auto Scaling role exist now
            assert used == set(CALLER_ACTIONS[call.name]) - {
                "s3:CreateBucket",
                "iam:CreateServiceLinkedRole",
            }
        else:
            assert used == set(CALLER_ACTIONS[call.name])
        for ch in caller:
            assert ch.context["aws:ViaAWSService"] == ("true",), ch
            direct = action == "DescribeEnvironmentResources" or ch.action.startswith(
                ("cloudformation:", "s3:")
            )
            assert ch.context.get("aws:CalledVia") == (None if direct else (CFN,)), ch
            if ch.action in ("cloudformation:CreateStack", "autoscaling:CreateAutoScalingGroup"):
                assert ch.context[f"aws:RequestTag/{TAG_KEY}"] == (D,), ch
            if ch.action == "elasticloadbalancing:DeleteListener":
                # CloudFormation cannot tag the listener: the policy deletes Beanstalk's
                # only through CloudFormation
                assert not [k for k in ch.context if k.startswith("aws:ResourceTag/")]
                assert evaluate([shipped], ch).statement == "BeanstalkListeners"


# -- terminate removes all of it, as the operator -------------------------------------------
def test_terminate_removes_every_resource_beanstalk_created(
    sb: Sandbox, env: dict[str, Any], stage7: BeanstalkResult
) -> None:
    env_id = env["EnvironmentId"]
    instance = built(sb, env_id)["instances"][0]
    operator_eb(sb).terminate_environment(EnvironmentId=env_id)
    (after,) = client(sb, "elasticbeanstalk").describe_environments(EnvironmentIds=[env_id])[
        "Environments"
    ]
    assert after["Status"] == "Terminated"
    assert built(sb, env_id) == {k: [] for k in built(sb, env_id)}
    state = client(sb, "ec2").describe_instances(InstanceIds=[instance])["Reservations"]
    assert state[0]["Instances"][0]["State"]["Name"] == "terminated"
    # Beanstalk's bucket stays, as on AWS
    client(sb, "s3").head_bucket(Bucket=f"elasticbeanstalk-{sb.cfg.region}-{ACCOUNT}")
    sb.wait_settled()
    assert instance not in {h["instance_id"] for h in sb.state()["hosts"]}


# -- a policy without cloudformation:CreateStack ---------------------------------------------
def test_without_create_stack_create_environment_is_insufficient_privileges(
    tmp_path: Path,
) -> None:
    policy = json.loads(POLICY_PATH.read_text())
    for st in policy["Statement"]:
        st["Action"] = [a for a in st["Action"] if a != "cloudformation:CreateStack"]
    policy["Statement"] = [st for st in policy["Statement"] if st["Action"]]
    path = tmp_path / "no-create-stack.json"
    path.write_text(json.dumps(policy))
    settings = FleetSettings(state_dir=str(tmp_path / "state"), deployment_name="ebnostack")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with make_sandbox(_cfg(operator_policy_path=str(path)), env=True) as s:
            with pytest.raises(ClientError) as err:
                create_beanstalk(Aws(settings), settings, timeout_s=30, poll_s=0.2)
            error = err.value.response
            env_arn = (
                f"arn:aws:elasticbeanstalk:{s.cfg.region}:{ACCOUNT}:environment/"
                "ebnostack-app/ebnostack-env"
            )
            stack = names.stack_name(names.environment_id(env_arn))
            assert error["Error"]["Code"] == "InsufficientPrivilegesException"
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
            message = error["Error"]["Message"]
            assert "cloudformation:CreateStack" in message
            assert f"arn:aws:cloudformation:{s.cfg.region}:{ACCOUNT}:stack/{stack}/*" in message
            envs = client(s, "elasticbeanstalk").describe_environments()["Environments"]
            assert not [e for e in envs if e["EnvironmentName"] == "ebnostack-env"]
            assert client(s, "cloudformation").list_stacks()["StackSummaries"] == []
