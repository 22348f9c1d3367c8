"""Every check of a flow's inputs that needs no network and no Prefect: the flows run them
first, and the CLI runs them before any Prefect server starts."""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from tasks.deploy.dag import NAMES, prerequisites
from tasks.models import Instance
from tasks.planning import PlanError, PoolPlan, default_shape, parse_allow_failures, plan_pool

Runner = Literal["process", "thread", "dask"]


def resolve_shape(
    hosts: int, chunk_size: int | None, max_workers: int | None, desired_count: int | None
) -> tuple[int, int, int]:
    """None for a knob means "choose": processes ≈ cores, as many threads as hosts in a
    chunk. Knobs that are given are kept as they are (plan_pool validates them)."""
    d_chunk, _, d_count = default_shape(hosts, os.cpu_count() or 2)
    chunk = d_chunk if chunk_size is None else chunk_size
    if desired_count is None:
        desired_count = max(1, min(d_count, -(-hosts // chunk))) if chunk > 0 else d_count
    return chunk, chunk if max_workers is None else max_workers, desired_count


def validate_install(
    instances: list[Instance],
    chunk_size: int | None,
    max_workers: int | None,
    desired_count: int | None,
    runner: str,
    allow_failures: str,
    dask_address: str | None,
) -> PoolPlan:
    """Every input check that needs no network; raises PlanError naming the field."""
    if not instances:
        raise PlanError(
            "instances", "instances is empty; launch instances first (or pass --instances N)"
        )
    ids = [i.instance_id for i in instances]
    if len(set(ids)) != len(ids):
        raise PlanError("instances", "instances lists the same instance id twice")
    if runner not in ("process", "thread", "dask"):
        raise PlanError("runner", f"runner={runner!r} is not one of process, thread, dask")
    if runner == "dask" and not dask_address:
        raise PlanError("dask_address", "runner=dask needs dask_address (tcp://host:8786)")
    parse_allow_failures(allow_failures)
    chunk, workers, count = resolve_shape(len(instances), chunk_size, max_workers, desired_count)
    return plan_pool(len(instances), chunk, workers, count)


def parse_stages(spec: str | list[int]) -> list[int]:
    """ "1-11", "1-5", "1,2,5", [1, 2] -> the sorted stage numbers named, exactly those
    (`with_prerequisites` gives the stages they depend on as well)."""
    last = max(NAMES)
    if isinstance(spec, list):
        bad = [n for n in spec if isinstance(n, bool) or not isinstance(n, int)]
        if bad:
            raise PlanError("stages", f"stages={spec!r}: {bad[0]!r} is not a stage number 1-{last}")
        wanted = set(spec)
    else:
        wanted = set()
        text = str(spec).replace(" ", "")
        beyond: list[str] = []  # parts naming no stage of the table, as typed
        for part in text.split(","):
            m = re.fullmatch(r"([0-9]{1,6})(?:-([0-9]{1,6}))?", part)
            if not m:
                raise PlanError(
                    "stages",
                    f"stages={str(spec)[:40]!r}: {part[:20]!r} is not a stage number "
                    "or range; use e.g. 1-11, 1-5 or 1,2,3",
                )
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                where = "" if part == text else f"{part}: "
                raise PlanError(
                    "stages",
                    f"stages={text[:40]}: {where}a range must go up, e.g. {hi}-{lo}",
                )
            if lo not in NAMES or hi not in NAMES:
                beyond.append(part)
            # clamp before building the range: "1-999999" must not build a huge set
            wanted |= set(range(lo, min(hi, last + 1) + 1))
        if beyond:
            raise PlanError(
                "stages",
                f"stages={text[:40]}: unknown stage(s) {', '.join(b[:20] for b in beyond)}; "
                f"stages are 1-{last}",
            )
    if not wanted:
        raise PlanError("stages", f"stages={spec!r} names no stage; stages are 1-{last}")
    unknown = sorted(n for n in wanted if n not in NAMES)
    if unknown:
        raise PlanError(
            "stages", f"stages={spec!r}: unknown stage(s) {unknown}; stages are 1-{last}"
        )
    return sorted(wanted)


def with_prerequisites(stages: list[int]) -> list[int]:
    """The stages and every stage they depend on (the stage table's needs), sorted."""
    return prerequisites(stages)


def check_shape(instances: int, install: dict[str, Any]) -> None:
    """The instance count and the install's pool shape (pure)."""
    if instances < 1:
        raise PlanError("instances", f"instances={instances}: launch at least 1 instance")
    if instances > 5000:
        raise PlanError("instances", f"instances={instances}: more than 5000 is not supported")
    chunk, workers, count = resolve_shape(
        instances,
        install.get("chunk_size"),
        install.get("max_workers"),
        install.get("desired_count"),
    )
    plan_pool(instances, chunk, workers, count)


def check_deploy_request(
    instances: int,
    stages: str,
    install: dict[str, Any],
    allow_failures: str,
    runner: str = "process",
) -> list[int]:
    """Every check of a deploy request that needs no network: the CLI runs it before any
    server starts, the flow before anything is created. Returns the stages to run."""
    if isinstance(instances, bool) or not isinstance(instances, int):
        raise PlanError("instances", f"instances={instances!r} is not a whole number")
    check_shape(instances, install)
    parse_allow_failures(str(allow_failures))
    if runner not in ("process", "thread"):
        raise PlanError(
            "runner",
            f"runner={runner!r}: deploy installs with process or thread (dask needs "
            "dask_address: use install-tomcat --runner dask)",
        )
    return parse_stages(stages)


def check_benchmark_request(
    repeat: int,
    target: str,
    install_latency: float,
    throttle_rate: float,
    public_ip_cidr: str,
    service_ip_cidr: str,
) -> None:
    """The benchmark's scalar inputs (the matrix is checked by `load_matrix`)."""
    import ipaddress
    import math

    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise PlanError("repeat", f"repeat={repeat!r} must be a whole number of at least 1")
    if target not in ("sandbox", "aws"):
        raise PlanError("target", f"target={target!r} is not one of sandbox, aws")
    if not (isinstance(install_latency, int | float) and math.isfinite(install_latency)) or (
        install_latency < 0
    ):
        raise PlanError("install_latency", f"install_latency={install_latency!r} must be >= 0")
    if not (isinstance(throttle_rate, int | float) and 0 <= throttle_rate <= 1):
        raise PlanError("throttle_rate", f"throttle_rate={throttle_rate!r} must be in 0..1")
    for field, cidr in (("public_ip_cidr", public_ip_cidr), ("service_ip_cidr", service_ip_cidr)):
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError:
            msg = f"{field}={cidr!r} is not a network, e.g. 127.140.0.0/16"
            raise PlanError(field, msg) from None
        if target == "sandbox" and not net.is_loopback:
            raise PlanError(field, f"{field}={cidr!r} must be a loopback range (127.0.0.0/8)")
