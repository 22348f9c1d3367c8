"""Benchmark outputs: summary rows, CSV, the plot, the trade-off lines,
the table, the Prefect artifacts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.bench.matrix import Planned, ratio, summarize_runs
from tasks.bench.run import RUN_METRICS


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
    # Prefect's own cost: a flow row against its bare twin (same knobs, no Prefect)
    knobs = ("hosts", "chunk_size", "max_workers", "desired_count")
    bares = {
        tuple(r[k] for k in knobs): r for r in rows if r["shape"] == "bare" and r["status"] == "ok"
    }
    for r in rows:
        twin = bares.get(tuple(r[k] for k in knobs), {}) if r["shape"] == "flow" else {}
        r["install_x_bare"] = ratio(r.get("install_s"), twin.get("install_s"))
        r["pss_x_bare"] = ratio(r.get("peak_pss_mb"), twin.get("peak_pss_mb"))
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
    "bare": ("tab:purple", "v", "bare (the flow's shape on a fork pool, no Prefect)"),
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
    "peak_pss_mb",
    "swap_used_mb",
    "hosts_failed",
    "throttle_retries",
    "api_calls",
    "install_x_floor",
    "rss_x_floor",
    "install_x_bare",
    "pss_x_bare",
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
        ("PSS_MB", 7),
        ("RSS_MB", 7),
        ("swap_MB", 7),
        ("failed", 6),
        ("thr", 4),
        ("api", 5),
        ("inst×fl", 7),
        ("mem×fl", 7),
        ("inst×bare", 9),
    ]
    keys = {
        "procs": "processes",
        "PSS_MB": "peak_pss_mb",
        "RSS_MB": "peak_rss_mb",
        "swap_MB": "swap_used_mb",
        "failed": "hosts_failed",
        "thr": "throttle_retries",
        "api": "api_calls",
        "inst×fl": "install_x_floor",
        "mem×fl": "rss_x_floor",
        "inst×bare": "install_x_bare",
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
            "ratios to the floor (1 process, thread pool) and, for flow rows, to the bare "
            "twin (the same shape without Prefect)"
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
        "| scenario | shape | notation | processes | install s (min-max) | RSS sum MB (min-max) "
        "| PSS MB | install × floor | memory × floor | install × bare | failed hosts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            continue
        md.append(
            f"| {r['scenario']}{' ★' if r['default'] else ''} | {r['shape']} | {r['notation']} "
            f"| {r['processes']} | {r['install_s']:.1f} ({r['install_s_min']:.1f}-"
            f"{r['install_s_max']:.1f}) | {r['peak_rss_mb']:.0f} ({r['peak_rss_mb_min']:.0f}-"
            f"{r['peak_rss_mb_max']:.0f}) | {_cell(r.get('peak_pss_mb'))} | "
            f"{_cell(r['install_x_floor'])} | {_cell(r['rss_x_floor'])} | "
            f"{_cell(r.get('install_x_bare'))} | {_cell(r['hosts_failed'])} |"
        )
    if invalid or errors:
        md += ["", "## Not measured"]
        md += [f"- `{r['scenario']}` ({r['status']}): {r['reason']}" for r in invalid + errors]
    md += ["", f"Plot: `{png}` · CSV: `{csv_path}`"]
    create_markdown_artifact(key="benchmark-summary", markdown="\n".join(md))
