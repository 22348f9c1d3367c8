"""Flow run names that say what a run does (`flow_run_name=` callables, read the run's
parameters through `prefect.runtime`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _params() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return dict(flow_run.parameters)


def _deployment(params: dict[str, Any]) -> str:
    overrides = dict(params.get("settings_overrides") or {})
    if params.get("deployment_name"):
        overrides["deployment_name"] = params["deployment_name"]
    try:
        from blocks.settings import FleetSettings

        return FleetSettings(**overrides).deployment_name
    except Exception:
        return str(overrides.get("deployment_name", "tomcat-fleet"))


def deploy_run_name() -> str:
    """`deploy-<deployment>-<N>-instances`."""
    p = _params()
    return f"deploy-{_deployment(p)}-{p.get('instances', 4)}-instances"


def install_run_name() -> str:
    """`install-<deployment>-<N>-hosts` (`saved-hosts`: the deployment's saved inventory)."""
    p = _params()
    hosts = p.get("instances")
    return f"install-{_deployment(p)}-{len(hosts) if hosts is not None else 'saved'}-hosts"


def teardown_run_name() -> str:
    """`teardown-<deployment>`."""
    return f"teardown-{_deployment(_params())}"


def status_run_name() -> str:
    """`status-<deployment>`."""
    return f"status-{_deployment(_params())}"


def benchmark_run_name() -> str:
    """`benchmark-<matrix>-<target>`."""
    p = _params()
    m = p.get("matrix", "nightly")
    matrix = Path(m).stem if isinstance(m, str) else f"{len(m)}-scenarios"
    return f"benchmark-{matrix}-{p.get('target', 'sandbox')}"


def rollout_run_name() -> str:
    """`rollout-<deployment>-waves-<spec>` (the waves' sizes, dashes for commas and %)."""
    p = _params()
    waves = str(p.get("waves", "")).replace(",", "-").replace("%", "pc").replace(" ", "")
    return f"rollout-{_deployment(p)}-waves-{waves or 'default'}"
