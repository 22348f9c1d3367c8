"""systemd and cloud-init: systemctl's verbs on the units installed packages ship, and
`cloud-init status [--wait]` against the host's boot clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from ..faults import jittered
from ..hoststate import HostState
from .core import _Ctx, _words
from .packages import BASE_UNITS, PACKAGES, _installed
from .rpms import RPMS, rpm_installed

TOMCAT_UNITS = frozenset({"tomcat9", "tomcat10"})

# --------------------------------------------------------------------------------------
# cloud-init


async def _cloud_init(args: list[str], ctx: _Ctx) -> int:
    if not args or args[0] != "status":
        ctx.err("usage: /usr/bin/cloud-init [-h] [--version] [--debug] [--force]\n")
        ctx.err("/usr/bin/cloud-init: error: the following arguments are required: subcommand\n")
        return 2
    flags = set(args[1:])
    wait = bool(flags & {"--wait", "-w"})
    long = bool(flags & {"--long", "-l"})
    if wait and not ctx.host.cloud_init_done():
        while not ctx.host.cloud_init_done():
            ctx.out(".")
            await asyncio.sleep(min(0.25, max(0.01, ctx.host.seconds_until_cloud_init_done())))
        ctx.out("\n")
    done = ctx.host.cloud_init_done()
    ctx.out(f"status: {'done' if done else 'running'}\n")
    if long:
        stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        ctx.out("boot_status_code: enabled-by-generator\n")
        if done:
            ctx.out(f"last_update: {stamp}\n")
        ctx.out("detail:\nDataSourceEc2Local\n")
    return 0


# --------------------------------------------------------------------------------------
# systemd


def _unit_known(host: HostState, unit: str) -> bool:
    if unit in BASE_UNITS:
        return True
    if host.os == "al2023":
        return any(p.unit == unit and rpm_installed(host, n) for n, p in RPMS.items())
    return any(p.unit == unit and _installed(host, n) for n, p in PACKAGES.items())


def _unit_dir(host: HostState) -> str:
    return "/usr/lib/systemd/system" if host.os == "al2023" else "/lib/systemd/system"


def _unit_active(host: HostState, unit: str) -> bool:
    return unit in BASE_UNITS or (unit in host.active_units and _unit_known(host, unit))


def _unit_enabled(host: HostState, unit: str) -> bool:
    return unit in BASE_UNITS or (unit in host.enabled_units and _unit_known(host, unit))


async def _start_unit(unit: str, ctx: _Ctx) -> None:
    """Mark the unit active, then bring up what it serves (Tomcat needs a moment)."""
    host = ctx.host
    if _unit_active(host, unit):
        return
    host.active_units.add(unit)  # Type=simple: active before the port is listening
    if unit not in TOMCAT_UNITS:
        return
    try:
        await asyncio.sleep(jittered(host.install_latency * 0.2, host.latency_jitter, host.rng))
        await ctx.net.start_tomcat(host)
    except BaseException:
        host.active_units.discard(unit)
        raise
    if unit not in host.active_units:  # stopped while it was starting
        await ctx.net.stop_tomcat(host)


async def _stop_unit(unit: str, ctx: _Ctx) -> None:
    if unit in BASE_UNITS:
        return
    ctx.host.active_units.discard(unit)
    if unit in TOMCAT_UNITS:
        await ctx.net.stop_tomcat(ctx.host)


_UNIT_DESCRIPTIONS = {
    "tomcat9": "Apache Tomcat 9 Web Application Server",
    "tomcat10": "Apache Tomcat Web Application Container",
    "mysql": "MySQL Community Server",
    "nginx": "A high performance web server and a reverse proxy server",
    "ssh": "OpenBSD Secure Shell server",
    "cloud-init": "Initial cloud-init job (metadata service crawler)",
    "cron": "Regular background program processing daemon",
}
_SYSTEMCTL_FLAGS = _words(
    "--force --full --no-ask-password --no-block --no-legend --no-pager --now --plain "
    "--quiet --system -f -l -q"
)
_NEEDS_ROOT = _words(
    "daemon-reload disable enable mask reload reload-or-restart restart start stop "
    "try-restart unmask"
)


async def _systemctl(args: list[str], ctx: _Ctx) -> int:
    flags = {a for a in args if a.startswith("-")}
    words = [a for a in args if not a.startswith("-")]
    for flag in flags - _SYSTEMCTL_FLAGS:
        if not re.fullmatch(r"--(lines|type|state|output)=.*|-n\d*", flag):
            ctx.err(f"systemctl: unrecognized option '{flag}'\n")
            return 1
    quiet = bool(flags & {"--quiet", "-q"})
    verb = words[0] if words else "list-units"
    units = [re.sub(r"\.service$", "", u) for u in words[1:]]
    if verb in _NEEDS_ROOT and not ctx.root:
        if verb in ("enable", "disable", "mask", "unmask"):
            ctx.err(f"Failed to {verb} unit: Interactive authentication required.\n")
        elif verb == "daemon-reload":
            ctx.err("Failed to reload daemon: Interactive authentication required.\n")
        else:
            name = f"{units[0]}.service" if units else ""
            ctx.err(
                f"Failed to {verb} {name}: Interactive authentication required.\n"
                f"See system logs and 'systemctl status {name}' for details.\n"
            )
        return 1
    if verb in ("daemon-reload", "list-units"):
        return 0
    if not units:
        ctx.err("Too few arguments.\n")
        return 1
    handler = _SYSTEMCTL_VERBS.get(verb)
    if handler is None:
        ctx.err(f"Unknown command verb {verb}.\n")
        return 1
    status = 0
    for unit in units:
        status = max(status, await handler(unit, ctx, flags, quiet))
    if verb == "is-active":  # 0 if any unit is active
        return 0 if any(_unit_active(ctx.host, u) for u in units) else 3
    return status


async def _sc_enable(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    host = ctx.host
    if not _unit_known(host, unit):
        ctx.err(f"Failed to enable unit: Unit file {unit}.service does not exist.\n")
        return 1
    if not _unit_enabled(host, unit):
        host.enabled_units.add(unit)
        if not quiet:
            ctx.err(
                f"Created symlink /etc/systemd/system/multi-user.target.wants/{unit}.service"
                f" → {_unit_dir(host)}/{unit}.service.\n"
            )
    if "--now" in flags:
        await _start_unit(unit, ctx)
    return 0


async def _sc_disable(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    host = ctx.host
    if not _unit_known(host, unit):
        ctx.err(f"Failed to disable unit: Unit file {unit}.service does not exist.\n")
        return 1
    if unit in host.enabled_units:
        host.enabled_units.discard(unit)
        if not quiet:
            ctx.err(f"Removed /etc/systemd/system/multi-user.target.wants/{unit}.service.\n")
    if "--now" in flags:
        await _stop_unit(unit, ctx)
    return 0


async def _sc_start(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    if not _unit_known(ctx.host, unit):
        ctx.err(f"Failed to start {unit}.service: Unit {unit}.service not found.\n")
        return 5
    await _start_unit(unit, ctx)
    return 0


async def _sc_stop(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    if not _unit_known(ctx.host, unit):
        ctx.err(f"Failed to stop {unit}.service: Unit {unit}.service not loaded.\n")
        return 5
    await _stop_unit(unit, ctx)
    return 0


async def _sc_restart(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    if not _unit_known(ctx.host, unit):
        ctx.err(f"Failed to restart {unit}.service: Unit {unit}.service not found.\n")
        return 5
    await _stop_unit(unit, ctx)
    await _start_unit(unit, ctx)
    return 0


async def _sc_is_active(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    active = _unit_active(ctx.host, unit)
    if not quiet:
        ctx.out("active\n" if active else "inactive\n")
    return 0 if active else 3


async def _sc_is_enabled(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    host = ctx.host
    if not _unit_known(host, unit):
        ctx.err(f"Failed to get unit file state for {unit}.service: No such file or directory\n")
        return 1
    enabled = _unit_enabled(host, unit)
    if not quiet:
        ctx.out("enabled\n" if enabled else "disabled\n")
    return 0 if enabled else 1


async def _sc_status(unit: str, ctx: _Ctx, flags: set[str], quiet: bool) -> int:
    host = ctx.host
    if not _unit_known(host, unit):
        ctx.err(f"Unit {unit}.service could not be found.\n")
        return 4
    active = _unit_active(host, unit)
    enabled = "enabled" if _unit_enabled(host, unit) else "disabled"
    desc = _UNIT_DESCRIPTIONS.get(unit, unit)
    lines = [
        f"{'●' if active else '○'} {unit}.service - {desc}",
        f"     Loaded: loaded ({_unit_dir(host)}/{unit}.service; {enabled}; "
        "vendor preset: enabled)",
        "     Active: active (running)" if active else "     Active: inactive (dead)",
    ]
    if active and unit == "tomcat9":
        lines += [
            "       Docs: https://tomcat.apache.org/tomcat-9.0-doc/index.html",
            "   Main PID: 4127 (java)",
            "      Tasks: 29 (limit: 1121)",
            "     Memory: 91.3M",
            "        CPU: 4.512s",
            "     CGroup: /system.slice/tomcat9.service",
            "             └─4127 /usr/lib/jvm/default-java/bin/java -Djava.util.logging.config"
            ".file=/var/lib/tomcat9/conf/logging.properties ...",
        ]
    if not quiet:
        ctx.out("\n".join(lines) + "\n")
    return 0 if active else 3


_SYSTEMCTL_VERBS: dict[str, Callable[[str, _Ctx, set[str], bool], Awaitable[int]]] = {
    "enable": _sc_enable,
    "disable": _sc_disable,
    "start": _sc_start,
    "stop": _sc_stop,
    "restart": _sc_restart,
    "reload-or-restart": _sc_restart,
    "try-restart": _sc_restart,
    "is-active": _sc_is_active,
    "is-enabled": _sc_is_enabled,
    "status": _sc_status,
}
