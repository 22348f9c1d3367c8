"""The report: one table per experiment, the verdict, and `docs/reliability.md`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import COUNT_KEYS


# -- reporting --------------------------------------------------------------------------
def _yes(v: Any) -> str:
    return "yes" if v else "**no**"


def throttle_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| refused | run | size | completed | throttled calls | client retries "
        "| EC2 calls | all API calls | wall s | added s vs 0 % | retries / base / cap |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["settings"]
        added = "" if r["added_s"] is None else f"{r['added_s']:+.1f}"
        lines.append(
            f"| {r['rate']:.0%} | {r['kind']} | {r['size']} | {_yes(r['completed'])} | "
            f"{r['throttled']} | {'' if r['client_retries'] is None else r['client_retries']} | "
            f"{r['ec2_calls']} | {r['api_calls']} | {r['wall_s']:.1f} | "
            f"{added} | "
            f"{s['aws_retries']} / {s['aws_backoff_base_s']} / {s['aws_backoff_cap_s']} |"
        )
    return lines


def hostile_table(h: dict[str, Any]) -> list[str]:
    i, d, r = h["install"], h["deploy"], h["rerun_failed"]
    lines = [
        "| step | hosts | installed | failed | every host accounted | flow | wall s |",
        "|---|---|---|---|---|---|---|",
        f"| install, allow_failures {h['allow_failures']} | {h['hosts']} | {i['installed']} | "
        f"{i['failed']} | {_yes(i['every_host_accounted'])} | {i['flow_state']} "
        f"(within allowance: {_yes(i['within_allowance'])}; obeyed: "
        f"{_yes(i['obeys_allow_failures'])}) | {i['wall_s']:.1f} |",
    ]
    if r.get("hosts"):
        lines.append(
            f"| install of the failed hosts only, allow_failures 0 | {r['hosts']} | "
            f"{r['fixed']} (fixed) | {r['still_failed']} | "
            f"{_yes(r['rows'] == r['hosts'])} | {r['flow_state']} (obeyed: "
            f"{_yes(r['obeys_allow_failures'])}) | {r['wall_s']:.1f} |"
        )
    lines.append(
        f"| deploy stages 1-4, allow_failures {h.get('deploy_allow', '')} | {h['hosts']} | "
        f"{d['installed']} | {d['failed']} | {_yes(d['every_host_accounted'])} | "
        f"rc {d['rc']} | {d['wall_s']:.1f} |"
    )
    return lines


def crash_table(c: dict[str, Any]) -> list[str]:
    keys = [k for k in COUNT_KEYS]
    lines = [
        "| run | kill at s | stage in progress | re-run s | "
        + " | ".join(keys)
        + " | duplicates / leaks |",
        "|---|---|---|---|" + "---|" * len(keys) + "---|",
        f"| reference (clean) | | | {c['reference']['wall_s']:.1f} | "
        + " | ".join(str(c["reference"]["counts"][k]) for k in keys)
        + " | |",
    ]
    for row in c["crashes"]:
        lines.append(
            f"| crash {row['crash']} | {row['kill_at_s']:.1f} | {row['stage_at_kill']} | "
            f"{row['rerun_s']:.1f}{'' if row['rerun_completed'] else ' (failed)'} | "
            + " | ".join(str(row["counts"][k]) for k in keys)
            + f" | {row['differences'] or 'none'} |"
        )
    return lines


def print_tables(results: dict[str, Any]) -> None:
    for title, key, fn in (
        ("throttling", "throttle", throttle_table),
        ("hostile hosts", "hostile", hostile_table),
        ("crashes", "crash", crash_table),
    ):
        if key in results:
            print(f"\n== {title} ==")
            for line in fn(results[key]):
                print(line)


def verdict(results: dict[str, Any]) -> dict[str, bool]:
    v: dict[str, bool] = {}
    if "throttle" in results:
        v["throttle_all_completed"] = all(r["completed"] for r in results["throttle"])
    if "hostile" in results:
        h = results["hostile"]
        v["hostile_accounted"] = (
            h["install"]["every_host_accounted"] and h["deploy"]["every_host_accounted"]
        )
        v["hostile_obeys_allow_failures"] = h["install"]["obeys_allow_failures"] and h[
            "rerun_failed"
        ].get("obeys_allow_failures", True)
        v["hostile_target_group_only_installed"] = h["deploy"]["target_group_is_installed"]
        v["hostile_never_boot_stay_failed"] = h["rerun_failed"].get("never_boot_fixed", 0) == 0
    if "crash" in results:
        c = results["crash"]
        v["crash_no_duplicates_or_leaks"] = (
            all(not r["differences"] and r["rerun_completed"] for r in c["crashes"])
            and c["no_untagged"]
            and c["totals_match"]
        )
    return v


def _paragraphs(notes: list[str]) -> list[str]:
    return [line for note in notes for line in (note, "")]


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _one_in(p: float) -> str:
    """`p` as "one call in N" (or "none" / "every call")."""
    if p <= 0:
        return "no call"
    if p >= 1:
        return "every call"
    return f"one call in {1 / p:,.0f}"


def _machine(m: dict[str, Any]) -> str:
    cores = f"{m['cpu_count']} CPU cores"
    if m.get("cpus_usable") and m["cpus_usable"] != m["cpu_count"]:
        cores += f" ({m['cpus_usable']} usable by the run)"
    ram = "RAM not reported"
    if m.get("ram_gib") is not None:
        ram = f"{m['ram_gib']:g} GiB RAM ({m['ram_available_gib']:g} GiB available at the start)"
    return f"{cores}, {ram}, {m['cpu_model']}, {m['system']} {m['arch']}, Python {m['python']}"


def _params_of(results: dict[str, Any], key: str) -> dict[str, Any]:
    """The parameters of the run that produced section `key` (an earlier one if reused)."""
    if key in results.get("reused", []) and results.get("reused_run"):
        return dict(results["reused_run"]["parameters"])
    return dict(results["run"]["parameters"])


def run_lines(results: dict[str, Any]) -> list[str]:
    """Where, when and with what the run was made: read from the run's own record."""
    run = results["run"]
    m, p = run["machine"], run["parameters"]
    load = f"1-minute load average {m['load_1m']} at the start"
    if run.get("load_1m_after") is not None:
        load += f" and {run['load_1m_after']} at the end"
    wall = f", lasting {run['wall_s'] / 60:.1f} min" if run.get("wall_s") is not None else ""
    lines = [
        f"Regenerated by `python -m benchmarks.reliability` from one run started "
        f"{run['started_utc']}{wall}, experiments {', '.join(run['experiments'])}, on a "
        f"machine with {_machine(m)}; {load}. The flows, the Prefect server and the "
        "sandboxes (moto + emulated SSH/Tomcat fleet on loopback, one experiment at a time) "
        "shared that machine. Every number and every statement of a result below is "
        "computed from that run's figures; re-run the script to refresh them.",
    ]
    reused = results.get("reused", [])
    if reused:
        earlier = results.get("reused_run")
        text = f"The {', '.join(reused)} section(s) come from an earlier run (`--results-from`)"
        if not earlier:
            text += ", which did not record its machine or parameters."
        else:
            diff = {
                k: (earlier["parameters"].get(k), v)
                for k, v in p.items()
                if earlier["parameters"].get(k) != v
            }
            text += (
                f" started {earlier['started_utc']} on a machine with "
                f"{_machine(earlier['machine'])}; its parameters "
                + (
                    "are this run's."
                    if not diff
                    else "differ from this run's: "
                    + ", ".join(f"{k} {a} (now {b})" for k, (a, b) in diff.items())
                    + "."
                )
            )
        lines += ["", text]
    lines += [
        "",
        "Parameters (the CLI flags; the seed drives the sandboxes' faults and refusals and "
        "the crash moments):",
        "",
        "| parameter | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in p.items()],
    ]
    return lines


def write_doc(results: dict[str, Any], path: Path) -> None:
    """Write the report of one run; every result sentence is computed from `results`."""
    v = verdict(results)
    lines = ["# Reliability under stress", "", *run_lines(results), ""]
    lines += ["## Throttling", ""]
    if "throttle" in results:
        p = _params_of(results, "throttle")
        lines += [
            "The sandbox refuses the given fraction of EC2 calls with `RequestLimitExceeded` "
            f"(HTTP 503). Each rate: a {p['hosts']}-host install (`--instances {p['hosts']}`: "
            "key pair, security group, RunInstances and the waits are throttled too) and a "
            f"{p['deploy_instances']}-instance deploy of stages {p['deploy_stages']}, each "
            "on a fresh deployment. *Throttled calls* is what the sandbox refused during the "
            "run; *client retries* is the install CLI's own count (launch and ingress). "
            f"Rates above {_pct(p['raise_above'])} ran with the raised budget "
            f"`TOMCAT_FLEET_AWS_RETRIES={p['raised_retries']}`, "
            f"`TOMCAT_FLEET_AWS_BACKOFF_BASE_S={p['raised_base']}`, "
            f"`TOMCAT_FLEET_AWS_BACKOFF_CAP_S={p['raised_cap']}`; the others with the "
            "defaults (each row shows the settings it ran with).",
            "",
            *throttle_table(results["throttle"]),
            "",
            *_paragraphs(throttle_notes(results["throttle"], results["run"]["machine"])),
        ]
    else:
        lines += ["Not run.", ""]
    lines += [
        "This run does not test the back-off in isolation; its unit tests are in "
        "`tests/unit/tasks/aws/test_backoff.py`.",
        "",
        "## Hostile hosts",
        "",
    ]
    if "hostile" in results:
        h = results["hostile"]
        p = _params_of(results, "hostile")
        lines += [
            *hostile_lines(h, p),
            "",
            *hostile_table(h),
            "",
            "Reasons of the first install's failures (ids and numbers folded):",
            "",
            *([f"- {n} × `{r}`" for r, n in h["install"]["reasons"].items()] or ["- none"]),
            "",
            *_paragraphs(hostile_notes(h)),
        ]
    else:
        lines += ["Not run.", ""]
    lines += ["## Controller crashes", ""]
    if "crash" in results:
        c = results["crash"]
        window = c.get("kill_window_s")
        when = (
            f"between {window[0]:g} s and {window[1]:g} s (the reference run's wall time)"
            if window
            else "between 2 s and the reference run's wall time"
        )
        lines += [
            f"`python -m flows deploy --instances {c['instances']} --stages {c['stages']}` "
            "started in its own session and its whole process group SIGKILLed at a seeded "
            f"random moment {when}, then the same command re-run to completion. Counts are "
            "through the AWS API for the deployment's tag (instances pending or running, web "
            "fleet and jumphost; load balancers, target groups, certificates, security "
            "groups, key pairs by tag; Beanstalk environments not terminated, databases and "
            "log buckets by the deployment's name prefix) and compared with a clean "
            "reference deployment.",
            "",
            *crash_table(c),
            "",
            *_paragraphs(crash_notes(c)),
            f"Across the sandbox after all runs: {c['sandbox_totals']}; untagged "
            "instances, balancers or target groups: "
            f"{'none' if c['no_untagged'] else '**some**'}; totals equal the reference "
            f"× {1 + len(c['crashes'])}: {_yes(c['totals_match'])}.",
            "",
        ]
    else:
        lines += ["Not run.", ""]
    lines += ["## Verdict", "", *[f"- {k}: {_yes(ok)}" for k, ok in v.items()], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def throttle_notes(rows: list[dict[str, Any]], machine: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    failed = [r for r in rows if not r["completed"]]
    if failed:
        notes.append(
            f"{len(failed)} of {len(rows)} runs did not complete: "
            + ", ".join(
                f"{r['kind']} at {_pct(r['rate'])} (rc {r['rc']}, log {r['log']})" for r in failed
            )
            + "."
        )
    else:
        notes.append(f"All {len(rows)} runs completed.")
    for kind in ("install", "deploy"):
        mine = [r for r in rows if r["kind"] == kind and r["added_s"] is not None]
        if len(mine) > 1:
            worst = max(mine, key=lambda r: r["rate"])
            per = worst["added_s"] / worst["throttled"] if worst["throttled"] else 0.0
            notes.append(
                f"{kind}: at {_pct(worst['rate'])} refused, {worst['throttled']} throttled "
                f"calls went with {worst['added_s']:+.0f} s of wall time over the 0 % run "
                f"({per:.2f} s per throttled call; wall time, so the back-off sleeps of "
                "parallel calls overlap)."
            )
    faster = [r for r in rows if r["added_s"] is not None and r["added_s"] < 0]
    if faster:
        notes.append(
            f"{len(faster)} run(s) came out faster than their 0 % baseline, by up to "
            f"{-min(r['added_s'] for r in faster):.1f} s: differences of that size are noise "
            f"on this machine ({machine['cpu_count']} CPU cores shared by the flows, the "
            "Prefect server and the sandbox)."
        )
    for rate in sorted({r["rate"] for r in rows if r["rate"] > 0}):
        at = [r for r in rows if r["rate"] == rate]
        retries = at[0]["settings"]["aws_retries"]
        exhaust = rate ** (retries + 1)
        calls = sum(r["ec2_calls"] - r["throttled"] for r in at)
        done = all(r["completed"] for r in at)
        need = f"needs {1 / (1 - rate):.1f} attempts on average" if rate < 1 else "cannot succeed"
        notes.append(
            f"At {_pct(rate)} refused a call {need} and, with {retries} retries, "
            f"{_one_in(exhaust)} exhausts its budget ({calls * exhaust:.2g} expected among "
            f"the run's {calls} answered EC2 calls); the runs at this rate "
            f"{'all completed' if done else 'did **not** all complete'}."
        )
    return notes


def hostile_lines(h: dict[str, Any], p: dict[str, Any]) -> list[str]:
    rates = h.get("fault_rates")
    profile = f"`--fault-profile {h.get('fault_profile', 'hostile')}`"
    if rates:
        profile += (
            f" (seed {p['seed']}: install commands fail {_pct(rates['install_failure'])} of "
            f"the time, SSH connections drop {_pct(rates['ssh_drop'])}, "
            f"{_pct(rates['slow_host'])} of hosts are {rates['slow_factor']:g}× slower, "
            f"{_pct(rates['never_boot'])} never boot)"
        )
    return [
        f"{profile}, `TOMCAT_FLEET_SSH_WAIT_S={p['ssh_wait_s']:g}` (how long a host may take "
        f"to boot), {h['hosts']} instances ({h['never_boot_hosts']} of them never booted in "
        "this run)."
    ]


def hostile_notes(h: dict[str, Any]) -> list[str]:
    i, d, r = h["install"], h["deploy"], h["rerun_failed"]
    notes = [
        f"Every host ended installed or failed with a reason: "
        f"{_yes(i['every_host_accounted'] and d['every_host_accounted'])}. The first "
        f"install failed {i['failed']} of {h['hosts']} hosts against allow_failures "
        f"{h['allow_failures']} and ended {i['flow_state']} (as the allowance says: "
        f"{_yes(i['obeys_allow_failures'])}).",
    ]
    if r.get("hosts"):
        must = "FAILED" if r["still_failed"] else "COMPLETED"
        notes.append(
            f"Installing only the {r['hosts']} failed hosts again (an inventory of them) "
            f"fixed {r['fixed']}; {r['still_failed']} stay failed, "
            f"{r['never_boot_among_failed']} of the {r['hosts']} being hosts that never boot "
            f"(fixed among those: {r['never_boot_fixed']}; still failing although they "
            f"boot: {r['still_failed_not_never_boot']}). With allow_failures 0 and "
            f"{r['still_failed']} host(s) still failing that run must end {must}; it ended "
            f"{r['flow_state']} ({_yes(r['obeys_allow_failures'])}). Reasons still "
            f"failing: {r['still_reasons'] or 'none'}."
        )
    else:
        notes.append("The first install failed no host, so there was nothing to re-install.")
    notes.append(
        f"The deploy (stages 1-4) accounted for every instance of the deployment: "
        f"{_yes(d['every_host_accounted'])}; it ended with {d['installed']} installed and "
        f"{d['failed']} failed ({d['failed_never_boot']} of them never boot). Its target "
        f"group holds exactly the installed hosts: {_yes(d['target_group_is_installed'])} "
        f"({d['target_group']} registered, {d['failed_in_target_group']} failed hosts among "
        "them)."
    )
    return notes


def crash_notes(c: dict[str, Any]) -> list[str]:
    rows = c["crashes"]
    if not rows:
        return ["No crash was run."]
    stages = sorted({r["stage_at_kill"] for r in rows})
    completed = [r for r in rows if r["rerun_completed"]]
    clean = [r for r in rows if not r["differences"] and r["rerun_completed"]]
    text = (
        f"Kills landed in: {'; '.join(stages)}. {len(completed)} of {len(rows)} re-runs "
        f"completed; {len(clean)} of {len(rows)} deployments converged to the reference "
        "counts with no duplicate or leaked resource."
    )
    bad = [r for r in rows if r not in clean]
    if bad:
        text += " Not converged: " + "; ".join(
            f"crash {r['crash']} (re-run rc {r['rerun_rc']}, differences "
            f"{r['differences'] or 'none'})"
            for r in bad
        )
        text += "."
    return [text]
