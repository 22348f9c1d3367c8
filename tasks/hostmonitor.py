"""Host-level monitor: swap traffic, kswapd CPU and memory pressure, sampled in the
background (the seed's kswapd0 script, done properly).

Per sample: swap-in/out rates in pages/s from the `pswpin`/`pswpout` counters of
`/proc/vmstat`, the CPU used by the `kswapd*` kernel threads (percent of one core), memory
pressure from `/proc/pressure/memory` (PSI `some`/`full` avg10, when the kernel has PSI),
swap used and CPU per core. `start()` / `stop() -> list[dict]`; each sample carries
`t` (epoch seconds) and `at_s` (seconds since start, monotonic). The parsers are pure.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)
MB = 1024 * 1024

# what a span reports as peaks, and the columns of the joined timeline CSV
PRESSURE_KEYS = (
    "swap_in_per_s",
    "swap_out_per_s",
    "kswapd_cpu_pct",
    "psi_some_avg10",
    "psi_full_avg10",
    "swap_used_mb",
)
TIMELINE_COLUMNS = ["t", "at_s", "scenario", *PRESSURE_KEYS, "ram_available_mb", "cpu_per_core"]


def parse_vmstat(text: str) -> dict[str, int]:
    """`/proc/vmstat` ("name value" per line) -> {name: value}; malformed lines skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def parse_psi(text: str) -> dict[str, dict[str, float]]:
    """`/proc/pressure/memory` -> {"some": {"avg10": .., "avg60": .., "avg300": ..,
    "total": ..}, "full": {...}}; lines that do not parse are skipped."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        fields: dict[str, float] = {}
        for item in parts[1:]:
            key, _, value = item.partition("=")
            with contextlib.suppress(ValueError):
                fields[key] = float(value)
        out[parts[0]] = fields
    return out


def swap_rates(
    prev: dict[str, int], cur: dict[str, int], seconds: float
) -> tuple[float | None, float | None]:
    """(swap-in, swap-out) pages per second between two vmstat readings; None for a counter
    missing from either reading or a non-positive interval."""

    def rate(key: str) -> float | None:
        if seconds <= 0 or key not in prev or key not in cur:
            return None
        return max(0, cur[key] - prev[key]) / seconds

    return rate("pswpin"), rate("pswpout")


def cpu_percent_of(prev_s: float, cur_s: float, seconds: float) -> float:
    """CPU time used between two readings as percent of one core."""
    if seconds <= 0:
        return 0.0
    return max(0.0, cur_s - prev_s) / seconds * 100.0


class HostMonitor:
    """Samples the host every `interval` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.5, proc_root: str = "/proc") -> None:
        if interval <= 0:
            raise ValueError(f"interval={interval} must be > 0")
        self.interval = interval
        self.root = Path(proc_root)
        self.samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._kswapd: list[psutil.Process] = []
        self._prev: tuple[float, dict[str, int], float] | None = None

    @property
    def t0(self) -> float:
        """time.monotonic() at start(); spans given to `join_timeline` use the same clock."""
        return self._t0

    @property
    def psi_available(self) -> bool:
        return (self.root / "pressure" / "memory").is_file()

    def _read(self, name: str) -> str:
        try:
            return (self.root / name).read_text()
        except OSError:
            return ""

    def _kswapd_cpu_s(self) -> float:
        total = 0.0
        for proc in self._kswapd:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def sample(self) -> dict[str, Any]:
        now = time.monotonic()
        vm = parse_vmstat(self._read("vmstat"))
        ksw = self._kswapd_cpu_s()
        row: dict[str, Any] = {
            "t": round(time.time(), 3),
            "at_s": round(now - self._t0, 3),
            "swap_in_per_s": None,
            "swap_out_per_s": None,
            "kswapd_cpu_pct": None,
        }
        if self._prev is not None:
            p_at, p_vm, p_ksw = self._prev
            row["swap_in_per_s"], row["swap_out_per_s"] = swap_rates(p_vm, vm, now - p_at)
            if self._kswapd:
                row["kswapd_cpu_pct"] = round(cpu_percent_of(p_ksw, ksw, now - p_at), 2)
        self._prev = (now, vm, ksw)
        psi = parse_psi(self._read("pressure/memory"))
        row["psi_some_avg10"] = psi.get("some", {}).get("avg10")
        row["psi_full_avg10"] = psi.get("full", {}).get("avg10")
        swap = psutil.swap_memory()
        vmem = psutil.virtual_memory()
        row["swap_used_mb"] = round(swap.used / MB, 1)
        row["ram_available_mb"] = round(vmem.available / MB, 1)
        row["cpu_per_core"] = [float(c) for c in psutil.cpu_percent(percpu=True, interval=None)]
        return row

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                s = self.sample()
            except Exception:  # a failed sample must not stop the monitor
                log.debug("host sample failed", exc_info=True)
                continue
            with self._lock:
                self.samples.append(s)

    def start(self) -> HostMonitor:
        if self._thread is not None:
            raise RuntimeError("HostMonitor.start() called twice")
        self._t0 = time.monotonic()
        self._kswapd = [
            p
            for p in psutil.process_iter(["name"])
            if str(p.info.get("name") or "").startswith("kswapd")
        ]
        psutil.cpu_percent(percpu=True, interval=None)  # the first call only sets a baseline
        self.sample()  # baseline for the rates; not kept
        self._thread = threading.Thread(target=self._run, name="host-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        """Stop sampling; every sample taken, in time order."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 1.0)
        with self._lock:
            return list(self.samples)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.samples)


def join_timeline(
    samples: Sequence[dict[str, Any]], spans: Sequence[tuple[str, float, float]]
) -> list[dict[str, Any]]:
    """Label each sample with the span (name, start at_s, end at_s) it falls in ("" when
    between spans)."""
    out = []
    for s in samples:
        label = next((name for name, a, b in spans if a <= s["at_s"] <= b), "")
        out.append({**s, "scenario": label})
    return out


def summarize_span(samples: Sequence[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Host metrics over one span: peaks of swap rates, kswapd CPU, PSI and swap used, and
    mean CPU per core."""
    inside = [s for s in samples if start <= s["at_s"] <= end]

    def peak(key: str) -> float | None:
        vals = [s[key] for s in inside if s.get(key) is not None]
        return round(max(vals), 2) if vals else None

    out: dict[str, Any] = {k: peak(k) for k in PRESSURE_KEYS}
    cores = [s["cpu_per_core"] for s in inside if s.get("cpu_per_core")]
    if cores:
        width = min(len(c) for c in cores)
        out["cpu_per_core"] = [
            round(sum(c[i] for c in cores) / len(cores), 1) for i in range(width)
        ]
        out["cpu_mean_pct"] = round(sum(out["cpu_per_core"]) / width, 1)
    else:
        out["cpu_per_core"], out["cpu_mean_pct"] = [], None
    out["host_samples"] = len(inside)
    return out
