"""Flow `benchmark`: the seed's scaling experiments, reproducible, plotted, scheduled.

A matrix of scenarios (the seed's "processes/pooled" notation or explicit knobs, see
`tasks.bench_matrix`) runs on one sandbox (or on AWS with ``target="aws"``): per scenario
and repeat, fresh instances are launched and the shape runs in its own child process, so
the peak RSS measured (the child's process tree) is its own; the sandbox and the Prefect
server are services outside every tree. Shapes: ``flow`` (`python -m flows.install_tomcat`
with the scenario's knobs), ``seed`` (the seed's multiprocessing pool, no Prefect) and
``floor`` (one thread pool). A host monitor (`tasks.hostmonitor`) samples swap traffic,
kswapd CPU, memory pressure and CPU per core across the run; its samples are joined to
the scenario timeline.

Outputs in `out_dir`: `benchmark.csv` (one row per scenario: medians over repeats with
min/max, ratios to the floor), `runs.csv` (one row per repeat), `host-timeline.csv`,
`benchmark.png` (install seconds and peak RSS against processes, one line per shape), and
the Prefect artifacts `benchmark-scenarios` (table) and `benchmark-summary` (markdown).
Invalid scenarios are rows with a reason, never a crash.

`python -m flows.benchmark --matrix nightly --out DIR` runs it standalone (see
`flows/cli_benchmark.py`); `nightly_deployment()` is the scheduled `benchmark/nightly`.
"""

from __future__ import annotations

if __name__ == "__main__":  # standalone: the CLI sets up Prefect's environment before import
    from flows.cli_benchmark import main

    raise SystemExit(main())

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.bench_matrix import Planned, load_matrix, plan_matrix, ratio, summarize_runs
from tasks.hostmonitor import HostMonitor, join_timeline, summarize_span
from tasks.resources import PeakTreeRss

NIGHTLY_CRON = "30 2 * * *"
CHILD_TIMEOUT_S = 1800.0
DEPLOYMENT = "bench"
RUN_METRICS = (
    "wall_s",
    "install_s",
    "launch_s",
    "peak_rss_mb",
    "swap_used_mb",
    "swap_in_per_s",
    "swap_out_per_s",
    "kswapd_cpu_pct",
    "psi_some_avg10",
    "psi_full_avg10",
    "cpu_mean_pct",
    "throttle_retries",
    "hosts_failed",
    "installed",
    "api_calls",
)
SUMMARY_COLUMNS = [
    "scenario",
    "shape",
    "notation",
    "hosts",
    "chunk_size",
    "max_workers",
    "desired_count",
    "processes",
    "pooled",
    "default",
    "peer",
    "status",
    "reason",
    "runs",
    "errors",
    *[f"{m}{s}" for m in RUN_METRICS for s in ("", "_min", "_max")],
    "cpu_per_core",
    "install_x_floor",
    "wall_x_floor",
    "rss_x_floor",
]
RUN_COLUMNS = [
    "scenario",
    "shape",
    "notation",
    "rep",
    "status",
    "error",
    "start_s",
    "end_s",
    *RUN_METRICS,
    "cpu_per_core",
]


# ---------------------------------------------------------------- fleet


def sandbox_args(
    install_latency: float,
    fault_profile: str,
    throttle_rate: float,
    seed: int,
    public_ip_cidr: str,
    service_ip_cidr: str,
) -> list[str]:
    return [
        "--install-latency",
        str(install_latency),
        "--fault-profile",
        fault_profile,
        "--throttle-rate",
        str(throttle_rate),
        "--seed",
        str(seed),
        "--boot-delay",
        "1",
        "--cloud-init-seconds",
        "1",
        "--public-ip-cidr",
        public_ip_cidr,
        "--service-ip-cidr",
        service_ip_cidr,
    ]


def sandbox_counters() -> tuple[int, int] | None:
    """(API calls, throttled calls) the sandbox has served, or None off the sandbox."""
    url = os.environ.get("TOMCAT_FLEET_SANDBOX_STATE_URL")
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            api = json.loads(resp.read())["api"]
        return int(api["total_calls"]), int(api["total_throttled"])
    except (OSError, ValueError, KeyError):
        return None


def launch_fleet(settings: Any, count: int) -> tuple[list[dict[str, Any]], int, int]:
    """Key pair, security group open to SSH/8080, `count` fresh instances, waited until
    reachable. Returns (instances, API calls, throttling retries)."""
    from tasks.aws import Aws
    from tasks.aws.ec2 import (
        authorize_ingress,
        ensure_key_pair,
        ensure_security_group,
        launch_instances,
        wait_running,
    )

    aws = Aws(settings)
    ensure_key_pair(aws, settings)
    sg = ensure_security_group(aws, settings)
    authorize_ingress(aws, [sg], [22, 8080], lambda _p: "0.0.0.0/0")
    ids: list[str] = []
    while len(ids) < count:
        n = min(500, count - len(ids))
        ids += launch_instances(aws, settings, n, sg, client_token=uuid.uuid4().hex)
    rows = [i.model_dump() for i in wait_running(aws, ids, timeout_s=600)]
    return rows, aws.api_calls, aws.stats.retries


def terminate(settings: Any, ids: list[str]) -> None:
    """Best effort: a scenario's instances go once it is measured."""
    from tasks.aws import Aws

    ec2 = Aws(settings).client("ec2")
    for i in range(0, len(ids), 500):
        try:
            ec2.terminate_instances(InstanceIds=ids[i : i + 500])
        except Exception as exc:
            get_run_logger().warning("terminate %d instances: %s", len(ids[i : i + 500]), exc)


def _last_json(out: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"no JSON line in the child's output: {out[-500:]!r}")


def child_command(p: Planned, inventory: Path, workdir: Path, state_dir: str) -> list[str]:
    sc = p.scenario
    knobs = [
        "--chunk-size",
        str(sc.chunk_size),
        "--max-workers",
        str(sc.max_workers),
        "--desired-count",
        str(sc.desired_count),
    ]
    if sc.shape == "flow":
        return [
            sys.executable,
            "-m",
            "flows.install_tomcat",
            "--inventory",
            str(inventory),
            *knobs,
            "--host-key-policy",
            "insecure",
            "--allow-failures",
            "100%",
            "--deployment-name",
            DEPLOYMENT,
            "--state-dir",
            state_dir,
            "--log-dir",
            str(workdir / "logs"),
        ]
    return [
        sys.executable,
        "-m",
        "flows.benchmark",
        "--child",
        sc.shape,
        "--inventory",
        str(inventory),
        *knobs,
        "--deployment-name",
        DEPLOYMENT,
        "--state-dir",
        state_dir,
    ]


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float, float]:
    """Run one shape; (its JSON line, wall seconds, peak RSS MB of its process tree)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with PeakTreeRss(proc.pid, interval=0.2) as peak:
        try:
            out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"child timed out after {CHILD_TIMEOUT_S:.0f}s") from None
    wall = time.monotonic() - t0
    try:
        result = _last_json(out)
    except RuntimeError:
        tail = (err or out).strip().splitlines()[-3:]
        raise RuntimeError(f"child exited {proc.returncode}: {' | '.join(tail)}") from None
    return result, wall, peak.peak_mb


# ---------------------------------------------------------------- one scenario


@task(name="benchmark-scenario", tags=["benchmark"], cache_policy=NO_CACHE)
def run_scenario(
    planned: Planned, rep: int, workdir: str, state_dir: str | None, t0: float
) -> dict[str, Any]:
    """Fresh instances, the shape in a child process, the counters around it. Never raises:
    a failed run is a row with `status=error`."""
    from blocks.settings import FleetSettings

    sc = planned.scenario
    logger = get_run_logger()
    row: dict[str, Any] = {
        "scenario": sc.label,
        "shape": sc.shape,
        "notation": sc.notation,
        "rep": rep,
        "status": "ok",
        "error": "",
        "start_s": round(time.monotonic() - t0, 3),
    }
    overrides: dict[str, Any] = {"deployment_name": DEPLOYMENT}
    if state_dir:
        overrides["state_dir"] = state_dir
    settings = FleetSettings(**overrides)
    before = sandbox_counters()
    ids: list[str] = []
    try:
        t_launch = time.monotonic()
        instances, launch_calls, launch_retries = launch_fleet(settings, sc.hosts)
        ids = [i["instance_id"] for i in instances]
        row["launch_s"] = round(time.monotonic() - t_launch, 2)
        inventory = Path(workdir) / f"inventory-{uuid.uuid4().hex[:8]}.json"
        inventory.write_text(json.dumps(instances))
        env = {**os.environ, "TOMCAT_FLEET_DEPLOYMENT_NAME": DEPLOYMENT}
        cmd = child_command(planned, inventory, Path(workdir), str(settings.state_dir))
        result, wall, peak = run_child(cmd, env)
        after = sandbox_counters()
        row.update(
            wall_s=round(wall, 2),
            install_s=result.get("install_s"),
            peak_rss_mb=round(peak, 1),
            installed=result.get("installed"),
            hosts_failed=result.get("failed"),
        )
        if before is not None and after is not None:
            row["api_calls"] = after[0] - before[0]
            row["throttle_retries"] = after[1] - before[1]
        else:
            row["api_calls"] = launch_calls + int(result.get("api_calls", 0))
            row["throttle_retries"] = launch_retries + int(result.get("throttle_retries", 0))
        logger.info(
            "%s %s rep %d: install %.1fs, wall %.1fs, peak %.0f MB, %s installed, %s failed",
            sc.notation,
            sc.shape,
            rep,
            row["install_s"] or 0.0,
            wall,
            peak,
            row["installed"],
            row["hosts_failed"],
        )
    except Exception as exc:
        row.update(status="error", error=f"{type(exc).__name__}: {exc}"[:500])
        logger.error("%s %s rep %d failed: %s", sc.notation, sc.shape, rep, row["error"])
    finally:
        row["end_s"] = round(time.monotonic() - t0, 3)
        if ids:
            terminate(settings, ids)
    return row


# ---------------------------------------------------------------- outputs


def summary_rows(
    planned: list[Planned], runs: list[dict[str, Any]], repeat: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in planned:
        sc = p.scenario
        base: dict[str, Any] = {
            "scenario": sc.label,
            "shape": sc.shape,
            "notation": sc.notation if p.valid else "",
            "hosts": sc.hosts,
            "chunk_size": sc.chunk_size,
            "max_workers": sc.max_workers,
            "desired_count": sc.desired_count,
            "processes": sc.processes if p.valid else None,
            "pooled": sc.pooled if p.valid else None,
            "default": p.default,
            "peer": p.peer,
        }
        if not p.valid:
            rows.append({**base, "status": "invalid", "reason": p.reason, "runs": 0, "errors": 0})
            continue
        mine = [r for r in runs if r["scenario"] == sc.label and r["shape"] == sc.shape]
        ok = [r for r in mine if r["status"] == "ok"]
        errors = [r for r in mine if r["status"] != "ok"]
        row = {
            **base,
            "status": "ok" if ok else "error",
            "reason": "" if ok else (errors[0]["error"] if errors else "not run"),
            "runs": len(ok),
            "errors": len(errors),
            **summarize_runs(ok, RUN_METRICS),
        }
        rows.append(row)
    floors = {r["hosts"]: r for r in rows if r["shape"] == "floor" and r["status"] == "ok"}
    for r in rows:
        fl = floors.get(r["hosts"], {})
        r["install_x_floor"] = ratio(r.get("install_s"), fl.get("install_s"))
        r["wall_x_floor"] = ratio(r.get("wall_s"), fl.get("wall_s"))
        r["rss_x_floor"] = ratio(r.get("peak_rss_mb"), fl.get("peak_rss_mb"))
    return rows


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return "/".join(f"{x:g}" for x in v)
    return "" if v is None else v


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    extra = sorted({k for r in rows for k in r} - set(columns))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*columns, *extra])
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in [*columns, *extra]})


SHAPE_STYLE = {
    "flow": ("tab:blue", "o", "flow (install-tomcat, Prefect process pool)"),
    "seed": ("tab:red", "s", "seed (multiprocessing pool, no Prefect)"),
    "floor": ("tab:green", "D", "floor (1 process, thread pool)"),
}


def plot(
    rows: list[dict[str, Any]],
    path: Path,
    install_latency: float,
    fault_profile: str,
    repeat: int,
) -> None:
    """Two panels: install seconds and peak RSS against processes running at once; one
    solid line per shape through the unpooled shapes ("N/0"), a dashed line per shape and
    chunk count through its pooled variants, min/max bars over repeats, the default starred.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    ok = [r for r in rows if r["status"] == "ok"]
    hosts = sorted({r["hosts"] for r in ok})
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.2))
    panels = [
        ("install_s", "install phase (s)", "Install time vs processes"),
        ("peak_rss_mb", "peak RSS of the process tree (MB)", "Peak memory vs processes"),
    ]
    for ax, (metric, ylabel, title) in zip(axes, panels, strict=True):
        for shape, (color, marker, label) in SHAPE_STYLE.items():
            for h in hosts:
                pts = [r for r in ok if r["shape"] == shape and r["hosts"] == h]
                if not pts:
                    continue
                suffix = f", {h} hosts" if len(hosts) > 1 else ""
                if shape == "floor":
                    r = pts[0]
                    ax.axhline(r[metric], color=color, ls=":", lw=1.2)
                _series(ax, pts, metric, color, marker, label + suffix)
        for r in ok:
            if r["default"]:
                ax.plot(
                    r["processes"],
                    r[metric],
                    marker="*",
                    ms=22,
                    mfc="gold",
                    mec="black",
                    ls="none",
                    zorder=5,
                    label=f"this project's default ({r['notation']}, chunk {r['chunk_size']})",
                )
        ax.set_xscale("log")
        ax.margins(x=0.08)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        procs = sorted({int(r["processes"]) for r in ok})
        if procs:
            ax.set_xticks(procs)
        ax.set_xlabel("processes running at once (desired_count; floor = 1)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    seen: dict[str, Any] = {}
    for h, lab in zip(handles, labels, strict=True):
        seen.setdefault(lab, h)
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=3, fontsize=9, frameon=False)
    host_text = ", ".join(str(h) for h in hosts) or "no"
    fig.suptitle(
        f"install-tomcat benchmark: {host_text} hosts, install latency {install_latency:g} s, "
        f"fault profile {fault_profile}, median of {repeat} run(s) (bars: min-max); "
        "labels: processes/pooled",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(
    ax: Any, pts: list[dict[str, Any]], metric: str, color: str, marker: str, label: str
) -> None:
    families: dict[int, list[dict[str, Any]]] = {}
    for r in pts:
        families.setdefault(int(r["processes"]) + int(r["pooled"]), []).append(r)
    for fam in families.values():
        if not any(r["pooled"] for r in fam):
            continue
        fam = sorted(fam, key=lambda r: r["processes"])
        ax.plot(
            [r["processes"] for r in fam],
            [r[metric] for r in fam],
            color=color,
            marker=marker,
            mfc="white",
            ls="--",
            label=label.split(" (")[0] + " pooled (same chunks, fewer processes)",
        )
    unpooled = sorted((r for r in pts if not r["pooled"]), key=lambda r: r["processes"])
    if unpooled:
        ax.plot(
            [r["processes"] for r in unpooled],
            [r[metric] for r in unpooled],
            color=color,
            marker=marker,
            ls="-",
            label=label,
        )
    for r in pts:
        lo, hi = r.get(f"{metric}_min"), r.get(f"{metric}_max")
        if lo is not None and hi is not None and hi > lo:
            ax.vlines(r["processes"], lo, hi, color=color, lw=1)
        ax.annotate(
            r["notation"],
            (r["processes"], r[metric]),
            textcoords="offset points",
            xytext=(5, -11) if r["pooled"] else (5, 4),
            fontsize=7,
            color=color,
        )


def trade_off_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the plot shows, in words."""
    ok = [r for r in rows if r["status"] == "ok"]
    lines: list[str] = []
    for shape in ("flow", "seed"):
        for h in sorted({r["hosts"] for r in ok}):
            pts = sorted(
                (r for r in ok if r["shape"] == shape and r["hosts"] == h and not r["pooled"]),
                key=lambda r: r["processes"],
            )
            if len(pts) >= 2:
                a, b = pts[0], pts[-1]
                lines.append(
                    f"- **{shape}, {h} hosts, more processes → more memory:** "
                    f"{a['processes']} → {b['processes']} processes: peak "
                    f"{a['peak_rss_mb']:.0f} → {b['peak_rss_mb']:.0f} MB "
                    f"(×{b['peak_rss_mb'] / max(a['peak_rss_mb'], 1e-9):.1f}), install "
                    f"{a['install_s']:.1f} → {b['install_s']:.1f} s"
                )
            fams: dict[int, list[dict[str, Any]]] = {}
            for r in ok:
                if r["shape"] == shape and r["hosts"] == h:
                    fams.setdefault(r["processes"] + r["pooled"], []).append(r)
            for chunks, fam in sorted(fams.items()):
                if len(fam) < 2 or not any(r["pooled"] for r in fam):
                    continue
                fam.sort(key=lambda r: -r["processes"])
                steps = ", ".join(
                    f"{r['notation']}: {r['peak_rss_mb']:.0f} MB / {r['install_s']:.1f} s"
                    for r in fam
                )
                lines.append(f"- **{shape}, {chunks} chunks, pooling lowers peak memory:** {steps}")
    for r in ok:
        if r["default"]:
            lines.append(
                f"- **this project's default** ({r['hosts']} hosts: {r['notation']}, chunk "
                f"{r['chunk_size']} × {r['max_workers']} threads): install {r['install_s']:.1f} s "
                f"(×{r['install_x_floor'] or 0:.2f} floor), peak {r['peak_rss_mb']:.0f} MB "
                f"(×{r['rss_x_floor'] or 0:.2f} floor)"
            )
    return lines


TABLE_COLUMNS = [
    "scenario",
    "shape",
    "notation",
    "hosts",
    "processes",
    "status",
    "runs",
    "wall_s",
    "install_s",
    "install_s_min",
    "install_s_max",
    "peak_rss_mb",
    "peak_rss_mb_min",
    "peak_rss_mb_max",
    "swap_used_mb",
    "hosts_failed",
    "throttle_retries",
    "api_calls",
    "install_x_floor",
    "rss_x_floor",
    "reason",
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of the summary (what the CLI prints)."""
    cols = [
        ("scenario", 18),
        ("shape", 5),
        ("notation", 8),
        ("procs", 5),
        ("status", 7),
        ("wall_s", 7),
        ("install_s", 9),
        ("peak_MB", 8),
        ("swap_MB", 7),
        ("failed", 6),
        ("thr", 4),
        ("api", 5),
        ("inst×fl", 7),
        ("mem×fl", 7),
    ]
    keys = {
        "procs": "processes",
        "peak_MB": "peak_rss_mb",
        "swap_MB": "swap_used_mb",
        "failed": "hosts_failed",
        "thr": "throttle_retries",
        "api": "api_calls",
        "inst×fl": "install_x_floor",
        "mem×fl": "rss_x_floor",
    }
    out = [
        "  ".join(f"{name:>{w}}" if i > 1 else f"{name:<{w}}" for i, (name, w) in enumerate(cols))
    ]
    for r in rows:
        cells = []
        for i, (name, w) in enumerate(cols):
            v = r.get(keys.get(name, name))
            text = "" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))
            cells.append(f"{text[:w]:<{w}}" if i <= 1 else f"{text:>{w}}")
        line = "  ".join(cells)
        if r["status"] != "ok":
            line += f"  {r.get('reason')}"
        out.append(line)
    return "\n".join(out)


def report(rows: list[dict[str, Any]], png: Path, csv_path: Path, meta: dict[str, Any]) -> None:
    create_table_artifact(
        table=[{k: _cell(r.get(k)) for k in TABLE_COLUMNS} for r in rows],
        key="benchmark-scenarios",
        description=(
            f"benchmark: one row per scenario, medians over {meta['repeat']} repeat(s); "
            "ratios to the floor (1 process, thread pool)"
        ),
    )
    invalid = [r for r in rows if r["status"] == "invalid"]
    errors = [r for r in rows if r["status"] == "error"]
    md = [
        "# benchmark",
        "",
        f"Matrix `{meta['matrix']}`, install latency {meta['install_latency']:g} s, fault "
        f"profile `{meta['fault_profile']}`, throttle rate {meta['throttle_rate']:g}, "
        f"{meta['repeat']} repeat(s), target {meta['target']}, {meta['elapsed_s']:.0f} s in all.",
        "",
        "## What the plot shows",
        *(trade_off_lines(rows) or ["- too few successful scenarios to compare"]),
        "",
        "## Scenarios",
        "| scenario | shape | notation | processes | install s (min-max) | peak MB (min-max) "
        "| install × floor | memory × floor | failed hosts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            continue
        md.append(
            f"| {r['scenario']}{' ★' if r['default'] else ''} | {r['shape']} | {r['notation']} "
            f"| {r['processes']} | {r['install_s']:.1f} ({r['install_s_min']:.1f}-"
            f"{r['install_s_max']:.1f}) | {r['peak_rss_mb']:.0f} ({r['peak_rss_mb_min']:.0f}-"
            f"{r['peak_rss_mb_max']:.0f}) | {_cell(r['install_x_floor'])} | "
            f"{_cell(r['rss_x_floor'])} | {_cell(r['hosts_failed'])} |"
        )
    if invalid or errors:
        md += ["", "## Not measured"]
        md += [f"- `{r['scenario']}` ({r['status']}): {r['reason']}" for r in invalid + errors]
    md += ["", f"Plot: `{png}` · CSV: `{csv_path}`"]
    create_markdown_artifact(key="benchmark-summary", markdown="\n".join(md))


# ---------------------------------------------------------------- the flow


@flow(name="benchmark", log_prints=False)
def benchmark(
    matrix: str | list[Any] = "nightly",
    repeat: int = 1,
    install_latency: float = 0.5,
    fault_profile: str = "clean",
    throttle_rate: float = 0.0,
    out_dir: str = "out/benchmark",
    include_peers: bool = True,
    target: str = "sandbox",
    seed: int = 0,
    public_ip_cidr: str = "127.140.0.0/16",
    service_ip_cidr: str = "127.141.0.0/16",
) -> dict[str, Any]:
    """Run every scenario of `matrix` `repeat` times on fresh instances; write CSV, PNG and
    artifacts; return {csv, png, runs_csv, timeline_csv, rows}."""
    logger = get_run_logger()
    if repeat < 1:
        raise ValueError(f"repeat={repeat} must be at least 1")
    if target not in ("sandbox", "aws"):
        raise ValueError(f"target={target!r} is not one of sandbox, aws")
    entries, _ = load_matrix(matrix)
    planned = plan_matrix(entries, os.cpu_count() or 2, include_peers)
    valid = [p for p in planned if p.valid]
    for p in planned:
        if not p.valid:
            logger.warning("scenario %s is invalid: %s", p.scenario.label, p.reason)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    runs: list[dict[str, Any]] = []
    saved = dict(os.environ)
    monitor = HostMonitor(interval=0.5)
    with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:
        state_dir = None if target == "aws" else str(Path(workdir) / "state")
        sandbox: Any = None
        try:
            if target == "sandbox":
                from sandbox.process import SandboxProcess

                sandbox = SandboxProcess(
                    sandbox_args(
                        install_latency,
                        fault_profile,
                        throttle_rate,
                        seed,
                        public_ip_cidr,
                        service_ip_cidr,
                    )
                ).__enter__()
                os.environ.update(sandbox.env)
                logger.info("sandbox pid %d: %s", sandbox.pid, sandbox.env.get("AWS_ENDPOINT_URL"))
            monitor.start()
            for p in valid:
                for rep in range(1, (p.scenario.repeat or repeat) + 1):
                    name = f"scenario {p.scenario.notation} {p.scenario.shape} rep {rep}"
                    if p.scenario.name:
                        name += f" ({p.scenario.name})"
                    runs.append(
                        run_scenario.with_options(task_run_name=name)(
                            p, rep, workdir, state_dir, monitor.t0
                        )
                    )
        finally:
            samples = monitor.stop() if monitor.t0 else []
            if sandbox is not None:
                sandbox.__exit__(None, None, None)
            os.environ.clear()
            os.environ.update(saved)
    for r in runs:
        r.update(summarize_span(samples, r["start_s"], r["end_s"]))
    timeline = join_timeline(
        samples,
        [
            (f"{r['scenario']} [{r['shape']}] rep {r['rep']}", r["start_s"], r["end_s"])
            for r in runs
        ],
    )
    rows = summary_rows(planned, runs, repeat)
    csv_path, runs_csv, timeline_csv, png = (
        out / "benchmark.csv",
        out / "runs.csv",
        out / "host-timeline.csv",
        out / "benchmark.png",
    )
    write_csv(csv_path, rows, SUMMARY_COLUMNS)
    write_csv(runs_csv, runs, RUN_COLUMNS)
    write_csv(
        timeline_csv,
        timeline,
        [
            "t",
            "at_s",
            "scenario",
            "swap_in_per_s",
            "swap_out_per_s",
            "kswapd_cpu_pct",
            "psi_some_avg10",
            "psi_full_avg10",
            "swap_used_mb",
            "ram_available_mb",
            "cpu_per_core",
        ],
    )
    plot(rows, png, install_latency, fault_profile, repeat)
    meta: dict[str, Any] = {
        "matrix": matrix if isinstance(matrix, str) else f"{len(entries)} scenarios",
        "install_latency": install_latency,
        "fault_profile": fault_profile,
        "throttle_rate": throttle_rate,
        "repeat": repeat,
        "target": target,
        "elapsed_s": time.monotonic() - t_start,
    }
    report(rows, png, csv_path, meta)
    for line in format_table(rows).splitlines():
        logger.info(line)
    return {
        "csv": str(csv_path),
        "png": str(png),
        "runs_csv": str(runs_csv),
        "timeline_csv": str(timeline_csv),
        "elapsed_s": round(meta["elapsed_s"], 1),
        "rows": rows,
    }


def nightly_deployment() -> Any:
    """`benchmark/nightly`: the small matrix every night (serve it with
    `python -m flows.benchmark --serve-nightly`)."""
    return benchmark.to_deployment(
        name="nightly",
        cron=NIGHTLY_CRON,
        parameters={"matrix": "nightly", "repeat": 1, "out_dir": "out/benchmark/nightly"},
        tags=["benchmark"],
        description="The nightly benchmark matrix (6 scenarios, peers, < 10 minutes).",
    )
