"""The rollout's pure part: wave sizes (Ansible's `serial`), the per-wave error allowance
(SSM's MaxErrors), the recipe's version and the hosts' final states. No network, no Prefect.

- `waves`: a list of sizes, each a host count (`5`) or a percent of the fleet (`"25%"`,
  `int(hosts * p / 100)`, at least 1, as Ansible rounds it); the last size repeats until
  every host is in a wave. `[1, "25%"]` on 12 hosts: 1, 3, 3, 3, 2.
- `max_errors`: hosts of one wave allowed to fail, a count (`0`, `2`) or a percent of that
  wave's hosts (`"10%"`, floored). A wave whose failures exceed it ends the rollout: no
  host of a later wave is touched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from blocks.install_steps import InstallStep
from tasks.planning import PlanError

_COUNT = re.compile(r"\d{1,9}")
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)%")

Size = tuple[Literal["count", "percent"], float]
HostState = Literal["upgraded", "failed", "untouched"]


def _one_size(item: object, fix: str) -> Size:
    if isinstance(item, bool):
        raise PlanError("waves", f"waves: {item!r} is not a size; {fix}")
    text = str(item).strip()
    if _COUNT.fullmatch(text):
        n = int(text)
        if n < 1:
            raise PlanError("waves", f"waves: {text} hosts is not a wave; {fix}")
        return "count", n
    match = _PERCENT.fullmatch(text)
    if match:
        p = float(match.group(1))
        if not 0 < p <= 100:
            raise PlanError("waves", f"waves: {text} is outside 0-100%; {fix}")
        return "percent", p
    raise PlanError("waves", f"waves: {text[:40]!r} is not a size; {fix}")


def parse_waves(spec: str | Sequence[str | int]) -> list[Size]:
    """`"1,10%,50%,100%"` or `[1, "10%", "50%", "100%"]` -> sizes; PlanError("waves")."""
    fix = "give host counts >= 1 or percents in (0, 100], e.g. 1,10%,50%,100%"
    if isinstance(spec, str):
        items: list[object] = [s for s in spec.split(",")]
    elif isinstance(spec, Sequence):
        items = list(spec)
    else:
        raise PlanError("waves", f"waves: {spec!r} is not a list of sizes; {fix}")
    if not items or len(items) > 100:
        raise PlanError("waves", f"waves: give 1 to 100 sizes; {fix}")
    return [_one_size(i, fix) for i in items]


def wave_size(size: Size, hosts: int) -> int:
    """Hosts in a wave of `size` on a fleet of `hosts` (Ansible: percent -> int, >= 1)."""
    kind, value = size
    if kind == "count":
        return int(value)
    return max(1, int(hosts * value / 100))


def plan_waves(hosts: Sequence[str], sizes: Sequence[Size]) -> list[list[str]]:
    """`hosts` (in order) split into waves of `sizes` (parsed: `parse_waves`); the last size
    repeats until all are placed."""
    n = len(hosts)
    out: list[list[str]] = []
    at = 0
    while at < n:
        size = wave_size(sizes[min(len(out), len(sizes) - 1)], n)
        out.append(list(hosts[at : at + size]))
        at += size
    return out


def parse_max_errors(spec: str | int) -> Size:
    """`0`, `"2"` or `"10%"` (0-100) -> ("count", n) or ("percent", p); PlanError."""
    fix = 'give a host count such as 0 or 2, or a percent of the wave such as "10%" (0-100)'
    if isinstance(spec, bool):
        raise PlanError("max_errors", f"max_errors={spec!r} is not valid; {fix}")
    text = str(spec).strip()
    if _COUNT.fullmatch(text):
        return "count", int(text)
    match = _PERCENT.fullmatch(text)
    if match:
        p = float(match.group(1))
        if p > 100:
            raise PlanError("max_errors", f"max_errors={text} is above 100%; {fix}")
        return "percent", p
    raise PlanError("max_errors", f"max_errors={text[:40]!r} is not valid; {fix}")


def errors_allowed(limit: Size, wave_hosts: int) -> int:
    """Failures a wave of `wave_hosts` may have before the rollout stops (`limit`, parsed:
    `parse_max_errors`)."""
    kind, value = limit
    return int(value) if kind == "count" else int(wave_hosts * value / 100)


def recipe_version(steps: Sequence[InstallStep]) -> str:
    """A short, stable name of what the recipe installs: 12 hex of the steps' JSON (names,
    commands, timeouts and markers); any changed step is a new version."""
    text = json.dumps([s.model_dump(mode="json") for s in steps], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class HostLine(BaseModel):
    """One host of the rollout as the report shows it."""

    instance_id: str
    wave: int  # 1-based
    state: HostState = "untouched"
    version: str = "unknown"  # what it runs as far as the rollout knows
    reason: str = ""
    seconds: float = 0.0


class WaveLine(BaseModel):
    number: int
    hosts: list[str]
    upgraded: int = 0
    failed: int = 0
    allowed: int = 0
    seconds: float = 0.0
    max_out_of_service: int = 0

    @property
    def stopped(self) -> bool:
        return self.failed > self.allowed


class RolloutState(BaseModel):
    """Every host of the fleet, in wave order, and each wave as it ended (the flow's
    result: plain data)."""

    version: str
    hosts: dict[str, HostLine] = Field(default_factory=dict)
    waves: list[WaveLine] = Field(default_factory=list)
    stopped_at: int | None = None  # the wave whose failures stopped the rollout
    planned_waves: list[list[str]] = Field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def start(
        cls, waves: list[list[str]], version: str, known: dict[str, str] | None = None
    ) -> RolloutState:
        known = known or {}
        state = cls(version=version, planned_waves=[list(w) for w in waves])
        for number, ids in enumerate(waves, start=1):
            for iid in ids:
                state.hosts[iid] = HostLine(
                    instance_id=iid, wave=number, version=known.get(iid, "unknown")
                )
        return state

    def counts(self) -> dict[str, int]:
        out = {"upgraded": 0, "failed": 0, "untouched": 0}
        for h in self.hosts.values():
            out[h.state] += 1
        return out

    def by_state(self, state: HostState) -> list[str]:
        return [h.instance_id for h in self.hosts.values() if h.state == state]

    def versions(self) -> dict[str, int]:
        """version -> hosts running it (as far as the rollout knows)."""
        out: dict[str, int] = {}
        for h in self.hosts.values():
            out[h.version] = out.get(h.version, 0) + 1
        return out


class RolloutRequest(BaseModel):
    """The rollout's inputs, parsed once at the flow's door."""

    waves: list[Size]
    max_errors: Size


def check_request(
    waves: str | Sequence[str | int],
    max_errors: str | int,
    canary_wait: float,
    poll_s: float,
    health_timeout_s: float,
) -> RolloutRequest:
    """Every rollout input, before anything changes: the parsed sizes, or PlanError naming
    the field."""
    request = RolloutRequest(waves=parse_waves(waves), max_errors=parse_max_errors(max_errors))
    for name, value, low in (
        ("canary_wait", canary_wait, 0.0),
        ("poll_s", poll_s, 0.01),
        ("health_timeout_s", health_timeout_s, 1.0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PlanError(name, f"{name}={value!r} is not a number of seconds")
        if not low <= float(value) <= 86400:
            raise PlanError(name, f"{name}={value!r} must be between {low:g} and 86400 seconds")
    return request
