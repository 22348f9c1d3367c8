"""The deploy stages, one module (room) each, named by the stage table (`Stage.room`):
its Prefect task or the subflow it calls, its logic, its finder and its report part.
`rooms()` loads them all, by the table's names, for the deploy flow."""

from __future__ import annotations

import importlib
from functools import cache

from tasks.deploy.dag import STAGES
from tasks.deploy.stages.room import Room


@cache
def rooms() -> dict[int, Room]:
    """Every stage's room, by number; each room's row is the table's."""
    out: dict[int, Room] = {}
    for n, row in STAGES.items():
        room = importlib.import_module(f"{__name__}.{row.room}").ROOM
        if room.stage is not row:
            raise RuntimeError(f"{row.room}.ROOM is not stage {n} of the table")
        out[n] = room
    return out
