"""Stage 1: the web fleet exists, runs, passes status checks and has public IPs.

Idempotent and crash-safe: instances are found by the deployment's tags first (tags are
applied by RunInstances itself, so even a run killed mid-call leaves findable instances);
only the missing count is launched, with a ClientToken derived from what exists, so a
retried call cannot launch twice.
"""

from __future__ import annotations

import hashlib

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.ec2 import (
    TAG_KEY,
    ensure_key_pair,
    ensure_security_group,
    launch_instances,
    wait_running,
)
from tasks.deploy.models import LaunchResult


def existing_instance_ids(aws: Aws, settings: FleetSettings, role: str) -> list[str]:
    """Pending or running instances of this deployment and role, oldest first."""
    res = aws.client("ec2").describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": [settings.deployment_name]},
            {"Name": "tag:tomcat-fleet:role", "Values": [role]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    found = [i for r in res["Reservations"] for i in r["Instances"]]
    found.sort(key=lambda i: (str(i.get("LaunchTime", "")), i["InstanceId"]))
    return [i["InstanceId"] for i in found]


def client_token(settings: FleetSettings, group_id: str, existing: list[str], missing: int) -> str:
    """Same inputs, same token: a repeated RunInstances returns the same reservation. The
    group id changes when a deployment is torn down and rebuilt, so a new estate never
    collides with an old token (EC2 remembers tokens after termination)."""
    raw = f"{settings.deployment_name}|{group_id}|{','.join(sorted(existing))}|{missing}"
    return hashlib.sha256(raw.encode()).hexdigest()[:48]


def launch_fleet(
    aws: Aws, settings: FleetSettings, count: int, timeout_s: float = 600
) -> LaunchResult:
    ensure_key_pair(aws, settings)
    group = ensure_security_group(aws, settings, role="web")
    existing = existing_instance_ids(aws, settings, "web")
    missing = max(0, count - len(existing))
    ids = existing[:count]
    if missing:
        token = client_token(settings, group, existing, missing)
        ids += launch_instances(aws, settings, missing, group, client_token=token)
    instances = wait_running(aws, ids, timeout_s=timeout_s)
    return LaunchResult(
        instances=instances, security_group_id=group, key_name=settings.key_name, created=missing
    )
