"""Builtins and small commands: true/false, echo, sleep, hostname, whoami, cd, exit,
export, which, command, sudo, env, bash -c, timeout.
"""

from __future__ import annotations

import asyncio
import re

from .core import _LQ, _RQ, _Ctx, _ShellExit
from .parser import _ASSIGN, _BUILTINS, _exec, _lookup, _run_line

# --------------------------------------------------------------------------------------
# Builtins and small commands


async def _true(args: list[str], ctx: _Ctx) -> int:
    return 0


async def _false(args: list[str], ctx: _Ctx) -> int:
    return 1


async def _echo(args: list[str], ctx: _Ctx) -> int:
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        newline = newline and "n" not in args[0]
        escapes = "e" in args[0] or (escapes and "E" not in args[0])
        args = args[1:]
    text = " ".join(args)
    if escapes:
        text = text.replace("\\n", "\n").replace("\\t", "\t")
    ctx.out(text + ("\n" if newline else ""))
    return 0


def _duration(text: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", text)
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


async def _sleep(args: list[str], ctx: _Ctx) -> int:
    if not args:
        ctx.err("sleep: missing operand\nTry 'sleep --help' for more information.\n")
        return 1
    total = 0.0
    for arg in args:
        seconds = _duration(arg)
        if seconds is None:
            ctx.err(f"sleep: invalid time interval {_LQ}{arg}{_RQ}\n")
            ctx.err("Try 'sleep --help' for more information.\n")
            return 1
        total += seconds
    await asyncio.sleep(total)
    return 0


async def _hostname(args: list[str], ctx: _Ctx) -> int:
    short = "ip-" + ctx.host.private_ip.replace(".", "-")
    if "-I" in args or "--all-ip-addresses" in args:
        ctx.out(f"{ctx.host.private_ip} \n")
    elif "-f" in args or "--fqdn" in args:
        ctx.out(f"{short}.ec2.internal\n")
    else:
        ctx.out(short + "\n")
    return 0


async def _whoami(args: list[str], ctx: _Ctx) -> int:
    ctx.out(ctx.user + "\n")
    return 0


async def _cd(args: list[str], ctx: _Ctx) -> int:
    return 0  # no filesystem: every directory exists and nothing depends on the cwd


async def _exit(args: list[str], ctx: _Ctx) -> int:
    raise _ShellExit(int(args[0]) & 0xFF if args and args[0].isdigit() else 0)


async def _export(args: list[str], ctx: _Ctx) -> int:
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq:
            ctx.env[name] = value  # the line's env: later commands on the line see it
    return 0


async def _which(args: list[str], ctx: _Ctx) -> int:
    status = 0
    for name in (a for a in args if not a.startswith("-")):
        if name not in _BUILTINS and _lookup(name, ctx) is not None:
            ctx.out(f"/usr/bin/{name}\n")
        else:
            status = 1
    return status


async def _command(args: list[str], ctx: _Ctx) -> int:
    if args[:1] == ["-v"] and len(args) > 1:
        if _lookup(args[1], ctx) is None:
            return 1
        ctx.out(f"{args[1]}\n" if args[1] in _BUILTINS else f"/usr/bin/{args[1]}\n")
        return 0
    return await _exec(args, ctx) if args else 0


_SUDO_KEEP = {"PATH", "TERM", "LANG", "LANGUAGE", "DISPLAY", "COLORS", "LS_COLORS"}
_SUDO_USAGE = (
    "usage: sudo -h | -K | -k | -V\n"
    "usage: sudo [-AbEHknPS] [-C num] [-D directory] [-g group] [-h host] [-p prompt]\n"
    "            [-R directory] [-T timeout] [-u user] [VAR=value] [-i|-s] [<command>]\n"
)


async def _sudo(args: list[str], ctx: _Ctx) -> int:
    """sudo with Ubuntu's default env_reset: the caller's variables are dropped unless -E."""
    preserve, user = False, "root"
    while args and args[0].startswith("-"):
        flag, args = args[0], args[1:]
        if flag == "--":
            break
        if flag == "--preserve-env":
            preserve = True
        elif flag in ("--non-interactive", "--set-home"):
            pass
        elif flag == "-u" and args:
            user, args = args[0], args[1:]
            if user not in ("root", "0", "#0", ctx.host.login_user, ctx.user):
                ctx.err(
                    f"sudo: unknown user {user}\nsudo: error initializing audit plugin "
                    "sudoers_audit\n"
                )
                return 1
        elif re.fullmatch(r"-[EnHS]+", flag):
            preserve = preserve or "E" in flag
        else:
            bad = flag.lstrip("-")[:1] if not flag.startswith("--") else flag
            ctx.err(f"sudo: invalid option -- '{bad}'\n" + _SUDO_USAGE)
            return 1
    if not args:
        ctx.err(_SUDO_USAGE)
        return 1
    if preserve:
        env = dict(ctx.env)
    else:
        env = {k: v for k, v in ctx.env.items() if k in _SUDO_KEEP or k.startswith("LC_")}
    root = user in ("root", "0", "#0")
    name = "root" if root else user
    home = "/root" if root else f"/home/{user}"
    caller = ctx.env.get("USER", ctx.host.login_user)
    env.update(USER=name, LOGNAME=name, HOME=home, SUDO_USER=caller)
    words = list(args)
    while words and _ASSIGN.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words or words[0] in _BUILTINS or _lookup(words[0], ctx) is None:
        ctx.err(f"sudo: {words[0] if words else ''}: command not found\n")
        return 1
    return await _exec(words, ctx.but(env=env, root=root))


async def _env(args: list[str], ctx: _Ctx) -> int:
    env = dict(ctx.env)
    while args:
        if args[0] in ("-i", "--ignore-environment", "-"):
            env = {}
        elif args[0] == "-u" and len(args) > 1:
            env.pop(args[1], None)
            args = args[1:]
        elif _ASSIGN.match(args[0]):
            name, _, value = args[0].partition("=")
            env[name] = value
        else:
            break
        args = args[1:]
    if not args:
        ctx.out("".join(f"{k}={v}\n" for k, v in env.items()))
        return 0
    if args[0] in _BUILTINS or _lookup(args[0], ctx) is None:
        ctx.err(f"env: {_LQ}{args[0]}{_RQ}: No such file or directory\n")
        return 127
    return await _exec(args, ctx.but(env=env))


async def _bash(args: list[str], ctx: _Ctx) -> int:
    command: str | None = None
    while args and args[0].startswith("-"):
        flag, args = args[0], args[1:]
        if "c" in flag and not flag.startswith("--") and args:  # -c, -lc, -ec ...
            command, args = args[0], args[1:]
            break
    if command is not None:
        try:
            return await _run_line(command, ctx)
        except _ShellExit as stop:
            return stop.status
    if args:
        ctx.err(f"bash: {args[0]}: No such file or directory\n")
        return 127
    return 0  # no script and no stdin: nothing to do


async def _timeout(args: list[str], ctx: _Ctx) -> int:
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] in ("-s", "-k", "--signal", "--kill-after") else args[1:]
    seconds = _duration(args[0]) if args else None
    if seconds is None or len(args) < 2:
        ctx.err("timeout: missing operand\nTry 'timeout --help' for more information.\n")
        return 125
    try:
        return await asyncio.wait_for(_exec(args[1:], ctx), timeout=seconds or None)
    except TimeoutError:
        return 124
