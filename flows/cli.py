"""`tomcat-fleet`: the project's one command line (also `python -m flows ...`).

    tomcat-fleet deploy --sandbox --instances 50        # its own sandbox, all 11 stages
    tomcat-fleet install --inventory inventory.json     # install on existing instances
    tomcat-fleet teardown --deployment-name tomcat-fleet
    tomcat-fleet benchmark --matrix nightly --out-dir out/benchmark
    tomcat-fleet sandbox --help                         # `python -m sandbox`
    tomcat-fleet local up | stop | status               # the one-command local start
    tomcat-fleet server status | stop                   # the CLI's local Prefect server

The flow commands' options come from the flows' signatures and docstrings (the same text
the Prefect UI shows for the parameters). Input is validated before Prefect is contacted:
bad input costs no server start. Without PREFECT_API_URL the flow commands use one local
Prefect server, started on first use under `.tomcat-fleet/prefect` and reused by later runs.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter
from cyclopts.exceptions import CycloptsError

from tasks.bench.child import child as bench_child  # no Prefect in it
from tasks.runtime import run_start  # no Prefect in it
from tasks.runtime.cli_support import side_by_side  # nor here
from tasks.runtime.prefect_api import LocalServer
from tasks.runtime.sandbox_child import Peak, SandboxOptions, maybe_sandbox

FaultProfile = Literal["clean", "flaky", "hostile"]


class InputError(Exception):
    """Bad input found before anything started; the message is one line."""


app = App(
    name="tomcat-fleet",
    help="The tomcat-fleet flows, the sandbox and the local start, from one command.\n\n"
    "Flow options come from the flows' docstrings (the text the Prefect UI shows). Input is "
    "checked before Prefect is contacted. Without PREFECT_API_URL, flows report to one local "
    "Prefect server, started on first use under .tomcat-fleet/prefect and reused "
    "(`tomcat-fleet server stop` stops it).",
    default_parameter=Parameter(show_default=True),
    help_on_error=False,
    version_flags=[],
)
server_app = App(name="server", help="The CLI's reusable local Prefect server.")
local_app = App(name="local", help="The one-command local start (what ./scripts/run.sh runs).")
app.command(server_app)
app.command(local_app)

# flow commands: built on demand (importing a flow imports Prefect)
FLOWS = {
    "deploy": "Run the deploy flow: the eleven stages, standalone.",
    "install": "Run the install-tomcat flow on new (--instances) or listed (--inventory) hosts.",
    "teardown": "Run the teardown flow: remove every resource tagged for a deployment.",
    "benchmark": "Run the benchmark flow (or serve its nightly deployment).",
}
for _name, _help in FLOWS.items():
    app.command(App(name=_name, help=_help))

SANDBOX_DOC = {
    "sandbox": "Start a sandbox child process for this run (else the environment's settings:"
    " AWS, or `set -a; . .sandbox.env`).",
    "install_latency": "Sandbox: seconds per install.",
    "boot_delay": "Sandbox: seconds until an instance boots.",
    "seed": "Sandbox: fault seed.",
    "fault_profile": "Sandbox: fault profile.",
    "throttle_rate": "Sandbox: API throttling probability.",
}
SANDBOX_PARAMS = [
    ("sandbox", bool, False),
    ("install_latency", float, 2.0),
    ("boot_delay", float, 1.0),
    ("seed", int, 0),
    ("fault_profile", FaultProfile, "clean"),
    ("throttle_rate", float, 0.0),
]
SETTINGS_DOC = {
    "deployment_name": "Settings override: the deployment's name (default: the settings').",
    "state_dir": "Settings override: the state directory (default: the settings').",
    "log_dir": "Settings override: the log directory (default: the settings').",
    "host_key_policy": "Settings override: SSH host-key policy (default: the settings').",
}

Extra = tuple[str, Any, Any, str]  # name, type, default, help


def flow_command(
    flow: tuple[str, str],
    run: Callable[[dict[str, Any]], int],
    *,
    drop: tuple[str, ...] = ("settings_overrides",),
    change: dict[str, Extra] | None = None,
    extra: list[Extra] | None = None,
) -> Callable[..., int]:
    """A command whose options are the parameters of the flow (file, function) (types,
    defaults and the docstring's Args, read from its source: nothing is imported), minus
    `drop`, with `change` replacing some and `extra` appended."""
    import docstring_parser

    from tasks.runtime.flow_signature import PROJECT_DIR, flow_signature

    sig, text = flow_signature(PROJECT_DIR / flow[0], flow[1])
    doc = docstring_parser.parse(text)
    helps = {p.arg_name: " ".join((p.description or "").split()) for p in doc.params}
    params = []
    for p in sig.parameters.values():
        if p.name in drop:
            continue
        if change and p.name in change:
            name, typ, default, text = change[p.name]
            p = p.replace(annotation=typ, default=default)
            helps[name] = text
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    for name, typ, default, text in extra or []:
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=typ)
        )
        helps[name] = text
    lines = [doc.short_description or "", "", doc.long_description or "", "", "Args:"]
    lines += [f"    {p.name}: {helps.get(p.name, '')}" for p in params]

    signature = inspect.Signature(params, return_annotation=int)

    def command(**kwargs: Any) -> int:
        bound = signature.bind_partial(**kwargs)
        bound.apply_defaults()
        return run(dict(bound.arguments))

    command.__signature__ = signature  # type: ignore[attr-defined]
    command.__doc__ = "\n".join(lines)
    command.__name__ = flow[1]
    return command


def _sandbox_extras(latency: float = 2.0) -> list[Extra]:
    out = []
    for name, typ, default in SANDBOX_PARAMS:
        out.append(
            (name, typ, latency if name == "install_latency" else default, SANDBOX_DOC[name])
        )
    return out


def _pop_sandbox(kw: dict[str, Any]) -> SandboxOptions:
    return SandboxOptions(
        enabled=kw.pop("sandbox"),
        **{name: kw.pop(name) for name, _, _ in SANDBOX_PARAMS if name != "sandbox"},
    )


def _pop_overrides(kw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    values = {n: kw.pop(n) for n in names}
    return {k: v for k, v in values.items() if v is not None}


def _settings(overrides: dict[str, Any]) -> Any:
    """FleetSettings, or InputError with the first problem in one line."""
    from pydantic import ValidationError

    from blocks.settings import FleetSettings

    try:
        return FleetSettings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "settings"
        raise InputError(f"invalid settings: {where}: {err.get('msg')}") from None


PLANNED: dict[str, str] = {}  # the API URL `main` fixed before Prefect was imported


def prefect_server() -> contextlib.AbstractContextManager[int | None]:
    return run_start.prefect_server(PLANNED.get("url"))


def start_run(module: str, sb: SandboxOptions, pool: bool) -> Any:
    return run_start.start_run(module, sb, pool, PLANNED.get("url"))


# ---------------------------------------------------------------- deploy
def build_deploy() -> Callable[..., int]:
    from tasks.inputs import check_deploy_request, parse_stages
    from tasks.planning import PlanError

    def run(kw: dict[str, Any]) -> int:
        sb = _pop_sandbox(kw)
        ov = _pop_overrides(kw, ("deployment_name", "state_dir", "log_dir"))
        try:
            check_deploy_request(
                kw["instances"], kw["stages"], kw, kw["allow_failures"], kw["runner"]
            )
            _settings(
                {**ov, **{k: kw[k] for k in ("instance_type", "hosted_zone", "domain") if kw[k]}}
            )
        except PlanError as exc:
            raise InputError(str(exc)) from None
        t0 = time.monotonic()
        pool = kw["runner"] == "process" and 2 in parse_stages(kw["stages"])
        started = start_run("flows.deploy", sb, pool)
        with side_by_side(prefect_server(), maybe_sandbox(sb, started)):
            from flows.deploy import DeployReport, deploy
            from tasks.runtime.cli_support import deploy_json
            from tasks.runtime.outcome import outcome_of

            state = deploy(**kw, settings_overrides=ov, return_state=True)
            report = outcome_of(state)
            if not isinstance(report, DeployReport):
                print(f"deploy: {state.message}", file=sys.stderr)
                return 2 if isinstance(report, PlanError) else 1
        print(deploy_json(report, state, time.monotonic() - t0))
        return 0 if state.is_completed() else 1

    settings = [
        (n, str | None, None, SETTINGS_DOC[n]) for n in ("deployment_name", "state_dir", "log_dir")
    ]
    return flow_command(("flows/deploy.py", "deploy"), run, extra=[*settings, *_sandbox_extras()])


# ---------------------------------------------------------------- install
def build_install() -> Callable[..., int]:
    from tasks.inputs import validate_install
    from tasks.models import Instance
    from tasks.planning import PlanError
    from tasks.runtime.cli_support import read_inventory

    def run(kw: dict[str, Any]) -> int:
        sb = _pop_sandbox(kw)
        ov = _pop_overrides(kw, ("host_key_policy", "deployment_name", "state_dir", "log_dir"))
        count, inventory = kw.pop("instances"), kw.pop("inventory")
        if (count is None) == (inventory is None):
            raise InputError("give exactly one of --instances N or --inventory FILE")
        if count is not None and count < 1:
            raise InputError("--instances must be at least 1")
        if inventory and not Path(inventory).is_file():
            raise InputError(f"--inventory {inventory}: no such file")
        try:
            hosts = (
                read_inventory(inventory)
                if inventory
                else [Instance(instance_id=f"i-{n}", public_ip="0.0.0.0") for n in range(count)]
            )
            validate_install(
                hosts,
                kw["chunk_size"],
                kw["max_workers"],
                kw["desired_count"],
                kw["runner"],
                kw["allow_failures"],
                kw["dask_address"],
            )
        except (PlanError, ValueError, KeyError) as exc:
            raise InputError(str(exc).splitlines()[0]) from None
        _settings(ov)
        t0 = time.monotonic()
        marks = {"process_start": -run_start.process_age_s()}
        started = start_run("flows.install_tomcat", sb, kw["runner"] == "process")
        marks["imported"] = time.monotonic() - t0
        with side_by_side(prefect_server(), maybe_sandbox(sb, started)) as (
            server_pid,
            sandbox_pid,
        ):
            marks["services_up"] = time.monotonic() - t0
            peak = Peak([p for p in (sandbox_pid, server_pid) if p])
            from flows.install_tomcat import install_tomcat
            from tasks.models import InstallSummary
            from tasks.runtime.cli_support import install_json, launch
            from tasks.runtime.outcome import outcome_of

            api_calls = retries = 0
            try:
                if count is not None:
                    hosts, api_calls, retries = launch(count, ov)
                    marks["launched"] = time.monotonic() - t0
                state = install_tomcat(hosts, **kw, settings_overrides=ov, return_state=True)
                marks["flow_done"] = time.monotonic() - t0
            except (PlanError, RuntimeError, ValueError) as exc:
                print(f"install: {exc}", file=sys.stderr)
                return 2
            summary = outcome_of(state)
            peak.stop.set()
        marks["flushed"] = time.monotonic() - t0
        if not isinstance(summary, InstallSummary):
            print(f"install: flow ended {state.type.value}: {state.message}", file=sys.stderr)
            return 1
        wall = time.monotonic() - t0
        print(install_json(summary, state, wall, peak.peak, api_calls, retries, marks))
        return 0 if state.is_completed() else 1

    return flow_command(
        ("flows/install_tomcat.py", "install_tomcat"),
        run,
        change={"instances": ("instances", int | None, None, "Launch N instances first.")},
        extra=[
            ("inventory", str | None, None, "JSON file of instances (ids and public IPs)."),
            (
                "host_key_policy",
                Literal["strict", "tofu", "insecure"] | None,
                None,
                SETTINGS_DOC["host_key_policy"],
            ),
            *[
                (n, str | None, None, SETTINGS_DOC[n])
                for n in ("deployment_name", "state_dir", "log_dir")
            ],
            *_sandbox_extras(),
        ],
    )


# ---------------------------------------------------------------- teardown
def build_teardown() -> Callable[..., int]:
    def run(kw: dict[str, Any]) -> int:
        name = kw.pop("deployment_name")
        deployment = _settings({"deployment_name": name} if name else {}).deployment_name
        with prefect_server():
            import json

            from flows.teardown import teardown
            from tasks.aws.teardown import TeardownReport
            from tasks.runtime.outcome import outcome_of

            state = teardown(deployment_name=deployment, **kw, return_state=True)
            report = outcome_of(state)
        if not isinstance(report, TeardownReport):
            print(f"teardown: flow ended {state.type.value}: {state.message}", file=sys.stderr)
            return 1
        for error in report.errors:
            print(f"teardown: {error}", file=sys.stderr)
        counts = {"removed": report.counts(), "seconds": round(report.seconds, 2)}
        local = {"local_removed": report.local_removed, "local_kept": report.local_kept}
        print(json.dumps({**counts, "errors": len(report.errors), **local}))
        return 0 if state.is_completed() else 1

    return flow_command(("flows/teardown.py", "teardown"), run)


# ---------------------------------------------------------------- benchmark
def build_benchmark() -> Callable[..., int]:
    from tasks.bench.matrix import MatrixError, load_matrix

    def run(kw: dict[str, Any]) -> int:
        serve = kw.pop("serve_nightly")
        if kw["repeat"] < 1:
            raise InputError("--repeat must be at least 1")
        try:
            _, matrix_settings = load_matrix(kw["matrix"])
        except MatrixError as exc:
            raise InputError(str(exc)) from None
        if kw["install_latency"] is None:
            kw["install_latency"] = float(matrix_settings.get("install_latency", 0.5))
        from tasks.inputs import check_benchmark_request
        from tasks.planning import PlanError

        try:
            check_benchmark_request(
                kw["repeat"],
                kw["target"],
                kw["install_latency"],
                kw["throttle_rate"],
                kw["public_ip_cidr"],
                kw["service_ip_cidr"],
            )
        except PlanError as exc:
            raise InputError(str(exc)) from None
        with prefect_server():
            from flows.benchmark import benchmark, nightly_deployment
            from tasks.bench.report import format_table
            from tasks.runtime.cli_support import benchmark_json

            if serve:
                from prefect import serve as prefect_serve

                prefect_serve(nightly_deployment())
                return 0
            state = benchmark(**kw, return_state=True)
            try:
                result = state.result(raise_on_failure=False)
            except Exception as exc:
                result = exc
        if not isinstance(result, dict):
            print(f"benchmark: flow ended {state.type.value}: {result}", file=sys.stderr)
            return 1
        print(format_table(result["rows"]))
        print(benchmark_json(result))
        return 0

    latency = "Sandbox seconds per install (default: the matrix's, else 0.5)."
    return flow_command(
        ("flows/benchmark.py", "benchmark"),
        run,
        drop=(),
        change={
            "matrix": (
                "matrix",
                str,
                "nightly",
                "nightly, seed, or a YAML/JSON file of scenarios.",
            ),
            "install_latency": ("install_latency", float | None, None, latency),
        },
        extra=[("serve_nightly", bool, False, "Serve the scheduled deployment benchmark/nightly.")],
    )


BUILDERS = {
    "deploy": build_deploy,
    "install": build_install,
    "teardown": build_teardown,
    "benchmark": build_benchmark,
}


# ---------------------------------------------------------------- the rest
@app.command(name="sandbox")
def sandbox_command(
    *args: Annotated[str, Parameter(allow_leading_hyphen=True, show_default=False)],
) -> int:
    """Run the sandbox (`python -m sandbox`; `tomcat-fleet sandbox --help` lists its options).

    Args:
        args: the options of `python -m sandbox`.
    """
    from sandbox.__main__ import main as sandbox_main

    return sandbox_main(list(args))


app.command(bench_child, name="bench-child", show=False)  # the benchmark's seed/floor child


@app.command(name="iam-policy")
def iam_policy(
    *,
    partition: Literal["aws", "aws-cn", "aws-us-gov"] = "aws",
    domain: Annotated[str | None, Parameter(show_default=False)] = None,
    eb_domain: Annotated[str | None, Parameter(show_default=False)] = None,
) -> int:
    """Print the IAM policy the flows need, for a partition and your DNS names.

    Args:
        partition: the AWS partition whose ARNs the policy names.
        domain: the load balancer's HTTPS name (default: www.ZONE, any zone).
        eb_domain: the Beanstalk environment's HTTPS name (default: eb.ZONE, any zone).
    """
    from tasks.aws.policy import print_policy

    return print_policy(partition, domain, eb_domain)


@server_app.command(name="status")
def server_status() -> int:
    """Print the reusable server's URL and pid (exit 1 if it is not running)."""
    up = LocalServer().running()
    print(f"Prefect server at {up[0]} (pid {up[1]})" if up else "no Prefect server running")
    return 0 if up else 1


@server_app.command(name="stop")
def server_stop() -> int:
    """Stop the reusable server (its database is kept)."""
    pid = LocalServer().stop()
    print(f"stopped the Prefect server (pid {pid})" if pid else "no Prefect server running")
    return 0


# ---------------------------------------------------------------- local start
def _local_dir() -> Path:
    from tasks.runtime.local.state import PROJECT_DIR

    return PROJECT_DIR / ".tomcat-fleet/local"


def _env_default(name: str, default: int) -> int:
    from tasks.runtime.local.state import _env_int

    return _env_int(name, default)


@local_app.default
@local_app.command(name="up")
def local_up(
    *,
    state_dir: Path | None = None,
    prefect_port: int | None = None,
    sandbox_port: int | None = None,
    ssh_port: int | None = None,
    install_latency: float = 1.0,
    boot_delay: float = 1.0,
    instances: int | None = None,
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

    env_instances = os.environ.get("INSTANCES")
    opts = Options(
        state_dir=_resolve_local_dir(state_dir),
        prefect_port=prefect_port or _env_default("TOMCAT_FLEET_LOCAL_PREFECT_PORT", 4200),
        sandbox_port=sandbox_port or _env_default("TOMCAT_FLEET_LOCAL_SANDBOX_PORT", 4566),
        ssh_port=ssh_port or _env_default("TOMCAT_FLEET_LOCAL_SSH_PORT", 2222),
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
    env = os.environ.get("TOMCAT_FLEET_LOCAL_DIR")
    return Path(state_dir or env or _local_dir()).resolve()


@local_app.command(name="stop")
def local_stop(*, state_dir: Path | None = None) -> int:
    """Stop every process the local start began (from any shell).

    Args:
        state_dir: The local start's state directory (default: TOMCAT_FLEET_LOCAL_DIR, else
            .tomcat-fleet/local).
    """
    from tasks.runtime.local.start import run_stop

    return run_stop(_resolve_local_dir(state_dir))


@local_app.command(name="status")
def local_status(*, state_dir: Path | None = None) -> int:
    """List the local start's running processes (exit 1 if none).

    Args:
        state_dir: The local start's state directory (default: TOMCAT_FLEET_LOCAL_DIR, else
            .tomcat-fleet/local).
    """
    from tasks.runtime.local.start import run_status

    return run_status(_resolve_local_dir(state_dir))


def main(argv: list[str] | None = None) -> int:
    tokens = list(sys.argv[1:] if argv is None else argv)
    if tokens and tokens[0] == "sandbox":  # every option is the sandbox's own
        from sandbox.__main__ import main as sandbox_main

        return sandbox_main(tokens[1:])
    if tokens and tokens[0] in BUILDERS:
        url = LocalServer().plan()  # before Prefect is imported: it reads settings once
        if url:
            PLANNED["url"] = url
        app[tokens[0]].default(BUILDERS[tokens[0]]())
    try:
        result = app(tokens, exit_on_error=False, print_error=False, result_action="return_value")
    except CycloptsError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()][:2]
        print("tomcat-fleet: " + "\n".join(lines), file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"tomcat-fleet {tokens[0]}: {exc}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def run() -> None:
    """The console entry (`tomcat-fleet`, `python -m flows`): `main`, then a fast exit."""
    run_start.exit_now(main())
