"""The mysql client: its options, option files read from stdin
(`--defaults-extra-file=/dev/stdin`), a login through the sandbox network, and the few
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
    from_file: bool = False  # password came from an option file: no warning, no prompt


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


def _parse_mysql(args: list[str], ctx: _Ctx, from_files: int = 0) -> _MysqlArgs | str:
    """Parsed options, or the error line. The first `from_files` of `args` are the options
    the option files gave (as `--name=value`): the command line after them overrides them."""
    m = _MysqlArgs(user=ctx.user)
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith(_DEFAULTS_OPTIONS) or (i <= from_files and not _known(arg)):
            # only honoured as the first options; in a file or later they are unknown
            if "=" not in arg:
                return _unknown(arg)
            return f"mysql: [ERROR] unknown variable '{arg.removeprefix('--')}'."
        if arg in ("-p", "--password"):
            m.password = ""  # would prompt on the tty; there is none
            m.from_file = False
        elif arg.startswith("--password="):
            m.password = arg.partition("=")[2]
            m.from_file = i <= from_files
        elif arg.startswith("-p") and not arg.startswith("--"):
            m.password = arg[2:]
            m.from_file = False
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
                    return _unknown(arg)
                value, i = args[i], i + 1
            values[_MYSQL_SHORT[arg[:2]]] = value
        elif arg.startswith("--") and arg.partition("=")[0] in _MYSQL_LONG:
            name, eq, value = arg.partition("=")
            if not eq:
                if i >= len(args) or i <= from_files:
                    return _unknown(name)
                value, i = args[i], i + 1
            if _MYSQL_LONG[name]:
                values[_MYSQL_LONG[name]] = value
        elif arg.startswith("-"):
            return _unknown(arg)
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
        return _unknown("--port" if "port" in values else "--connect-timeout")
    return m


def _unknown(option: str) -> str:
    return f"mysql: [ERROR] unknown option '{option}'."


def _known(option: str) -> bool:
    name = option.partition("=")[0]
    return name in _MYSQL_LONG or name in _MYSQL_FLAGS or name == "--password"


# --------------------------------------------------------------------------------------
# Option files. The real client reads `--defaults-file=`/`--defaults-extra-file=` only as
# its first options; the sandbox has no filesystem, so the one file it can open is stdin.

_DEFAULTS_OPTIONS = (
    "--no-defaults",
    "--defaults-file=",
    "--defaults-extra-file=",
    "--defaults-group-suffix=",
    "--login-path=",
)
_STDIN_PATHS = frozenset({"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"})
_OPTION_GROUPS = frozenset({"client", "mysql"})  # the groups the mysql client reads
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", '"': '"', "'": "'", "\\": "\\"}
_ABORT = "mysql: [ERROR] Fatal error in defaults handling. Program aborted!\n"


async def _read_option_files(args: list[str], ctx: _Ctx) -> tuple[list[str], list[str]] | int:
    """Take the leading defaults options off `args`: (the options their files give, as
    `--name=value`, then the remaining args), or the exit status after an error."""
    options: list[str] = []
    while args and args[0].startswith(_DEFAULTS_OPTIONS):
        name, _, path = args[0].partition("=")
        args = args[1:]
        if name not in ("--defaults-file", "--defaults-extra-file"):
            continue  # --no-defaults etc.: there are no other option files to skip
        if path not in _STDIN_PATHS:
            ctx.err(f"mysql: [ERROR] Could not open required defaults file: {path}\n" + _ABORT)
            return 1
        parsed = _option_file(await ctx.stdin.read(), path)
        if isinstance(parsed, str):
            ctx.err(parsed + _ABORT)
            return 1
        options += parsed
    return options, args


def _option_file(text: str, path: str) -> list[str] | str:
    """The [client] and [mysql] options of a my.cnf-style file as `--name[=value]`, parsed
    as the client does (comments, quotes, escapes), or the client's error line."""
    options: list[str] = []
    group: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;" or line.startswith("!"):
            continue  # comments; !include/!includedir: nothing to include from
        if line.startswith("["):
            group = line[1:].partition("]")[0].strip().lower()
            continue
        if group is None:
            return (
                "mysql: [ERROR] Found option without preceding group in config file "
                f"{path} at line {number}.\n"
            )
        if group not in _OPTION_GROUPS:
            continue
        name, eq, value = _strip_comment(line).partition("=")
        name = name.strip().replace("_", "-")
        if not eq:
            options.append(f"--{name}")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        options.append(f"--{name}={_unescape(value)}")
    return options


def _strip_comment(line: str) -> str:
    """Cut the line at the first `#` outside quotes (the client's remove_end_comment)."""
    quote, escape = "", False
    for k, c in enumerate(line):
        if c in "'\"" and not escape:
            quote = "" if quote == c else quote or c
        elif not quote and c == "#":
            return line[:k]
        escape = bool(quote) and c == "\\" and not escape
    return line


def _unescape(value: str) -> str:
    out, k = [], 0
    while k < len(value):
        c = value[k]
        if c == "\\" and k + 1 < len(value):
            nxt = value[k + 1]
            out.append(_ESCAPES.get(nxt, c + nxt))
            k += 2
            continue
        out.append(c)
        k += 1
    return "".join(out)


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
    files = await _read_option_files(args, ctx)
    if isinstance(files, int):
        return files
    from_files, args = files
    parsed = _parse_mysql(from_files + args, ctx, len(from_files))
    if isinstance(parsed, str):
        ctx.err(parsed + "\n")
        return 7
    m = parsed
    if m.password and not (m.from_env or m.from_file):
        ctx.err(
            "mysql: [Warning] Using a password on the command line interface can be insecure.\n"
        )
    elif m.password == "" and not m.from_file:
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
