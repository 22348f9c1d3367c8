"""The adjustments to Prefect every flow run of this project gets, however it starts.

The flow modules call `install()` when they are imported, so a CLI run, a deployment run
a worker picks up, a Docker flow run and a test all run with the same Prefect: the flow
engine loads the flow's module before it starts the run. Each adjustment is idempotent
and checks the Prefect names it touches; one whose names changed is left out (and
`in_force()` says so) instead of failing the run. Both touch private names of the Prefect
minor version pinned in pyproject.toml; docs/design/process-pool.md lists them and the
upstream fixes that would make them unnecessary, and
tests/unit/tasks/runtime/test_prefect_private.py checks they still exist with the expected shape.

* `heartbeat_unjoined` (`prefect_unjoined_heartbeat`): a sync flow run's end does not wait
  out the heartbeat thread's one-second sleep.
* `shared_tls_context` (`prefect_shared_tls_context`): Prefect's API clients share one
  verified TLS context per CA file instead of loading the CA bundle per client.
"""

from __future__ import annotations

from tasks.runtime.prefect_shared_tls_context import share_api_tls_context
from tasks.runtime.prefect_unjoined_heartbeat import unjoined_heartbeats

_STATE: dict[str, bool] = {}


def install() -> dict[str, bool]:
    """Apply every adjustment (once per process); which are in force."""
    if not _STATE:
        _STATE["heartbeat_unjoined"] = unjoined_heartbeats()
        _STATE["shared_tls_context"] = share_api_tls_context()
    return dict(_STATE)


def in_force() -> dict[str, bool]:
    """Which adjustments this process runs with (empty before `install()`)."""
    return dict(_STATE)


def describe() -> str:
    """One line for a flow run's log: `prefect adjustments: heartbeat_unjoined=on, ...`."""
    state = in_force() or install()
    return "prefect adjustments: " + ", ".join(
        f"{name}={'on' if on else 'OFF'}" for name, on in sorted(state.items())
    )
