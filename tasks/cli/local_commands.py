"""`tomcat-fleet local ...` (the one-command local start) and `tomcat-fleet server ...` (the
CLI's reusable local Prefect server)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter

from tasks.cli.flow_options import reusable_server, runtime_settings

# for options whose help says their default: shown once, not also as "[default: None]"
SAID = Parameter(show_default=False)

server_app = App(name="server", help="The CLI's reusable local Prefect server.")
local_app = App(name="local", help="The one-command local start (what ./scripts/run.sh runs).")


@server_app.command(name="status")
def server_status() -> int:
    """Print the reusable server's URL and pid (exit 1 if it is not running)."""
    up = reusable_server().running()
    print(f"Prefect server at {up[0]} (pid {up[1]})" if up else "no Prefect server running")
    return 0 if up else 1


@server_app.command(name="stop")
def server_stop() -> int:
    """Stop the reusable server (its database is kept)."""
    pid = reusable_server().stop()
    print(f"stopped the Prefect server (pid {pid})" if pid else "no Prefect server running")
    return 0


# ---------------------------------------------------------------- local start
@local_app.default
@local_app.command(name="up")
def local_up(
    *,
    state_dir: Annotated[Path | None, SAID] = None,
    prefect_port: Annotated[int | None, SAID] = None,
    sandbox_port: Annotated[int | None, SAID] = None,
    ssh_port: Annotated[int | None, SAID] = None,
    install_latency: float = 1.0,
    boot_delay: float = 1.0,
    instances: Annotated[int | None, SAID] = None,
    param: list[str] | None = None,
    run: bool = True,
    detach: bool = False,
    watch_timeout: int = 1800,
) -> int:
    """Start the Prefect server, the sandbox, the blocks, the work pool, the deployments and a
    worker, run deploy/full, then wait (Ctrl-C, SIGTERM or `local stop` ends it all).

    Args:
        state_dir: Where the processes, logs and Prefect database live (default:
            TOMCAT_FLEET_LOCAL_DIR, else .tomcat-fleet/local).
        prefect_port: Prefect server/UI port (default: TOMCAT_FLEET_LOCAL_PREFECT_PORT, else 4200).
        sandbox_port: Sandbox AWS API port (default: TOMCAT_FLEET_LOCAL_SANDBOX_PORT, else 4566).
        ssh_port: Sandbox SSH port (default: TOMCAT_FLEET_LOCAL_SSH_PORT, else 2222).
        install_latency: Sandbox: seconds per install.
        boot_delay: Sandbox: seconds until an instance boots.
        instances: deploy/full's instances (default: INSTANCES, else the deployment's, 4).
        param: More deploy/full parameters, key=JSON (repeatable).
        run: Run deploy/full (--no-run: start the services only).
        detach: Return once up; the services keep running until `local stop`.
        watch_timeout: Seconds to follow the run.
    """
    from tasks.runtime.local.start import Options, run_up

    rt = runtime_settings()
    # `INSTANCES=N ./scripts/run.sh` (docs/local-start.md)
    env_instances = os.environ.get("INSTANCES")
    opts = Options(
        state_dir=_resolve_local_dir(state_dir),
        prefect_port=prefect_port or rt.local_prefect_port,
        sandbox_port=sandbox_port or rt.local_sandbox_port,
        ssh_port=ssh_port or rt.local_ssh_port,
        install_latency=install_latency,
        boot_delay=boot_delay,
        instances=instances
        if instances is not None
        else (int(env_instances) if env_instances else None),
        params=list(param or []),
        run=run,
        detach=detach,
        watch_timeout_s=watch_timeout,
    )
    return run_up(opts)


def _resolve_local_dir(state_dir: Path | None) -> Path:
    """--state-dir, else TOMCAT_FLEET_LOCAL_DIR, else .tomcat-fleet/local in the project."""
    from tasks.runtime.local.state import PROJECT_DIR

    default = runtime_settings().local_dir or PROJECT_DIR / ".tomcat-fleet/local"
    return Path(state_dir or default).resolve()


@local_app.command(name="stop")
def local_stop(*, state_dir: Annotated[Path | None, SAID] = None) -> int:
    """Stop every process the local start began (from any shell).

    Args:
        state_dir: The local start's state directory (default: TOMCAT_FLEET_LOCAL_DIR, else
            .tomcat-fleet/local).
    """
    from tasks.runtime.local.start import run_stop

    return run_stop(_resolve_local_dir(state_dir))


@local_app.command(name="status")
def local_status(*, state_dir: Annotated[Path | None, SAID] = None) -> int:
    """List the local start's running processes (exit 1 if none).

    Args:
        state_dir: The local start's state directory (default: TOMCAT_FLEET_LOCAL_DIR, else
            .tomcat-fleet/local).
    """
    from tasks.runtime.local.start import run_status

    return run_status(_resolve_local_dir(state_dir))
