"""The deployment's inventory file (stage 3 writes it, tasks/deploy/stages/s03_save_inventory.py):
every launched host with its install status, its IPs and groups, as JSON under the
deployment's state directory.

Later stages (the ALB) use the installed hosts only; `install-tomcat` without instances
reads every host listed (failed ones included), so a re-run retries exactly the hosts that
are not serving yet (installed ones are skipped by the install's probe) and writes the
statuses back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blocks.settings import FleetSettings
from tasks.deploy.models import InventoryResult
from tasks.models import HostResult, Instance

INSTALLED = "installed"


def inventory_path(settings: FleetSettings) -> Path:
    return Path(settings.state_dir) / settings.deployment_name / "inventory.json"


def read_inventory(settings: FleetSettings) -> dict[str, Any] | None:
    """The saved inventory file, or None when there is none. Files written before the
    statuses were kept list installed hosts only: those read as installed."""
    path = inventory_path(settings)
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    status = data.get("status") or {}
    data["status"] = {
        row["instance_id"]: status.get(row["instance_id"], INSTALLED)
        for row in data.get("instances", [])
    }
    return data


def write_inventory(
    settings: FleetSettings, instances: list[Instance], results: list[HostResult]
) -> InventoryResult:
    """Every instance with its status (`installed`, `failed`, or `not installed` when no
    result names it); returns the installed hosts for the stages after 3."""
    by_id = {r.instance_id: r for r in results}
    status = {
        i.instance_id: by_id[i.instance_id].status if i.instance_id in by_id else "not installed"
        for i in instances
    }
    keep = [i for i in instances if status[i.instance_id] == INSTALLED]
    groups = sorted({g for i in keep for g in i.security_groups})
    path = inventory_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    failed = [
        r.model_dump(include={"instance_id", "public_ip", "reason"})
        for r in results
        if r.status == "failed"
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "deployment": settings.deployment_name,
                "instances": [i.model_dump() for i in instances],
                "status": status,
                "installed": [i.instance_id for i in keep],
                "security_group_ids": groups,
                "failed": failed,
                "versions": read_versions(settings),  # kept across stage 3 runs
            },
            indent=1,
        )
    )
    tmp.replace(path)
    return InventoryResult(path=str(path), instances=keep, security_group_ids=groups, status=status)


def load_inventory(settings: FleetSettings) -> InventoryResult | None:
    """The saved inventory as stage 3 returned it (installed hosts forward), or None."""
    data = read_inventory(settings)
    if data is None:
        return None
    instances = [Instance(**row) for row in data.get("instances", [])]
    keep = [i for i in instances if data["status"][i.instance_id] == INSTALLED]
    return InventoryResult(
        path=str(inventory_path(settings)),
        instances=keep,
        security_group_ids=sorted({g for i in keep for g in i.security_groups}),
        status=data["status"],
    )


def inventory_instances(settings: FleetSettings) -> list[Instance] | None:
    """Every instance the saved inventory lists (failed ones included), or None."""
    data = read_inventory(settings)
    if data is None:
        return None
    return [Instance(**row) for row in data.get("instances", [])]


def update_inventory(settings: FleetSettings, results: list[HostResult]) -> None:
    """After an install over the saved inventory: the hosts it ran on take their new
    status; the others keep theirs."""
    data = read_inventory(settings)
    if data is None:
        return
    instances = [Instance(**row) for row in data.get("instances", [])]
    reasons = {f["instance_id"]: f.get("reason") for f in data.get("failed", [])}
    ips = {i.instance_id: i.public_ip for i in instances}
    old = {
        i: HostResult(
            instance_id=i,
            public_ip=ips[i],
            status=s,
            reason=reasons.get(i) or ("earlier install failed" if s == "failed" else None),
        )
        for i, s in data["status"].items()
        if s in (INSTALLED, "failed")
    }
    old.update({r.instance_id: r for r in results})
    write_inventory(settings, instances, list(old.values()))


def read_versions(settings: FleetSettings) -> dict[str, str]:
    """instance id -> the recipe version a rollout last installed on it (none known: {})."""
    data = read_inventory(settings)
    return dict((data or {}).get("versions") or {})


def record_versions(settings: FleetSettings, versions: dict[str, str]) -> bool:
    """The saved inventory takes these hosts' recipe versions (False: there is none)."""
    path = inventory_path(settings)
    if not path.is_file():
        return False
    data = json.loads(path.read_text())
    data["versions"] = {**(data.get("versions") or {}), **versions}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return True
