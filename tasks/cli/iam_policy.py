"""`tomcat-fleet iam-policy`: the IAM policy the flows need, printed as JSON."""

from __future__ import annotations

from typing import Annotated, Literal

from cyclopts import Parameter


def iam_policy(
    *,
    partition: Literal["aws", "aws-cn", "aws-us-gov"] = "aws",
    domain: Annotated[str | None, Parameter(show_default=False)] = None,
    eb_domain: Annotated[str | None, Parameter(show_default=False)] = None,
) -> int:
    """Print the IAM policy the flows need, for a partition and your DNS names.

    Args:
        partition: the AWS partition whose ARNs the policy names.
        domain: the load balancer's HTTPS name (default: www.ZONE, any zone).
        eb_domain: the Beanstalk environment's HTTPS name (default: eb.ZONE, any zone).
    """
    from tasks.aws.policy import print_policy

    return print_policy(partition, domain, eb_domain)
