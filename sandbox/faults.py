"""Seeded fault decisions: which hosts are slow or never boot, which commands fail or drop.

Per-host traits are fixed from the seed and the instance id, so a host behaves the same
for its whole life and the same seed gives the same fleet. Per-command faults draw from a
per-host stream, so they stay reproducible for a given command order.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from .config import FaultRates


@dataclass
class HostFaults:
    never_boots: bool
    slow_factor: float
    rng: random.Random = field(repr=False)
    rates: FaultRates = field(repr=False)
    broken_mirror: bool = False  # injected at run time: every package fetch fails

    def install_fails(self) -> bool:
        return self.broken_mirror or self.rng.random() < self.rates.install_failure

    def drops_connection(self) -> bool:
        return self.rng.random() < self.rates.ssh_drop


def host_faults(seed: int, instance_id: str, rates: FaultRates) -> HostFaults:
    digest = hashlib.sha256(f"{seed}:{instance_id}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    never = rng.random() < rates.never_boot
    slow = rates.slow_factor if rng.random() < rates.slow_host else 1.0
    return HostFaults(never_boots=never, slow_factor=slow, rng=rng, rates=rates)


def jittered(seconds: float, jitter: float, rng: random.Random) -> float:
    """`seconds` +/- `jitter` (a fraction), never negative."""
    return max(0.0, seconds * (1.0 + rng.uniform(-jitter, jitter)))
