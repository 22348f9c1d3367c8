"""How our flows end badly: a Failed state whose exception carries the run's report, so a
Python caller gets a real exception (with `.data`) and a CLI can still print the report."""

from __future__ import annotations

from typing import Any

from prefect.states import Failed, State

from blocks.fleet_error import quiet_tracebacks
from tasks.errors import FleetError


class FlowFailed(FleetError, RuntimeError):
    """Raised by calling a flow that failed; `.data` is its report/summary. Its message
    was logged as the run's error: a worker's engine re-raising it logs no traceback."""

    one_line = True

    def __init__(self, message: str, data: Any) -> None:
        super().__init__(message)
        self.data = data


def failed_with_report(message: str, data: Any, logger: Any = None) -> State[Any]:
    """The Failed state a flow returns, carrying `data`; `message` is also logged as the
    run's error when a `logger` is given."""
    quiet_tracebacks()
    if logger is not None:
        logger.error(message)
    return Failed(message=message, data=FlowFailed(message, data))


def outcome_of(state: State[Any]) -> Any:
    """The report of a finished flow run, completed or failed (None if it has none)."""
    try:
        result = state.result(raise_on_failure=False)
    except Exception:
        return None
    return result.data if isinstance(result, FlowFailed) else result
