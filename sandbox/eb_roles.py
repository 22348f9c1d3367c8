"""Elastic Beanstalk's service role, checked as AWS does on CreateEnvironment.

CreateEnvironment is refused (InvalidParameterValue) when its service role is missing or
does not trust Elastic Beanstalk. Called from the moto patch of CreateEnvironment; imports
nothing of the sandbox, so the patch module and this one form no cycle.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

DEFAULT_SERVICE_ROLE = "aws-elasticbeanstalk-service-role"
EB_PRINCIPAL = "elasticbeanstalk.amazonaws.com"


def service_role_option(option_settings: list[dict[str, Any]] | None) -> str | None:
    """The `aws:elasticbeanstalk:environment` `ServiceRole` value of a CreateEnvironment."""
    for opt in option_settings or []:
        if (
            opt.get("Namespace") == "aws:elasticbeanstalk:environment"
            and opt.get("OptionName") == "ServiceRole"
        ):
            return str(opt.get("Value") or "") or None
    return None


def check_service_role(account: str, option_settings: list[dict[str, Any]] | None) -> None:
    """Refuse an environment whose service role (a role name or ARN) does not exist or does
    not trust elasticbeanstalk.amazonaws.com, as Elastic Beanstalk answers
    InvalidParameterValue. Without the option the default service role must exist (the
    sandbox does not create it on the caller's behalf, as the console and EB CLI would)."""
    from moto.elasticbeanstalk.exceptions import InvalidParameterValueError
    from moto.iam.models import iam_backends

    given = service_role_option(option_settings)
    wanted = given or DEFAULT_SERVICE_ROLE
    name = wanted.rsplit("/", 1)[-1] if wanted.startswith("arn:") else wanted
    iam = iam_backends[account]["global"]
    role = next(
        (r for r in iam.get_roles() if r.name == name and (r.arn == wanted or wanted == name)),
        None,
    )
    if role is None:
        what = (
            f"service role {wanted!r}"
            if given
            else (f"no ServiceRole option and no default service role {DEFAULT_SERVICE_ROLE!r}")
        )
        raise InvalidParameterValueError(
            f"Invalid service role: {what}: the role does not exist (set "
            "aws:elasticbeanstalk:environment ServiceRole to a role Elastic Beanstalk can "
            "assume)"
        )
    trust = unquote(str(role.assume_role_policy_document or ""))
    if EB_PRINCIPAL not in trust:
        raise InvalidParameterValueError(
            f"Invalid service role {wanted!r}: Elastic Beanstalk cannot assume it (its trust "
            f"policy does not name {EB_PRINCIPAL})"
        )
