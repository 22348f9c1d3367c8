"""The pure half of a plan: what a stage wants compared with what was found, as entries.
No AWS here; the rooms read (through the finders in tasks/aws/) and call these.

A resource is `create` when it is not found, `update` when it is found but some field
differs (each drift names its field: "ingress rule", "target group membership", "listener
certificate", "instance count", ...), `no-op` otherwise. One entry per resource: drifts of
several fields of one resource are one `update` naming them all."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tasks.plan.models import Action, PlanEntry

Drift = tuple[str, str]  # (field, what would change)


def shown(items: Iterable[str], limit: int = 5) -> str:
    """`a, b, c` (at most `limit` named, then `+N`)."""
    items = list(items)
    more = f", +{len(items) - limit}" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def resource(
    stage: int,
    kind: str,
    name: str,
    *,
    exists: bool,
    create: str = "",
    drift: Sequence[Drift] = (),
    ok: str = "",
) -> PlanEntry:
    """`create` (with reason `create`) when it does not exist, else `update` naming every
    drifted field, else `no-op` (reason `ok`)."""
    if not exists:
        return PlanEntry(stage=stage, kind=kind, name=name, action="create", reason=create)
    if drift:
        fields = list(dict.fromkeys(f for f, _ in drift))
        return PlanEntry(
            stage=stage,
            kind=kind,
            name=name,
            action="update",
            field=", ".join(fields),
            reason="; ".join(why for _, why in drift),
        )
    return PlanEntry(stage=stage, kind=kind, name=name, action="no-op", reason=ok or "as wanted")


def members(
    field: str,
    want: Iterable[str],
    have: Iterable[str],
    *,
    add: str = "add",
    remove: str | None = "remove",
) -> list[Drift]:
    """The drift of a set-valued field: what is wanted and missing (`add`), and, unless
    `remove` is None, what is there and not wanted."""
    want_set, have_set = set(want), set(have)
    missing = sorted(want_set - have_set)
    extra = sorted(have_set - want_set) if remove is not None else []
    out = []
    if missing:
        out.append((field, f"{add} {shown(missing)}"))
    if extra:
        out.append((field, f"{remove} {shown(extra)}"))
    return out


def value(field: str, want: object, have: object) -> list[Drift]:
    """The drift of a single-valued field."""
    if want == have:
        return []
    return [(field, f"{field} {have if have not in (None, '') else 'none'} -> {want}")]


def count(stage: int, kind: str, name: str, want: int, have: int, what: str) -> PlanEntry:
    """A group of `want` like resources of which `have` exist (extra ones are used as they
    are: a deploy launches, it never terminates)."""
    if have == 0:
        return resource(stage, kind, name, exists=False, create=f"launch {want} {what}")
    if have < want:
        why = f"instance count {have} -> {want} (launch {want - have})"
        return resource(stage, kind, name, exists=True, drift=[("instance count", why)])
    return resource(stage, kind, name, exists=True, ok=f"{have} {what} running (want {want})")


def deduplicated(entries: Iterable[PlanEntry]) -> list[PlanEntry]:
    """Entries in order, each resource's same finding once (a resource several stages make
    sure of, e.g. the traffic generator of stages 6, 10 and 11, is listed under the first)."""
    seen: set[tuple[str, str, Action, str, str]] = set()
    out = []
    for e in entries:
        key = (e.kind, e.name, e.action, e.field, e.reason)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def deletes(found: Iterable[tuple[int, str, str]]) -> list[PlanEntry]:
    """A teardown's entries: every (stage, kind, name) found is deleted."""
    return [
        PlanEntry(
            stage=stage, kind=kind, name=name, action="delete", reason="tagged for the deployment"
        )
        for stage, kind, name in found
    ]
