"""IAM in the sandbox: moto's access control, an admin user and an operator user.

With `SandboxConfig.enforce_iam` (the default) every API call is authenticated (SigV4 with
the key's secret) and authorised against the caller's IAM policies by moto's access control
(`moto.core.authorization`, the `INITIAL_NO_AUTH_ACTION_COUNT` setting at 0). At start the
sandbox creates two users in moto's IAM:

* `sandbox-admin`, allowed everything: tests inspect the estate with it;
* `tomcat-fleet-operator`, holding exactly `docs/iam-policy.json` as an inline policy: the
  env file's AWS credentials, what the flows, the local start and the benchmarks run as.

A call outside the operator's policy fails as on AWS: `AccessDenied` / `UnauthorizedOperation`
naming the action. The sandbox's own work (fleet reconcile, seeding, snapshots) reads moto's
backends in-process and is not subject to it.

What moto checks: the action, and the resource where moto knows it (IAM role operations:
the role's ARN; S3: the bucket/object ARN). For the other services moto authorises a call
against the resource `*`, which matches any statement's Resource here (the patch below), and
moto ignores condition keys it has no value for (aws:RequestTag, aws:ResourceTag,
iam:PassedToService): those are proven by the policy linters (docs/iam.md), not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMPolicyStatement, IAMRequest, IAMRequestBase, S3IAMRequest
from moto.iam.models import iam_backends

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


def enforce(on: bool) -> None:
    """Turn moto's IAM access control on (every call) or off (no call), process-wide."""
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if on else float("inf")
    ActionAuthenticatorMixin.request_count = 0
    _patch_unknown_resource()


def _create_user(account: str, name: str, document: dict[str, Any]) -> UserKeys:
    iam = iam_backends[account]["aws"]
    user = iam.create_user("us-east-1", name, path="/", tags=[])
    iam.put_user_policy(name, f"{name}-policy", json.dumps(document))
    key = iam.create_access_key(name)
    return UserKeys(name, user.arn, key.access_key_id, key.secret_access_key)


def create_users(account: str, policy_path: Path = POLICY_PATH) -> tuple[UserKeys, UserKeys]:
    """(admin, operator): the operator holds exactly the policy file at `policy_path`."""
    operator_policy = json.loads(policy_path.read_text())
    return (
        _create_user(account, ADMIN_USER, ADMIN_POLICY),
        _create_user(account, OPERATOR_USER, operator_policy),
    )


# moto names S3 calls by its own table (HeadBucket, PutPublicAccessBlock, a PUT ?encryption
# as CreateBucket, ...); AWS authorises them as these IAM actions (method, subresource)
_S3_BUCKET_ACTIONS = {
    ("HEAD", ""): "ListBucket",
    ("GET", ""): "ListBucket",
    ("GET", "versions"): "ListBucketVersions",
    ("GET", "tagging"): "GetBucketTagging",
    ("GET", "encryption"): "GetEncryptionConfiguration",
    ("GET", "publicAccessBlock"): "GetBucketPublicAccessBlock",
    ("GET", "ownershipControls"): "GetBucketOwnershipControls",
    ("GET", "policy"): "GetBucketPolicy",
    ("GET", "acl"): "GetBucketAcl",
    ("GET", "location"): "GetBucketLocation",
    ("PUT", ""): "CreateBucket",
    ("PUT", "tagging"): "PutBucketTagging",
    ("PUT", "encryption"): "PutEncryptionConfiguration",
    ("PUT", "publicAccessBlock"): "PutBucketPublicAccessBlock",
    ("PUT", "ownershipControls"): "PutBucketOwnershipControls",
    ("PUT", "policy"): "PutBucketPolicy",
    ("PUT", "acl"): "PutBucketAcl",
    ("DELETE", ""): "DeleteBucket",
    ("DELETE", "tagging"): "PutBucketTagging",
    ("DELETE", "policy"): "DeleteBucketPolicy",
    ("POST", "delete"): "DeleteObject",  # DeleteObjects: authorised per object
}
_S3_OBJECT_ACTIONS = {
    ("HEAD", ""): "GetObject",
    ("GET", ""): "GetObject",
    ("PUT", ""): "PutObject",
    ("DELETE", ""): "DeleteObject",
    ("DELETE", "versionId"): "DeleteObjectVersion",
}


def s3_action(method: str, path: str) -> tuple[str, bool] | None:
    """(the IAM action of an S3 request, whether it acts on objects), None if not known."""
    where, _, query = path.partition("?")
    keys = [q.split("=", 1)[0] for q in query.split("&") if q]
    parts = where.lstrip("/").split("/", 1)
    if not parts[0]:
        return ("ListAllMyBuckets", False) if method == "GET" else None
    table = _S3_OBJECT_ACTIONS if len(parts) == 2 and parts[1] else _S3_BUCKET_ACTIONS
    for sub in [*keys, ""]:
        action = table.get((method, sub))
        if action:
            return action, table is _S3_OBJECT_ACTIONS or (method, sub) == ("POST", "delete")
    return None


# moto authorises any IAM call that names a RoleName on the role's ARN; AWS authorises
# these on the instance profile they change
_ON_INSTANCE_PROFILE = {"iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile"}

_patched = False


def _patch_unknown_resource() -> None:
    """moto authorises most calls against the resource `*` (it does not derive the ARN of
    what the call touches): let `*` match any statement Resource, so a statement scoped to
    ARNs grants its actions there, and only the action is checked. A known resource (IAM
    roles, S3 buckets and objects) is still matched against the statement's ARNs."""
    global _patched
    if _patched:
        return
    original = IAMPolicyStatement._check_element_matches

    def check(self: IAMPolicyStatement, element: Any, value: str) -> bool:
        if element == "Resource" and value == "*":
            return True
        return bool(original(self, element, value))

    IAMPolicyStatement._check_element_matches = check  # type: ignore[method-assign,assignment]

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
    original_check = S3IAMRequest.check_action_permitted

    def check_s3(self: S3IAMRequest, resource: str) -> None:
        found = s3_action(self._method, self._path)
        if found is not None:
            action, on_objects = found
            self._action = f"s3:{action}"
            if on_objects and resource.count("/") == 0 and resource != "*":
                resource += "/*"  # DeleteObjects names the bucket; AWS checks each object
        original_check(self, resource)

    original_iam_check = IAMRequest.check_action_permitted

    def check_iam(self: IAMRequest, resource: str) -> None:
        def arn(kind: str, param: str) -> str | None:
            value = self._data.get(param)
            name = value[0] if isinstance(value, list) else value
            return f"arn:aws:iam::{self.account_id}:{kind}/{name}" if name else None

        profile, role = arn("instance-profile", "InstanceProfileName"), arn("role", "RoleName")
        if self._action in _ON_INSTANCE_PROFILE and profile:
            resource = profile
        elif resource == "*":  # moto names a role only once it exists: CreateRole, ...
            resource = role or profile or resource
        original_iam_check(self, resource)

    IAMRequest.check_action_permitted = check_iam  # type: ignore[method-assign,assignment]
    S3IAMRequest.check_action_permitted = check_s3  # type: ignore[method-assign,assignment]
    _patched = True
