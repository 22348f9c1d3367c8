"""Stage 6, traffic-alb: the traffic generator (tasks/deploy/traffic.py) requests the ALB
over HTTP (its DNS name) and HTTPS (the custom domain with stage 5's certificate); the stage
checks that answers came from the fleet. Nothing takes its result."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.models import AlbResult, TlsResult, TrafficResult
from tasks.deploy.stages.room import Room, ssh_key, stage_task
from tasks.deploy.survey import Survey
from tasks.deploy.traffic import traffic_check
from tasks.plan.models import PlanEntry

ROW = STAGES[6]


def alb_traffic(
    aws: Aws,
    settings: FleetSettings,
    key_pem: str,
    alb_url: str,
    https_url: str,
    timeout_s: float = ROW.timeout_s,
) -> TrafficResult:
    """Requests to the ALB over HTTP (its DNS name) and HTTPS (the custom domain);
    distinct_backends counts the instances that answered across both."""
    return traffic_check(aws, settings, key_pem, [alb_url, https_url], timeout_s)


@stage_task(ROW)
def alb_traffic_stage(settings: FleetSettings, alb: AlbResult, tls: TlsResult) -> TrafficResult:
    return alb_traffic(Aws(settings), settings, ssh_key(settings), alb.url, tls.url)


def report(result: TrafficResult, _: FleetSettings) -> ReportPart:
    return ReportPart(resources={"alb_traffic": result.model_dump(exclude={"target"})})


def plan(s: Survey) -> list[PlanEntry]:
    """The traffic generator, its group and SSH from here; the requests change nothing."""
    return s.role_instance(ROW.number, "traffic")


ROOM = Room(ROW, task=alb_traffic_stage, report=report, plan=plan)
