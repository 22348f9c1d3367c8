"""The teardown's task: what Prefect sees of a teardown (one task run with a line per
resource and per wait in its log, and the report as its result). The work is
`tasks.aws.teardown.teardown`; the `teardown` flow (flows/teardown.py) runs this task and
publishes what it returns.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.teardown import TeardownReport
from tasks.aws.teardown import teardown as teardown_all


@task(name="teardown-resources", tags=["teardown"], cache_policy=NO_CACHE)
def teardown_resources(
    settings: FleetSettings, delete_secrets: bool, timeout_s: float, poll_s: float
) -> TeardownReport:
    """Delete everything tagged for the settings' deployment, logging each resource."""
    log = get_run_logger()
    with actions.recording(log):  # each resource's and each wait's line to this task's log
        return teardown_all(
            Aws(settings),
            settings,
            timeout_s=timeout_s,
            poll_s=poll_s,
            delete_secrets=delete_secrets,
            log=log,
        )
