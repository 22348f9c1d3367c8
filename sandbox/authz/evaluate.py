"""IAM policy evaluation, as AWS documents it for the identity-based policies of one caller.

A request to evaluate is a `Check`: one action, one resource ARN (`*` for actions that AWS
authorizes against no resource) and the request context (condition key -> values; a key
that is absent is simply not in the mapping). `evaluate(policies, check)`:

* an explicit `Deny` of a matching statement wins;
* otherwise a matching `Allow` allows;
* otherwise the request is implicitly denied.

A statement matches when its Action (or NotAction), Resource (or NotResource) and every
condition match. Actions match case-insensitively with `*`/`?`; ARNs match component by
component (partition, service, region, account, resource), `*`/`?` within each; a statement
naming ARNs does not match an action authorized against no resource (`*`).

Conditions: the String*, Arn*, Numeric*, Bool, Null and IpAddress operators, the
`ForAllValues:`/`ForAnyValue:` set qualifiers and the `IfExists` suffix, with AWS's rules
for an absent key (false, but true for a negated operator, for IfExists and for
ForAllValues). `unsupported(policy)` names what this module cannot evaluate (an operator,
a policy variable), so a caller can refuse such a policy instead of guessing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

Context = Mapping[str, Sequence[str]]  # condition key (any case) -> values


@dataclass(frozen=True)
class Check:
    """One authorization AWS makes for a call: an action on a resource with a context."""

    action: str  # "ec2:RunInstances"
    resource: str  # an ARN, or "*"
    context: Context = field(default_factory=dict)
    why: str = ""  # for a check the call implies: "tags on create", "service-linked role", ...


class Decision(Enum):
    ALLOW = "allow"
    IMPLICIT_DENY = "implicit deny"
    EXPLICIT_DENY = "explicit deny"


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    statement: str = ""  # the Sid (or index) of the statement that allowed or denied

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


_STRING_OPS = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
}
_ARN_OPS = {"ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}
_NUMERIC_OPS = {
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
}
_IP_OPS = {"IpAddress", "NotIpAddress"}
OPERATORS = _STRING_OPS | _ARN_OPS | _NUMERIC_OPS | _IP_OPS | {"Bool", "Null"}
_NEGATED = {
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "ArnNotEquals",
    "ArnNotLike",
    "NumericNotEquals",
    "NotIpAddress",
}
_POSITIVE_OF = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnLike",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
    "NotIpAddress": "IpAddress",
}
_VARIABLE = re.compile(r"\$\{[^}]*\}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_operator(name: str) -> tuple[str, str, bool]:
    """('StringLike', 'ForAllValues' | 'ForAnyValue' | '', if_exists) of an operator name."""
    qualifier, _, op = name.rpartition(":")
    if_exists = op.endswith("IfExists") and op != "IfExists"
    if if_exists:
        op = op.removesuffix("IfExists")
    return op, qualifier, if_exists


def glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: `*` any run of characters (`/` and `:` included), `?` one."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if "*" not in pattern and "?" not in pattern:
        return pattern == value
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def arn_match(pattern: str, arn: str) -> bool:
    """Does `arn` fit the ARN `pattern`, component by component (`*` alone matches any)?"""
    if pattern == "*":
        return True
    if arn == "*":  # an action authorized against no resource: only "*" grants it
        return False
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return False
    return all(glob(p, a) for p, a in zip(p_parts, a_parts, strict=True))


def _match_one(op: str, context_value: str, policy_value: str) -> bool:
    """The positive operator `op` applied to one context value and one policy value."""
    if op == "StringEquals":
        return context_value == policy_value
    if op == "StringEqualsIgnoreCase":
        return context_value.lower() == policy_value.lower()
    if op == "StringLike":
        return glob(policy_value, context_value)
    if op in ("ArnEquals", "ArnLike"):  # AWS treats both alike, wildcards included
        return arn_match(policy_value, context_value)
    if op == "Bool":
        return context_value.lower() == policy_value.lower()
    if op == "IpAddress":
        try:
            return ipaddress.ip_address(context_value) in ipaddress.ip_network(
                policy_value, strict=False
            )
        except ValueError:
            return False
    if op.startswith("Numeric"):
        try:
            a, b = float(context_value), float(policy_value)
        except ValueError:
            return False
        return {
            "NumericEquals": a == b,
            "NumericLessThan": a < b,
            "NumericLessThanEquals": a <= b,
            "NumericGreaterThan": a > b,
            "NumericGreaterThanEquals": a >= b,
        }[op]
    raise ValueError(f"unsupported condition operator {op}")


def condition_holds(operator: str, key: str, policy_values: Any, context: Context) -> bool:
    """One (operator, key, values) test of a Condition block against the request context."""
    op, qualifier, if_exists = parse_operator(operator)
    values = [_text(v) for v in _as_list(policy_values)]
    present = _lookup(context, key)
    if op == "Null":
        return (present is None) == (values[0].lower() == "true")
    if present is None:
        if if_exists or qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return op in _NEGATED
    negated = op in _NEGATED
    positive = _POSITIVE_OF.get(op, op)

    def fits(cv: str) -> bool:
        hit = any(_match_one(positive, cv, pv) for pv in values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(fits(cv) for cv in present)
    if qualifier == "ForAnyValue":
        return any(fits(cv) for cv in present)
    # a single-valued operator: negated ones hold when no value matches, others when any does
    return all(fits(cv) for cv in present) if negated else any(fits(cv) for cv in present)


def _lookup(context: Context, key: str) -> Sequence[str] | None:
    wanted = key.lower()
    for k, v in context.items():
        if k.lower() == wanted:
            return v if v else None
    return None


def _conditions_hold(block: Mapping[str, Mapping[str, Any]], context: Context) -> bool:
    return all(
        condition_holds(operator, key, values, context)
        for operator, tests in block.items()
        for key, values in tests.items()
    )


def statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = policy.get("Statement", [])
    return [raw] if isinstance(raw, Mapping) else list(raw)


def _action_matches(st: Mapping[str, Any], action: str) -> bool:
    if "Action" in st:
        return any(glob(a, action, ignore_case=True) for a in _as_list(st["Action"]))
    return not any(glob(a, action, ignore_case=True) for a in _as_list(st.get("NotAction", [])))


def _resource_matches(st: Mapping[str, Any], resource: str) -> bool:
    if "Resource" in st:
        return any(arn_match(r, resource) for r in _as_list(st["Resource"]))
    if "NotResource" in st:
        return not any(arn_match(r, resource) for r in _as_list(st["NotResource"]))
    return False


def statement_matches(st: Mapping[str, Any], check: Check) -> bool:
    return (
        _action_matches(st, check.action)
        and _resource_matches(st, check.resource)
        and _conditions_hold(st.get("Condition", {}), check.context)
    )


def evaluate(policies: Iterable[Mapping[str, Any]], check: Check) -> Outcome:
    allowed_by = ""
    for p_index, policy in enumerate(policies):
        for s_index, st in enumerate(statements(policy)):
            if not statement_matches(st, check):
                continue
            sid = str(st.get("Sid") or f"policy {p_index} statement {s_index}")
            if st.get("Effect") == "Deny":
                return Outcome(Decision.EXPLICIT_DENY, sid)
            if st.get("Effect") == "Allow" and not allowed_by:
                allowed_by = sid
    if allowed_by:
        return Outcome(Decision.ALLOW, allowed_by)
    return Outcome(Decision.IMPLICIT_DENY)


def condition_keys(policy: Mapping[str, Any]) -> set[str]:
    """Every condition key the policy tests."""
    return {
        key
        for st in statements(policy)
        for tests in st.get("Condition", {}).values()
        for key in tests
    }


def unsupported(policy: Mapping[str, Any]) -> list[str]:
    """What in `policy` this module cannot evaluate: unknown operators, policy variables,
    a Principal (not an identity policy)."""
    problems = []
    for i, st in enumerate(statements(policy)):
        sid = st.get("Sid") or f"statement {i}"
        for operator in st.get("Condition", {}):
            op, qualifier, _ = parse_operator(operator)
            if op not in OPERATORS or qualifier not in ("", "ForAllValues", "ForAnyValue"):
                problems.append(f"{sid}: condition operator {operator}")
        text = repr({k: st.get(k) for k in ("Resource", "NotResource", "Condition")})
        for var in sorted(set(_VARIABLE.findall(text))):
            problems.append(f"{sid}: policy variable {var}")
        if "Principal" in st or "NotPrincipal" in st:
            problems.append(f"{sid}: Principal in an identity-based policy")
    return problems
