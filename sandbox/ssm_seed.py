"""Public SSM parameters AWS serves and moto does not (or not with an image it describes):
the Ubuntu 22.04 and Amazon Linux 2023 AMI ids, and the images they name.

On AWS `/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id`
names the current Ubuntu 22.04 image of each region and
`/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64` the current Amazon
Linux 2023 one. moto serves only Amazon Linux and ECS ones (with image ids it does not
describe), and refuses `put_parameter` under `/aws`, so the sandbox puts both into moto's
backend at start, each with a matching image moto then describes (the publisher's owner id,
a us-east-1 id). `IMAGES` tells the fleet which system an instance launched from each image
runs: its shell and its SSH login user.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Image:
    ami: str
    name: str
    description: str
    owner: str
    parameter: str
    os: str  # HostState.os: "ubuntu-22.04" or "al2023"
    login_user: str


UBUNTU_2204_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
)
UBUNTU_2204_AMI = "ami-0c7217cdde317cfec"
UBUNTU_2204_NAME = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20231207"
CANONICAL_OWNER = "099720109477"
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
AL2023_AMI = "ami-0453ec754f44f9a4a"
AL2023_NAME = "al2023-ami-2023.6.20241121.0-kernel-6.1-x86_64"
AMAZON_OWNER = "137112412989"

UBUNTU_2204 = Image(
    UBUNTU_2204_AMI,
    UBUNTU_2204_NAME,
    "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image",
    CANONICAL_OWNER,
    UBUNTU_2204_PARAMETER,
    "ubuntu-22.04",
    "ubuntu",
)
AL2023 = Image(
    AL2023_AMI,
    AL2023_NAME,
    "Amazon Linux 2023 AMI 2023.6.20241121.0 x86_64 HVM kernel-6.1",
    AMAZON_OWNER,
    AL2023_PARAMETER,
    "al2023",
    "ec2-user",
)
IMAGES: dict[str, Image] = {UBUNTU_2204_AMI: UBUNTU_2204, AL2023_AMI: AL2023}


def image_of(ami: str | None) -> Image:
    """The system an instance launched from `ami` runs (any other image: Ubuntu's, as
    before the sandbox knew two)."""
    return IMAGES.get(ami or "", UBUNTU_2204)


def seed(account_id: str, region: str) -> None:
    """Register the images in moto's EC2 backend and the parameters in its SSM backend.
    Call under the API lock (moto's backends are not thread-safe)."""
    from moto.core.utils import utcnow
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ssm.models import Parameter, ssm_backends

    ec2 = ec2_backends[account_id][region]
    params = ssm_backends[account_id][region]._parameters
    for image in IMAGES.values():
        if image.ami not in ec2.amis:
            ec2.amis[image.ami] = Ami(
                ec2,
                image.ami,
                name=image.name,
                description=image.description,
                owner_id=image.owner,
                public=True,
                virtualization_type="hvm",
                architecture="x86_64",
                root_device_type="ebs",
                region_name=region,
            )
        versions = params[image.parameter]  # getitem: moto loads its Amazon Linux ones here
        if versions and versions[-1].value == image.ami:
            continue
        versions.append(
            Parameter(  # type: ignore[abstract]
                account_id=account_id,
                name=image.parameter,
                value=image.ami,
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=utcnow(),
                version=(versions[-1].version + 1) if versions else 1,
                data_type="aws:ec2:image",
            )
        )
