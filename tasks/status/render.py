"""A StatusReport as the terminal table `tomcat-fleet status` prints, as the markdown of the
status flow's artifact, and as `--json`'s line."""

from __future__ import annotations

import json

from tasks.artifacts import URL_LABELS
from tasks.status.model import StatusReport

HEADER = ("component", "name", "state", "detail")


def rows(r: StatusReport) -> list[tuple[str, str, str, str]]:
    """One row per component: what it is, its name, its state, a detail."""
    out: list[tuple[str, str, str, str]] = []
    by_role: dict[str, list[str]] = {}
    for i in r.instances:
        by_role.setdefault(i.role or "-", []).append(i.state)
    for role, states in sorted(by_role.items()):
        counts = {s: states.count(s) for s in sorted(set(states))}
        text = ", ".join(f"{n} {s}" for s, n in counts.items())
        out.append(("instances", role, text, ""))
    if r.alb is not None:
        a = r.alb
        ports = ", ".join(map(str, a.listeners)) or "none"
        out.append(("load balancer", a.name, a.state, f"listeners {ports}"))
        if a.target_group is None:
            out.append(("target group", "-", "missing", ""))
        else:
            healthy = sum(t.state == "healthy" for t in a.targets)
            others = sorted({t.state for t in a.targets} - {"healthy"})
            detail = f"not healthy: {', '.join(others)}" if others else ""
            out.append(
                ("target group", a.target_group, f"{healthy}/{len(a.targets)} healthy", detail)
            )
    for c in r.certificates:
        extra = [n for n in c.names if n != c.domain]
        out.append(("certificate", c.domain, c.status, f"also {', '.join(extra)}" if extra else ""))
    for env in r.beanstalk:
        detail = f"health {env.health}" if env.health else ""
        out.append(("beanstalk", env.name, env.status, detail + (", HTTPS" if env.https else "")))
    for db in r.databases:
        where = f"{db.endpoint}:{db.port}" if db.endpoint else ""
        out.append(("rds", db.id, db.status, where))
    if r.web_group is not None:
        group_drift = [d for d in r.drift if "security group" in d]
        state = "drifted" if group_drift else "as set"
        out.append(("web group", r.web_group.id, state, f"{len(r.web_group.rules)} ingress rules"))
    return out


def table(r: StatusReport) -> str:
    lines = [f"deployment {r.deployment} ({r.region}): {r.verdict}"]
    body = rows(r)
    if body:
        widths = [max(len(x[i]) for x in [HEADER, *body]) for i in range(4)]
        for row in [HEADER, *body]:
            cells = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            lines.append(f"  {cells}".rstrip())
    else:
        lines.append("  nothing deployed: no instance, load balancer, certificate, Beanstalk")
        lines.append("  environment or RDS instance carries the deployment's tag")
    if r.urls:
        where = f" (on this machine: the sandbox's names, DNS {r.sandbox_dns})" if r.sandbox else ""
        lines.append("urls" + where)
        for u in r.urls:
            lines.append(f"  {URL_LABELS.get(u.name, u.name):<17} {u.url}")
            if u.curl != f"curl {u.url}":
                lines.append(f"  {'':<17} {u.curl}")
    for p in r.problems:
        lines.append(f"problem: {p}")
    if r.verdict == "degraded":
        n = len(r.problems)
        lines.append(f"degraded: {n} problem{'s' if n != 1 else ''} (exit 1)")
    return "\n".join(lines)


def markdown(r: StatusReport) -> str:
    lines = [
        f"# status of `{r.deployment}`: {r.verdict}",
        "",
        f"{r.region}, checked {r.checked_at}",
        "",
    ]
    body = rows(r)
    if body:
        lines += ["| component | name | state | detail |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
    else:
        lines.append("Nothing deployed.")
    if r.urls:
        lines += ["", "## URLs", ""]
        for u in r.urls:
            lines.append(f"- {URL_LABELS.get(u.name, u.name)}: {u.url}")
            if u.curl != f"curl {u.url}":
                lines.append(f"  on this machine: `{u.curl}`")
    if r.problems:
        lines += ["", "## Problems", "", *[f"- {p}" for p in r.problems]]
    return "\n".join(lines) + "\n"


def as_json(r: StatusReport) -> str:
    return json.dumps(r.as_json(), sort_keys=False)
