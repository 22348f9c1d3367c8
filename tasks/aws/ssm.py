"""The AMI to launch, per region: the SSM public parameter the recipe names (Canonical's
Ubuntu 22.04, Amazon Linux 2023; blocks/recipes.py), read through the project's retrying
client (the sandbox serves both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blocks.recipes import AL2023, UBUNTU_2204

if TYPE_CHECKING:
    from tasks.aws import Aws

UBUNTU_2204_PARAMETER = UBUNTU_2204.ami_parameter
AL2023_PARAMETER = AL2023.ami_parameter


def public_parameter_arn(name: str = UBUNTU_2204_PARAMETER, region: str = "*") -> str:
    """A public parameter's ARN (no account id), as IAM policies name it."""
    return f"arn:aws:ssm:{region}::parameter{name}"


def latest_ami(aws: Aws, parameter: str) -> str:
    """The current AMI id the public parameter names in the client's region."""
    res = aws.client("ssm").get_parameter(Name=parameter)
    return str(res["Parameter"]["Value"])


def ubuntu_ami(aws: Aws, parameter: str = UBUNTU_2204_PARAMETER) -> str:
    """The current Ubuntu 22.04 amd64 AMI id of the client's region."""
    return latest_ami(aws, parameter)
