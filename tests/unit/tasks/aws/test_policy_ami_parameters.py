"""The shipped policy reads the AMI parameter of every recipe, and nothing else of SSM."""

from __future__ import annotations

import pytest

from blocks.recipes import RECIPES
from tasks.aws.policy import PARTITIONS, load_policy, policy_document, shipped_operations


@pytest.mark.parametrize("partition", PARTITIONS)
def test_every_recipes_ami_parameter_is_readable(partition: str) -> None:
    doc = policy_document(shipped_operations(), partition=partition)
    ssm = [st for st in doc["Statement"] if any(a.startswith("ssm:") for a in st["Action"])]
    assert [st["Sid"] for st in ssm] == ["SsmAmiParameter"]
    assert ssm[0]["Action"] == ["ssm:GetParameter"]
    assert ssm[0]["Resource"] == [
        f"arn:{partition}:ssm:*::parameter{r.ami_parameter}" for r in RECIPES.values()
    ]


def test_docs_policy_is_the_generated_one() -> None:
    assert load_policy() == policy_document(shipped_operations())
