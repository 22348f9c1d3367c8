"""What Elastic Beanstalk does with the caller's rights: the sandbox checks the set the
shipped policy grants (sandbox.authz.models.eb_caller keeps its own copy: the sandbox never
imports the product)."""

from __future__ import annotations

from sandbox.authz.models.eb_caller import CALLER_ACTIONS, WHY, is_caller_check
from sandbox.authz.reference import reference
from tasks.aws.grants import BEANSTALK_CALLER_ACTIONS, IMPLIED_ACTIONS


def test_the_sandbox_checks_the_documented_set() -> None:
    assert CALLER_ACTIONS == BEANSTALK_CALLER_ACTIONS


def test_the_policy_grants_every_action_beanstalk_takes() -> None:
    for call, actions in CALLER_ACTIONS.items():
        assert set(actions) <= set(IMPLIED_ACTIONS[call]), call


def test_every_action_is_in_the_reference() -> None:
    ref = reference()
    for actions in CALLER_ACTIONS.values():
        for action in actions:
            prefix, name = action.split(":")
            assert ref.has_action(prefix, name), action


def test_caller_checks_are_recognised_by_their_why() -> None:
    assert is_caller_check(f"{WHY}, through CloudFormation: AWSEBAutoScalingGroup")
    assert not is_caller_check("tags on create")


def test_checks_made_on_the_callers_behalf_say_who_made_them() -> None:
    from sandbox.authz.checks import BY_SERVICE, VIA_CLOUDFORMATION, Checks
    from sandbox.authz.evaluate import evaluate
    from sandbox.authz.request import Call

    account = "123456789012"
    call = Call(
        prefix="elasticbeanstalk",
        action="CreateEnvironment",
        params={},
        account=account,
        region="us-east-1",
        principal=f"arn:aws:iam::{account}:user/operator",
    )
    c = Checks(call)
    alarm = c.arn("alarm", "cloudwatch", AlarmName="awseb-e-1-stack-AWSEBCloudwatchAlarmHigh-X")
    c.add(
        "stack",
        c.arn("stack", "cloudformation"),
        action="cloudformation:CreateStack",
        via=BY_SERVICE,
    )
    with c.on_behalf(VIA_CLOUDFORMATION, WHY):
        c.add("alarm", alarm, action="cloudwatch:PutMetricAlarm", why="AWSEBCloudwatchAlarmHigh")
    c.add("alarm", alarm, action="cloudwatch:PutMetricAlarm")  # the caller itself
    direct, through_cfn, itself = c.items
    assert direct.context["aws:ViaAWSService"] == ("true",)
    assert "aws:CalledVia" not in direct.context
    assert through_cfn.context["aws:CalledVia"] == ("cloudformation.amazonaws.com",)
    assert through_cfn.context["aws:ViaAWSService"] == ("true",)
    assert through_cfn.why == f"{WHY}: AWSEBCloudwatchAlarmHigh"
    assert is_caller_check(through_cfn.why) and not is_caller_check(itself.why)
    assert not {"aws:CalledVia", "aws:ViaAWSService"} & set(itself.context)

    only_via_cfn = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricAlarm",
                "Resource": "arn:aws:cloudwatch:*:*:alarm:awseb-e-*",
                "Condition": {
                    "ForAnyValue:StringEquals": {"aws:CalledVia": "cloudformation.amazonaws.com"}
                },
            }
        ],
    }
    assert evaluate([only_via_cfn], through_cfn).allowed
    assert not evaluate([only_via_cfn], itself).allowed
