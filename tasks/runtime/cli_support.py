"""What the `tomcat-fleet` commands need besides the flows: launching instances for a
standalone install, reading an inventory file, and the JSON lines they print."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any


def bench_json_keys() -> list[str]:
    """The keys of each row in the benchmark's JSON line: the table's columns and `default`."""
    from tasks.bench.report import TABLE_COLUMNS

    return [*TABLE_COLUMNS, "default"]


def launch(count: int, settings_overrides: dict[str, Any]) -> tuple[list[Any], int, int]:
    """Key pair, security group and `count` instances, waited until reachable."""
    from blocks.settings import FleetSettings
    from tasks.aws import Aws
    from tasks.aws.ec2 import ensure_key_pair, ensure_security_group, launch_instances, wait_running

    settings = FleetSettings(**settings_overrides)
    aws = Aws(settings)
    ensure_key_pair(aws, settings)
    sg = ensure_security_group(aws, settings)
    ids = launch_instances(aws, settings, count, sg, client_token=uuid.uuid4().hex)
    instances = wait_running(aws, ids)
    return instances, aws.api_calls, aws.stats.retries


def read_inventory(path: str) -> list[Any]:
    from tasks.models import Instance

    data = json.loads(Path(path).read_text())
    rows = data["instances"] if isinstance(data, dict) else data
    return [Instance(**row) for row in rows]


def deploy_json(report: Any, state: Any, seconds: float) -> str:
    return json.dumps(
        {
            "deployment": report.deployment,
            "state": state.type.value,
            "seconds": round(seconds, 2),
            "stages": {
                str(r.stage): {
                    "name": r.name,
                    "status": r.status,
                    "seconds": r.seconds,
                    **({"detail": r.detail} if r.detail else {}),
                }
                for r in report.stages
            },
            "urls": report.urls,
            "install": report.install,
        }
    )


def install_json(
    summary: Any,
    state: Any,
    wall_s: float,
    peak_mb: float,
    api_calls: int,
    retries: int,
    marks: dict[str, float] | None = None,
) -> str:
    """The install command's one JSON line. `marks`: seconds from the run's start (after
    argument checks) to each step it reached; `process_start` is negative (start-up)."""
    return json.dumps(
        {
            "hosts": summary.hosts,
            "installed": summary.installed,
            "failed": summary.failed,
            "already_installed": summary.already_installed,
            "install_s": round(summary.install_s, 2),
            "wall_s": round(wall_s, 2),
            "peak_rss_mb": round(peak_mb, 1),
            "chunk_size": summary.chunk_size,
            "max_workers": summary.max_workers,
            "desired_count": summary.desired_count,
            "runner": summary.runner,
            "api_calls": api_calls + summary.api_calls,
            "throttle_retries": retries + summary.throttle_retries,
            "flow_state": state.type.value,
            "flow_run_id": str(getattr(state.state_details, "flow_run_id", "") or ""),
            "marks_s": {k: round(v, 2) for k, v in (marks or {}).items()},
        }
    )


def benchmark_json(result: dict[str, Any]) -> str:
    keys = bench_json_keys()
    return json.dumps(
        {
            "csv": result["csv"],
            "png": result["png"],
            "runs_csv": result["runs_csv"],
            "timeline_csv": result["timeline_csv"],
            "elapsed_s": result["elapsed_s"],
            "rows": [{k: r.get(k) for k in keys} for r in result["rows"]],
        }
    )


@contextlib.contextmanager
def side_by_side(
    first: AbstractContextManager[Any], second: AbstractContextManager[Any]
) -> Iterator[tuple[Any, Any]]:
    """Enter `first` in a thread while `second` is entered here (e.g. a new Prefect server
    migrating its database and a sandbox starting); exit `second`, then `first`."""
    box: dict[str, Any] = {}

    def up() -> None:
        try:
            box["value"] = first.__enter__()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=up, name="start-side-by-side", daemon=True)
    thread.start()
    try:
        with second as value:
            thread.join()
            if "error" in box:
                raise box["error"]
            yield box.get("value"), value
    finally:
        thread.join()
        if "error" not in box:
            first.__exit__(None, None, None)
