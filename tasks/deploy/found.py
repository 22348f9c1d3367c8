"""What a selected stage needs from a stage that was not selected (`deploy --stages`) is found
by that stage's room (`find` in tasks/deploy/stages/, read-only); when it is not there,
`MissingStage` names the stage to run first. `not_running` checks the instances given to
install-tomcat. Nothing here creates anything."""

from __future__ import annotations

from tasks.aws import Aws
from tasks.aws.ec2 import StageError
from tasks.deploy.dag import NAMES
from tasks.models import Instance
from tasks.planning import chunked


class MissingStage(StageError):
    """A selected stage's input is missing because the stage making it was not run."""

    def __init__(self, stage: int, needs: int, what: str, detail: str = "") -> None:
        self.stage, self.needs = stage, needs
        super().__init__(
            f"stage {stage} ({NAMES[stage]}) needs stage {needs}'s {what}"
            f"{' (' + detail + ')' if detail else ''}: run --stages {needs} first or include it"
        )


def not_running(aws: Aws, instances: list[Instance]) -> list[str]:
    """ "<id> (why)" for each given instance not running at the given public IP (reads; a
    filter, not InstanceIds, so an unknown id is no error)."""
    seen: dict[str, tuple[str | None, str | None]] = {}
    for batch in chunked([i.instance_id for i in instances], 200):
        res = aws.client("ec2").describe_instances(
            Filters=[{"Name": "instance-id", "Values": batch}]
        )
        for r in res["Reservations"]:
            for d in r["Instances"]:
                seen[d["InstanceId"]] = (d.get("State", {}).get("Name"), d.get("PublicIpAddress"))
    bad = []
    for inst in instances:
        state, ip = seen.get(inst.instance_id, ("no such instance", None))
        if state != "running":
            bad.append(f"{inst.instance_id} ({state})")
        elif ip != inst.public_ip:
            bad.append(f"{inst.instance_id} (its public IP is {ip})")
    return bad
