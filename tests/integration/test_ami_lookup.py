"""The AMI is the region's Ubuntu 22.04 from the SSM public parameter unless given; the
sandbox serves that parameter (and the image) the way AWS does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blocks.settings import FleetSettings
from sandbox import Sandbox, SandboxConfig
from tasks.aws import Aws
from tasks.aws.ssm import UBUNTU_2204_PARAMETER, public_parameter_arn, ubuntu_ami

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
