"""The emulated shell behind each sandbox host's SSH `exec`.

`run_command` interprets one command line the way `bash -c` on an Ubuntu 22.04 EC2 host
would, for the small set of tools a fleet installer uses: `apt-get`, `systemctl`,
`cloud-init`, `curl`, `wget`, `mysql`, `dpkg`, plus `sudo`, `env`, `bash -c` and a few
builtins. Lists (`&&`, `||`, `;`), leading `VAR=value` assignments and output
redirections (`>/dev/null`, `2>&1`, `>&2`) are understood; pipes, input redirection and
background jobs are refused. Messages and exit codes copy the real tools, so a controller
that works against the sandbox handles the real thing too. Host state lives in
`HostState`; anything beyond the host (HTTP, MySQL, Tomcat's listener) goes through
`Network`.

A host launched from the Amazon Linux 2023 image (`HostState.os`) has `dnf`, `yum` and
`rpm` instead of `apt-get`, `apt` and `dpkg`, logs in as `ec2-user`, and its Tomcat is
tomcat10.

One module per command family: `parser` (lists, assignments, redirections, command lookup),
`builtins`, `packages` (the archive, dpkg, java), `apt`, `rpms` (AL2023's repository, rpm),
`dnf`, `systemd` (systemctl, cloud-init), `httpclients` (curl, wget), `mysql`; `core` holds
what they share. This module maps command names to their handlers, per system.
"""

from __future__ import annotations

from collections.abc import Callable

from ..hoststate import HostState, Network
from .apt import _apt_cli, _apt_get
from .builtins import (
    _bash,
    _cd,
    _command,
    _echo,
    _env,
    _exit,
    _export,
    _false,
    _hostname,
    _sleep,
    _sudo,
    _timeout,
    _true,
    _which,
    _whoami,
)
from .core import Handler, Stdin, StdinSource, _Ctx, _ShellExit
from .dnf import _dnf
from .httpclients import _curl, _wget
from .mysql import _mysql
from .packages import _dpkg, _dpkg_query, _java
from .parser import _run_line
from .rpms import ROOT_WEBAPP, _rpm
from .systemd import _cloud_init, _systemctl

# --------------------------------------------------------------------------------------
# Running


async def run_command(
    command: str,
    env: dict[str, str],
    host: HostState,
    net: Network,
    out: Callable[[str], None],
    err: Callable[[str], None],
    stdin: StdinSource = "",
) -> int:
    """Interpret `command` on `host` as `bash -c` would; return the exit status.

    `stdin` is what the client sends on standard input (the text, or a coroutine function
    returning it once the client's EOF arrives); commands that read it (`mysql
    --defaults-extra-file=/dev/stdin`) consume it, the others leave it unread.
    """
    commands = _AL2023_COMMANDS if host.os == "al2023" else _COMMANDS
    ctx = _Ctx(host, net, dict(env), out, err, commands, stdin=Stdin(stdin))
    try:
        return await _run_line(command, ctx)
    except _ShellExit as stop:
        return stop.status


# --------------------------------------------------------------------------------------
# Dispatch

_COMMANDS: dict[str, Handler] = {
    "true": _true,
    ":": _true,
    "false": _false,
    "echo": _echo,
    "sleep": _sleep,
    "hostname": _hostname,
    "whoami": _whoami,
    "cd": _cd,
    "exit": _exit,
    "export": _export,
    "which": _which,
    "command": _command,
    "sudo": _sudo,
    "env": _env,
    "bash": _bash,
    "sh": _bash,
    "timeout": _timeout,
    "cloud-init": _cloud_init,
    "apt-get": _apt_get,
    "apt": _apt_cli,
    "systemctl": _systemctl,
    "curl": _curl,
    "wget": _wget,
    "mysql": _mysql,
    "dpkg": _dpkg,
    "dpkg-query": _dpkg_query,
    "java": _java,
}

# Amazon Linux 2023: dnf/yum and rpm; no apt or dpkg (bash: apt-get: command not found)
_AL2023_COMMANDS: dict[str, Handler] = {
    **{k: v for k, v in _COMMANDS.items() if k not in ("apt-get", "apt", "dpkg", "dpkg-query")},
    "dnf": _dnf,
    "yum": _dnf,
    "rpm": _rpm,
}


def serves_root(host: HostState) -> bool:
    """Whether the host's Tomcat has a ROOT webapp (its `/` answers 200, else 404): Debian's
    tomcat9 ships one; on Amazon Linux 2023 it comes with tomcat10-webapps."""
    return host.os != "al2023" or ROOT_WEBAPP in host.packages
