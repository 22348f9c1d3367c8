"""Public SSM parameters AWS serves and moto does not: the Ubuntu 22.04 AMI id.

On AWS `/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id`
names the current Ubuntu 22.04 image of each region. moto serves only Amazon Linux and ECS
ones, and refuses `put_parameter` under `/aws`, so the sandbox puts it into moto's backend at
start, with a matching image moto then describes (Canonical's owner id, the us-east-1 id).
"""

from __future__ import annotations

UBUNTU_2204_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
)
UBUNTU_2204_AMI = "ami-0c7217cdde317cfec"
UBUNTU_2204_NAME = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20231207"
CANONICAL_OWNER = "099720109477"


def seed(account_id: str, region: str) -> None:
    """Register the image in moto's EC2 backend and the parameter in its SSM backend.
    Call under the API lock (moto's backends are not thread-safe)."""
    from moto.core.utils import utcnow
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ssm.models import Parameter, ssm_backends

    ec2 = ec2_backends[account_id][region]
    if UBUNTU_2204_AMI not in ec2.amis:
        ec2.amis[UBUNTU_2204_AMI] = Ami(
            ec2,
            UBUNTU_2204_AMI,
            name=UBUNTU_2204_NAME,
            description="Canonical, Ubuntu, 22.04 LTS, amd64 jammy image",
            owner_id=CANONICAL_OWNER,
            public=True,
            virtualization_type="hvm",
            architecture="x86_64",
            root_device_type="ebs",
            region_name=region,
        )
    params = ssm_backends[account_id][region]._parameters
    if not params.get(UBUNTU_2204_PARAMETER):
        params[UBUNTU_2204_PARAMETER].append(
            Parameter(  # type: ignore[abstract]
                account_id=account_id,
                name=UBUNTU_2204_PARAMETER,
                value=UBUNTU_2204_AMI,
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=utcnow(),
                version=1,
                data_type="aws:ec2:image",
            )
        )
