"""The wave task: what Prefect sees of one wave (a task run with its host lines)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.models import Instance
from tasks.remote.config import HostInstallConfig
from tasks.rollout.work import Fleet, WaveResult, run_wave


@task(name="rollout-wave", task_run_name="wave-{number}", cache_policy=NO_CACHE, retries=0)
def rollout_wave(
    settings: FleetSettings,
    fleet: Fleet,
    number: int,
    hosts: list[Instance],
    cfg: HostInstallConfig,
    log_dir: str,
    poll_s: float,
    health_timeout_s: float,
) -> WaveResult:
    """Wave `number`: its hosts out of service, drained, reinstalled, healthy again."""
    logger = get_run_logger()
    return run_wave(
        Aws(settings),
        fleet,
        hosts,
        cfg,
        label=f"wave-{number}",
        log_dir=log_dir,
        log=logger.log,
        poll_s=poll_s,
        health_timeout_s=health_timeout_s,
    )
