"""The checks one call makes, each with the request context AWS gives it.

`Checks(call)` collects `Check`s for a call's model: one per resource the action is
authorized against (`add`), and the checks the call implies (`implied`: tags on create,
iam:PassRole, a service-linked role). The context of each check holds the condition keys
AWS puts there, and only those: the global keys, and the keys the Service Authorization
Reference lists for the action, for the (action, resource type) row and for the resource
type. A key a policy tests that is not there is absent, as on AWS (`Null` is true, a
plain `StringEquals` false).

A check a service makes with the caller's credentials on the caller's behalf (Elastic
Beanstalk, and CloudFormation for it) carries that in its context: `via=` on `add`, or every
check added inside `with c.on_behalf(via, why):`. `aws:ViaAWSService` is then true, and
`aws:CalledVia` lists the services IAM records there (CloudFormation is one, Elastic
Beanstalk is not).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .evaluate import Check
from .reference import NotInReference, is_global_key, key_matches, reference
from .request import Call

# condition keys whose value the sandbox gives (besides the global keys): a policy testing
# any other key is refused (sandbox.authz.authorizer.check_policy)
SUPPORTED_KEYS = (
    "aws:RequestTag/${TagKey}",
    "aws:TagKeys",
    "aws:ResourceTag/${TagKey}",
    "ec2:ResourceTag/${TagKey}",
    "elasticloadbalancing:ResourceTag/${TagKey}",
    "iam:ResourceTag/${TagKey}",
    "autoscaling:ResourceTag/${TagKey}",
    "ec2:CreateAction",
    "elasticloadbalancing:CreateAction",
    "iam:PassedToService",
    "iam:PolicyARN",
    "iam:AWSServiceName",
    "route53:ChangeResourceRecordSetsNormalizedRecordNames",
    "route53:ChangeResourceRecordSetsRecordTypes",
    "route53:ChangeResourceRecordSetsActions",
    "elasticbeanstalk:InApplication",
)


def supported_key(key: str) -> bool:
    return is_global_key(key) or any(key_matches(t, key) for t in SUPPORTED_KEYS)


def tags_of(raw: Any) -> dict[str, str]:
    """Tags as moto keeps them ({k: v}, {k: {Key, Value}}, [{Key, Value}]) as {k: v}."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {
            str(k): str(v.get("Value", "")) if isinstance(v, Mapping) else str(v or "")
            for k, v in raw.items()
        }
    return {str(t.get("Key")): str(t.get("Value") or "") for t in raw if t.get("Key")}


class ModelError(LookupError):
    """The sandbox cannot say which resources a call touches: it refuses the call."""


@dataclass(frozen=True)
class Via:
    """A request an AWS service makes with the caller's credentials: `aws:ViaAWSService`
    is true; `services` is `aws:CalledVia`, first to last (empty for a service IAM does not
    record there)."""

    services: tuple[str, ...] = ()


BY_SERVICE = Via()  # e.g. Elastic Beanstalk itself: ViaAWSService, no CalledVia
VIA_CLOUDFORMATION = Via(("cloudformation.amazonaws.com",))


class Checks:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.items: list[Check] = []
        self.after: list[Callable[[], None]] = []  # run once every check allowed the call
        self._via: Via | None = None  # set by on_behalf: the default of `add`
        self._why = ""

    @contextlib.contextmanager
    def on_behalf(self, via: Via, why: str) -> Iterator[None]:
        """Every check added inside is made `via` a service, its `why` prefixed by `why`."""
        saved = self._via, self._why
        self._via, self._why = via, why
        try:
            yield
        finally:
            self._via, self._why = saved

    # -- ARNs ----------------------------------------------------------------------------
    def arn(self, resource_type: str, prefix: str | None = None, **parts: str) -> str:
        c = self.call
        return reference().arn(
            prefix or c.prefix,
            resource_type,
            partition=c.partition,
            region=c.region,
            account=c.account,
            **parts,
        )

    # -- checks --------------------------------------------------------------------------
    def add(
        self,
        resource_type: str,
        arns: str | Iterable[str],
        *,
        action: str | None = None,
        request_tags: Mapping[str, str] | None = None,
        resource_tags: Mapping[str, str] | None = None,
        keys: Mapping[str, Sequence[str]] | None = None,
        why: str = "",
        via: Via | None = None,
    ) -> None:
        """A check of `action` (default: the call's) on each of `arns` of `resource_type`
        ('' with arns '*': an action authorized against no resource). `via`: made by a
        service on the caller's behalf (default: as `on_behalf` says, else as the call)."""
        name = action or self.call.name
        via = via if via is not None else self._via
        if self._why:
            why = f"{self._why}: {why}" if why else self._why
        for arn in [arns] if isinstance(arns, str) else list(arns):
            context = self._context(name, resource_type, request_tags, resource_tags, keys, via)
            self.items.append(Check(name, arn, context, why))

    def unscoped(self, action: str | None = None, **kw: Any) -> None:
        self.add("", "*", action=action, **kw)

    def _context(
        self,
        action: str,
        resource_type: str,
        request_tags: Mapping[str, str] | None,
        resource_tags: Mapping[str, str] | None,
        keys: Mapping[str, Sequence[str]] | None,
        via: Via | None = None,
    ) -> dict[str, tuple[str, ...]]:
        prefix, _, name = action.partition(":")
        ref = reference()
        try:
            templates = list(ref.condition_keys(prefix, name, resource_type))
            if resource_type:
                templates += ref.service(prefix)["resources"][resource_type]["condition_keys"]
        except (NotInReference, KeyError) as exc:
            raise ModelError(
                f"the sandbox has no model of {action} on {resource_type!r}: {exc}"
            ) from None
        c = self.call
        values: dict[str, tuple[str, ...]] = {
            "aws:PrincipalArn": (c.principal,),
            "aws:PrincipalAccount": (c.account,),
            "aws:PrincipalType": ("User",),
            "aws:username": (c.principal.rsplit("/", 1)[-1],),
            "aws:RequestedRegion": (c.requested_region,),
        }
        called_via = via.services if via is not None else c.called_via
        if called_via:
            values["aws:CalledVia"] = called_via
            values["aws:CalledViaFirst"] = (called_via[0],)
            values["aws:CalledViaLast"] = (called_via[-1],)
        if called_via or via is not None:
            values["aws:ViaAWSService"] = ("true",)
        if request_tags is not None and request_tags:
            for k, v in request_tags.items():
                values[f"aws:RequestTag/{k}"] = (v,)
            values["aws:TagKeys"] = tuple(request_tags)
        for k, v in (resource_tags or {}).items():
            values[f"aws:ResourceTag/{k}"] = (v,)
            values[f"{prefix}:ResourceTag/{k}"] = (v,)
        for k, vs in (keys or {}).items():
            values[k] = tuple(vs)
        return {
            k: v
            for k, v in values.items()
            if is_global_key(k) or any(key_matches(t, k) for t in templates)
        }
