"""The benchmark flow: one small end-to-end run on a sandbox child (127.140/127.141 ranges)."""

from __future__ import annotations

import base64
import csv
import re
import time
from pathlib import Path

import pytest


@pytest.mark.timeout(240)
def test_benchmark_flow_end_to_end(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.benchmark import benchmark

    matrix = [
        {"name": "flow 2/0", "hosts": 6, "chunk_size": 3, "desired_count": 2},
        {"name": "seed 3/0", "hosts": 6, "shape": "seed"},
        {"name": "too many", "hosts": 6, "chunk_size": 2, "desired_count": 5},
    ]
    started = time.monotonic()
    state = benchmark(
        matrix=matrix,
        install_latency=0.05,
        out_dir=str(tmp_path / "out"),
        return_state=True,
    )
    elapsed = time.monotonic() - started
    assert state.is_completed(), state.message
    result = state.result()
    rows = {(r["scenario"], r["shape"]): r for r in result["rows"]}
    # the matrix, plus the flow scenario's bare twin (same shape, no Prefect) and the floor
    assert set(rows) == {
        ("flow 2/0", "flow"),
        ("seed 3/0", "seed"),
        ("too many", "flow"),
        ("flow 2/0", "bare"),
        ("6h floor", "floor"),
    }
    bad = rows[("too many", "flow")]
    assert bad["status"] == "invalid" and "desired_count=5 is larger" in bad["reason"]
    for key, r in rows.items():
        if key == ("too many", "flow"):
            continue
        assert r["status"] == "ok", r
        assert r["installed"] == 6 and r["hosts_failed"] == 0
        assert r["peak_rss_mb"] > 10 and r["install_s"] > 0 and r["wall_s"] >= r["install_s"]
        assert r["api_calls"] > 0 and r["throttle_retries"] == 0
        assert r["cpu_per_core"] and r["swap_used_mb"] is not None
    assert rows[("6h floor", "floor")]["rss_x_floor"] == 1
    assert rows[("flow 2/0", "flow")]["default"] is True
    # a Prefect process pool costs more memory than one thread pool
    assert rows[("flow 2/0", "flow")]["rss_x_floor"] > 1
    # Prefect's own cost is a measured ratio; PSS (shared pages once) is at most the RSS sum
    flow = rows[("flow 2/0", "flow")]
    assert flow["install_x_bare"] > 0 and flow["pss_x_bare"] > 1
    assert all(
        0 < r["peak_pss_mb"] <= r["peak_rss_mb"] for k, r in rows.items() if k[0] != "too many"
    )

    with open(result["csv"]) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 5
    invalid = [r for r in table if r["status"] == "invalid"]
    assert len(invalid) == 1 and "larger than the number of chunks" in invalid[0]["reason"]
    assert {"install_s_min", "install_s_max", "peak_rss_mb", "swap_used_mb"} <= set(table[0])
    with open(result["runs_csv"]) as f:
        assert len(list(csv.DictReader(f))) == 4
    with open(result["timeline_csv"]) as f:
        timeline = list(csv.DictReader(f))
    assert timeline and any(r["scenario"] for r in timeline)
    assert Path(result["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    keys = {a.key for a in arts}
    assert {"benchmark-scenarios", "benchmark-summary"} <= keys
    md = next(a for a in arts if a.key == "benchmark-summary")
    assert "too many" in str(md.data) and "default" in str(md.data)
    # the plot itself is on the run's page: the PNG's bytes as a data: URI image
    plot_md = str(next(a for a in arts if a.key == "benchmark-plot").data)
    uri = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", plot_md)
    assert uri, plot_md[:300]
    assert base64.b64decode(uri.group(1)) == Path(result["png"]).read_bytes()
    assert elapsed < 120
