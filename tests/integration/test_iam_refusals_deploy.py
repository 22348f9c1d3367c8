"""Deploys the shipped policy stops, as AWS would, when a part of it is missing: the load
balancer's service-linked role (stage 4, on an account that has none yet) and Elastic
Beanstalk's CloudFormation rights (stage 7). Each test has a sandbox of its own (a fresh
account); the users are made through IAM with the policy the test names."""

from __future__ import annotations

from typing import Any

from tasks.aws.policy import load_policy

from ..support import make_sandbox
from .test_iam_refusals import (
    CFG,
    acting_as,
    deploy_stages,
    service_linked_roles,
    user_with,
    without,
)


def test_stage_4_needs_the_load_balancers_service_linked_role(tmp_path: Any) -> None:
    """A fresh account holds no service-linked role: the first target group creates ELB's,
    with the caller's rights. Without iam:CreateServiceLinkedRole, stage 4 stops, naming
    the action and the role; with the shipped policy the role is created once."""
    with make_sandbox(CFG, env=True) as sb:
        assert service_linked_roles(sb) == set()
        keys = user_with(sb, "no-slr", without(load_policy(), "ServiceLinkedRoles"))
        with acting_as(keys):
            report, message = deploy_stages(tmp_path / "a", "slr-refused", "1-4")
        stage4 = next(r for r in report.stages if r.stage == 4)
        assert stage4.status == "failed", report.stages
        assert "not authorized to perform: iam:CreateServiceLinkedRole on resource: " in message
        assert "AWSServiceRoleForElasticLoadBalancing" in message, message
        assert service_linked_roles(sb) == set()
        # the shipped policy: stage 4 completes and creates ELB's role, once
        report, _ = deploy_stages(tmp_path / "b", "slr-allowed", "1-4")
        assert {r.stage: r.status for r in report.stages if r.stage <= 4} == dict.fromkeys(
            range(1, 5), "completed"
        )
        assert service_linked_roles(sb) == {"AWSServiceRoleForElasticLoadBalancing"}


def test_stage_7_needs_cloudformation_rights(tmp_path: Any) -> None:
    """Elastic Beanstalk builds the environment's stack with the caller's rights: without
    cloudformation:CreateStack stage 7 stops, naming the action and the stack; RDS (stage 8)
    still creates its DB and its service-linked role."""
    with make_sandbox(CFG, env=True) as sb:
        keys = user_with(sb, "no-cfn", without(load_policy(), "BeanstalkStackCreate"))
        with acting_as(keys):
            report, message = deploy_stages(tmp_path, "cfn-refused", "1-8")
        status = {r.stage: r.status for r in report.stages}
        assert status[7] == "failed" and status[8] == "completed", status
        assert "not authorized to perform: cloudformation:CreateStack on resource: " in message
        assert ":stack/awseb-e-" in message, message
        assert "AWSServiceRoleForRDS" in service_linked_roles(sb)
