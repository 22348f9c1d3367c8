"""Chunking, pool planning, allowed failures and sampling points (pure)."""

from __future__ import annotations

import pickle
import random

import pytest

from tasks.planning import (
    MAX_THREADS_PER_CHUNK,
    PlanError,
    PoolPlan,
    chunked,
    default_shape,
    failures_within,
    parse_allow_failures,
    plan_pool,
    sample_points,
)


def test_chunked() -> None:
    assert chunked([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunked("abcdef", 3) == [["a", "b", "c"], ["d", "e", "f"]]
    assert chunked([], 4) == []
    assert chunked([1, 2], 10) == [[1, 2]]
    hosts = list(range(103))
    chunks = chunked(hosts, 8)
    assert len(chunks) == 13 and [h for c in chunks for h in c] == hosts
    for bad in (0, -1):
        with pytest.raises(ValueError):
            chunked([1], bad)


def test_plan_250_50() -> None:
    plan = plan_pool(500, 2, 2, 200)
    assert (plan.total_chunks, plan.initial_batch, plan.pooled, plan.pooled_batches) == (
        250,
        200,
        50,
        1,
    )
    assert plan.notation == "250/50"
    assert plan.warnings == ()
    lines = plan.log_lines()
    assert "Total chunks: 250" in lines
    assert "Initial batch (desired_count): 200" in lines
    assert "Remaining chunks pooled: 50" in lines
    assert "Pooled batches: 1" in lines
    assert any(line.startswith("hosts=500, chunk_size=2, max_workers=2") for line in lines)


def test_plan_single_wave_and_multiple_batches() -> None:
    plan = plan_pool(100, 10, 10, 10)
    assert (plan.total_chunks, plan.initial_batch, plan.pooled, plan.pooled_batches) == (
        10,
        10,
        0,
        0,
    )
    assert plan.notation == "10/0"
    plan = plan_pool(101, 10, 16, 4)  # 11 chunks: 4 now, 7 pooled in 2 batches
    assert (plan.total_chunks, plan.initial_batch, plan.pooled, plan.pooled_batches) == (
        11,
        4,
        7,
        2,
    )
    assert plan.max_workers == 16
    assert plan_pool(1, 1, 1, 1).total_chunks == 1


def test_plan_raises_max_workers_with_warning() -> None:
    plan = plan_pool(64, 8, 2, 4)
    assert plan.max_workers == 8
    assert len(plan.warnings) == 1
    warning = plan.warnings[0]
    assert warning.startswith("max_workers=2 < chunk_size=8: raised to 8;")
    assert "serialises" in warning and "14:45 vs 6:25" in warning


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 2, 2, 1), "hosts"),
        ((10, 0, 2, 1), "chunk_size"),
        ((10, 2, 0, 1), "max_workers"),
        ((10, 2, 2, 0), "desired_count"),
        ((10, 2, 2, -3), "desired_count"),
        ((50, 2, 2, 30), "desired_count"),
        ((10, 2.5, 2, 1), "chunk_size"),
        ((True, 2, 2, 1), "hosts"),
    ],
)
def test_plan_errors(args: tuple[int, int, int, int], field: str) -> None:
    with pytest.raises(PlanError) as info:
        plan_pool(*args)
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_plan_error_message_desired_count() -> None:
    with pytest.raises(PlanError) as info:
        plan_pool(50, 2, 2, 30)
    assert str(info.value) == (
        "desired_count=30 is larger than the number of chunks (25 for 50 hosts at "
        "chunk_size=2); lower desired_count or chunk_size"
    )
    back = pickle.loads(pickle.dumps(info.value))
    assert back.field == "desired_count" and str(back) == str(info.value)


def test_plan_is_frozen() -> None:
    plan = plan_pool(10, 5, 5, 2)
    assert isinstance(plan, PoolPlan)
    with pytest.raises(AttributeError):
        plan.hosts = 3  # type: ignore[misc]


def test_default_shape_examples() -> None:
    assert default_shape(500, 8) == (63, 63, 8)
    assert default_shape(10, 6) == (2, 2, 5)  # ceil rounding: 5 chunks, one wave
    assert default_shape(3, 16) == (1, 1, 3)
    assert default_shape(1, 1) == (1, 1, 1)
    chunk_size, max_workers, desired = default_shape(5000, 8)
    assert chunk_size <= MAX_THREADS_PER_CHUNK and max_workers == chunk_size and desired == 8
    assert plan_pool(5000, chunk_size, max_workers, desired).pooled_batches == 2
    with pytest.raises(PlanError) as info:
        default_shape(10, 0)
    assert info.value.field == "cores"
    with pytest.raises(PlanError):
        default_shape(0, 4)


def test_default_shape_always_plans_cleanly() -> None:
    for hosts in [*range(1, 300), 511, 1000, 2048, 2049, 5000, 10_000, 100_000]:
        for cores in (1, 2, 3, 4, 6, 8, 16, 64, 200):
            chunk_size, max_workers, desired = default_shape(hosts, cores)
            assert 1 <= chunk_size <= MAX_THREADS_PER_CHUNK
            assert max_workers == chunk_size
            assert 1 <= desired <= min(cores, hosts)
            plan = plan_pool(hosts, chunk_size, max_workers, desired)
            assert plan.warnings == ()
            if hosts <= cores * MAX_THREADS_PER_CHUNK:
                assert plan.pooled == 0, (hosts, cores)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (0, ("count", 0)),
        (5, ("count", 5)),
        ("5", ("count", 5)),
        (" 12 ", ("count", 12)),
        ("10%", ("percent", 10.0)),
        ("0%", ("percent", 0.0)),
        ("100%", ("percent", 100.0)),
        ("2.5%", ("percent", 2.5)),
    ],
)
def test_parse_allow_failures(spec: str | int, expected: tuple[str, float]) -> None:
    assert parse_allow_failures(spec) == expected


@pytest.mark.parametrize("spec", [-1, "-1", "101%", "abc", "", "5.5", "%", "10%%", True, 2.5])
def test_parse_allow_failures_rejects(spec: object) -> None:
    with pytest.raises(PlanError) as info:
        parse_allow_failures(spec)  # type: ignore[arg-type]
    assert info.value.field == "allow_failures"
    assert "allow_failures" in str(info.value)


def test_failures_within() -> None:
    assert failures_within(0, 0, 100)
    assert not failures_within(0, 1, 100)
    assert failures_within("5", 5, 100)
    assert not failures_within(5, 6, 100)
    assert failures_within("10%", 3, 30)  # exactly 10 %
    assert not failures_within("10%", 4, 30)
    assert failures_within("2.5%", 5, 200)
    assert not failures_within("2.5%", 6, 200)
    assert failures_within("0%", 0, 0)
    assert not failures_within("50%", 1, 0)
    with pytest.raises(ValueError):
        failures_within(1, -1, 10)


@pytest.mark.parametrize("seed", range(50))
def test_sample_points(seed: int) -> None:
    points = sample_points(600.0, random.Random(seed))
    labels = [label for label, _ in points]
    times = [t for _, t in points]
    assert times == sorted(times)
    assert "50%" in labels and "75%" in labels
    assert dict(points)["50%"] == 300.0 and dict(points)["75%"] == 450.0
    (rand_label,) = [label for label in labels if label.startswith("random-")]
    rand_t = dict(points)[rand_label]
    assert 180.0 <= rand_t <= 420.0
    assert rand_label == f"random-{round(rand_t / 6)}%"


def test_sample_points_seeded_and_invalid() -> None:
    assert sample_points(100, random.Random(3)) == sample_points(100, random.Random(3))
    for bad in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(PlanError):
            sample_points(bad, random.Random(0))
