"""Stage 10, traffic-beanstalk-http: the traffic generator (tasks/deploy/traffic.py)
requests the Beanstalk environment's CNAME over HTTP. Nothing takes its result."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.deploy.dag import STAGES
from tasks.deploy.models import BeanstalkResult, TrafficResult
from tasks.deploy.stages.room import Room, ssh_key, stage_task
from tasks.deploy.survey import Survey
from tasks.deploy.traffic import traffic_check
from tasks.plan.models import PlanEntry

ROW = STAGES[10]


def beanstalk_http(
    aws: Aws,
    settings: FleetSettings,
    key_pem: str,
    eb: BeanstalkResult,
    timeout_s: float = ROW.timeout_s,
) -> TrafficResult:
    """Requests to the Beanstalk environment's CNAME over HTTP."""
    return traffic_check(aws, settings, key_pem, [f"http://{eb.cname}/"], timeout_s)


@stage_task(ROW)
def eb_http_stage(settings: FleetSettings, eb: BeanstalkResult) -> TrafficResult:
    return beanstalk_http(Aws(settings), settings, ssh_key(settings), eb)


def plan(s: Survey) -> list[PlanEntry]:
    """The traffic generator, its group and SSH from here; the requests change nothing."""
    return s.role_instance(ROW.number, "traffic")


ROOM = Room(ROW, task=eb_http_stage, plan=plan)
