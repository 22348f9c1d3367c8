"""Resource sampling with psutil: host-wide RAM/swap/CPU samples, process-tree RSS and PSS.

`Sampler` takes a "start" sample, samples at planned offsets on a daemon thread, and an
"end" sample on `stop()`; `PeakTreeRss` tracks the peak RSS of a process tree. Neither
blocks the caller for more than a few milliseconds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType

import psutil

from tasks.models import ResourceSample

log = logging.getLogger(__name__)

MB = 1024 * 1024
_JOIN_TIMEOUT_S = 0.02


def sample(label: str, t0: float) -> ResourceSample:
    """One host-wide sample; ``at_s = time.monotonic() - t0``.

    CPU is ``psutil.cpu_percent(percpu=True, interval=None)``: the usage per core since the
    previous call in this process (all zeros on the very first call).
    """
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    cpu = psutil.cpu_percent(percpu=True, interval=None)
    return ResourceSample(
        label=label,
        at_s=time.monotonic() - t0,
        ram_used_mb=vm.used / MB,
        ram_available_mb=vm.available / MB,
        swap_used_mb=swap.used / MB,
        cpu_percent=[float(c) for c in cpu],
    )


class Sampler:
    """Samples at ``t0 + seconds`` for each ``(label, seconds)`` point, between start and stop.

    `t0` defaults to the moment `start()` is called. Points not reached by `stop()` are
    skipped.
    """

    def __init__(
        self,
        points: list[tuple[str, float]],
        t0: float | None = None,
        on_sample: Callable[[ResourceSample], None] | None = None,
    ) -> None:
        self._points = sorted(points, key=lambda p: p[1])
        self._on_sample = on_sample  # called as each sample is taken (logging, say)
        self._t0 = t0
        self._samples: list[ResourceSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def t0(self) -> float | None:
        return self._t0

    def start(self) -> None:
        """Take the "start" sample and start the background thread for the points."""
        if self._thread is not None:
            raise RuntimeError("Sampler.start() called twice")
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._samples.append(sample("start", self._t0))
        self._emit(self._samples[-1])
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._t0 is not None
        for label, offset in self._points:
            if self._stop.wait(max(0.0, self._t0 + offset - time.monotonic())):
                return
            try:
                s = sample(label, self._t0)
            except Exception:  # a failed sample must not kill the run
                log.debug("resource sample %s failed", label, exc_info=True)
                continue
            with self._lock:
                if self._stopped:
                    return
                self._samples.append(s)
            self._emit(s)

    def _emit(self, s: ResourceSample) -> None:
        if self._on_sample is not None:
            try:
                self._on_sample(s)
            except Exception:  # a failing callback must not kill the run
                log.debug("resource sample callback failed", exc_info=True)

    def stop(self) -> list[ResourceSample]:
        """Take the "end" sample, stop the thread and return all samples in time order."""
        if self._thread is None or self._t0 is None:
            raise RuntimeError("Sampler.stop() called before start()")
        self._stop.set()
        with self._lock:
            end = None
            if not self._stopped:
                self._stopped = True
                end = sample("end", self._t0)
                self._samples.append(end)
            samples = list(self._samples)
        if end is not None:
            self._emit(end)
        self._thread.join(_JOIN_TIMEOUT_S)
        return sorted(samples, key=lambda s: s.at_s)


def _rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _pss_bytes(pid: int) -> int:
    """Proportional set size of one process from ``/proc/<pid>/smaps_rollup`` (each
    shared page counted as 1/n in each of the n processes mapping it)."""
    with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
        for line in fh:
            if line.startswith(b"Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _tree_mb(pid: int | None, measure: Callable[[int], int]) -> float:
    """`measure` summed over process `pid` and its descendants, in MB; processes that
    vanish or cannot be read are left out; 0.0 if `pid` itself does not exist."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += measure(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError, ValueError, IndexError):
            continue
    return total / MB


def tree_rss_mb(pid: int | None = None) -> float:
    """RSS in MB of process `pid` (default: this process) plus all its descendants.

    Processes that vanish (or cannot be read) while being measured are left out; if `pid`
    itself does not exist the result is 0.0.
    """
    return _tree_mb(pid, _rss_bytes)


def tree_pss_mb(pid: int | None = None) -> float:
    """PSS in MB of process `pid` (default: this process) plus all its descendants: the
    tree's memory with shared pages counted once. Summed RSS (`tree_rss_mb`) counts a
    forked or preloaded worker's shared pages once per process. Processes that vanish or
    cannot be read are left out; 0.0 if `pid` does not exist (or without smaps_rollup)."""
    return _tree_mb(pid, _pss_bytes)


class PeakTreeRss:
    """Context manager tracking the peak `tree_rss_mb(pid)` (and the peak `tree_pss_mb`
    in `peak_pss_mb`), sampled every `interval` s."""

    def __init__(self, pid: int | None = None, interval: float = 0.25) -> None:
        if interval <= 0:
            raise ValueError(f"interval={interval} must be > 0")
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self.peak_pss_mb = 0.0
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _measure(self) -> None:
        rss = tree_rss_mb(self.pid)
        pss = tree_pss_mb(self.pid)
        with self._lock:
            self.samples += 1
            self.peak_mb = max(self.peak_mb, rss)
            self.peak_pss_mb = max(self.peak_pss_mb, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._measure()

    def __enter__(self) -> PeakTreeRss:
        self._measure()
        self._thread = threading.Thread(target=self._run, name="peak-tree-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._measure()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)


def extra_sample_chance(rng: random.Random, fraction: float = 0.1) -> float | None:
    """With probability `fraction`, a delay fraction in (0, 1) at which a chunk takes one
    extra sample (multiply by its expected runtime); otherwise None."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be between 0 and 1")
    if rng.random() >= fraction:
        return None
    at = rng.random()
    while at == 0.0:
        at = rng.random()
    return at


def format_sample(s: ResourceSample) -> str:
    """One log line, e.g. "start: RAM used 1234 MB, available 5678 MB, swap used 0 MB,
    CPU per core [12.0, 3.5]"."""
    cores = ", ".join(f"{c:.1f}" for c in s.cpu_percent)
    return (
        f"{s.label}: RAM used {s.ram_used_mb:.0f} MB, available {s.ram_available_mb:.0f} MB, "
        f"swap used {s.swap_used_mb:.0f} MB, CPU per core [{cores}]"
    )
