"""The deploy's stage table: the one place that says, for each of the eleven stages, its
number and name, what it needs, its seed barrier group, its Prefect task options, its
time budget, whether it runs in the flow body (a subflow), whether it uses SSH or the
hosted zone, and how its result is found when the stage is not run.

Each stage's code lives in its room, `tasks/deploy/stages/s<NN>_<name>.py` (the name with
underscores): its task (built from this table's row), its logic, and `find`, the finder of
its result. The deploy flow builds its run from this table alone, and `--stages` parsing,
the reliability scenarios, the flow's docstring and docs/stages.md are made from or
checked against it. Plain data (no Prefect, no AWS): the CLI reads it before any server
starts. `python -m tasks.deploy.dag --markdown > docs/stages.md` writes the docs table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Stage:
    number: int
    name: str
    does: str
    group: int  # the seed's barrier group (a `group-N` tag; nothing waits on it)
    needs: tuple[int, ...] = ()  # stages whose results it takes (found when not run)
    after: tuple[int, ...] = ()  # stages it waits for when they run; it uses nothing of theirs
    retries: int = 0  # Prefect task retries: a failed stage is re-run whole this many times
    retry_delay_s: float = 5.0
    timeout_s: float = 0.0  # the bound of each of the stage's own waits (see below); 0: none
    subflow: str = ""  # the flow it runs in the flow body (a subflow is not a task to submit)
    ssh: bool = False  # it opens SSH to hosts with the deployment's key (read inside it)
    makes_ssh_key: bool = False  # it makes sure the deployment's key pair and key exist
    hosted_zone: bool = False  # it writes records into the Route53 hosted zone
    found: str = ""  # how its result is found when it is not run ("": nothing takes it)

    @property
    def room(self) -> str:
        """Its module under tasks/deploy/stages/."""
        return f"s{self.number:02d}_{self.name.replace('-', '_')}"

    @property
    def waits(self) -> tuple[int, ...]:
        return self.needs + self.after

    @property
    def runs_in_flow(self) -> bool:
        return bool(self.subflow)

    @property
    def task_name(self) -> str:
        return f"stage-{self.number:02d}-{self.name}"

    @property
    def run_name(self) -> str:
        return f"{self.number:02d} {self.name}"

    @property
    def tags(self) -> tuple[str, ...]:
        return ("deploy", f"stage-{self.number}", f"group-{self.group}")


# Prefect's own task timeout is not set: the stages run in the flow's worker threads, where
# Prefect 3.9 cannot interrupt a blocking call and logs a warning on every run that has one.
# `timeout_s` bounds the stage's waits instead (its logic takes it as its default).
_TABLE = (
    Stage(
        1,
        "launch-instances",
        "N EC2 instances with key pair and security group, running, status checks ok, public IPs",
        group=1,
        retries=1,
        timeout_s=600,
        makes_ssh_key=True,
        found="by the deployment's tags: its running web instances",
    ),
    Stage(
        2,
        "install-tomcat",
        "the install-tomcat subflow: chunks of hosts on a process pool, threads inside",
        group=2,
        needs=(1,),
        subflow="install-tomcat",
        ssh=True,
        found="the install statuses the last install saved in the inventory file",
    ),
    Stage(
        3,
        "save-inventory",
        "every launched host with its install status, to a JSON file and a table artifact",
        group=3,
        needs=(1, 2),
        found="the saved inventory file",
    ),
    Stage(
        4,
        "application-load-balancer",
        "target group with the installed hosts, ALB with access logs, HTTP listener",
        group=4,
        needs=(3,),
        retries=1,
        timeout_s=300,
        found="by name: the ALB, its target group and its HTTP listener",
    ),
    Stage(
        5,
        "tls-listener",
        "DNS-validated ACM certificate, HTTPS listener, alias record to the ALB",
        group=5,
        needs=(4,),
        retries=1,
        timeout_s=300,
        hosted_zone=True,
        found="the certificate by its names and tag, the ALB's port-443 listener",
    ),
    Stage(
        6,
        "traffic-alb",
        "a traffic generator requests the ALB over HTTP and HTTPS",
        group=6,
        needs=(4, 5),
        retries=1,
        timeout_s=600,
        ssh=True,
    ),
    Stage(
        7,
        "elastic-beanstalk",
        "roles, instance profile, application and a Ready Tomcat environment",
        group=6,
        after=(5,),
        timeout_s=900,
        found="by name; it must be Ready",
    ),
    Stage(
        8,
        "rds",
        "private MySQL instance whose group admits the jumphost only; password in a Secret",
        group=6,
        after=(5,),
        timeout_s=1200,
        found="by its identifier; it must be available",
    ),
    Stage(
        9,
        "jumphost-mysql-check",
        "a jumphost runs SELECT 1 against the database",
        group=7,
        needs=(8,),
        retries=1,
        timeout_s=600,
        ssh=True,
    ),
    Stage(
        10,
        "traffic-beanstalk-http",
        "requests to the Beanstalk environment over HTTP",
        group=7,
        needs=(7,),
        retries=1,
        timeout_s=600,
        ssh=True,
    ),
    Stage(
        11,
        "traffic-beanstalk-https",
        "HTTPS listener (stage 5's certificate) on the Beanstalk balancer, then requests",
        group=7,
        needs=(7, 5),
        retries=1,
        timeout_s=600,
        ssh=True,
        hosted_zone=True,
    ),
)

STAGES: dict[int, Stage] = {s.number: s for s in _TABLE}


def _check(stages: dict[int, Stage]) -> None:
    """Numbered 1..N in order; every stage waits only for earlier ones (a DAG whose number
    order is a topological order); whatever a stage takes can be found when not run."""
    assert list(stages) == list(range(1, len(stages) + 1)), "stages are numbered 1..N"
    for s in stages.values():
        assert all(0 < w < s.number for w in s.waits), f"stage {s.number} waits for a later one"
        assert not set(s.needs) & set(s.after), f"stage {s.number}: needs and after overlap"
        assert all(stages[p].found for p in s.needs), f"stage {s.number} takes an unfindable"
    assert sum(s.makes_ssh_key for s in stages.values()) == 1, "one stage makes the SSH key"


_check(STAGES)

# views of the table
NAMES: dict[int, str] = {n: s.name for n, s in STAGES.items()}
NEEDS: dict[int, tuple[int, ...]] = {n: s.waits for n, s in STAGES.items()}  # what it waits for
SEED_GROUP: dict[int, int] = {n: s.group for n, s in STAGES.items()}
TASK_RETRIES: dict[int, int] = {n: s.retries for n, s in STAGES.items()}
KEY_MAKER: int = next(n for n, s in STAGES.items() if s.makes_ssh_key)


@cache
def upstream(stage: int) -> frozenset[int]:
    """Every stage `stage` depends on, directly or through others (not itself)."""
    out: set[int] = set()
    for w in STAGES[stage].waits:
        out |= {w} | upstream(w)
    return frozenset(out)


def prerequisites(stages: Iterable[int]) -> list[int]:
    """The stages and every stage they depend on, sorted."""
    return sorted({d for n in stages for d in {n} | upstream(n)})


def zone_stages() -> list[int]:
    """The stages that need the hosted zone: those writing into it and all that follow them."""
    return [n for n in STAGES if any(STAGES[d].hosted_zone for d in {n} | upstream(n))]


def span(numbers: Iterable[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> "1-3, 5, 7-8"."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _waits_text(s: Stage) -> str:
    parts = [", ".join(map(str, s.needs))] if s.needs else []
    if s.after:
        parts.append(f"after {', '.join(map(str, s.after))}")
    return "; ".join(parts)


def docstring_lines() -> list[str]:
    """The stage list of the deploy flow's docstring (a test checks the flow shows it)."""
    lines = []
    for s in STAGES.values():
        parts = [f"needs {', '.join(map(str, s.needs))}"] if s.needs else []
        parts += [f"after {', '.join(map(str, s.after))}"] if s.after else []
        parts += [f"subflow {s.subflow}"] if s.subflow else []
        lines.append(f"{s.number} {s.name}" + (f" ({'; '.join(parts)})" if parts else ""))
    return lines


def markdown() -> str:
    """docs/stages.md."""
    lines = [
        "# Deploy stages",
        "",
        "<!-- generated by `python -m tasks.deploy.dag --markdown > docs/stages.md`; "
        "do not edit -->",
        "",
        "The deploy flow's eleven stages, from the table in `tasks/deploy/dag.py`. A selected",
        "stage starts as soon as every selected stage it depends on (directly, or through",
        "stages not selected) has completed; when one of those failed it is `not run`",
        "(upstream failed). What it needs from a stage not selected is found as the",
        "`found` column says, or the stage fails naming the stage to run. Each stage's code",
        "is in its room, `tasks/deploy/stages/<room>.py`; its finder is the room's `find`.",
        "`needs`: stages whose results it takes; `after`: stages it only waits for.",
        "`timeout s` bounds each of the stage's own waits; the group is the seed's barrier",
        "group, kept as the tag `group-N`.",
        "",
        "| # | stage | room | does | needs | group | retries | timeout s | runs | "
        "SSH | zone | found (when not run) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in STAGES.values():
        runs = f"subflow `{s.subflow}` in the flow" if s.subflow else "task"
        cells = [
            str(s.number),
            s.name,
            f"`{s.room}`",
            s.does,
            _waits_text(s) or "-",
            str(s.group),
            str(s.retries),
            f"{s.timeout_s:g}" if s.timeout_s else "-",
            runs,
            "yes" if s.ssh else "",
            "yes" if s.hosted_zone else "",
            s.found or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Stage {KEY_MAKER} makes the SSH key; the SSH stages read it themselves (it is never a "
        f"task argument) and fail naming stage {KEY_MAKER} when it is missing. Stages "
        f"{span(zone_stages())} need the hosted zone (they write into it, or follow a stage "
        "that does): it is checked before anything is created. Each stage's task is named "
        "`stage-NN-<stage>` and tagged `deploy`, `stage-N` and `group-N`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m tasks.deploy.dag --markdown > docs/stages.md")
    sys.stdout.write(markdown())
