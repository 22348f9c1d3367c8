"""A deployment's files on the controller (under `state_dir/<deployment>/`): the generated
private key, known_hosts and the inventory. Teardown removes them once nothing they
describe is left; this module decides, removes and says what it kept and why. Pure file
work: no network, no Prefect."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from blocks.settings import FleetSettings


class LocalState(BaseModel):
    removed: list[str] = Field(default_factory=list)
    kept: dict[str, str] = Field(default_factory=dict)  # path -> why it was kept


def local_files(settings: FleetSettings) -> dict[str, Path]:
    base = Path(settings.state_dir) / settings.deployment_name
    return {
        "private key": settings.key_file_path(),
        "known_hosts": settings.known_hosts_path,
        "inventory": base / "inventory.json",
    }


def remove_local_state(settings: FleetSettings, *, clean: bool, keep: bool) -> LocalState:
    """The default: after a teardown that removed everything (`clean`), delete the
    generated private key (its key pair is gone and the next deploy makes a new one),
    known_hosts (a new life may reuse the addresses with new host keys) and the inventory
    (it lists terminated instances). Kept, with the reason: everything when the teardown
    left resources behind (the key may still open them), or when `keep` is asked; a key
    file the user supplied (ssh_key_file) always."""
    out = LocalState()
    for what, path in local_files(settings).items():
        if not path.exists():
            continue
        if keep:
            out.kept[str(path)] = f"{what}: kept on request (keep_local_state)"
        elif not clean:
            out.kept[str(path)] = (
                f"{what}: kept because the teardown left resources behind; run teardown "
                "again once they are removed"
            )
        elif what == "private key" and settings.ssh_key_file:
            out.kept[str(path)] = f"{what}: supplied by the user (ssh_key_file), never deleted"
        else:
            path.unlink()
            out.removed.append(str(path))
    base = Path(settings.state_dir) / settings.deployment_name
    if out.removed and base.is_dir() and not any(base.iterdir()):
        base.rmdir()
    return out
