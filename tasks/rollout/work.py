"""The rollout's I/O: the serving fleet, and one wave taken out of service, reinstalled and
put back.

A wave, on AWS as on the sandbox (the same calls):
1. deregister its hosts from the target group (the balancer sends them no new request);
2. wait until they are drained: boto3's `target_deregistered` waiter through the retrying
   client, bounded by the group's deregistration delay plus `slack_s`;
3. reinstall them with the install recipe (`tasks.install_work.run_chunk`: the install
   flow's own thread-per-host code and SSH connection, with `reinstall=True`: the steps
   run on a host that serves already, then the probe must answer);
4. register the hosts that installed, and wait until they are `healthy` (boto3's
   `target_in_service` waiter, `tasks.aws.elbv2.wait_healthy`).
A host failing any step ends the wave `failed` with the reason, out of the target group
(a host whose install failed, or that is not healthy in time, does not serve).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.client import WaitTimeout
from tasks.aws.ec2 import StageError, find_instances
from tasks.aws.elbv2 import (
    APP_PORT,
    deregistration_delay,
    describe_health,
    elb_name,
    find_by_name,
    wait_healthy,
)
from tasks.install_work import run_chunk
from tasks.models import Instance
from tasks.remote.config import HostInstallConfig

Log = Callable[[int, str], None]  # (logging level, line)


@dataclass
class Fleet:
    """The serving fleet: the deployment's web instances registered in its target group."""

    target_group_arn: str
    delay_s: int
    hosts: list[Instance]
    not_healthy: dict[str, str] = field(default_factory=dict)  # id -> state at the start


@dataclass
class WaveResult:
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason
    seconds: dict[str, float] = field(default_factory=dict)


def find_fleet(aws: Aws, settings: FleetSettings) -> Fleet:
    """The web instances (by tag) registered in the deployment's target group (by name),
    in instance-id order; StageError when there is no target group or no such host."""
    elb = aws.client("elbv2")
    name = elb_name(settings, "tg")
    tgs = find_by_name(elb.describe_target_groups, "TargetGroups", name, "TargetGroupNotFound")
    if not tgs:
        raise StageError(
            f"target group {name} not found: a rollout needs a serving fleet (deploy stages 1-4)"
        )
    tg_arn = str(tgs[0]["TargetGroupArn"])
    descs = elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    state = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in descs}
    hosts = sorted(
        (i for i in find_instances(aws, settings, "web") if i.instance_id in state),
        key=lambda i: i.instance_id,
    )
    if not hosts:
        raise StageError(f"no running web instance of {settings.deployment_name} is in {name}")
    return Fleet(
        target_group_arn=tg_arn,
        delay_s=deregistration_delay(aws, tg_arn),
        hosts=hosts,
        not_healthy={i.instance_id: state[i.instance_id] for i in hosts}
        if any(state[i.instance_id] != "healthy" for i in hosts)
        else {},
    )


def _targets(ids: list[str]) -> list[dict[str, object]]:
    return [{"Id": i, "Port": APP_PORT} for i in ids]


def _batches(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + 100] for i in range(0, len(ids), 100)]


def take_out(
    aws: Aws, fleet: Fleet, ids: list[str], poll_s: float, slack_s: float, log: Log | None = None
) -> list[str]:
    """Deregister `ids` and wait until drained; the ids still draining at the deadline."""
    elb = aws.client("elbv2")
    for batch in _batches(ids):
        elb.deregister_targets(TargetGroupArn=fleet.target_group_arn, Targets=_targets(batch))
        for iid in batch:
            if log is not None:
                log(logging.INFO, f"{iid}: deregistered, draining (delay {fleet.delay_s}s)")
    stuck: list[str] = []
    deadline = time.monotonic() + fleet.delay_s + slack_s
    for batch in _batches(ids):
        try:
            elb.wait(
                "target_deregistered",
                what=f"{len(batch)} target(s) to drain",
                deadline=deadline,
                delay_s=poll_s,
                TargetGroupArn=fleet.target_group_arn,
                Targets=_targets(batch),
            )
        except WaitTimeout:
            descs = describe_health(aws, fleet.target_group_arn, batch)
            stuck += [d["Target"]["Id"] for d in descs if d["TargetHealth"]["State"] != "unused"]
    return stuck


def put_back(
    aws: Aws, fleet: Fleet, ids: list[str], poll_s: float, timeout_s: float
) -> dict[str, str]:
    """Register `ids` and wait until healthy; id -> state and reason of those that are not."""
    if not ids:
        return {}
    elb = aws.client("elbv2")
    for batch in _batches(ids):
        elb.register_targets(TargetGroupArn=fleet.target_group_arn, Targets=_targets(batch))
    try:
        wait_healthy(
            aws, fleet.target_group_arn, ids, time.monotonic() + timeout_s, timeout_s, poll_s
        )
        return {}
    except StageError:
        descs = describe_health(aws, fleet.target_group_arn, ids)
        bad = {
            d["Target"]["Id"]: (
                f"{d['TargetHealth']['State']} after {timeout_s:.0f}s "
                f"({d['TargetHealth'].get('Reason') or 'no reason'})"
            )
            for d in descs
            if d["TargetHealth"]["State"] != "healthy"
        }
        # a host that is not healthy leaves the group again, as a failed install does
        for batch in _batches(sorted(bad)):
            elb.deregister_targets(TargetGroupArn=fleet.target_group_arn, Targets=_targets(batch))
        return bad


def run_wave(
    aws: Aws,
    fleet: Fleet,
    hosts: list[Instance],
    cfg: HostInstallConfig,
    *,
    label: str,
    log_dir: str,
    log: Log,
    poll_s: float,
    health_timeout_s: float,
) -> WaveResult:
    """One wave: out of service, drained, reinstalled, probed, back in and healthy."""
    out = WaveResult()
    ids = [h.instance_id for h in hosts]
    started = time.monotonic()
    stuck = take_out(aws, fleet, ids, poll_s, slack_s=health_timeout_s, log=log)
    for iid in ids:
        if iid in stuck:
            out.failed[iid] = f"still draining {fleet.delay_s + health_timeout_s:.0f}s after"
            log(logging.ERROR, f"{iid}: {out.failed[iid]} deregistration; not reinstalled")
        else:
            log(logging.INFO, f"{iid}: drained; reinstalling")
    todo = [h for h in hosts if h.instance_id not in stuck]
    installed: list[str] = []
    if todo:
        chunk = run_chunk(
            label, 0, todo, cfg.model_copy(update={"reinstall": True}), len(todo), log_dir, log
        )
        for r in chunk.hosts:
            out.seconds[r.instance_id] = r.seconds
            if r.status == "installed":
                installed.append(r.instance_id)
            else:
                out.failed[r.instance_id] = r.reason or "install failed"
    for iid in installed:
        log(logging.INFO, f"{iid}: reinstalled, probe answered; registering")
    unhealthy = put_back(aws, fleet, installed, poll_s, health_timeout_s)
    for iid in installed:
        if iid in unhealthy:
            out.failed[iid] = unhealthy[iid]
            log(logging.ERROR, f"{iid}: registered but {unhealthy[iid]}")
        else:
            out.ok.append(iid)
            log(logging.INFO, f"{iid}: healthy in the target group again")
    took = time.monotonic() - started
    for iid in ids:
        out.seconds[iid] = round(max(out.seconds.get(iid, 0.0), took), 2)
    return out
