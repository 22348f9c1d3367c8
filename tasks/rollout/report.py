"""What a rollout shows: a table per wave and the final markdown report (plain data; the
flow publishes them as artifacts)."""

from __future__ import annotations

from typing import Any

from tasks.rollout.plan import RolloutState


def wave_rows(state: RolloutState, number: int) -> list[dict[str, Any]]:
    """One row per host of wave `number`: its state, version, seconds and reason."""
    return [
        {
            "instance_id": h.instance_id,
            "state": h.state,
            "version": h.version,
            "seconds": h.seconds,
            "reason": h.reason,
        }
        for h in state.hosts.values()
        if h.wave == number
    ]


def summary_line(state: RolloutState) -> str:
    c = state.counts()
    done = len(state.waves)
    planned = len(state.planned_waves)
    how = (
        f"stopped after wave {state.stopped_at} of {planned}"
        if state.stopped_at
        else f"{done} of {planned} waves"
    )
    return (
        f"rollout of version {state.version}: {c['upgraded']} upgraded, {c['failed']} failed, "
        f"{c['untouched']} untouched ({how}, {state.seconds:.1f}s)"
    )


def markdown(state: RolloutState, deployment: str) -> str:
    lines = [f"# rollout of {deployment}", "", summary_line(state), ""]
    lines += ["| wave | hosts | upgraded | failed | errors allowed | seconds |"]
    lines += ["|---|---|---|---|---|---|"]
    for w in state.waves:
        stop = " (stopped here)" if w.stopped else ""
        lines.append(
            f"| {w.number}{stop} | {len(w.hosts)} | {w.upgraded} | {w.failed} | {w.allowed} | "
            f"{w.seconds:.1f} |"
        )
    for number in range(len(state.waves) + 1, len(state.planned_waves) + 1):
        lines.append(
            f"| {number} (not started) | {len(state.planned_waves[number - 1])} | 0 | 0 | - | - |"
        )
    lines += ["", "## Versions", "", "| version | hosts |", "|---|---|"]
    for version, n in sorted(state.versions().items()):
        lines.append(f"| `{version}` | {n} |")
    lines += ["", "## Hosts", "", "| host | wave | state | version | reason |"]
    lines += ["|---|---|---|---|---|"]
    for h in state.hosts.values():
        lines.append(
            f"| `{h.instance_id}` | {h.wave} | {h.state} | `{h.version}` | {h.reason or ''} |"
        )
    return "\n".join(lines) + "\n"
