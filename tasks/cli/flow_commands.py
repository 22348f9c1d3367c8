"""The flow commands: deploy, install, teardown, benchmark, rollout. Each is built on demand (its
options read from the flow's source), validates its input before Prefect is contacted, runs
the flow (`flow_options.flow_module`) and prints one JSON line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import Parameter

from tasks.cli.flow_options import (
    SETTINGS_DOC,
    Extra,
    InputError,
    fleet_settings,
    flow_command,
    flow_module,
    pop_overrides,
    pop_sandbox,
    prefect_server,
    runtime_settings,
    sandbox_extras,
    settings_extras,
    start_run,
)
from tasks.runtime import run_start  # no Prefect in it
from tasks.runtime.cli_support import side_by_side  # nor here
from tasks.runtime.sandbox_child import Peak, maybe_sandbox

FLOWS = {  # command -> its help (the commands are built on demand: `BUILDERS`)
    "deploy": "Run the deploy flow: the eleven stages, standalone.",
    "install": "Run the install-tomcat flow on new (--instances) or listed (--inventory) hosts.",
    "teardown": "Run the teardown flow: remove every resource tagged for a deployment.",
    "benchmark": "Run the benchmark flow (or serve its nightly deployment).",
    "rollout": "Run the rollout flow: reinstall Tomcat on the serving fleet in waves behind "
    "its load balancer.",
}


JSON_DOC = "With --plan: print the plan as one JSON object (schema tomcat-fleet.plan/1)."
JSON_OPTION: Extra = (
    "json",
    Annotated[bool, Parameter(name="--json", negative=())],
    False,
    JSON_DOC,
)


def show_plan(state: Any, command: str, as_json: bool) -> int:
    """A plan run's outcome: the plan (table, or JSON alone on stdout), exit 0 nothing to
    do, 2 changes; 1 with one line on stderr when the plan could not be made."""
    from tasks.plan.models import EXIT_ERROR, Plan
    from tasks.plan.render import table
    from tasks.runtime.outcome import outcome_of

    plan = outcome_of(state)
    if not isinstance(plan, Plan) or not state.is_completed():
        line = str(state.message or "").splitlines()[0] if state.message else state.type.value
        print(f"{command} --plan: {line}", file=sys.stderr)
        return EXIT_ERROR
    print(plan.as_json() if as_json else table(plan))
    return plan.exit_code


# ---------------------------------------------------------------- deploy
def build_deploy() -> Callable[..., int]:
    from tasks.inputs import check_deploy_request, parse_stages
    from tasks.planning import PlanError

    def run(kw: dict[str, Any]) -> int:
        sb = pop_sandbox(kw)
        ov = pop_overrides(kw, ("deployment_name", "state_dir", "log_dir"))
        as_json = kw.pop("json")
        if as_json and not kw["plan"]:
            raise InputError("--json goes with --plan (a deploy prints its JSON line anyway)")
        try:
            check_deploy_request(
                kw["instances"], kw["stages"], kw, kw["allow_failures"], kw["runner"]
            )
            fleet_settings(
                {**ov, **{k: kw[k] for k in ("instance_type", "hosted_zone", "domain") if kw[k]}}
            )
        except PlanError as exc:
            raise InputError(str(exc)) from None
        t0 = time.monotonic()
        pool = kw["runner"] == "process" and 2 in parse_stages(kw["stages"]) and not kw["plan"]
        started = start_run("deploy", sb, pool)
        if kw["plan"]:
            with side_by_side(prefect_server(), maybe_sandbox(sb, started)):
                deploy = flow_module("deploy").deploy
                state = deploy(**kw, settings_overrides=ov, return_state=True)
                return show_plan(state, "deploy", as_json)
        with side_by_side(prefect_server(), maybe_sandbox(sb, started)):
            from tasks.deploy.deploy_report import DeployReport
            from tasks.runtime.cli_support import deploy_json
            from tasks.runtime.outcome import outcome_of

            state = flow_module("deploy").deploy(**kw, settings_overrides=ov, return_state=True)
            report = outcome_of(state)
            if not isinstance(report, DeployReport):
                print(f"deploy: {state.message}", file=sys.stderr)
                return 2 if isinstance(report, PlanError) else 1
        print(deploy_json(report, state, time.monotonic() - t0))
        return 0 if state.is_completed() else 1

    settings = settings_extras("deployment_name", "state_dir", "log_dir")
    extra = [*settings, JSON_OPTION, *sandbox_extras()]
    return flow_command(("flows/deploy.py", "deploy"), run, extra=extra)


# ---------------------------------------------------------------- install
def begin_early(settings: Any, hosts: Any, plan: Any, runner: str) -> None:
    """The install's checks, ingress and (process runner) its chunks on the workers, in the
    background while Prefect is imported (tasks/install_start.py); the flow run takes them
    over, and reports what they found wrong, if anything."""
    from tasks.install_start import begin_early as begin

    dispatch = runner == "process" and runtime_settings().pool_start_method != "spawn"
    begin(settings, hosts, plan, dispatch=dispatch)


def build_install() -> Callable[..., int]:
    from tasks.inputs import validate_install
    from tasks.models import Instance
    from tasks.planning import PlanError
    from tasks.runtime.cli_support import read_inventory

    def run(kw: dict[str, Any]) -> int:
        sb = pop_sandbox(kw)
        ov = pop_overrides(kw, ("host_key_policy", "deployment_name", "state_dir", "log_dir"))
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
            plan = validate_install(
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
        settings = fleet_settings(ov)
        t0 = time.monotonic()
        marks = {"process_start": -run_start.process_age_s()}
        if inventory and not sb.enabled:  # the hosts are reached while Prefect starts
            begin_early(settings, hosts, plan, kw["runner"])
            marks["begun"] = time.monotonic() - t0
        started = start_run("install_tomcat", sb, kw["runner"] == "process")
        marks["imported"] = time.monotonic() - t0
        with side_by_side(prefect_server(), maybe_sandbox(sb, started)) as (
            server_pid,
            sandbox_pid,
        ):
            marks["services_up"] = time.monotonic() - t0
            peak = Peak([p for p in (sandbox_pid, server_pid) if p])
            from tasks.models import InstallSummary
            from tasks.runtime.cli_support import install_json, launch
            from tasks.runtime.outcome import outcome_of

            install_tomcat = flow_module("install_tomcat").install_tomcat
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
            *settings_extras("deployment_name", "state_dir", "log_dir"),
            *sandbox_extras(),
        ],
    )


# ---------------------------------------------------------------- teardown
def build_teardown() -> Callable[..., int]:
    def run(kw: dict[str, Any]) -> int:
        name = kw.pop("deployment_name")
        as_json = kw.pop("json")
        if as_json and not kw["plan"]:
            raise InputError("--json goes with --plan (a teardown prints its JSON line anyway)")
        deployment = fleet_settings({"deployment_name": name} if name else {}).deployment_name
        if kw["plan"]:
            with prefect_server():
                teardown = flow_module("teardown").teardown
                state = teardown(deployment_name=deployment, **kw, return_state=True)
                return show_plan(state, "teardown", as_json)
        with prefect_server():
            import json

            from tasks.aws.teardown import TeardownReport
            from tasks.runtime.outcome import outcome_of

            teardown = flow_module("teardown").teardown
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

    return flow_command(("flows/teardown.py", "teardown"), run, extra=[JSON_OPTION])


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
            from tasks.bench.report import format_table
            from tasks.runtime.cli_support import benchmark_json

            bench = flow_module("benchmark")
            if serve:
                from prefect import serve as prefect_serve

                prefect_serve(bench.nightly_deployment())
                return 0
            state = bench.benchmark(**kw, return_state=True)
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


# ---------------------------------------------------------------- rollout
def build_rollout() -> Callable[..., int]:
    from tasks.planning import PlanError
    from tasks.rollout.plan import check_request

    def run(kw: dict[str, Any]) -> int:
        ov = pop_overrides(kw, ("deployment_name", "state_dir", "log_dir"))
        try:
            check_request(
                kw["waves"],
                kw["max_errors"],
                kw["canary_wait"],
                kw["poll_s"],
                kw["health_timeout_s"],
            )
        except PlanError as exc:
            raise InputError(str(exc)) from None
        fleet_settings(ov)
        with prefect_server():
            import json

            from tasks.rollout.plan import RolloutState
            from tasks.runtime.outcome import outcome_of

            state = flow_module("rollout").rollout(**kw, settings_overrides=ov, return_state=True)
            report = outcome_of(state)
        if not isinstance(report, RolloutState):
            print(f"rollout: flow ended {state.type.value}: {state.message}", file=sys.stderr)
            return 2 if isinstance(report, PlanError) else 1
        if not state.is_completed():
            print(f"rollout: {state.message}", file=sys.stderr)
        line = {
            "version": report.version,
            **report.counts(),
            "waves": len(report.waves),
            "planned_waves": len(report.planned_waves),
            "stopped_at": report.stopped_at,
            "seconds": report.seconds,
        }
        print(json.dumps(line))
        return 0 if state.is_completed() else 1

    return flow_command(
        ("flows/rollout.py", "rollout"),
        run,
        extra=settings_extras("deployment_name", "state_dir", "log_dir"),
    )


BUILDERS = {
    "deploy": build_deploy,
    "install": build_install,
    "teardown": build_teardown,
    "benchmark": build_benchmark,
    "rollout": build_rollout,
}
