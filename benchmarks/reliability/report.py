"""The report: one table per experiment, the verdict, and `docs/reliability.md`."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any

from .config import COUNT_KEYS, Config


# -- reporting --------------------------------------------------------------------------
def _yes(v: Any) -> str:
    return "yes" if v else "**no**"


def throttle_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| refused | run | size | completed | throttled calls (= retries) | client retries "
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


def write_doc(cfg: Config, results: dict[str, Any], path: Path) -> None:
    today = datetime.date.today().isoformat()
    v = verdict(results)
    lines = [
        "# Reliability under stress",
        "",
        f"Regenerated by `python -m benchmarks.reliability` on {today}, one run on this "
        f"2-core machine ({platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}), against sandboxes (moto + emulated SSH/Tomcat "
        "fleet on loopback) that other sandboxes shared the cores with. Every number below "
        "is what that run measured; re-run the script to refresh it.",
        "",
        "Settings: "
        f"install latency {cfg.install_latency} s per host (jittered), boot 1 s, seed "
        f"{cfg.seed}; flows run as their CLIs (`python -m flows.install_tomcat`, "
        "`python -m flows.deploy`) in subprocesses, all on one Prefect server.",
        "",
        "## Throttling",
        "",
        f"The sandbox refuses the given fraction of EC2 calls with `RequestLimitExceeded` "
        f"(HTTP 503). Each rate: a {cfg.hosts}-host install (`--instances {cfg.hosts}`: "
        f"key pair, security group, RunInstances and the waits are throttled too) and a "
        f"{cfg.deploy_instances}-instance deploy of stages {cfg.deploy_stages}, each on a "
        "fresh deployment. *Throttled calls* is what the sandbox refused during the run; "
        "each refusal is followed by one back-off retry unless that call's budget was "
        "spent (`RetriesExhausted`, which fails the stage and shows in *completed*). "
        "*Client retries* is the install CLI's own count (launch and ingress). Rates above "
        f"{cfg.raise_above:.0%} ran with the raised budget "
        f"`TOMCAT_FLEET_AWS_RETRIES={cfg.raised_retries}`, "
        f"`TOMCAT_FLEET_AWS_BACKOFF_BASE_S={cfg.raised_base}`, "
        f"`TOMCAT_FLEET_AWS_BACKOFF_CAP_S={cfg.raised_cap}`; the others with the defaults.",
        "",
    ]
    if "throttle" in results:
        lines += throttle_table(results["throttle"])
        lines += ["", *_paragraphs(throttle_notes(cfg, results["throttle"]))]
    lines += [
        "Unit properties (`tests/test_backoff.py`, `tests/test_fuzz_inputs.py`, hypothesis): "
        "no back-off sleep exceeds its cap for any attempt, base or jitter; a throttled "
        "call is made at most `retries + 1` times and sleeps exactly `retries` times; a "
        "permanent error (`InvalidAMIID.NotFound`) is raised after exactly one call, "
        "without sleeping.",
        "",
        "## Hostile hosts",
        "",
    ]
    if "hostile" in results:
        h = results["hostile"]
        lines += [
            "`--fault-profile hostile` (seeded: install commands fail 25 % of the time, SSH "
            "connections drop 8 %, 20 % of hosts are 5× slower, 5 % never boot), "
            f"`TOMCAT_FLEET_SSH_WAIT_S={cfg.ssh_wait_s:g}` (how long a host may take to "
            f"boot), {h['hosts']} instances ({h['never_boot_hosts']} of them never boot).",
            "",
            *hostile_table(h),
            "",
            "Reasons of the first install's failures (ids and numbers folded):",
            "",
            *[f"- {n} × `{reason}`" for reason, n in h["install"]["reasons"].items()],
            "",
            *_paragraphs(hostile_notes(h)),
        ]
    lines += ["## Controller crashes", ""]
    if "crash" in results:
        c = results["crash"]
        lines += [
            f"`python -m flows.deploy --instances {c['instances']} --stages {c['stages']}` "
            "started in its own session and its whole process group SIGKILLed at a seeded "
            "random moment between 2 s and the reference run's wall time, then the same "
            "command re-run to completion. Counts are through the AWS API for the "
            "deployment's tag (instances pending or running, web fleet and jumphost; "
            "load balancers, target groups, certificates, security groups, key pairs by "
            "tag; Beanstalk environments not terminated, databases and log buckets by the "
            "deployment's name prefix) and compared with a clean reference deployment.",
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
    if results.get("reused"):
        lines[2] += (
            f" The {', '.join(results['reused'])} section(s) come from an earlier run of the "
            "same script with the same settings (reused with `--results-from`)."
        )
    lines += ["## Verdict", "", *[f"- {k}: {_yes(ok)}" for k, ok in v.items()], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def throttle_notes(cfg: Config, rows: list[dict[str, Any]]) -> list[str]:
    notes: list[str] = []
    failed = [r for r in rows if not r["completed"]]
    if failed:
        notes.append(
            "Did not complete: "
            + ", ".join(
                f"{r['kind']} at {r['rate']:.0%} (rc {r['rc']}, log {r['log']})" for r in failed
            )
            + "."
        )
    for kind in ("install", "deploy"):
        mine = [r for r in rows if r["kind"] == kind and r["added_s"] is not None]
        if len(mine) > 1:
            worst = max(mine, key=lambda r: r["rate"])
            per = worst["added_s"] / worst["throttled"] if worst["throttled"] else 0.0
            notes.append(
                f"{kind}: at {worst['rate']:.0%} refused, {worst['throttled']} retries added "
                f"{worst['added_s']:.0f} s ({per:.2f} s per retry, the back-off sleeps "
                "included; calls made from parallel threads overlap their sleeps)."
            )
    if any(r["added_s"] is not None and r["added_s"] < 0 for r in rows):
        notes.append(
            "Added seconds carry the noise of a shared 2-core machine: a negative value "
            "means that run came out faster than its 0 % baseline; differences of ten "
            "seconds or so are within that noise."
        )
    notes.append(
        "Interpretation: the one back-off layer absorbs throttling without a single failed "
        "call as long as the retry budget covers the refusal rate (at a 90 % refusal rate a "
        "call needs 10 attempts on average and the default 8 retries would run out on about "
        "4 calls in 10, so the budget is raised there). The cost is time, not "
        "correctness: the installs on the hosts are not throttled, the EC2 calls around "
        "them are."
    )
    return notes


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
        notes.append(
            f"Installing only the {r['hosts']} failed hosts again (an inventory of them) "
            f"fixed {r['fixed']}; {r['still_failed']} stay failed, "
            f"{r['never_boot_among_failed']} of the {r['hosts']} being hosts that never boot "
            f"(fixed among those: {r['never_boot_fixed']}; still failing although they "
            f"boot: {r['still_failed_not_never_boot']}). With allow_failures 0 that run "
            f"ended {r['flow_state']}, as it must while any host fails. Reasons still "
            f"failing: {r['still_reasons'] or 'none'}."
        )
    notes.append(
        f"The deploy (stages 1-4) found the same {h['hosts']} instances, probed every host "
        f"and ended with {d['installed']} installed and {d['failed']} failed "
        f"({d['failed_never_boot']} of them never boot). Its target group holds exactly the "
        f"installed hosts: {_yes(d['target_group_is_installed'])} ({d['target_group']} "
        f"registered, {d['failed_in_target_group']} failed hosts among them)."
    )
    return notes


def crash_notes(c: dict[str, Any]) -> list[str]:
    rows = c["crashes"]
    stages = sorted({r["stage_at_kill"] for r in rows})
    ok = all(not r["differences"] and r["rerun_completed"] for r in rows)
    return [
        f"Kills landed in: {'; '.join(stages)}. Every re-run completed: "
        f"{_yes(all(r['rerun_completed'] for r in rows))}; every deployment converged to the "
        f"reference counts with no duplicate or leaked resource: {_yes(ok)}. What makes "
        "this hold: instances carry their tags from RunInstances itself and are found by "
        "them before launching, with a ClientToken derived from what exists; every later "
        "resource is found by name and tag before it is created."
    ]
