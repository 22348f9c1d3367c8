"""The mysql client: its options, a login through the sandbox network, and the few
queries the sandbox answers.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from .core import _Ctx

# --------------------------------------------------------------------------------------
# mysql client


@dataclass
class _MysqlArgs:
    host: str = "localhost"
    port: int = 3306
    user: str = ""
    password: str | None = None  # None: no -p; "": prompted (no tty, so empty)
    execute: str | None = None
    skip_names: bool = False
    silent: int = 1  # stdout is not a tty, so the client starts in batch/silent mode
    table: bool = False
    timeout: float = 10.0
    from_env: bool = False  # password came from MYSQL_PWD: no warning


_MYSQL_SHORT = {"-h": "host", "-P": "port", "-u": "user", "-e": "execute", "-D": "database"}
_MYSQL_LONG = {
    "--host": "host",
    "--port": "port",
    "--user": "user",
    "--execute": "execute",
    "--database": "database",
    "--connect-timeout": "timeout",
    "--ssl-mode": "",
    "--protocol": "",
    "--default-character-set": "",
    "--ssl-ca": "",
    "--init-command": "",
}
_MYSQL_FLAGS = {
    "-N": "skip_names",
    "--skip-column-names": "skip_names",
    "-B": "batch",
    "--batch": "batch",
    "-s": "silent",
    "--silent": "silent",
    "-t": "table",
    "--table": "table",
    "-r": "",
    "--raw": "",
    "-A": "",
    "--no-auto-rehash": "",
    "-v": "",
    "--verbose": "",
    "-f": "",
    "--force": "",
    "-E": "",
    "--vertical": "",
    "-n": "",
    "--unbuffered": "",
}


def _parse_mysql(args: list[str], ctx: _Ctx) -> _MysqlArgs | str:
    m = _MysqlArgs(user=ctx.user)
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("-p", "--password"):
            m.password = ""  # would prompt on the tty; there is none
        elif arg.startswith("--password="):
            m.password = arg.partition("=")[2]
        elif arg.startswith("-p") and not arg.startswith("--"):
            m.password = arg[2:]
        elif arg in _MYSQL_FLAGS or re.fullmatch(r"-[NBsrtAvfEn]{2,}", arg):
            for flag in [arg] if arg in _MYSQL_FLAGS else [f"-{c}" for c in arg[1:]]:
                kind = _MYSQL_FLAGS[flag]
                m.skip_names |= kind == "skip_names"
                m.silent += kind == "silent"
                m.table |= kind == "table"
        elif arg[:2] in _MYSQL_SHORT and not arg.startswith("--"):
            value = arg[2:]
            if not value:
                if i >= len(args):
                    return arg
                value, i = args[i], i + 1
            values[_MYSQL_SHORT[arg[:2]]] = value
        elif arg.startswith("--") and arg.partition("=")[0] in _MYSQL_LONG:
            name, eq, value = arg.partition("=")
            if not eq:
                if i >= len(args):
                    return name
                value, i = args[i], i + 1
            if _MYSQL_LONG[name]:
                values[_MYSQL_LONG[name]] = value
        elif arg.startswith("-"):
            return arg
        else:
            values["database"] = arg
    if m.password is None and "MYSQL_PWD" in ctx.env:
        m.password = ctx.env["MYSQL_PWD"]
        m.from_env = True
    m.host = values.get("host", m.host)
    m.user = values.get("user", m.user)
    m.execute = values.get("execute")
    try:
        m.port = int(values.get("port", m.port))
        m.timeout = float(values.get("timeout", m.timeout))
    except ValueError:
        return "--port" if "port" in values else "--connect-timeout"
    return m


def _eval_sql(statement: str) -> tuple[str, str] | None:
    """(column, value) for the few queries the sandbox answers; None for anything else."""
    s = statement.strip()
    if m := re.fullmatch(r"(?i)select\s+(\d+)", s):
        return m.group(1), m.group(1)
    if re.fullmatch(r"(?i)select\s+version\(\)", s):
        return "VERSION()", "8.0.35"
    if re.fullmatch(r"(?i)select\s+(now|current_timestamp)\(\)", s):
        return s.split(None, 1)[1].upper(), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return None


def _print_result(m: _MysqlArgs, column: str, value: str, ctx: _Ctx) -> None:
    if m.table:
        width = max(len(column), len(value))
        rule = f"+{'-' * (width + 2)}+\n"
        ctx.out(rule + f"| {column:<{width}} |\n" + rule + f"| {value:<{width}} |\n" + rule)
        return
    if not m.skip_names and m.silent < 2:
        ctx.out(column + "\n")
    ctx.out(value + "\n")


async def _mysql(args: list[str], ctx: _Ctx) -> int:
    parsed = _parse_mysql(args, ctx)
    if isinstance(parsed, str):
        ctx.err(f"mysql: [ERROR] unknown option '{parsed}'.\n")
        return 7
    m = parsed
    if m.password and not m.from_env:
        ctx.err(
            "mysql: [Warning] Using a password on the command line interface can be insecure.\n"
        )
    elif m.password == "":
        ctx.err("Enter password: \n")
    if m.host == "localhost":
        ctx.err(
            "ERROR 2002 (HY000): Can't connect to local MySQL server through socket "
            "'/var/run/mysqld/mysqld.sock' (2)\n"
        )
        return 1
    error = await ctx.net.mysql_login(ctx.host, m.host, m.port, m.user, m.password or "", m.timeout)
    if error:
        ctx.err(error.rstrip("\n") + "\n")
        return 1
    for statement in (s for s in (m.execute or "").split(";") if s.strip()):
        answer = _eval_sql(statement)
        if answer is None:
            near = statement.strip()[:80]
            ctx.err(
                "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; check "
                "the manual that corresponds to your MySQL server version for the right "
                f"syntax to use near '{near}' at line 1\n"
            )
            return 1
        _print_result(m, *answer, ctx)
    return 0
