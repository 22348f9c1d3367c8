"""IAM in the sandbox: moto's access control, an admin user and an operator user.

With `SandboxConfig.enforce_iam` (the default) every API call is authenticated (SigV4 with
the key's secret) and authorised against the caller's IAM policies by moto's access control
(`moto.core.authorization`, the `INITIAL_NO_AUTH_ACTION_COUNT` setting at 0). At start the
sandbox creates two users in moto's IAM:

* `sandbox-admin`, allowed everything: tests inspect the estate with it;
* `tomcat-fleet-operator`, holding exactly `docs/iam-policy.json` as an inline policy (or
  `SandboxConfig.operator_policy_path`): the env file's AWS credentials, what the flows, the
  local start and the benchmarks run as.

A call outside the operator's policy fails as on AWS: `AccessDenied` / `UnauthorizedOperation`
naming the action; what Elastic Beanstalk would do with the caller's rights and may not,
`InsufficientPrivilegesException`. The sandbox's own work (fleet reconcile, seeding,
snapshots, what Beanstalk builds) reads and writes moto's backends in-process and is not
subject to it.

moto checks the signature; `sandbox.authz` authorizes: every resource the call touches, the
condition keys AWS evaluates (request and resource tags, create actions, passed roles, ...),
the checks the call implies (tags on create, iam:PassRole, service-linked roles), all as the
Service Authorization Reference defines them. A policy the sandbox cannot evaluate is
refused when the users are created.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape

from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMRequestBase
from moto.iam.models import iam_backends

from .authz import request as authz_request
from .authz.authorizer import Denied, authorize, documents, policy_problems
from .authz.models.eb_caller import is_caller_check

POLICY_PATH = Path(__file__).resolve().parents[1] / "docs" / "iam-policy.json"
ADMIN_USER = "sandbox-admin"
OPERATOR_USER = "tomcat-fleet-operator"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class UserKeys:
    user: str
    arn: str
    access_key_id: str
    secret_access_key: str


class PolicyError(ValueError):
    """A policy the sandbox cannot evaluate (it would have to guess)."""


def enforce(on: bool) -> None:
    """Turn IAM access control on (every call) or off (no call), process-wide."""
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if on else float("inf")
    ActionAuthenticatorMixin.request_count = 0
    _install()


def _create_user(account: str, name: str, document: dict[str, Any]) -> UserKeys:
    iam = iam_backends[account]["aws"]
    user = iam.create_user("us-east-1", name, path="/", tags=[])
    iam.put_user_policy(name, f"{name}-policy", json.dumps(document))
    key = iam.create_access_key(name)
    return UserKeys(name, user.arn, key.access_key_id, key.secret_access_key)


def create_users(account: str, policy_path: Path = POLICY_PATH) -> tuple[UserKeys, UserKeys]:
    """(admin, operator): the operator holds exactly the policy file at `policy_path`.
    PolicyError when the sandbox cannot evaluate that policy."""
    operator_policy = json.loads(policy_path.read_text())
    problems = policy_problems(operator_policy)
    if problems:
        raise PolicyError(
            f"{policy_path}: the sandbox cannot evaluate {'; '.join(problems)} "
            "(it refuses rather than allow what it cannot judge)"
        )
    return (
        _create_user(account, ADMIN_USER, ADMIN_POLICY),
        _create_user(account, OPERATOR_USER, operator_policy),
    )


_installed = False


def _error(call: authz_request.Call, denied: Denied) -> Exception:
    """AccessDenied in the shape the service answers it; what Elastic Beanstalk was refused
    acting with the caller's rights, as InsufficientPrivilegesException (HTTP 403)."""
    from moto.core.exceptions import JsonRESTError, _RESTError

    class Forbidden(_RESTError):
        code = 403

    message = denied.message
    if denied.check is not None and is_caller_check(denied.check.why):
        return Forbidden(
            "InsufficientPrivilegesException",
            f"{message} ({denied.check.why}). Elastic Beanstalk creates, reads and deletes "
            "an environment's resources with your permissions.",
        )
    if call.prefix == "ec2":
        return Forbidden(
            "UnauthorizedOperation", f"You are not authorized to perform this operation. {message}"
        )
    if call.prefix == "s3":  # S3 answers a bare <Error> document
        err = Forbidden("AccessDenied", message)
        err.description = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            f"<Message>{escape(message)}</Message></Error>"
        )
        return err
    if call.prefix == "route53":  # REST-XML: one <Error> inside <ErrorResponse>
        r53 = Forbidden("AccessDenied", message)
        r53.description = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="https://route53.'
            'amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>AccessDenied</Code>'
            f"<Message>{escape(message)}</Message></Error></ErrorResponse>"
        )
        return r53
    if call.prefix in ("acm", "ssm", "logs"):
        json_err = JsonRESTError("AccessDeniedException", message)
        json_err.code = 400
        return json_err
    return Forbidden("AccessDenied", message)


def _install() -> None:
    """Authorize every call with `sandbox.authz` (moto still checks the signature)."""
    global _installed
    if _installed:
        return

    def authenticate_and_authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if ActionAuthenticatorMixin.request_count < moto_settings.INITIAL_NO_AUTH_ACTION_COUNT:
            ActionAuthenticatorMixin.request_count += 1
            return
        if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
            return
        parsed = urlparse(self.uri)
        path = self.raw_path + ("?" + parsed.query if parsed.query else "")
        iam_request = iam_request_cls(
            account_id=self.current_account,
            method=self.method,
            path=path,
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        iam_request.check_signature()
        call = authz_request.from_moto(self, iam_request, resource)
        try:
            checks = authorize(call, documents(iam_request._access_key.collect_policies()))
        except Denied as denied:
            raise _error(call, denied) from None
        for after in checks.after:
            after()

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate_and_authorize  # type: ignore[method-assign]

    # moto re-signs a REST GET (Route 53's ListHostedZonesByName?dnsname=...) with the
    # parsed query as its body, so the signature never matches: a GET/HEAD/DELETE is
    # signed with the body it had (none), as botocore signed it
    original_request = IAMRequestBase._create_aws_request

    def create_aws_request(self: IAMRequestBase) -> Any:
        if self._method in ("GET", "HEAD", "DELETE") and not self._body:
            saved, self._data = self._data, {}
            try:
                return original_request(self)
            finally:
                self._data = saved
        return original_request(self)

    IAMRequestBase._create_aws_request = create_aws_request  # type: ignore[method-assign]
    _installed = True
