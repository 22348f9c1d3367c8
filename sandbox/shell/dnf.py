"""dnf (and yum, its alias on Amazon Linux 2023): install (with requirements, the wait for
another dnf's lock, the repository metadata download, the confirmation prompt), makecache,
upgrade, clean. RPM packages leave their services stopped: `systemctl enable --now` starts
them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..faults import jittered
from ..hoststate import HostState
from .core import _Ctx, _words
from .rpms import RPMS, rpm_closure, rpm_installed, rpm_size

_REPO = "https://al2023-repos-us-east-1-de612dc2.s3.dualstack.us-east-1.amazonaws.com"
_RELEASE = "2023.6.20241121"
_RULE = "=" * 80 + "\n"
_NOOP_FLAGS = _words(
    "--nogpgcheck --refresh --best --nobest --allowerasing --skip-broken --nodocs "
    "--cacheonly -C --noplugins --setopt --disablerepo --enablerepo --releasever "
    "--color --verbose -v --downloadonly"
)
_NO_ROOT = (
    "Error: This command has to be run with superuser privileges (under the root user on "
    "most systems).\n"
)


@dataclass
class _DnfArgs:
    op: str | None = None
    names: list[str] = field(default_factory=list)
    yes: bool = False
    quiet: bool = False


def _parse_dnf(args: list[str]) -> _DnfArgs | str:
    """Parsed arguments, or the first argument dnf does not know."""
    parsed = _DnfArgs()
    for arg in args:
        if arg in ("-y", "--assumeyes"):
            parsed.yes = True
        elif arg in ("-q", "--quiet"):
            parsed.quiet = True
        elif arg.startswith("-") and len(arg) > 2 and not arg.startswith("--"):
            if not set(arg[1:]) <= set("yqCv"):
                return arg
            parsed.yes |= "y" in arg
            parsed.quiet |= "q" in arg
        elif arg.startswith("-"):
            if arg.split("=", 1)[0] not in _NOOP_FLAGS:
                return arg
        elif parsed.op is None:
            parsed.op = arg
        else:
            parsed.names.append(arg)
    return parsed


def _usage(ctx: _Ctx, problem: str) -> int:
    ctx.err(
        "usage: dnf [options] COMMAND\n\nList of Main Commands:\n\n"
        "install                   install a package or packages on your system\n"
        "makecache                 generate the metadata cache\n"
        "upgrade                   upgrade a package or packages on your system\n\n"
        f"dnf: error: {problem}\n"
    )
    return 2


async def _dnf(args: list[str], ctx: _Ctx) -> int:
    parsed = _parse_dnf(args)
    if isinstance(parsed, str):
        return _usage(ctx, f"unrecognized arguments: {parsed}")
    if parsed.op is None:
        _usage(ctx, "the following arguments are required: COMMAND")
        return 1
    if parsed.op == "install":
        return await _install(parsed, ctx)
    if parsed.op in ("makecache", "upgrade", "update", "check-update", "clean"):
        if not ctx.root and parsed.op != "check-update":
            ctx.err(_NO_ROOT)
            return 1
        if parsed.op != "clean":
            await _metadata(ctx, parsed.quiet, refresh=parsed.op == "makecache")
        if not parsed.quiet:
            out = {
                "makecache": "Metadata cache created.\n",
                "clean": "0 files removed\n",
            }.get(parsed.op, "Dependencies resolved.\nNothing to do.\nComplete!\n")
            ctx.out(out if parsed.op != "check-update" else "")
        return 0
    ctx.err(
        f"No such command: {parsed.op}. Please use /usr/bin/dnf --help\n"
        f"It could be a DNF plugin command, try: \"dnf install 'dnf-command({parsed.op})'\"\n"
    )
    return 1


def _lock_holder(host: HostState) -> int | None:
    return 3000 + sum(map(ord, host.instance_id)) % 5000 if host.installing else None


async def _metadata(ctx: _Ctx, quiet: bool, refresh: bool = False) -> None:
    """Download the repository metadata once (or again with makecache)."""
    host = ctx.host
    if not host.dnf_metadata or refresh:
        await asyncio.sleep(0.05 * host.install_latency)
        if not quiet:
            ctx.out(
                "Amazon Linux 2023 repository                     38 MB/s |  29 MB     00:00\n"
                "Amazon Linux 2023 Kernel Livepatch repository   1.3 MB/s | 17 kB     00:00\n"
            )
        host.dnf_metadata = True
    elif not quiet:
        stamp = time.strftime("%a %d %b %Y %I:%M:%S %p UTC", time.gmtime())
        ctx.out(f"Last metadata expiration check: 0:00:04 ago on {stamp}.\n")


def _table(new: list[str], wanted: list[str]) -> str:
    head = f" {'Package':<36} {'Arch':<8} {'Version':<28} {'Repository':<14} {'Size':>5}\n"
    lines = [_RULE, head, _RULE]
    for title, group in (
        ("Installing:\n", [n for n in new if n in wanted]),
        ("Installing dependencies:\n", [n for n in new if n not in wanted]),
    ):
        if group:
            lines.append(title)
            for name in group:
                pkg = RPMS[name]
                lines.append(
                    f" {name:<36} {pkg.arch:<8} {pkg.version:<28} {'amazonlinux':<14} "
                    f"{rpm_size(pkg.kb):>5}\n"
                )
    kb = sum(RPMS[n].kb for n in new)
    lines += [
        "\nTransaction Summary\n",
        _RULE,
        f"Install  {len(new)} Package{'s' if len(new) > 1 else ''}\n\n",
        f"Total download size: {rpm_size(kb)}\n",
        f"Installed size: {rpm_size(kb * 2.7)}\n",
    ]
    return "".join(lines)


async def _install(a: _DnfArgs, ctx: _Ctx) -> int:
    host = ctx.host
    if not ctx.root:
        ctx.err(_NO_ROOT)
        return 1
    announced = False
    while (holder := _lock_holder(host)) is not None:  # dnf waits for the other one
        if not announced:
            ctx.out(f"Waiting for process with pid {holder} to finish.\n")
            announced = True
        await asyncio.sleep(0.1)
    await _metadata(ctx, a.quiet)
    if not a.names:
        ctx.err("Error: Need to pass a list of pkgs to install\n")
        return 1
    missing = [n for n in a.names if n not in RPMS]
    for name in missing:
        ctx.err(f"No match for argument: {name}\n")
    if missing:
        ctx.err(f"Error: Unable to find a match: {' '.join(missing)}\n")
        return 1
    for name in a.names:
        if rpm_installed(host, name):
            ctx.err(f"Package {RPMS[name].nevra(name)} is already installed.\n")
    new = rpm_closure(host, a.names)
    if not a.quiet:
        ctx.out("Dependencies resolved.\n")
    if not new:
        if not a.quiet:
            ctx.out("Nothing to do.\nComplete!\n")
        return 0
    if not a.quiet:
        ctx.out(_table(new, a.names))
    if not a.yes:
        ctx.out("Is this ok [y/N]: ")  # no tty: the read hits EOF
        ctx.err("Operation aborted.\n")
        return 1
    host.installing = True
    try:
        return await _transaction(new, a, ctx)
    finally:
        host.installing = False


async def _transaction(new: list[str], a: _DnfArgs, ctx: _Ctx) -> int:
    host = ctx.host
    await asyncio.sleep(jittered(host.install_latency * 0.8, host.latency_jitter, host.rng))
    if host.faults.install_fails():
        name = new[-1]
        ctx.err(
            "Error: Error downloading packages:\n"
            f"  Curl error (28): Timeout was reached for {_REPO}/core/mirrors/{_RELEASE}/x86_64/"
            f"../../../../blobstore/{RPMS[name].nevra(name)}.rpm [Operation too slow. Less "
            "than 1000 bytes/sec transferred the last 30 seconds]\n"
        )
        return 1
    if not a.quiet:
        ctx.out("Downloading Packages:\n")
        for name in new:
            ctx.out(f"({new.index(name) + 1}/{len(new)}): {RPMS[name].nevra(name)}.rpm\n")
        ctx.out(
            "Running transaction check\nTransaction check succeeded.\n"
            "Running transaction test\nTransaction test succeeded.\nRunning transaction\n"
        )
        for k, name in enumerate(new, 1):
            ctx.out(f"  Installing       : {RPMS[name].nevra(name):<60} {k}/{len(new)}\n")
    host.packages.update(new)
    if not a.quiet:
        ctx.out("\nInstalled:\n")
        for name in new:
            ctx.out(f"  {name}-{RPMS[name].version}.{RPMS[name].arch}\n")
        ctx.out("\nComplete!\n")
    return 0
