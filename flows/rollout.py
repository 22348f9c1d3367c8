"""Flow `rollout`: the install recipe run again on a serving fleet, in waves behind its load
balancer, so that no request fails.

Order of work: check the inputs (nothing touched yet), find the fleet (the deployment's web
instances registered in its target group), plan the waves (Ansible's `serial`), check the
SSH key, the hosts and the ingress as the install does, then per wave (a task run each):
deregister, drain, reinstall and probe, register, healthy. A wave with more failures than
`max_errors` (SSM's MaxErrors, per wave) ends the rollout: no later host is touched, and
the run ends Failed with the report. Artifacts: `<deployment>-rollout-progress` (hosts
done), `<deployment>-rollout-wave-<n>` (a table per wave), `<deployment>-rollout-report`.

`tomcat-fleet rollout --help` runs it standalone (see `tasks/cli/`).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m flows.rollout ...` is `tomcat-fleet rollout ...`
    import runpy
    import sys

    sys.argv[1:1] = ["rollout"]
    runpy.run_module("flows", run_name="__main__", alter_sys=True)

import os
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from blocks.settings import FleetSettings
from tasks.artifacts import artifact_key
from tasks.aws import Aws
from tasks.deploy.inventory import read_versions, record_versions
from tasks.install_start import install_checks, load_key
from tasks.remote.config import remote_config
from tasks.rollout import report
from tasks.rollout.plan import (
    RolloutState,
    WaveLine,
    check_request,
    errors_allowed,
    plan_waves,
    recipe_version,
)
from tasks.rollout.wave import rollout_wave
from tasks.rollout.work import find_fleet
from tasks.runtime import prefect_adjustments
from tasks.runtime.outcome import failed_with_report
from tasks.runtime.run_names import rollout_run_name

prefect_adjustments.install()  # every entry path: the flow engine imports this module first


@flow(name="rollout", flow_run_name=rollout_run_name, log_prints=False)
def rollout(
    waves: str = "1,10%,50%,100%",
    max_errors: str = "0",
    canary_wait: float = 0.0,
    poll_s: float = 5.0,
    health_timeout_s: float = 300.0,
    settings_overrides: dict[str, Any] | None = None,
) -> RolloutState:
    """Reinstall Tomcat (the install_steps recipe) on the serving fleet in waves behind
    the load balancer: per host deregister, drain, reinstall, probe, register, healthy.

    Args:
        waves: Wave sizes, host counts or percents of the fleet (the last repeats until every
            host is done), e.g. 1,10%,50%,100%.
        max_errors: Hosts of one wave allowed to fail before the rollout stops, a count or a
            percent of the wave, e.g. 0 or 10%.
        canary_wait: Seconds to wait between waves.
        poll_s: Seconds between target-health polls.
        health_timeout_s: Seconds a host may take to become healthy (and to drain, beyond the
            deregistration delay).
        settings_overrides: FleetSettings fields to override for this run.
    """
    logger = get_run_logger()
    t0 = time.monotonic()
    request = check_request(waves, max_errors, canary_wait, poll_s, health_timeout_s)
    settings = FleetSettings(**(settings_overrides or {}))
    deployment = settings.deployment_name
    aws = Aws(settings)
    fleet = find_fleet(aws, settings)
    ids = [h.instance_id for h in fleet.hosts]
    plan = plan_waves(ids, request.waves)
    version = recipe_version(settings.install_steps)
    state = RolloutState.start(plan, version, read_versions(settings))
    logger.info(
        "rollout of version %s to %d hosts of %s in %d waves (%s); max_errors=%s per wave; "
        "deregistration delay %ds",
        version,
        len(ids),
        deployment,
        len(plan),
        ", ".join(str(len(w)) for w in plan),
        max_errors,
        fleet.delay_s,
    )
    if fleet.not_healthy:
        logger.warning("not healthy at the start: %s", fleet.not_healthy)
    load_key(settings)  # fail before any host leaves service when the key cannot be read
    checked = install_checks(settings, fleet.hosts)
    for text in checked.lines:
        logger.info(text)
    cfg = remote_config(settings, None, expected_fingerprints=checked.expected)
    log_dir = str(Path(settings.log_dir) / f"rollout-{int(time.time())}-{os.getpid()}")
    progress: UUID = create_progress_artifact(  # type: ignore[assignment]
        0.0, key=artifact_key(deployment, "rollout-progress"), description="hosts done"
    )
    by_id = {h.instance_id: h for h in fleet.hosts}
    done = 0
    for number, wave_ids in enumerate(plan, start=1):
        if number > 1 and canary_wait > 0:
            logger.info("canary wait: %.1fs before wave %d", canary_wait, number)
            time.sleep(canary_wait)
        logger.info("wave %d of %d: %s", number, len(plan), ", ".join(wave_ids))
        w0 = time.monotonic()
        result = rollout_wave(
            settings,
            fleet,
            number,
            [by_id[i] for i in wave_ids],
            cfg,
            log_dir,
            poll_s,
            health_timeout_s,
        )
        for iid in wave_ids:
            line = state.hosts[iid]
            line.seconds = result.seconds.get(iid, 0.0)
            if iid in result.ok:
                line.state, line.version = "upgraded", version
            else:
                line.state, line.version = "failed", "unknown"
                line.reason = result.failed.get(iid, "no result")
        wave = WaveLine(
            number=number,
            hosts=wave_ids,
            upgraded=len(result.ok),
            failed=len(wave_ids) - len(result.ok),
            allowed=errors_allowed(request.max_errors, len(wave_ids)),
            seconds=round(time.monotonic() - w0, 2),
        )
        state.waves.append(wave)
        record_versions(settings, dict.fromkeys(result.ok, version))
        done += len(wave_ids)
        create_table_artifact(
            table=report.wave_rows(state, number),
            key=artifact_key(deployment, "rollout-wave", str(number)),
            description=f"rollout wave {number} of {len(plan)}: {wave.upgraded} upgraded, "
            f"{wave.failed} failed",
        )
        update_progress_artifact(progress, 100.0 * done / len(ids))
        logger.info(
            "wave %d done in %.1fs: %d upgraded, %d failed (%d allowed)",
            number,
            wave.seconds,
            wave.upgraded,
            wave.failed,
            wave.allowed,
        )
        if wave.stopped:
            state.stopped_at = number
            break
    state.seconds = round(time.monotonic() - t0, 2)
    create_markdown_artifact(
        markdown=report.markdown(state, deployment),
        key=artifact_key(deployment, "rollout-report"),
        description=report.summary_line(state),
    )
    logger.info(report.summary_line(state))
    if state.stopped_at is not None:
        wave = state.waves[-1]
        first = next(state.hosts[i] for i in wave.hosts if state.hosts[i].state == "failed")
        message = (
            f"rollout stopped after wave {wave.number}: {wave.failed} of {len(wave.hosts)} "
            f"hosts failed, more than max_errors={max_errors}; {len(state.by_state('untouched'))}"
            f" hosts untouched; first: {first.instance_id}: {first.reason}"
        )
        return failed_with_report(message, state, logger)  # type: ignore[return-value]
    return state
