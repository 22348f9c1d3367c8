"""Authorize one call as AWS does: every check its model makes, against the caller's
policies, with the condition keys AWS evaluates.

    checks = checks_for(call)           # the resources the call touches, the implied checks
    authorize(call, policies)           # raises Denied naming the first check refused

A call whose action the sandbox has no model for is authorized against `*` when the Service
Authorization Reference defines no resource for it (Describe*, List* of an account), and
otherwise against each required resource type's ARN with every name part `*` (an admin's
`"Resource": "*"` allows it; a statement scoped to names does not: the sandbox never allows
what it cannot judge). `policy_problems(doc)`
names what in a policy the sandbox cannot evaluate (a condition key it gives no value for,
an operator it lacks): the sandbox refuses to start with such a policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .checks import Checks, ModelError, supported_key
from .evaluate import Check, Decision, Outcome, condition_keys, evaluate, unsupported
from .models import MODELS
from .reference import NotInReference, reference
from .request import Call

# calls AWS authorizes without any policy (sts:GetCallerIdentity needs no permission)
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}


class Denied(Exception):
    def __init__(self, call: Call, check: Check | None, outcome: Outcome | None, why: str = ""):
        self.call, self.check, self.outcome = call, check, outcome
        if check is None or outcome is None:
            message = f"User: {call.principal} is not authorized to perform: {call.name}: {why}"
        else:
            reason = (
                f"with an explicit deny in an identity-based policy ({outcome.statement})"
                if outcome.decision is Decision.EXPLICIT_DENY
                else f"because no identity-based policy allows the {check.action} action"
            )
            message = (
                f"User: {call.principal} is not authorized to perform: {check.action} on "
                f"resource: {check.resource} {reason}"
            )
        super().__init__(message)
        self.message = message


def checks_for(call: Call) -> Checks:
    c = Checks(call)
    model = MODELS.get(call.name) or MODELS.get(f"{call.prefix}:*")
    if model is not None:
        model(c)
        return c
    ref = reference()
    try:
        required = [t.name for t in ref.resource_types(call.prefix, call.action) if t.required]
    except NotInReference as exc:
        raise ModelError(str(exc)) from None
    for rtype in required:
        c.add(rtype, c.arn(rtype), why="no model: any resource of the type")
    if not required:
        c.unscoped()
    return c


def documents(raw: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Policy documents as moto returns them (JSON text, dicts, managed policy objects)."""
    out: list[Mapping[str, Any]] = []
    for p in raw:
        doc: Any = p
        if isinstance(p, Mapping) and "policy_document" in p:
            doc = p["policy_document"]
        elif hasattr(p, "default_version"):
            doc = p.default_version.document
        elif hasattr(p, "document"):
            doc = p.document
        if isinstance(doc, str):
            doc = json.loads(doc)
        out.append(doc)
    return out


def authorize(call: Call, policies: Iterable[Mapping[str, Any]]) -> Checks:
    """Every check of the call allowed, or Denied for the first refused."""
    if call.name in ALWAYS_ALLOWED:
        return Checks(call)
    docs = list(policies)
    for doc in docs:
        problems = policy_problems(doc)
        if problems:
            raise Denied(call, None, None, "the sandbox cannot evaluate " + "; ".join(problems))
    try:
        checks = checks_for(call)
    except ModelError as exc:
        raise Denied(call, None, None, str(exc)) from None
    for check in checks.items:
        outcome = evaluate(docs, check)
        if not outcome.allowed:
            raise Denied(call, check, outcome)
    return checks


def policy_problems(doc: Mapping[str, Any]) -> list[str]:
    problems = unsupported(doc)
    for key in sorted(condition_keys(doc)):
        if not supported_key(key):
            problems.append(f"condition key {key}")
    return problems
