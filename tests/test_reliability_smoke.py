"""The reliability script at a tiny scale, so CI keeps `benchmarks/reliability.py` working:
one throttle level (50 % of EC2 calls refused, raised retry budget) on a 4-host install,
and one deploy killed with SIGKILL and re-run, with resources counted through the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import reliability as rel
from tasks.deploy.dag import NAMES


@pytest.fixture
def cfg(tmp_path: Path) -> rel.Config:
    # the upper halves of the script's ranges: a full run may use the lower ones meanwhile
    return rel.Config(
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
def test_throttled_install_and_crashed_deploy_converge(cfg: rel.Config, tmp_path: Path) -> None:
    rows = rel.throttle_experiment(cfg)
    assert [(r["rate"], r["kind"]) for r in rows] == [(0.5, "install")]
    row = rows[0]
    assert row["completed"], Path(row["log"]).read_text()[-3000:]
    assert row["throttled"] > 0 and row["ec2_calls"] > row["throttled"]
    assert row["settings"]["aws_retries"] == 100

    crash = rel.crash_experiment(cfg)
    assert crash["reference"]["rc"] == 0
    (only,) = crash["crashes"]
    assert only["rerun_completed"], only
    assert only["differences"] == {}
    assert only["counts"]["instances"] == cfg.crash_instances
    assert crash["no_untagged"] and crash["totals_match"]

    results = {"throttle": rows, "crash": crash}
    assert all(rel.verdict(results).values())
    doc = tmp_path / "reliability.md"
    rel.write_doc(cfg, results, doc)
    text = doc.read_text()
    assert "## Throttling" in text and "## Controller crashes" in text and "2-core" in text


def test_stage_at_kill_reads_the_log() -> None:
    head = (
        "Beginning flow run 'a' for flow 'deploy'\n"
        "Flow run 'a' - deployment x: stages [1, 2, 3, 4, 5, 6, 7, 8]\n"
    )
    assert rel.stage_at_kill("", [1, 2, 3]) == "startup/validation"
    assert rel.stage_at_kill(head, [1, 2, 3]) == "1 launch-instances"
    done_1 = head + "Task run '01 launch-instances' - Finished in state Completed()\n"
    assert rel.stage_at_kill(done_1, [1, 2, 3]) == "2 install-tomcat"
    done_5 = done_1 + "".join(
        f"Task run '{n:02d} {NAMES[n]}' - Finished in state Completed()\n" for n in (3, 4, 5)
    )
    done_5 += (
        "Beginning subflow run 'b' for flow 'install-tomcat'\n"
        "Flow run 'b' - Finished in state Completed()\n"
    )
    assert (
        rel.stage_at_kill(done_5, list(range(1, 9))) == "6 traffic-alb, 7 elastic-beanstalk, 8 rds"
    )
