"""What the flow commands share: a command built from a flow's source (its parameters,
defaults and docstring, nothing imported), the sandbox child's options, settings overrides,
the run's start, and the flow itself, reached by its entrypoint name when the run starts."""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from tasks.errors import FleetError
from tasks.runtime import run_start  # no Prefect in it
from tasks.runtime.prefect_api import LocalServer
from tasks.runtime.sandbox_child import SandboxOptions

if TYPE_CHECKING:
    from blocks.settings import FleetSettings, RuntimeSettings

FaultProfile = Literal["clean", "flaky", "hostile"]
T = TypeVar("T")


class InputError(FleetError):
    """Bad input found before anything started; the message is one line."""


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
    params = [
        p.replace(annotation=one_default(p.annotation, helps.get(p.name, ""))) for p in params
    ]
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


def one_default(annotation: Any, text: str) -> Any:
    """`annotation`, with cyclopts told not to show the default when the help `text` says
    it ("(default: the settings')"): one default per option, not also "[default: None]"."""
    if "(default:" not in text or isinstance(annotation, str):
        return annotation
    from cyclopts import Parameter

    return Annotated[annotation, Parameter(show_default=False)]


def sandbox_extras(latency: float = 2.0) -> list[Extra]:
    out = []
    for name, typ, default in SANDBOX_PARAMS:
        out.append(
            (name, typ, latency if name == "install_latency" else default, SANDBOX_DOC[name])
        )
    return out


def settings_extras(*names: str) -> list[Extra]:
    return [(n, str | None, None, SETTINGS_DOC[n]) for n in names]


def pop_sandbox(kw: dict[str, Any]) -> SandboxOptions:
    return SandboxOptions(
        enabled=kw.pop("sandbox"),
        **{name: kw.pop(name) for name, _, _ in SANDBOX_PARAMS if name != "sandbox"},
    )


def pop_overrides(kw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    values = {n: kw.pop(n) for n in names}
    return {k: v for k, v in values.items() if v is not None}


def _settings(kind: Callable[..., T], overrides: dict[str, Any]) -> T:
    """`kind(**overrides)` (a settings class), or InputError with the first problem in one
    line."""
    from pydantic import ValidationError

    try:
        return kind(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "settings"
        raise InputError(f"invalid settings: {where}: {err.get('msg')}") from None


def fleet_settings(overrides: dict[str, Any]) -> FleetSettings:
    """FleetSettings with `overrides`, or InputError with the first problem in one line."""
    from blocks.settings import FleetSettings

    return _settings(FleetSettings, overrides)


def runtime_settings() -> RuntimeSettings:
    """RuntimeSettings (the CLI's server, the local start), or InputError in one line."""
    from blocks.settings import RuntimeSettings

    return _settings(RuntimeSettings, {})


def reusable_server() -> LocalServer:
    """The CLI's reusable Prefect server, its home from RuntimeSettings."""
    home = runtime_settings().prefect_dir
    return LocalServer(Path(home) if home else None)


PLANNED: dict[str, str] = {}  # the API URL `app.main` fixed before Prefect was imported


def prefect_server() -> contextlib.AbstractContextManager[int | None]:
    return run_start.prefect_server(PLANNED.get("url"))


def start_run(flow: str, sb: SandboxOptions, pool: bool) -> Any:
    """Start the run of flow module `flow` (e.g. "deploy": flows/deploy.py)."""
    return run_start.start_run(f"flows.{flow}", sb, pool, PLANNED.get("url"))


def flow_module(flow: str) -> ModuleType:
    """The flow module `flows.<flow>`, by its entrypoint name (as prefect.yaml names it):
    imported here, when the command runs (it imports Prefect), never at the CLI's start."""
    return importlib.import_module(f"flows.{flow}")
