"""apt-get and apt: update, install (with dependencies, the dpkg lock, debconf's
complaints, Debian's enable-and-start of a package's unit), upgrade, clean.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..faults import jittered
from ..hoststate import HostState
from .core import _Ctx, _words
from .packages import (
    _CLOUD_INIT_PID,
    _MIRROR,
    _MIRROR_IP,
    PACKAGES,
    _closure,
    _installed,
    _size,
    _wrap,
)
from .systemd import _start_unit, _stop_unit

# --------------------------------------------------------------------------------------
# apt-get / apt


@dataclass
class _AptArgs:
    op: str | None = None
    names: list[str] = field(default_factory=list)
    yes: bool = False
    reinstall: bool = False
    quiet: int = 0
    options: dict[str, str] = field(default_factory=dict)  # -o Name=value, names lowercased


_APT_SHORT = set("yqfmVu")
_APT_YES = frozenset({"--yes", "--assume-yes", "--force-yes"})
_APT_NOOP = _words(
    "--no-install-recommends --install-recommends --install-suggests --no-install-suggests "
    "--fix-missing --fix-broken --ignore-missing --allow-downgrades --allow-remove-essential "
    "--allow-unauthenticated --allow-change-held-packages --allow-releaseinfo-change "
    "--no-upgrade --only-upgrade --show-progress --autoremove --auto-remove --purge "
    "--verbose-versions --show-upgraded --no-download "
)


def _parse_apt(args: list[str]) -> _AptArgs | str:
    """Parsed arguments, or the offending option for the error message."""
    parsed = _AptArgs()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("-o", "--option", "-c", "--config-file", "-t", "--target-release"):
            if i >= len(args):
                return arg
            if arg in ("-o", "--option"):
                name, _, value = args[i].partition("=")
                parsed.options[name.lower()] = value
            i += 1
        elif arg.startswith("-o") and "=" in arg:
            name, _, value = arg[2:].partition("=")
            parsed.options[name.lower()] = value
        elif m := re.fullmatch(r"(?:-q|--quiet)=(\d)", arg):
            parsed.quiet = int(m.group(1))
        elif arg == "--quiet":
            parsed.quiet += 1
        elif arg in _APT_YES:
            parsed.yes = True
        elif arg == "--reinstall":
            parsed.reinstall = True
        elif arg.startswith("--"):
            if arg not in _APT_NOOP:
                return arg
        elif arg.startswith("-") and len(arg) > 1:
            if not set(arg[1:]) <= _APT_SHORT:
                return arg
            parsed.yes |= "y" in arg
            parsed.quiet += arg.count("q")
        elif parsed.op is None:
            parsed.op = arg
        else:
            parsed.names.append(arg)
    if parsed.options.get("apt::get::assume-yes", "").lower() in ("1", "true", "yes"):
        parsed.yes = True
    parsed.yes |= parsed.quiet >= 2  # apt-get(8): quiet level 2 implies -y
    return parsed


def _lock_holder(host: HostState) -> int | None:
    if not host.cloud_init_done():
        return _CLOUD_INIT_PID
    if host.installing:
        return 2000 + sum(map(ord, host.instance_id)) % 5000
    return None


async def _wait_for_lock(host: HostState, a: _AptArgs, path: str, ctx: _Ctx) -> int | None:
    """Wait up to DPkg::Lock::Timeout seconds for the dpkg lock; return the holder or None."""
    try:
        patience = float(a.options.get("dpkg::lock::timeout", "0"))
    except ValueError:
        patience = 0.0
    deadline = time.monotonic() + patience
    announced = False
    while (holder := _lock_holder(host)) is not None and time.monotonic() < deadline:
        if not announced:
            ctx.out(
                f"Waiting for cache lock: Could not get lock {path}. "
                f"It is held by process {holder} (apt-get)...\n"
            )
            announced = True
        await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return _lock_holder(host)


async def _apt_get(args: list[str], ctx: _Ctx) -> int:
    return await _apt(args, ctx, "apt-get")


async def _apt_cli(args: list[str], ctx: _Ctx) -> int:
    ctx.err("\nWARNING: apt does not have a stable CLI interface. Use with caution in scripts.\n\n")
    return await _apt(args, ctx, "apt")


async def _apt(args: list[str], ctx: _Ctx, prog: str) -> int:
    parsed = _parse_apt(args)
    if isinstance(parsed, str):
        shown = (
            f"'{parsed.lstrip('-')[:1]}' [from {parsed}]" if not parsed.startswith("--") else parsed
        )
        ctx.err(
            f"E: Command line option {shown} is not understood in combination with "
            "the other options.\n"
        )
        return 100
    if parsed.op is None:
        ctx.out(f"apt 2.4.11 (amd64)\nUsage: {prog} [options] command\n")
        return 1
    ops: dict[str, Callable[[_AptArgs, _Ctx, str], Awaitable[int]]] = {
        "update": _apt_update,
        "install": _apt_install,
        "upgrade": _apt_upgrade,
        "dist-upgrade": _apt_upgrade,
        "full-upgrade": _apt_upgrade,
        "autoremove": _apt_upgrade,
        "clean": _apt_clean,
        "autoclean": _apt_clean,
    }
    op = ops.get(parsed.op)
    if op is None:
        ctx.err(f"E: Invalid operation {parsed.op}\n")
        return 100
    return await op(parsed, ctx, prog)


def _reading(ctx: _Ctx, quiet: int) -> None:
    if quiet < 2:
        ctx.out(
            "Reading package lists...\nBuilding dependency tree...\nReading state information...\n"
        )


def _dpkg_lock_error(ctx: _Ctx, holder: int | None) -> int:
    lock = "/var/lib/dpkg/lock-frontend"
    if holder is None:
        ctx.err(
            f"E: Could not open lock file {lock} - open (13: Permission denied)\n"
            f"E: Unable to acquire the dpkg frontend lock ({lock}), are you root?\n"
        )
    else:
        ctx.err(
            f"E: Could not get lock {lock}. It is held by process {holder} (apt-get)\n"
            "N: Be aware that removing the lock file is not a solution and may break "
            "your system.\n"
            f"E: Unable to acquire the dpkg frontend lock ({lock}), "
            "is another process using it?\n"
        )
    return 100


async def _apt_update(a: _AptArgs, ctx: _Ctx, prog: str) -> int:
    host = ctx.host
    lists = "/var/lib/apt/lists/lock"
    if not ctx.root:
        ctx.out("Reading package lists...\n")
        ctx.err(
            f"E: Could not open lock file {lists} - open (13: Permission denied)\n"
            "E: Unable to lock directory /var/lib/apt/lists/\n"
            "W: Problem unlinking the file /var/cache/apt/pkgcache.bin - RemoveCaches "
            "(13: Permission denied)\n"
            "W: Problem unlinking the file /var/cache/apt/srcpkgcache.bin - RemoveCaches "
            "(13: Permission denied)\n"
        )
        return 100
    holder = await _wait_for_lock(host, a, lists, ctx)
    if holder is not None:
        if a.quiet < 2:
            ctx.out("Reading package lists...\n")
        ctx.err(
            f"E: Could not get lock {lists}. It is held by process {holder} (apt-get)\n"
            "N: Be aware that removing the lock file is not a solution and may break "
            "your system.\n"
            "E: Unable to lock directory /var/lib/apt/lists/\n"
        )
        return 100
    await asyncio.sleep(0.05 * host.install_latency)
    if a.quiet < 2:
        fresh = host.apt_lists_fresh
        get = "Hit" if fresh else "Get"
        ctx.out(
            f"Hit:1 {_MIRROR} jammy InRelease\n"
            f"{get}:2 {_MIRROR} jammy-updates InRelease [119 kB]\n"
            f"{get}:3 {_MIRROR} jammy-backports InRelease [109 kB]\n"
            f"{get}:4 http://security.ubuntu.com/ubuntu jammy-security InRelease [110 kB]\n"
        )
        if not fresh:
            ctx.out(
                f"Get:5 {_MIRROR} jammy/universe amd64 Packages [14.1 MB]\n"
                f"Get:6 {_MIRROR} jammy/universe Translation-en [5652 kB]\n"
                f"Get:7 {_MIRROR} jammy-updates/main amd64 Packages [1492 kB]\n"
                f"Get:8 {_MIRROR} jammy-updates/universe amd64 Packages [1058 kB]\n"
                "Fetched 22.8 MB in 3s (7413 kB/s)\n"
            )
        else:
            ctx.out("Fetched 338 kB in 1s (452 kB/s)\n")
        ctx.out("Reading package lists...\n")
        if prog == "apt":
            ctx.out(
                "Building dependency tree...\nReading state information...\n"
                "All packages are up to date.\n"
            )
    host.apt_lists_fresh = True
    return 0


async def _apt_upgrade(a: _AptArgs, ctx: _Ctx, prog: str) -> int:
    if not ctx.root:
        return _dpkg_lock_error(ctx, None)
    holder = await _wait_for_lock(ctx.host, a, "/var/lib/dpkg/lock-frontend", ctx)
    if holder is not None:
        return _dpkg_lock_error(ctx, holder)
    _reading(ctx, a.quiet)
    if a.quiet < 2:
        if a.op != "autoremove":
            ctx.out("Calculating upgrade...\n")
        ctx.out("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")
    return 0


async def _apt_clean(a: _AptArgs, ctx: _Ctx, prog: str) -> int:
    return 0 if ctx.root else _dpkg_lock_error(ctx, None)


async def _apt_install(a: _AptArgs, ctx: _Ctx, prog: str) -> int:
    host = ctx.host
    if not ctx.root:
        return _dpkg_lock_error(ctx, None)
    holder = await _wait_for_lock(host, a, "/var/lib/dpkg/lock-frontend", ctx)
    if holder is not None:
        return _dpkg_lock_error(ctx, holder)
    _reading(ctx, a.quiet)

    wanted: list[str] = []
    missing = False
    for spec in a.names:
        name, _, version = spec.partition("=")
        known = name in PACKAGES and (host.apt_lists_fresh or _installed(host, name))
        if not known:
            ctx.err(f"E: Unable to locate package {name}\n")
            missing = True
        elif version and version != PACKAGES[name].version:
            ctx.err(f"E: Version '{version}' for '{name}' was not found\n")
            missing = True
        else:
            wanted.append(name)
    if missing:
        return 100

    loud = a.quiet < 2
    again = [n for n in wanted if a.reinstall and _installed(host, n)]
    if again:
        host.installing = True
        try:
            status = await _reinstall(again, a, ctx)
        finally:
            host.installing = False
        wanted = [n for n in wanted if n not in again]
        if status or not wanted:
            return status
    for name in wanted:
        if _installed(host, name) and loud:
            ctx.out(f"{name} is already the newest version ({PACKAGES[name].version}).\n")
    new = _closure(host, wanted)
    if not new:
        if loud:
            ctx.out("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")
        return 0

    extra = sorted(n for n in new if n not in wanted)
    kb = sum(PACKAGES[n].kb for n in new)
    if loud:
        if extra:
            ctx.out("The following additional packages will be installed:\n" + _wrap(extra))
        ctx.out("The following NEW packages will be installed:\n" + _wrap(sorted(new)))
        ctx.out(f"0 upgraded, {len(new)} newly installed, 0 to remove and 0 not upgraded.\n")
        ctx.out(
            f"Need to get {_size(kb)} of archives.\n"
            f"After this operation, {_size(kb * 4.1)} of additional disk space "
            "will be used.\n"
        )
    if extra and not a.yes:
        # apt-get asks only when it adds packages; with no tty, the read hits EOF
        ctx.out("Do you want to continue? [Y/n] Abort.\n")
        return 1

    host.installing = True
    try:
        return await _install_new(new, wanted, a, ctx)
    finally:
        host.installing = False


async def _install_new(new: list[str], wanted: list[str], a: _AptArgs, ctx: _Ctx) -> int:
    host = ctx.host
    await asyncio.sleep(jittered(host.install_latency * 0.8, host.latency_jitter, host.rng))
    loud = a.quiet < 2
    if host.faults.install_fails():
        bad = next(n for n in new if n in wanted)
        pkg = PACKAGES[bad]
        ctx.out(f"Err:1 {pkg.index_line(bad)}\n  Connection failed [IP: {_MIRROR_IP} 80]\n")
        ctx.err(
            f"E: Failed to fetch {_MIRROR}/{pkg.pool_path(bad)}  Connection failed "
            f"[IP: {_MIRROR_IP} 80]\n"
            "E: Unable to fetch some archives, maybe run apt-get update or try with "
            "--fix-missing?\n"
        )
        return 100

    kb = sum(PACKAGES[n].kb for n in new)
    if loud:
        for k, name in enumerate(new, 1):
            pkg = PACKAGES[name]
            ctx.out(f"Get:{k} {pkg.index_line(name)} [{_size(pkg.kb)}]\n")
        ctx.out(f"Fetched {_size(kb)} in 1s ({_size(kb)}/s)\n")
    if ctx.env.get("DEBIAN_FRONTEND") != "noninteractive":
        ctx.err(
            "debconf: unable to initialize frontend: Dialog\n"
            "debconf: (No usable dialog-like program is installed, so the dialog based "
            "frontend cannot be used. at /usr/share/perl5/Debconf/FrontEnd/Dialog.pm "
            "line 78.)\n"
            "debconf: falling back to frontend: Readline\n"
            "debconf: unable to initialize frontend: Readline\n"
            "debconf: (This frontend requires a controlling tty.)\n"
            "debconf: falling back to frontend: Teletype\n"
            "dpkg-preconfigure: unable to re-open stdin: \n"
        )
    for k, name in enumerate(new):
        pkg = PACKAGES[name]
        ctx.out(f"Selecting previously unselected package {name}.\n")
        if k == 0:
            ctx.out("(Reading database ... 63826 files and directories currently installed.)\n")
        ctx.out(
            f"Preparing to unpack .../{k:02d}-{name}_{pkg.file_version}_{pkg.arch}.deb "
            f"...\nUnpacking {name} ({pkg.version}) ...\n"
        )
    host.packages.update(new)
    for name in new:
        pkg = PACKAGES[name]
        ctx.out(f"Setting up {name} ({pkg.version}) ...\n")
        if name == "tomcat9":
            ctx.out(
                "Creating group 'tomcat' with GID 122.\n"
                "Creating user 'tomcat' (Apache Tomcat) with UID 115 and GID 122.\n"
            )
        if pkg.unit:
            # Debian policy: a service is enabled and started when its package is installed
            ctx.out(
                f"Created symlink /etc/systemd/system/multi-user.target.wants/"
                f"{pkg.unit}.service → /lib/systemd/system/{pkg.unit}.service.\n"
            )
            host.enabled_units.add(pkg.unit)
            await _start_unit(pkg.unit, ctx)
    ctx.out(
        "Processing triggers for man-db (2.10.2-1) ...\n"
        "Processing triggers for libc-bin (2.35-0ubuntu3.6) ...\n"
    )
    if loud:
        ctx.out(
            "\nRunning kernel seems to be up-to-date.\n\nNo services need to be restarted."
            "\n\nNo containers need to be restarted.\n\n"
            "No user sessions are running outdated binaries.\n\n"
            "No VM guests are running outdated hypervisor (qemu) binaries on this host.\n"
        )
    return 0


async def _reinstall(names: list[str], a: _AptArgs, ctx: _Ctx) -> int:
    """`--reinstall` of installed packages: fetch them, then (dpkg) the old package's
    prerm stops its service, the files are unpacked over it, and the postinst starts the
    service again if it is enabled. Between the two, the service's port refuses."""
    host = ctx.host
    loud = a.quiet < 2
    if loud:
        ctx.out(f"0 upgraded, 0 newly installed, {len(names)} reinstalled, 0 to remove and ")
        ctx.out("0 not upgraded.\n")
    await asyncio.sleep(jittered(host.install_latency * 0.4, host.latency_jitter, host.rng))
    if host.faults.install_fails():
        pkg = PACKAGES[names[0]]
        ctx.err(
            f"E: Failed to fetch {_MIRROR}/{pkg.pool_path(names[0])}  Connection failed "
            f"[IP: {_MIRROR_IP} 80]\n"
        )
        return 100
    units = []
    for k, name in enumerate(names):
        pkg = PACKAGES[name]
        ctx.out(f"Preparing to unpack .../{k:02d}-{name}_{pkg.file_version}_{pkg.arch}.deb ...\n")
        if pkg.unit and pkg.unit in host.active_units:
            await _stop_unit(pkg.unit, ctx)  # the old package's prerm
        ctx.out(f"Unpacking {name} ({pkg.version}) over ({pkg.version}) ...\n")
        if pkg.unit:
            units.append(pkg.unit)
    await asyncio.sleep(jittered(host.install_latency * 0.4, host.latency_jitter, host.rng))
    for name in names:
        ctx.out(f"Setting up {name} ({PACKAGES[name].version}) ...\n")
    for unit in units:
        if unit in host.enabled_units:  # the postinst starts an enabled service
            await _start_unit(unit, ctx)
    return 0
