"""The `tomcat-fleet` command tree, `main` and the console entry `run` (see tasks/cli/__init__.py).

`tomcat-fleet sandbox ARGS` is `python -m sandbox ARGS`, run as a program in place of this
one (its exit status is the command's): the product never imports the sandbox."""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

from cyclopts import App, Parameter
from cyclopts.exceptions import CycloptsError

from tasks.bench.child import child as bench_child  # no Prefect in it
from tasks.cli import flow_options
from tasks.cli.flow_commands import BUILDERS, FLOWS
from tasks.cli.flow_options import InputError, reusable_server
from tasks.cli.iam_policy import iam_policy
from tasks.cli.local_commands import local_app, server_app
from tasks.cli.status_command import status
from tasks.runtime import run_start  # no Prefect in it

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
app.command(server_app)
app.command(local_app)
for _name, _help in FLOWS.items():  # their options are added on demand, in `main`
    app.command(App(name=_name, help=_help))


def exec_sandbox(args: list[str]) -> NoReturn:
    """Become `python -m sandbox ARGS` (same interpreter, environment and working directory)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "sandbox", *args])


@app.command(name="sandbox")
def sandbox_command(
    *args: Annotated[str, Parameter(allow_leading_hyphen=True, show_default=False)],
) -> int:
    """Run the sandbox (`python -m sandbox`; `tomcat-fleet sandbox --help` lists its options).

    Args:
        args: the options of `python -m sandbox`.
    """
    exec_sandbox(list(args))


app.command(bench_child, name="bench-child", show=False)  # the benchmark's seed/floor child
app.command(iam_policy, name="iam-policy")
app.command(status, name="status")


def bad_input(tokens: list[str]) -> int:
    """The exit status of refused input: 2, but 1 for `--plan`, whose 2 means "changes"
    (as `terraform plan -detailed-exitcode`)."""
    return 1 if "--plan" in tokens else 2


def main(argv: list[str] | None = None) -> int:
    tokens = list(sys.argv[1:] if argv is None else argv)
    if tokens and tokens[0] == "sandbox":  # every option is the sandbox's own
        exec_sandbox(tokens[1:])
    try:
        if tokens and tokens[0] in BUILDERS:
            url = reusable_server().plan()  # before Prefect is imported: it reads settings once
            if url:
                flow_options.PLANNED["url"] = url
            if app[tokens[0]].default_command is None:  # built once per process
                app[tokens[0]].default(BUILDERS[tokens[0]]())
        result = app(tokens, exit_on_error=False, print_error=False, result_action="return_value")
    except CycloptsError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()][:2]
        print("tomcat-fleet: " + "\n".join(lines), file=sys.stderr)
        return bad_input(tokens)
    except InputError as exc:
        print(f"tomcat-fleet {tokens[0]}: {exc}", file=sys.stderr)
        return bad_input(tokens)
    return result if isinstance(result, int) else 0


def run() -> None:
    """The console entry (`tomcat-fleet`, `python -m flows`): `main`, then a fast exit."""
    run_start.exit_now(main())
