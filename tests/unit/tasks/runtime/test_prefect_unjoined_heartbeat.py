"""Flow-run heartbeats end without holding up the run's end (no API: a stand-in engine)."""

from __future__ import annotations

import logging
import threading
from typing import Any


class _Engine:
    """What `_send_heartbeats` reads from a flow run engine."""

    heartbeat_seconds = 30
    flow_run = None
    logger = logging.getLogger("test-heartbeat")

    def __init__(self) -> None:
        self.sent = 0

    def _build_heartbeat_event_template(self) -> tuple[dict[str, Any], list[Any]]:
        return {}, []

    def _emit_flow_run_heartbeat(self, resource: Any, related: Any) -> None:
        self.sent += 1


def _heartbeat_thread_after_exit() -> tuple[threading.Thread, _Engine]:
    from prefect import flow_engine

    engine = _Engine()
    before = set(threading.enumerate())
    with flow_engine._send_heartbeats(engine):  # type: ignore[arg-type]
        (thread,) = set(threading.enumerate()) - before
    return thread, engine


def test_the_run_end_does_not_wait_for_the_heartbeat_thread() -> None:
    from prefect import flow_engine

    from tasks.runtime.prefect_unjoined_heartbeat import unjoined_heartbeats

    original = flow_engine._send_heartbeats
    # the flow modules install it when imported (another test may have imported one)
    flow_engine._send_heartbeats = getattr(original, "__wrapped__", original)  # type: ignore[attr-defined]
    try:
        joined, _ = _heartbeat_thread_after_exit()
        assert not joined.is_alive()  # Prefect's own: the exit joined the sleeping thread
        assert unjoined_heartbeats() is True
        assert unjoined_heartbeats() is True  # idempotent
        thread, engine = _heartbeat_thread_after_exit()
        assert thread.is_alive()  # still in its one-second sleep: nobody waited for it
        thread.join(timeout=5)
        assert not thread.is_alive()  # it stops at its next check of the stop event
        assert engine.sent == 1  # the heartbeat at its start, none after the stop
    finally:
        flow_engine._send_heartbeats = original  # type: ignore[attr-defined]
