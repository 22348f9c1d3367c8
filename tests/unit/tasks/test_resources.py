"""Resource sampling: real psutil on this machine, short timings, no network."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import psutil
import pytest

from tasks.models import ResourceSample
from tasks.resources import (
    PeakTreeRss,
    Sampler,
    extra_sample_chance,
    format_sample,
    sample,
    tree_pss_mb,
    tree_rss_mb,
)


def test_sample_fields() -> None:
    t0 = time.monotonic() - 1.5
    s = sample("probe", t0)
    assert isinstance(s, ResourceSample)
    assert s.label == "probe"
    assert 1.5 <= s.at_s < 5.0
    assert s.ram_used_mb > 0 and s.ram_available_mb > 0 and s.swap_used_mb >= 0
    assert len(s.cpu_percent) == psutil.cpu_count()
    assert all(0.0 <= c <= 100.0 for c in s.cpu_percent)


def test_sampler_start_points_end_in_order() -> None:
    sampler = Sampler([("75%", 0.10), ("random-40%", 0.05), ("50%", 0.08)])
    t = time.monotonic()
    sampler.start()
    assert time.monotonic() - t < 0.1
    time.sleep(0.25)
    t = time.monotonic()
    samples = sampler.stop()
    assert time.monotonic() - t < 0.1
    assert [s.label for s in samples] == ["start", "random-40%", "50%", "75%", "end"]
    times = [s.at_s for s in samples]
    assert times == sorted(times)
    assert samples[1].at_s >= 0.045 and samples[3].at_s >= 0.095


def test_sampler_stop_skips_future_points_quickly() -> None:
    sampler = Sampler([("soon", 0.03), ("late", 30.0)], t0=time.monotonic())
    sampler.start()
    time.sleep(0.1)
    t = time.monotonic()
    samples = sampler.stop()
    assert time.monotonic() - t < 0.1
    assert [s.label for s in samples] == ["start", "soon", "end"]
    assert sampler.stop() == samples  # idempotent, no second "end"


def test_sampler_misuse() -> None:
    sampler = Sampler([])
    with pytest.raises(RuntimeError):
        sampler.stop()
    sampler.start()
    with pytest.raises(RuntimeError):
        sampler.start()
    assert [s.label for s in sampler.stop()] == ["start", "end"]


def test_tree_rss_includes_children() -> None:
    own = psutil.Process().memory_info().rss / (1024 * 1024)
    assert tree_rss_mb() >= own * 0.5
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; b = b'x' * (40 * 1024 * 1024); time.sleep(30)"]
    )
    try:
        deadline = time.monotonic() + 10
        child_rss = 0.0
        while time.monotonic() < deadline:
            child_rss = tree_rss_mb(child.pid)
            if child_rss > 40:
                break
            time.sleep(0.05)
        assert child_rss > 40
        assert tree_rss_mb() >= psutil.Process().memory_info().rss / (1024 * 1024) + 40
    finally:
        child.kill()
        child.wait()
    assert tree_rss_mb(child.pid) == 0.0  # vanished process


def test_tree_pss_counts_shared_pages_once() -> None:
    """Forked children share the parent's pages: summed RSS counts them per process,
    PSS splits them, so the tree's PSS stays near one copy."""
    code = (
        "import os, time\n"
        "b = b'x' * (60 * 1024 * 1024)\n"
        "kids = [os.fork() for _ in range(3)]\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and tree_rss_mb(child.pid) < 4 * 60:
            time.sleep(0.05)
        rss, pss = tree_rss_mb(child.pid), tree_pss_mb(child.pid)
        assert rss > 4 * 60  # root + 3 children (+ grandchildren), each "holds" 60 MB
        assert 60 < pss < rss / 2
    finally:
        for proc in psutil.Process(child.pid).children(recursive=True):
            proc.kill()
        child.kill()
        child.wait()
    assert tree_pss_mb(child.pid) == 0.0  # vanished process


def test_peak_tree_rss() -> None:
    t = time.monotonic()
    with PeakTreeRss(interval=0.01) as peak:
        time.sleep(0.1)
    assert time.monotonic() - t < 0.5
    assert peak.peak_mb > 0 and 0 < peak.peak_pss_mb <= peak.peak_mb
    assert peak.samples >= 3
    with pytest.raises(ValueError):
        PeakTreeRss(interval=0)


def test_extra_sample_chance() -> None:
    rng = random.Random(42)
    results = [extra_sample_chance(rng) for _ in range(5000)]
    hits = [r for r in results if r is not None]
    assert 350 <= len(hits) <= 650  # about 10 %
    assert all(0.0 < r < 1.0 for r in hits)
    assert extra_sample_chance(rng, 0.0) is None
    assert extra_sample_chance(rng, 1.0) is not None
    with pytest.raises(ValueError):
        extra_sample_chance(rng, 1.5)


def test_format_sample() -> None:
    s = ResourceSample(
        label="50%",
        at_s=1.0,
        ram_used_mb=1234.4,
        ram_available_mb=5678.0,
        swap_used_mb=0.0,
        cpu_percent=[12.0, 3.5],
    )
    assert format_sample(s) == (
        "50%: RAM used 1234 MB, available 5678 MB, swap used 0 MB, CPU per core [12.0, 3.5]"
    )
