"""ELBv2 deregistration as AWS does it: a deregistered target drains.

moto drops a deregistered target at once. Here it stays `draining` (reason
`Target.DeregistrationInProgress`) for the target group's deregistration delay
(`deregistration_delay.timeout_seconds`, 300 unless changed), listed by DescribeTargetHealth
with or without `Targets`, and only then reads `unused` (`Target.NotRegistered`). The
balancers hear of it at once (`on_change`), before the fleet's next snapshot: a draining
target gets no new request, the ones it is serving finish. Registering it again ends the
drain (the target starts over as `initial`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

DRAINING = ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress")

# (target group arn, target id, port, "draining" | "registered"), called under the API lock
Notify = Callable[[str, str, int, str], None]


class _Hook:
    notify: Notify | None = None


def _draining(tg: FakeTargetGroup) -> dict[str, tuple[dict[str, Any], float]]:
    """id -> (target, monotonic end of its drain), pruned of drains that ended."""
    table: dict[str, tuple[dict[str, Any], float]] = tg.__dict__.setdefault("_draining", {})
    now = time.monotonic()
    for tid in [t for t, (_, until) in table.items() if until <= now]:
        del table[tid]
    return table


def _delay(tg: FakeTargetGroup) -> float:
    try:
        return float(str(tg.attributes.get("deregistration_delay.timeout_seconds", 300)))
    except (TypeError, ValueError):
        return 300.0


def install(notify: Notify | None) -> None:
    """Patch moto once (after `moto_patches` wrapped `health_for`); later calls only
    change who is told."""
    _Hook.notify = notify
    if getattr(FakeTargetGroup, "_drain_patched", False):
        return
    FakeTargetGroup._drain_patched = True  # type: ignore[attr-defined]
    orig_register = FakeTargetGroup.register
    orig_deregister = FakeTargetGroup.deregister
    orig_health = FakeTargetGroup.health_for
    orig_describe = ELBv2Backend.describe_target_health

    def register(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
        orig_register(self, targets)
        table = _draining(self)
        for t in targets:
            table.pop(t["Id"], None)
            if _Hook.notify:
                _Hook.notify(self.arn, t["Id"], int(t.get("Port", self.port)), "registered")

    def deregister(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
        current = {t["Id"]: dict(self.targets[t["Id"]]) for t in targets if t["Id"] in self.targets}
        # a target already draining is accepted and keeps its drain; an unknown one is not
        held = _draining(self)
        orig_deregister(self, [t for t in targets if t["Id"] not in held or t["Id"] in current])
        until = time.monotonic() + _delay(self)
        table = _draining(self)
        for tid, t in current.items():
            table[tid] = (t, until)
            if _Hook.notify:
                _Hook.notify(self.arn, tid, int(t.get("Port", self.port)), "draining")

    def health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> Any:
        held = _draining(self).get(target["Id"])
        if held is not None and target["Id"] not in self.targets:
            t = held[0]
            return FakeHealthStatus(t["Id"], t["Port"], self.health_check_port, *DRAINING)
        return orig_health(self, target, ec2_backend)

    def describe_target_health(
        self: ELBv2Backend, target_group_arn: str, targets: list[dict[str, Any]]
    ) -> list[FakeHealthStatus]:
        tg = self.target_groups.get(target_group_arn)
        if not targets and tg is not None:
            draining = [t for tid, (t, _) in _draining(tg).items() if tid not in tg.targets]
            targets = [*tg.targets.values(), *draining]
        return list(orig_describe(self, target_group_arn, targets))

    FakeTargetGroup.register = register  # type: ignore[method-assign]
    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]
    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]
    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]
