"""The AMI to launch, per region: the SSM public parameter Canonical publishes for Ubuntu
22.04, read through the project's retrying client (the sandbox serves it too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.aws import Aws

UBUNTU_2204_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
)


def public_parameter_arn(name: str = UBUNTU_2204_PARAMETER, region: str = "*") -> str:
    """A public parameter's ARN (no account id), as IAM policies name it."""
    return f"arn:aws:ssm:{region}::parameter{name}"


def ubuntu_ami(aws: Aws, parameter: str = UBUNTU_2204_PARAMETER) -> str:
    """The current Ubuntu 22.04 amd64 AMI id of the client's region."""
    res = aws.client("ssm").get_parameter(Name=parameter)
    return str(res["Parameter"]["Value"])
