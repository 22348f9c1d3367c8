"""Per service, which resources each call is authorized against, with their tags.

A model reads the call's parameters and moto's backends (the sandbox holds its API lock
while it authorizes) and adds one check per resource, as the Service Authorization
Reference lists the action's resource types, plus the checks the call implies. `MODELS`
maps `prefix:Action` to its model; a call without one is authorized against `*` only
when the reference defines no resource for it (`sandbox.authz.authorizer`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..checks import Checks
from . import acm, beanstalk, ec2, elb, iam, rds, route53, s3, ssm

Model = Callable[[Checks], None]

MODELS: dict[str, Model] = {
    **{f"ec2:{k}": v for k, v in ec2.MODELS.items()},
    **{f"elasticloadbalancing:{k}": v for k, v in elb.MODELS.items()},
    **{f"rds:{k}": v for k, v in rds.MODELS.items()},
    **{f"acm:{k}": v for k, v in acm.MODELS.items()},
    **{f"elasticbeanstalk:{k}": v for k, v in beanstalk.MODELS.items()},
    **{f"iam:{k}": v for k, v in iam.MODELS.items()},
    **{f"route53:{k}": v for k, v in route53.MODELS.items()},
    **{f"ssm:{k}": v for k, v in ssm.MODELS.items()},
    **{f"s3:{k}": v for k, v in s3.MODELS.items()},
}
