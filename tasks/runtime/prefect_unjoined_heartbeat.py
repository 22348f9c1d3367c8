"""Flow-run heartbeats that do not hold up the end of a flow run.

A sync flow run sends heartbeats from a daemon thread (`prefect.flow_engine._send_heartbeats`)
that sleeps in steps of one second between checks of its stop event. When the run's body
ends, the engine sets the event and joins the thread, so every sync flow run ends up to a
second late: the rest of the current `time.sleep(1)`. In py-spy samples of a `tomcat-fleet
install` whose server was already up, that join took 0.76 s of the main thread.

Prefect's async engine already calls the same context manager with `join_on_exit=False`;
`unjoined_heartbeats()` makes the sync engine do the same. The thread still stops at its
next check and sends no heartbeat once the stop event is set or the run's state is final.
What changes: a heartbeat already being sent when the run ends may reach the API just
after the final state. The place to fix this for good is Prefect's loop (wait on the stop
event instead of sleeping).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

_MARK = "_tomcat_fleet_unjoined"


def unjoined_heartbeats() -> bool:
    """Make sync flow runs in this process end without waiting for the heartbeat thread
    (idempotent). False when Prefect's engine no longer has the expected function (then
    nothing is changed)."""
    from prefect import flow_engine

    current: Callable[..., Any] | None = getattr(flow_engine, "_send_heartbeats", None)
    if current is None:
        return False
    if getattr(current, _MARK, False):
        return True
    if "join_on_exit" not in inspect.signature(current).parameters:
        return False

    @functools.wraps(current)
    def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Any:
        return current(engine, join_on_exit=False)

    setattr(send_heartbeats, _MARK, True)
    flow_engine._send_heartbeats = send_heartbeats
    return True
