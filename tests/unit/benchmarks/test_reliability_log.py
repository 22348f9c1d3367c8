"""The reliability script's log reading, without running anything
(the script at a tiny scale: tests/e2e/test_reliability_smoke.py)."""

from __future__ import annotations

from benchmarks.reliability.scenarios import stage_at_kill
from tasks.deploy.dag import NAMES


def test_stage_at_kill_reads_the_log() -> None:
    head = (
        "Beginning flow run 'a' for flow 'deploy'\n"
        "Flow run 'a' - deployment x: stages [1, 2, 3, 4, 5, 6, 7, 8]\n"
    )
    assert stage_at_kill("", [1, 2, 3]) == "startup/validation"
    assert stage_at_kill(head, [1, 2, 3]) == "1 launch-instances"
    done_1 = head + "Task run '01 launch-instances' - Finished in state Completed()\n"
    assert stage_at_kill(done_1, [1, 2, 3]) == "2 install-tomcat"
    done_5 = done_1 + "".join(
        f"Task run '{n:02d} {NAMES[n]}' - Finished in state Completed()\n" for n in (3, 4, 5)
    )
    done_5 += (
        "Beginning subflow run 'b' for flow 'install-tomcat'\n"
        "Flow run 'b' - Finished in state Completed()\n"
    )
    assert stage_at_kill(done_5, list(range(1, 9))) == "6 traffic-alb, 7 elastic-beanstalk, 8 rds"
