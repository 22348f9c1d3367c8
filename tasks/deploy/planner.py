"""`deploy --plan`: every selected stage's room says what it would create, update or leave
alone (its `plan`, reading through tasks/aws/'s finders only), in stage order; the same
finding of a resource several stages make sure of is listed once, under the first."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.deploy.stages import rooms
from tasks.deploy.survey import Survey
from tasks.plan import diff
from tasks.plan.models import Plan


def plan_deploy(aws: Aws, settings: FleetSettings, instances: int, stages: list[int]) -> Plan:
    """What a deploy of `stages` with `instances` web hosts would do; changes nothing."""
    survey = Survey(settings, aws, instances)
    entries = []
    for n, room in sorted(rooms().items()):
        if n in stages and room.plan is not None:
            entries += room.plan(survey)
    return Plan(
        deployment_name=settings.deployment_name,
        command="deploy",
        stages=sorted(stages),
        entries=diff.deduplicated(entries),
    )
