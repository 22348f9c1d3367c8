"""The saved inventory lists every launched host with its install status (later stages take
the installed ones; an install over the inventory retries the failed ones and writes the new
statuses back), and teardown's local-state rule. No network, no Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

from blocks.settings import FleetSettings
from tasks.deploy.inventory import (
    inventory_instances,
    inventory_path,
    load_inventory,
    update_inventory,
)
from tasks.deploy.models import InventoryResult
from tasks.deploy.stages.s02_install_tomcat import saved_install
from tasks.deploy.stages.s03_save_inventory import save_inventory
from tasks.deployment_files import local_files, remove_local_state
from tasks.models import HostResult, InstallSummary, Instance


def settings(tmp: Path, **kw: str) -> FleetSettings:
    return FleetSettings(state_dir=str(tmp), deployment_name="inv", **kw)  # type: ignore[arg-type]


def hosts(n: int) -> list[Instance]:
    return [
        Instance(instance_id=f"i-{k}", public_ip=f"10.0.0.{k}", security_groups=["sg-1"])
        for k in range(n)
    ]


def result(i: Instance, ok: bool) -> HostResult:
    return HostResult(
        instance_id=i.instance_id,
        public_ip=i.public_ip,
        status="installed" if ok else "failed",
        reason=None if ok else "apt-get failed",
    )


def summary(results: list[HostResult]) -> InstallSummary:
    return InstallSummary(
        hosts=len(results),
        installed=sum(r.status == "installed" for r in results),
        failed=sum(r.status == "failed" for r in results),
        already_installed=0,
        install_s=1.0,
        chunk_size=1,
        max_workers=1,
        desired_count=1,
        total_chunks=1,
        runner="thread",
        aggregate_log="",
        results=results,
    )


def test_inventory_lists_failed_hosts_and_forwards_installed_ones(tmp_path: Path) -> None:
    s = settings(tmp_path)
    fleet = hosts(4)
    inv = save_inventory(s, fleet, summary([result(i, i.instance_id != "i-2") for i in fleet]))
    assert [i.instance_id for i in inv.instances] == ["i-0", "i-1", "i-3"]  # to the ALB
    assert inv.status == {
        "i-0": "installed",
        "i-1": "installed",
        "i-2": "failed",
        "i-3": "installed",
    }
    saved = json.loads(inventory_path(s).read_text())
    assert len(saved["instances"]) == 4 and saved["failed"][0]["instance_id"] == "i-2"
    # install-tomcat without instances: every host, the failed one included
    assert [i.instance_id for i in inventory_instances(s) or []] == ["i-0", "i-1", "i-2", "i-3"]
    loaded = load_inventory(s)
    assert loaded is not None and [i.instance_id for i in loaded.instances] == ["i-0", "i-1", "i-3"]

    # the re-run installs i-2 this time (i-0.. were skipped by the probe: installed again)
    update_inventory(s, [result(i, True) for i in fleet])
    again = load_inventory(s)
    assert again is not None and len(again.instances) == 4
    assert set(again.status.values()) == {"installed"}


def test_update_keeps_hosts_the_install_did_not_see(tmp_path: Path) -> None:
    s = settings(tmp_path)
    fleet = hosts(3)
    save_inventory(s, fleet, summary([result(fleet[0], True), result(fleet[1], False)]))
    assert load_inventory(s).status["i-2"] == "not installed"  # type: ignore[union-attr]
    update_inventory(s, [result(fleet[1], True)])
    st = load_inventory(s).status  # type: ignore[union-attr]
    assert st == {"i-0": "installed", "i-1": "installed", "i-2": "not installed"}


def test_old_inventory_files_read_as_installed(tmp_path: Path) -> None:
    s = settings(tmp_path)
    inventory_path(s).parent.mkdir(parents=True)
    inventory_path(s).write_text(json.dumps({"instances": [i.model_dump() for i in hosts(2)]}))
    inv = load_inventory(s)
    assert inv is not None and len(inv.instances) == 2


def refresh_inventory(s: FleetSettings, instances: list[Instance]) -> InventoryResult | None:
    """Stage 3 without stage 2 in the run: stage 2's saved results (its finder's) over the
    instances launched now; None without a saved inventory (the finder's MissingStage)."""
    saved = saved_install(s)
    return None if saved is None else save_inventory(s, instances, saved)


def test_refresh_without_install_takes_saved_statuses(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert refresh_inventory(s, hosts(2)) is None  # stage 3 alone, no inventory: None
    save_inventory(s, hosts(2), summary([result(hosts(2)[0], True)]))
    inv = refresh_inventory(s, hosts(3))  # a third host launched since
    assert inv is not None and [i.instance_id for i in inv.instances] == ["i-0"]
    assert inv.status["i-2"] == "not installed"


def _files(s: FleetSettings) -> dict[str, Path]:
    files = local_files(s)
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    return files


def test_clean_teardown_removes_local_state(tmp_path: Path) -> None:
    s = settings(tmp_path)
    files = _files(s)
    out = remove_local_state(s, clean=True, keep=False)
    assert sorted(out.removed) == sorted(str(p) for p in files.values()) and not out.kept
    assert not (tmp_path / "inv").exists()


def test_local_state_kept_with_a_reason(tmp_path: Path) -> None:
    s = settings(tmp_path)
    files = _files(s)
    out = remove_local_state(s, clean=False, keep=False)
    assert not out.removed and set(out.kept) == {str(p) for p in files.values()}
    assert all("left resources behind" in why for why in out.kept.values())
    out = remove_local_state(s, clean=True, keep=True)
    assert not out.removed and all("on request" in why for why in out.kept.values())
    user_key = tmp_path / "mine.pem"
    s2 = settings(tmp_path, ssh_key_file=str(user_key))
    files = _files(s2)
    out = remove_local_state(s2, clean=True, keep=False)
    assert str(user_key) in out.kept and user_key.exists()
    assert not files["inventory"].exists() and not files["known_hosts"].exists()
