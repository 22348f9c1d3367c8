"""Stage 3: the inventory later stages read: installed hosts, their IPs and groups, as a
JSON file under the deployment's state directory."""

from __future__ import annotations

import json
from pathlib import Path

from blocks.settings import FleetSettings
from tasks.deploy.models import InventoryResult
from tasks.models import InstallSummary, Instance


def save_inventory(
    settings: FleetSettings, instances: list[Instance], install: InstallSummary
) -> InventoryResult:
    """Only hosts that ended `installed` go forward (failed ones never reach the ALB)."""
    ok = {r.instance_id for r in install.results if r.status == "installed"}
    keep = [i for i in instances if i.instance_id in ok]
    groups = sorted({g for i in keep for g in i.security_groups})
    path = Path(settings.state_dir) / settings.deployment_name / "inventory.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    failed = [
        r.model_dump(include={"instance_id", "public_ip", "reason"})
        for r in install.results
        if r.status == "failed"
    ]
    path.write_text(
        json.dumps(
            {
                "deployment": settings.deployment_name,
                "instances": [i.model_dump() for i in keep],
                "security_group_ids": groups,
                "failed": failed,
            },
            indent=1,
        )
    )
    return InventoryResult(path=str(path), instances=keep, security_group_ids=groups)
