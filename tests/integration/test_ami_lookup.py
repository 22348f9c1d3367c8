"""The AMI is the region's image of the recipe (Ubuntu 22.04, Amazon Linux 2023) from its SSM
public parameter unless given; the sandbox serves both parameters (and the images) the way
AWS does, and reads them only as the shipped policy allows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from sandbox import Sandbox, SandboxConfig
from sandbox.ssm_seed import AL2023_AMI
from tasks.aws import Aws
from tasks.aws.policy import POLICY_PATH
from tasks.aws.ssm import (
    AL2023_PARAMETER,
    UBUNTU_2204_PARAMETER,
    latest_ami,
    public_parameter_arn,
    ubuntu_ami,
)

from ..support import client, make_sandbox


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with make_sandbox(SandboxConfig(region="eu-west-1"), env=True) as s:
        yield s


def test_sandbox_serves_the_ubuntu_parameter_and_its_image(sb: Sandbox) -> None:
    value = client(sb, "ssm").get_parameter(Name=UBUNTU_2204_PARAMETER)["Parameter"]["Value"]
    (image,) = client(sb, "ec2").describe_images(ImageIds=[value])["Images"]
    assert "22.04" in image["Name"] and image["OwnerId"] == "099720109477"


def test_ami_is_looked_up_in_the_region_unless_given(sb: Sandbox) -> None:
    settings = FleetSettings(deployment_name="amitest")
    assert settings.ami_id is None and settings.region == "eu-west-1"
    ami = ubuntu_ami(Aws(settings))
    assert ami.startswith("ami-")
    assert FleetSettings(ami_id="ami-12345678").ami_id == "ami-12345678"


def test_public_parameter_arn_has_no_account() -> None:
    assert public_parameter_arn(region="us-east-1") == (
        "arn:aws:ssm:us-east-1::parameter" + UBUNTU_2204_PARAMETER
    )


def test_sandbox_serves_the_al2023_parameter_and_its_image(sb: Sandbox) -> None:
    value = client(sb, "ssm").get_parameter(Name=AL2023_PARAMETER)["Parameter"]["Value"]
    assert value == AL2023_AMI
    (image,) = client(sb, "ec2").describe_images(ImageIds=[value])["Images"]
    assert image["Name"].startswith("al2023-ami-2023.") and "kernel-6.1-x86_64" in image["Name"]
    assert image["OwnerId"] == "137112412989"


def test_operator_reads_the_recipes_parameter(sb: Sandbox) -> None:
    """As the operator (the shipped policy): the al2023 recipe's lookup is allowed."""
    settings = FleetSettings(deployment_name="amitest", recipe="al2023")
    assert latest_ami(Aws(settings), settings.os_recipe.ami_parameter) == AL2023_AMI


def test_al2023_parameter_refused_without_its_grant(tmp_path: Path) -> None:
    """The shipped policy less the AL2023 parameter: AWS's AccessDeniedException naming the
    action and the parameter; the Ubuntu one still reads."""
    policy = json.loads(POLICY_PATH.read_text())
    (st,) = [st for st in policy["Statement"] if st["Sid"] == "SsmAmiParameter"]
    st["Resource"] = [r for r in st["Resource"] if "al2023" not in r]
    assert st["Resource"]
    path = tmp_path / "no-al2023.json"
    path.write_text(json.dumps(policy))
    with make_sandbox(SandboxConfig(operator_policy_path=str(path)), env=True):
        settings = FleetSettings(deployment_name="amitest", recipe="al2023")
        with pytest.raises(ClientError) as err:
            latest_ami(Aws(settings), AL2023_PARAMETER)
        error = err.value.response["Error"]
        assert error["Code"] == "AccessDeniedException"
        assert "ssm:GetParameter" in error["Message"] and AL2023_PARAMETER in error["Message"]
        assert ubuntu_ami(Aws(settings)).startswith("ami-")
