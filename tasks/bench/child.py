"""The benchmark's seed and floor shapes: one child process, no Prefect
(`python -m flows bench-child seed|floor ...`, started by `tasks.bench.run.child_command`)."""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

_CFG: Any = None


def _install_chunk(args: tuple[list[dict[str, Any]], int]) -> list[str]:
    """Seed worker: one chunk in a pool process, `max_workers` threads."""
    from tasks.models import Instance
    from tasks.remote.recipe import install_host

    rows, workers = args
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [r.status for r in pool.map(lambda r: install_host(Instance(**r), _CFG), rows)]


def child(
    shape: Literal["seed", "floor"],
    inventory: str,
    chunk_size: int,
    max_workers: int,
    desired_count: int,
    deployment_name: str | None = None,
    state_dir: str | None = None,
    host_key_policy: Literal["tofu", "insecure"] = "tofu",
) -> int:
    """Install on the inventory with the seed's shape (a fork pool of `desired_count`
    processes, one chunk per task) or the floor's (one thread pool); print JSON.
    `host_key_policy`: tofu (keys kept in the state dir's known_hosts) or insecure."""
    global _CFG
    from blocks.settings import FleetSettings
    from tasks.remote.config import remote_config

    overrides: dict[str, Any] = {
        k: v
        for k, v in (("deployment_name", deployment_name), ("state_dir", state_dir))
        if v is not None
    }
    settings = FleetSettings(**overrides)
    _CFG = remote_config(
        settings, settings.key_file_path().read_text(), host_key_policy=host_key_policy
    )
    rows = json.loads(Path(inventory).read_text())
    t0 = time.monotonic()
    if shape == "floor":
        statuses = _install_chunk((rows, max(1, max_workers or len(rows))))
    else:
        chunk = chunk_size
        tasks = [(rows[i : i + chunk], max_workers) for i in range(0, len(rows), chunk)]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes=min(desired_count, len(tasks))) as pool:
            statuses = [s for part in pool.map(_install_chunk, tasks, chunksize=1) for s in part]
    install_s = time.monotonic() - t0
    print(
        json.dumps(
            {
                "installed": statuses.count("installed"),
                "failed": len(statuses) - statuses.count("installed"),
                "install_s": round(install_s, 2),
            }
        )
    )
    return 0


# ---------------------------------------------------------------- the run


def shape_command(
    shape: str,
    inventory: Path,
    knobs: tuple[int | None, int | None, int | None] | None,
    *,
    deployment: str,
    state_dir: str,
    host_key_policy: str = "tofu",
    log_dir: Path | None = None,
) -> list[str]:
    """The command that installs on `inventory` with one shape: `flow` (the install flow),
    `bare` (the flow's shape on the seed child's fork pool, no Prefect), `seed` or `floor`;
    `knobs` are chunk size, threads and processes (None for one: the flow's default)."""
    names = ("--chunk-size", "--max-workers", "--desired-count")
    knob_args = [
        a
        for n, v in zip(names, knobs or (None,) * 3, strict=True)
        if v is not None
        for a in (n, str(v))
    ]
    common = ["--host-key-policy", host_key_policy, "--deployment-name", deployment]
    common += ["--state-dir", state_dir]
    if shape == "flow":
        logs = ["--log-dir", str(log_dir)] if log_dir is not None else []
        return [
            *(sys.executable, "-m", "flows", "install", "--inventory", str(inventory)),
            *knob_args,
            *("--allow-failures", "100%"),
            *common,
            *logs,
        ]
    child = "seed" if shape == "bare" else shape
    return [
        *(sys.executable, "-m", "flows", "bench-child", child, "--inventory", str(inventory)),
        *knob_args,
        *common,
    ]


def last_json(out: str) -> dict[str, Any]:
    """The last JSON object line a child printed (its result)."""
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"no JSON line in the child's output: {out[-500:]!r}")
