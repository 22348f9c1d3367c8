"""The reliability script at a tiny scale, so CI keeps `benchmarks/reliability/` working:
one throttle level (50 % of EC2 calls refused, raised retry budget) on a 4-host install,
and one deploy killed with SIGKILL and re-run, with resources counted through the API."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.reliability.config import Config, parameters
from benchmarks.reliability.harness import recorded_run
from benchmarks.reliability.report import verdict, write_doc
from benchmarks.reliability.scenarios import crash_experiment, throttle_experiment


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    # the upper halves of the script's ranges: a full run may use the lower ones meanwhile
    return Config(
        workdir=tmp_path,
        hosts=4,
        deploy_instances=0,
        throttle_rates=[0.5],
        raise_above=0.3,
        raised_retries=100,
        raised_base=0.05,
        raised_cap=0.2,
        crashes=1,
        crash_instances=2,
        crash_stages="1-3",
        install_latency=0.2,
        public_ip_cidr="127.170.128.0/17",
        service_ip_cidr="127.171.128.0/17",
        timeout_s=120,
    )


@pytest.mark.timeout(240)
def test_throttled_install_and_crashed_deploy_converge(cfg: Config, tmp_path: Path) -> None:
    with recorded_run(cfg, ["throttle", "crash"]) as run:
        rows = throttle_experiment(cfg)
        crash = crash_experiment(cfg)
    assert [(r["rate"], r["kind"]) for r in rows] == [(0.5, "install")]
    row = rows[0]
    assert row["completed"], Path(row["log"]).read_text()[-3000:]
    assert row["throttled"] > 0 and row["ec2_calls"] > row["throttled"]
    assert row["settings"]["aws_retries"] == 100

    assert crash["reference"]["rc"] == 0
    (only,) = crash["crashes"]
    assert only["rerun_completed"], only
    assert only["differences"] == {}
    assert only["counts"]["instances"] == cfg.crash_instances
    assert crash["no_untagged"] and crash["totals_match"]

    results = {"run": run, "throttle": rows, "crash": crash}
    assert all(verdict(results).values())
    doc = tmp_path / "reliability.md"
    write_doc(results, doc)
    text = doc.read_text()
    assert "## Throttling" in text and "## Controller crashes" in text
    # the machine is read at run time, the parameters and seed come from the run
    assert f"machine with {os.cpu_count()} CPU cores" in text and "-core machine" not in text
    assert f"| seed | {cfg.seed} |" in text and f"| hosts | {cfg.hosts} |" in text
    assert "All 1 runs completed." in text and "1 of 1 re-runs completed" in text


def _figures(cfg: Config) -> dict[str, Any]:
    """A run's results as the experiments return them (figures made up, shapes real)."""
    settings = {"aws_retries": 8, "aws_backoff_base_s": 0.5, "aws_backoff_cap_s": 20.0}
    raised = {"aws_retries": 100, "aws_backoff_base_s": 0.25, "aws_backoff_cap_s": 1.0}

    def row(rate: float, s: dict[str, Any], wall: float, added: float) -> dict[str, Any]:
        return {
            "rate": rate,
            "kind": "install",
            "size": cfg.hosts,
            "completed": True,
            "rc": 0,
            "throttled": int(rate * 100),
            "client_retries": int(rate * 100),
            "ec2_calls": 20 + int(rate * 100),
            "api_calls": 20 + int(rate * 100),
            "wall_s": wall,
            "settings": s,
            "log": "runs/x.log",
            "added_s": added,
        }

    counts = dict.fromkeys(
        ("instances", "load_balancers", "target_groups", "certificates", "environments"), 1
    ) | dict.fromkeys(("databases", "security_groups", "key_pairs", "buckets"), 1)
    run = {
        "started_utc": "2026-11-27T18:00:00+00:00",
        "machine": {
            "cpu_count": 64,
            "cpus_usable": 48,
            "cpu_model": "Test CPU",
            "ram_gib": 251.5,
            "ram_available_gib": 200.0,
            "load_1m": 1.5,
            "system": "Linux 6.1",
            "arch": "x86_64",
            "python": "3.11.7",
        },
        "parameters": parameters(cfg),
        "experiments": ["throttle", "crash"],
        "wall_s": 600.0,
        "load_1m_after": 3.25,
    }
    crash_row = {
        "crash": 1,
        "kill_at_s": 3.0,
        "killed": True,
        "stage_at_kill": "1 launch-instances",
        "after_kill": counts,
        "rerun_rc": 0,
        "rerun_s": 9.0,
        "rerun_completed": True,
        "counts": counts,
        "differences": {},
    }
    hostile = {
        "hosts": 20,
        "allow_failures": "30%",
        "deploy_allow": "60%",
        "fault_profile": "hostile",
        "fault_rates": {
            "install_failure": 0.25,
            "ssh_drop": 0.08,
            "slow_host": 0.2,
            "never_boot": 0.05,
            "slow_factor": 5.0,
        },
        "install": {
            "rc": 0,
            "flow_state": "COMPLETED",
            "installed": 17,
            "failed": 3,
            "rows": 20,
            "every_host_accounted": True,
            "within_allowance": True,
            "obeys_allow_failures": True,
            "reasons": {"install step failed (exit N)": 2, "ssh: host never came up": 1},
            "wall_s": 30.0,
        },
        "rerun_failed": {
            "hosts": 3,
            "rc": 1,
            "flow_state": "FAILED",
            "rows": 3,
            "fixed": 2,
            "still_failed": 1,
            "never_boot_among_failed": 1,
            "never_boot_fixed": 0,
            "still_failed_not_never_boot": 0,
            "obeys_allow_failures": True,
            "still_reasons": {"ssh: host never came up": 1},
            "wall_s": 20.0,
        },
        "deploy": {
            "rc": 0,
            "stages": {},
            "installed": 19,
            "failed": 1,
            "every_host_accounted": True,
            "target_group": 19,
            "target_group_is_installed": True,
            "failed_in_target_group": 0,
            "failed_never_boot": 1,
            "wall_s": 40.0,
        },
        "never_boot_hosts": 1,
    }
    return {
        "run": run,
        "hostile": hostile,
        "throttle": [row(0.0, settings, 40.0, 0.0), row(0.9, raised, 90.0, 50.0)],
        "crash": {
            "instances": 2,
            "stages": "1-3",
            "kill_window_s": [2.0, 12.5],
            "reference": {"rc": 0, "wall_s": 12.5, "counts": counts},
            "crashes": [crash_row],
            "sandbox_totals": counts,
            "no_untagged": True,
            "totals_match": True,
        },
    }


def test_report_sentences_follow_the_figures(cfg: Config, tmp_path: Path) -> None:
    """No result sentence is fixed text: change the figures and the sentences change."""
    good = _figures(cfg)
    doc = tmp_path / "good.md"
    write_doc(good, doc)
    text = doc.read_text()
    assert "machine with 64 CPU cores (48 usable by the run), 251.5 GiB RAM" in text
    assert "load average 1.5 at the start and 3.25 at the end" in text
    assert "lasting 10.0 min" in text and "started 2026-11-27T18:00:00+00:00" in text
    assert f"| seed | {cfg.seed} |" in text
    assert "All 2 runs completed." in text
    assert "At 90% refused a call needs 10.0 attempts on average and, with 100 retries" in text
    assert "the runs at this rate all completed" in text
    assert "between 2 s and 12.5 s" in text
    assert "1 of 1 deployments converged to the reference counts" in text
    assert "- throttle_all_completed: yes" in text
    assert "install commands fail 25% of the time" in text and "1 of them never booted" in text
    assert "1 host(s) still failing that run must end FAILED; it ended FAILED (yes)" in text

    bad = copy.deepcopy(good)
    bad["throttle"][1] |= {"completed": False, "rc": 1, "settings": bad["throttle"][0]["settings"]}
    bad["throttle"][0]["added_s"] = -7.5
    bad["crash"]["crashes"][0] |= {"rerun_completed": False, "rerun_rc": 1}
    bad["run"]["machine"] |= {"cpu_count": 2, "cpus_usable": 2}
    bad["hostile"]["rerun_failed"] |= {"still_failed": 0, "fixed": 3, "obeys_allow_failures": False}
    write_doc(bad, doc)
    text = doc.read_text()
    assert "machine with 2 CPU cores, 251.5 GiB RAM" in text
    assert "All 2 runs completed." not in text
    assert "1 of 2 runs did not complete: install at 90% (rc 1, log runs/x.log)." in text
    assert "with 8 retries, one call in 3 exhausts its budget" in text
    assert "the runs at this rate did **not** all complete" in text
    assert "1 run(s) came out faster than their 0 % baseline, by up to 7.5 s" in text
    assert "2 CPU cores shared by" in text
    assert "0 of 1 re-runs completed; 0 of 1 deployments converged" in text
    assert "Not converged: crash 1 (re-run rc 1" in text
    assert "- throttle_all_completed: **no**" in text
    assert "0 host(s) still failing that run must end COMPLETED; it ended FAILED (**no**)" in text
