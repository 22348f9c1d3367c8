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
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from .faults import jittered
from .hoststate import HostState, Network

Sink = Callable[[str], None]
_LQ, _RQ = "\u2018", "\u2019"  # the curly quotes GNU tools print around names


def _discard(_: str) -> None:
    pass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass
class _Ctx:
    host: HostState
    net: Network
    env: dict[str, str]
    out: Sink
    err: Sink
    root: bool = False

    def but(self, **changes: object) -> _Ctx:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def user(self) -> str:
        return "root" if self.root else self.env.get("USER", "ubuntu")


Handler = Callable[[list[str], _Ctx], Awaitable[int]]


class _ShellExit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class _ParseError(Exception):
    pass


# --------------------------------------------------------------------------------------
# Parsing: split a line into simple commands joined by && || ; and pull out redirections.


@dataclass
class _Simple:
    connector: str | None  # how it joins the previous command: None, "&&", "||", ";"
    text: str
    redirs: list[tuple[int, str]] = field(default_factory=list)  # (fd, "/path" or "&N")


def _parse_line(line: str) -> list[_Simple]:
    """Split on unquoted list operators; extract redirections. Raises _ParseError."""
    parts: list[_Simple] = []
    cur = _Simple(None, "")
    buf: list[str] = []
    quote: str | None = None
    i, n = 0, len(line)

    def at_word_start(k: int) -> bool:
        return k == 0 or line[k - 1] in " \t;&|"

    while i < n:
        c = line[i]
        if quote:
            buf.append(c)
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"' and i + 1 < n:
                buf.append(line[i + 1])
                i += 1
            i += 1
            continue
        if c in "'\"":
            quote = c
        elif c == "\\" and i + 1 < n:
            buf.append(line[i : i + 2])
            i += 2
            continue
        elif c == "#" and at_word_start(i):
            break
        elif line.startswith(("&&", "||"), i) or c == ";":
            op = line[i : i + 2] if c != ";" else ";"
            cur.text = "".join(buf)
            parts.append(cur)
            cur, buf = _Simple(op, ""), []
            i += len(op)
            continue
        elif c == "|":
            raise _ParseError("sandbox shell: pipes are not supported")
        elif c == "<":
            raise _ParseError("sandbox shell: input redirection is not supported")
        elif c == ">" or (c == "&" and line.startswith("&>", i)):
            i = _take_redirection(line, i, buf, cur)
            continue
        elif c == "&":
            raise _ParseError("sandbox shell: background jobs (&) are not supported")
        buf.append(c)
        i += 1
    if quote:
        raise _ParseError(f"bash: -c: line 1: unexpected EOF while looking for matching `{quote}'")
    cur.text = "".join(buf)
    parts.append(cur)
    _check_empty(parts)
    return parts


def _take_redirection(line: str, i: int, buf: list[str], cur: _Simple) -> int:
    """Parse a redirection starting at line[i] ('>' or '&>'); return the index after it."""
    fds = [1]
    if line[i] == "&":  # &>file: both streams
        fds, i = [1, 2], i + 1
    elif buf and buf[-1] in "12" and (len(buf) == 1 or buf[-2] in " \t"):
        fds = [int(buf.pop())]
    i += 1  # past '>'
    if i < len(line) and line[i] == ">":
        i += 1  # '>>' appends; with no filesystem it is the same as '>'
    if i < len(line) and line[i] == "&":
        m = re.match(r"&(\d+)", line[i:])
        if not m:
            raise _ParseError("bash: -c: line 1: syntax error near unexpected token `&'")
        cur.redirs.extend((fd, "&" + m.group(1)) for fd in fds)
        return i + m.end()
    m = re.match(r"[ \t]*([^ \t;&|<>]+)", line[i:])
    if not m:
        raise _ParseError("bash: -c: line 1: syntax error near unexpected token `newline'")
    cur.redirs.extend((fd, m.group(1).strip("'\"")) for fd in fds)
    return i + m.end()


def _check_empty(parts: list[_Simple]) -> None:
    for k, part in enumerate(parts):
        if part.text.strip() or part.redirs:
            continue
        last = k == len(parts) - 1
        if len(parts) == 1 or (last and part.connector == ";"):
            continue  # empty line, or a trailing ';'
        token = part.connector if last else parts[k + 1].connector
        raise _ParseError(f"bash: -c: line 1: syntax error near unexpected token `{token}'")


def _apply_redirs(redirs: list[tuple[int, str]], out: Sink, err: Sink) -> tuple[Sink, Sink]:
    fds: dict[int, Sink] = {1: out, 2: err}
    for fd, target in redirs:
        if target.startswith("&"):
            src = int(target[1:])
            if src not in fds:
                raise _ParseError(f"bash: line 1: {src}: Bad file descriptor")
            fds[fd] = fds[src]
        else:
            fds[fd] = _discard  # /dev/null or a file: either way not shown
    return fds[1], fds[2]


# --------------------------------------------------------------------------------------
# Running


async def run_command(
    command: str,
    env: dict[str, str],
    host: HostState,
    net: Network,
    out: Callable[[str], None],
    err: Callable[[str], None],
) -> int:
    """Interpret `command` on `host` as `bash -c` would; return the exit status."""
    ctx = _Ctx(host, net, dict(env), out, err)
    try:
        return await _run_line(command, ctx)
    except _ShellExit as stop:
        return stop.status


async def _run_line(line: str, ctx: _Ctx) -> int:
    try:
        parts = _parse_line(line)
    except _ParseError as exc:
        ctx.err(f"{exc}\n")
        return 2
    status = 0
    for part in parts:
        if part.connector == "&&" and status != 0:
            continue
        if part.connector == "||" and status == 0:
            continue
        try:
            words = shlex.split(part.text)
            out, err = _apply_redirs(part.redirs, ctx.out, ctx.err)
        except (ValueError, _ParseError) as exc:
            ctx.err(f"{exc}\n")
            status = 1
            continue
        if not words:
            continue
        ctx.host.commands_run += 1
        status = await _exec(words, ctx.but(out=out, err=err))
    return status


_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_BIN_DIRS = ("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/", "/usr/local/bin/")


async def _exec(words: list[str], ctx: _Ctx) -> int:
    """Run one simple command: leading assignments, then the command itself."""
    assigns: dict[str, str] = {}
    while words and _ASSIGN.match(words[0]):
        name, _, value = words[0].partition("=")
        assigns[name] = value
        words = words[1:]
    if not words:
        return 0  # a bare assignment sets a shell variable; nothing is exported
    handler = _lookup(words[0], ctx.host)
    if handler is None:
        name = words[0]
        why = "No such file or directory" if "/" in name else "command not found"
        ctx.err(f"bash: line 1: {name}: {why}\n")
        return 127
    if assigns:
        ctx = ctx.but(env={**ctx.env, **assigns})
    return await handler(words[1:], ctx)


def _lookup(name: str, host: HostState) -> Handler | None:
    if "/" in name:
        if not name.startswith(_BIN_DIRS):
            return None
        name = name.rsplit("/", 1)[1]
        if name in _BUILTINS:
            return None
    handler = _COMMANDS.get(name)
    needs = _COMMAND_PACKAGES.get(name)
    if handler is None or (needs and not any(_installed(host, p) for p in needs)):
        return None
    return handler


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
        if name not in _BUILTINS and _lookup(name, ctx.host) is not None:
            ctx.out(f"/usr/bin/{name}\n")
        else:
            status = 1
    return status


async def _command(args: list[str], ctx: _Ctx) -> int:
    if args[:1] == ["-v"] and len(args) > 1:
        if _lookup(args[1], ctx.host) is None:
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
            if user not in ("root", "0", "#0", "ubuntu", ctx.user):
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
    env.update(USER=name, LOGNAME=name, HOME=home, SUDO_USER=ctx.env.get("USER", "ubuntu"))
    words = list(args)
    while words and _ASSIGN.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words or words[0] in _BUILTINS or _lookup(words[0], ctx.host) is None:
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
    if args[0] in _BUILTINS or _lookup(args[0], ctx.host) is None:
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
# Packages: a tiny jammy archive


@dataclass(frozen=True)
class _Pkg:
    version: str
    section: str  # component/section, e.g. "universe/java"
    arch: str  # "all" or "amd64"
    kb: int  # download size
    depends: str = ""  # space-separated package names
    source: str = ""  # source package, when it differs from the name
    unit: str | None = None  # systemd unit it ships; Debian enables+starts it on install

    @property
    def component(self) -> str:
        return self.section.split("/")[0]

    @property
    def file_version(self) -> str:
        return self.version.split(":", 1)[-1]  # .deb names drop the epoch

    def pool_path(self, name: str) -> str:
        src = self.source or name
        prefix = src[:4] if src.startswith("lib") else src[:1]
        return f"pool/{self.component}/{prefix}/{src}/{name}_{self.file_version}_{self.arch}.deb"

    def index_line(self, name: str) -> str:
        """How apt names the download: mirror, pocket/component, arch, package, version."""
        pocket = "jammy-updates" if "ubuntu0" in self.version else "jammy"
        return f"{_MIRROR} {pocket}/{self.component} amd64 {name} {self.arch} {self.version}"


_T9 = "9.0.58-1ubuntu0.1"
_J11 = "11.0.21+9-0ubuntu1~22.04"
_J17 = "17.0.9+9-1~22.04"
_MY = "8.0.35-0ubuntu0.22.04.1"
_JC = "2:1.11-72build2"
# A tiny jammy archive. The cloud image ships curl, wget, ca-certificates, ssh, cloud-init.
PACKAGES: dict[str, _Pkg] = {
    "tomcat9": _Pkg(_T9, "universe/java", "all", 47, "tomcat9-common", unit="tomcat9"),
    "tomcat9-common": _Pkg(
        _T9, "universe/java", "all", 70, "libtomcat9-java default-jre-headless", "tomcat9"
    ),
    "libtomcat9-java": _Pkg(_T9, "universe/java", "all", 6080, "libecj-java", "tomcat9"),
    "tomcat9-admin": _Pkg(_T9, "universe/java", "all", 46, "tomcat9-common", "tomcat9"),
    "tomcat9-user": _Pkg(_T9, "universe/java", "all", 38, "tomcat9-common", "tomcat9"),
    "tomcat9-examples": _Pkg(_T9, "universe/java", "all", 210, "tomcat9-common", "tomcat9"),
    "libecj-java": _Pkg("3.16.0-1", "universe/java", "all", 2424, "", "ecj"),
    "default-jre-headless": _Pkg(
        _JC, "main/java", "amd64", 3, "openjdk-11-jre-headless", "java-common"
    ),
    "openjdk-11-jre-headless": _Pkg(
        _J11, "main/java", "amd64", 42460, "ca-certificates-java", "openjdk-lts"
    ),
    "ca-certificates-java": _Pkg("20190909ubuntu1.2", "main/java", "all", 12),
    "default-jdk-headless": _Pkg(
        _JC, "main/java", "amd64", 1, "default-jre-headless openjdk-11-jdk-headless", "java-common"
    ),
    "openjdk-11-jdk-headless": _Pkg(
        _J11, "main/java", "amd64", 73470, "openjdk-11-jre-headless", "openjdk-lts"
    ),
    "openjdk-17-jre-headless": _Pkg(
        _J17, "main/java", "amd64", 48350, "ca-certificates-java", "openjdk-17"
    ),
    "openjdk-17-jdk-headless": _Pkg(
        _J17, "main/java", "amd64", 71220, "openjdk-17-jre-headless", "openjdk-17"
    ),
    "mysql-client": _Pkg(_MY, "main/database", "all", 9, "mysql-client-8.0", "mysql-8.0"),
    "mysql-client-8.0": _Pkg(
        _MY, "main/database", "amd64", 22, "mysql-client-core-8.0", "mysql-8.0"
    ),
    "mysql-client-core-8.0": _Pkg(_MY, "main/database", "amd64", 2710, "", "mysql-8.0"),
    "default-mysql-client": _Pkg(
        "1.0.8", "main/database", "all", 3, "mysql-client-8.0", "mysql-defaults"
    ),
    "mariadb-client": _Pkg(
        "1:10.6.16-0ubuntu0.22.04.1", "universe/database", "all", 11, "", "mariadb-10.6"
    ),
    "mysql-server": _Pkg(_MY, "main/database", "all", 9, "mysql-client-8.0", "mysql-8.0", "mysql"),
    "nginx": _Pkg("1.18.0-6ubuntu14.4", "main/httpd", "amd64", 4, unit="nginx"),
    "unzip": _Pkg("6.0-26ubuntu3.1", "main/utils", "amd64", 175),
    "zip": _Pkg("3.0-12build2", "main/utils", "amd64", 176),
    "jq": _Pkg("1.6-2.1ubuntu3", "universe/utils", "amd64", 52, "libjq1"),
    "libjq1": _Pkg("1.6-2.1ubuntu3", "universe/libs", "amd64", 133, "", "jq"),
    "awscli": _Pkg("1.22.34-1", "universe/admin", "all", 1400),
    "curl": _Pkg("7.81.0-1ubuntu1.15", "main/web", "amd64", 194),
    "wget": _Pkg("1.21.2-2ubuntu1", "main/web", "amd64", 339),
    "ca-certificates": _Pkg("20230311ubuntu0.22.04.1", "main/misc", "all", 155),
    "openssh-server": _Pkg("1:8.9p1-3ubuntu0.6", "main/net", "amd64", 435, unit="ssh"),
    "cloud-init": _Pkg("23.3.3-0ubuntu0~22.04.1", "main/admin", "all", 520, unit="cloud-init"),
}
_DESCRIPTIONS = {  # for dpkg -s / -l; others get a generic line
    "tomcat9": "Apache Tomcat 9 - Servlet and JSP engine",
    "tomcat9-admin": "Apache Tomcat 9 - Servlet and JSP engine -- admin web applications",
    "default-jre-headless": "Standard Java or Java compatible Runtime (headless)",
    "openjdk-11-jre-headless": "OpenJDK Java runtime, using Hotspot JIT (headless)",
    "openjdk-17-jre-headless": "OpenJDK Java runtime, using Hotspot JIT (headless)",
    "mysql-client": "MySQL database client (metapackage depending on the latest version)",
    "curl": "command line tool for transferring data with URL syntax",
    "wget": "retrieves files from the web",
}


def _description(name: str) -> str:
    return _DESCRIPTIONS.get(name, f"{name} (Ubuntu jammy package)")


BASE_PACKAGES = frozenset({"curl", "wget", "ca-certificates", "openssh-server", "cloud-init"})
BASE_UNITS = frozenset({"ssh", "cloud-init", "cron", "systemd-journald", "snapd"})

_MYSQL_CLIENTS = (
    "mysql-client",
    "mysql-client-8.0",
    "mysql-client-core-8.0",
    "default-mysql-client",
    "mariadb-client",
)
_JAVA = ("openjdk-11-jre-headless", "openjdk-17-jre-headless")
_COMMAND_PACKAGES: dict[str, tuple[str, ...]] = {"mysql": _MYSQL_CLIENTS, "java": _JAVA}

_MIRROR = "http://archive.ubuntu.com/ubuntu"
_MIRROR_IP = "185.125.190.39"
_CLOUD_INIT_PID = 1432


def _installed(host: HostState, name: str) -> bool:
    return name in host.packages or name in BASE_PACKAGES


def _closure(host: HostState, names: list[str]) -> list[str]:
    """`names` plus their not-yet-installed dependencies, dependencies first."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen or _installed(host, name):
            return
        for dep in PACKAGES[name].depends.split():
            visit(dep)
        seen.append(name)

    for name in names:
        visit(name)
    return seen


def _wrap(names: list[str]) -> str:
    lines, line = [], " "
    for name in names:
        if len(line) + len(name) + 1 > 79:
            lines.append(line)
            line = " "
        line += " " + name
    lines.append(line)
    return "\n".join(lines) + "\n"


def _size(kb: float) -> str:
    return f"{kb / 1000:.1f} MB" if kb >= 1000 else f"{kb:.0f} kB"


# --------------------------------------------------------------------------------------
# apt-get / apt


@dataclass
class _AptArgs:
    op: str | None = None
    names: list[str] = field(default_factory=list)
    yes: bool = False
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


# --------------------------------------------------------------------------------------
# systemd


def _unit_known(host: HostState, unit: str) -> bool:
    if unit in BASE_UNITS:
        return True
    return any(p.unit == unit and _installed(host, n) for n, p in PACKAGES.items())


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
    if unit != "tomcat9":
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
    if unit == "tomcat9":
        await ctx.net.stop_tomcat(ctx.host)


_UNIT_DESCRIPTIONS = {
    "tomcat9": "Apache Tomcat 9 Web Application Server",
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
                f" → /lib/systemd/system/{unit}.service.\n"
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
        f"     Loaded: loaded (/lib/systemd/system/{unit}.service; {enabled}; "
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


# --------------------------------------------------------------------------------------
# Option parsing shared by curl and wget: clustered short flags, `--long value`, `--long=v`


def _getopt(
    args: list[str], short_with_arg: str, long_with_arg: frozenset[str] | set[str]
) -> tuple[list[tuple[str, str]], list[str]] | str:
    """Return (options, operands), or the first argument that needs a value it lacks."""
    opts: list[tuple[str, str]] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg.partition("=")
            if name in long_with_arg and not eq:
                if i >= len(args):
                    return name
                value, i = args[i], i + 1
            opts.append((name, value))
        elif arg.startswith("-") and len(arg) > 1:
            k = 1
            while k < len(arg):
                letter = "-" + arg[k]
                if arg[k] in short_with_arg:
                    value = arg[k + 1 :]
                    if not value:
                        if i >= len(args):
                            return letter
                        value, i = args[i], i + 1
                    opts.append((letter, value))
                    break
                opts.append((letter, ""))
                k += 1
        else:
            operands.append(arg)
    return opts, operands


def _seconds(value: str, default: float) -> float:
    try:
        return float(value)
    except ValueError:
        return default


def _split_url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port


# --------------------------------------------------------------------------------------
# curl

_CURL_SHORT_ARG = "owmHXduAexbcrT"
_CURL_LONG_ARG = _words(
    "--cacert --connect-timeout --cookie --data --data-binary --data-raw --header "
    "--interface --max-time --noproxy --output --proxy --range --referer --request "
    "--resolve --retry --retry-delay --retry-max-time --upload-file --user --user-agent "
    "--write-out"
)
_CURL_LONG_FLAGS = _words(
    "--compressed --fail --fail-with-body --globoff --head --http1.1 --http2 --include "
    "--insecure --ipv4 --ipv6 --location --no-buffer --no-keepalive --no-progress-meter "
    "--remote-name --retry-all-errors --retry-connrefused --show-error --silent --tlsv1.2 "
    "--verbose"
)
_CURL_SHORT_FLAGS = set("sSfkLIiv46gNO#0")
_CURL_HELP = "curl: try 'curl --help' or 'curl --manual' for more information\n"
_CURL_ALIASES = {
    "-s": "--silent",
    "-S": "--show-error",
    "-f": "--fail",
    "-k": "--insecure",
    "-I": "--head",
    "-i": "--include",
    "-o": "--output",
    "-w": "--write-out",
    "-m": "--max-time",
    "-O": "--remote-name",
}


async def _curl(args: list[str], ctx: _Ctx) -> int:
    parsed = _getopt(args, _CURL_SHORT_ARG, _CURL_LONG_ARG)
    if isinstance(parsed, str):
        ctx.err(f"curl: option {parsed}: requires parameter\n" + _CURL_HELP)
        return 2
    raw_opts, urls = parsed
    opts: dict[str, str] = {}
    for name, value in raw_opts:
        known = (
            name in _CURL_LONG_ARG
            or name in _CURL_LONG_FLAGS
            or (len(name) == 2 and (name[1] in _CURL_SHORT_FLAGS or name[1] in _CURL_SHORT_ARG))
        )
        if not known:
            ctx.err(f"curl: option {name}: is unknown\n" + _CURL_HELP)
            return 2
        opts[_CURL_ALIASES.get(name, name)] = value
    if not urls:
        ctx.err("curl: no URL specified!\n" + _CURL_HELP)
        return 2
    status = 0
    for url in urls:
        status = await _curl_one(url, opts, ctx) or status
    return status


def _write_out(
    fmt: str, url: str, code: int | None, body: bytes, headers: dict[str, str], elapsed: float
) -> str:
    values = {
        "http_code": f"{code or 0:03d}",
        "response_code": f"{code or 0:03d}",
        "url_effective": url,
        "size_download": str(len(body)),
        "content_type": headers.get("Content-Type", headers.get("content-type", "")),
        "time_total": f"{elapsed:.6f}",
        "time_connect": f"{elapsed / 2:.6f}",
        "exitcode": "0",
    }
    text = re.sub(r"%\{(\w+)\}", lambda m: values.get(m.group(1), ""), fmt)
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def _curl_meter(size: int) -> str:
    pct = 100 if size else 0
    line = f"{pct:3d} {size:5d}  {pct:3d} {size:5d}    0     0  {size * 10:5d}      0 "
    times = "--:--:-- " * 3
    return (
        "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
        "                                 Dload  Upload   Total   Spent    Left  Speed\n"
        f"{line}{times}{size * 10:5d}\n"
    )


async def _curl_one(url: str, opts: dict[str, str], ctx: _Ctx) -> int:
    if "://" not in url:
        url = "http://" + url
    scheme, name, port = _split_url(url)
    silent = "--silent" in opts or "--no-progress-meter" in opts
    show_errors = "--silent" not in opts or "--show-error" in opts
    say = ctx.err if show_errors else _discard

    def write_out(
        code: int | None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        elapsed: float = 0.0,
    ) -> None:
        if "--write-out" in opts:
            ctx.out(_write_out(opts["--write-out"], url, code, body, headers or {}, elapsed))

    if scheme not in ("http", "https"):
        say(f'curl: (1) Protocol "{scheme}" not supported or disabled in libcurl\n')
        write_out(None)
        return 1
    timeouts = [_seconds(opts[k], 10.0) for k in ("--max-time", "--connect-timeout") if k in opts]
    timeout = min(timeouts) if timeouts else 10.0
    started = time.monotonic()
    result = await ctx.net.http_get(
        ctx.host, url, verify_tls="--insecure" not in opts, timeout=timeout
    )
    elapsed = time.monotonic() - started
    if result.error or result.status is None:
        code, message = {
            "resolve": (6, f"Could not resolve host: {name}"),
            "refused": (
                7,
                f"Failed to connect to {name} port {port} after "
                f"{int(elapsed * 1000)} ms: Connection refused",
            ),
            "timeout": (28, f"Connection timed out after {int(timeout * 1000) + 1} milliseconds"),
            "tls": (60, "SSL certificate problem: unable to get local issuer certificate"),
        }.get(result.error or "", (56, "Recv failure: Connection reset by peer"))
        if not silent:
            ctx.err(_curl_meter(0))
        say(f"curl: ({code}) {message}\n")
        if code == 60 and show_errors:
            ctx.err(
                "More details here: https://curl.se/docs/sslcerts.html\n\n"
                "curl failed to verify the legitimacy of the server and therefore could "
                "not\nestablish a secure connection to it. To learn more about this "
                "situation and\nhow to fix it, please visit the web page mentioned "
                "above.\n"
            )
        write_out(None, elapsed=elapsed)
        return code

    status = result.status
    if not silent:  # stdout is not a tty, so curl shows its meter on stderr
        ctx.err(_curl_meter(len(result.body)))
    failed = status >= 400 and ("--fail" in opts or "--fail-with-body" in opts)
    if failed:
        say(f"curl: (22) The requested URL returned error: {status}\n")
    if "--head" in opts or "--include" in opts:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = (
            f"HTTP/1.1 {status} {phrase}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in result.headers.items())
            + "\r\n"
        )
        if "--output" not in opts:
            ctx.out(head)
    body_shown = (not failed or "--fail-with-body" in opts) and "--head" not in opts
    if body_shown and "--output" not in opts and "--remote-name" not in opts:
        ctx.out(result.body.decode("utf-8", errors="replace"))
    write_out(status, result.body, result.headers, elapsed)
    return 22 if failed else 0


# --------------------------------------------------------------------------------------
# wget

_WGET_SHORT_ARG = "OTtoaUeP"
_WGET_LONG_ARG = _words(
    "--connect-timeout --directory-prefix --dns-timeout --header --output-document "
    "--output-file --password --progress --read-timeout --timeout --tries --user "
    "--user-agent --wait --waitretry"
)
_WGET_FLAGS = _words(
    "--continue --inet4-only --no-cache --no-check-certificate --no-verbose --quiet "
    "--retry-connrefused --server-response --show-progress --spider --timestamping "
    "--verbose -4 -N -S -c -n -nv -q -v"
)


async def _wget(args: list[str], ctx: _Ctx) -> int:
    parsed = _getopt(args, _WGET_SHORT_ARG, _WGET_LONG_ARG)
    if isinstance(parsed, str):
        ctx.err(
            f"wget: option requires an argument -- '{parsed.lstrip('-')}'\n"
            "Usage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n"
        )
        return 2
    raw_opts, urls = parsed
    opts: dict[str, str] = {}
    for name, value in raw_opts:
        if name == "-n" and value == "":  # -nv arrives as -n, -v
            opts["--no-verbose"] = ""
            continue
        if (
            name not in _WGET_FLAGS
            and name not in _WGET_LONG_ARG
            and not (len(name) == 2 and name[1] in _WGET_SHORT_ARG)
        ):
            ctx.err(
                f"wget: unrecognized option '{name}'\n"
                "Usage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n"
            )
            return 2
        alias = {
            "-O": "--output-document",
            "-T": "--timeout",
            "-q": "--quiet",
            "-S": "--server-response",
        }.get(name, name)
        opts[alias] = value
    if "-v" in opts:  # -nv was split into -n -v
        opts.pop("-v")
    if not urls:
        ctx.err(
            "wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\n"
            "Try `wget --help' for more options.\n"
        )
        return 1
    status = 0
    for url in urls:
        status = await _wget_one(url, opts, ctx) or status
    return status


async def _wget_one(url: str, opts: dict[str, str], ctx: _Ctx) -> int:
    if "://" not in url:
        url = "http://" + url
    _, name, port = _split_url(url)
    log = _discard if "--quiet" in opts else ctx.err
    brief = "--no-verbose" in opts
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    timeout = _seconds(opts.get("--timeout", opts.get("--connect-timeout", "10")), 10.0)
    if not brief:
        if "--spider" in opts:
            log("Spider mode enabled. Check if remote file exists.\n")
        log(f"--{stamp}--  {url}\n")
    address = name
    is_ip = re.fullmatch(r"[\d.]+", name) is not None
    if not is_ip:
        resolved = ctx.net.resolve(name)
        if resolved is None or not re.fullmatch(r"[\d.]+", resolved):  # e.g. an RDS name
            if not brief:
                log(f"Resolving {name} ({name})... failed: Name or service not known.\n")
            log(f"wget: unable to resolve host address {_LQ}{name}{_RQ}\n")
            return 4
        address = resolved
        if not brief:
            log(f"Resolving {name} ({name})... {address}\n")
    target = f"{name}:{port}" if is_ip else f"{name} ({name})|{address}|:{port}"
    result = await ctx.net.http_get(
        ctx.host, url, verify_tls="--no-check-certificate" not in opts, timeout=timeout
    )
    if result.error == "resolve":
        log(f"wget: unable to resolve host address {_LQ}{name}{_RQ}\n")
        return 4
    if result.error != "tls" and (result.error or result.status is None):
        why = "Connection timed out" if result.error == "timeout" else "Connection refused"
        log(f"Connecting to {target}... failed: {why}.\n")
        if result.error == "timeout":
            log("Giving up.\n\n")
        return 4
    if not brief:
        log(f"Connecting to {target}... connected.\n")
    if result.error == "tls" or result.status is None:
        log(
            f"ERROR: cannot verify {name}'s certificate, issued by {_LQ}CN=Sandbox Root CA{_RQ}:\n"
            "  Unable to locally verify the issuer's authority.\n"
            f"To connect to {name} insecurely, use `--no-check-certificate'.\n"
        )
        return 5
    status = result.status
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    if not brief:
        log(f"HTTP request sent, awaiting response... {status} {phrase}\n")
    if "--server-response" in opts:
        log(
            f"  HTTP/1.1 {status} {phrase}\n"
            + "".join(f"  {k}: {v}\n" for k, v in result.headers.items())
        )
    if status >= 400:
        log(f"{stamp} ERROR {status}: {phrase}.\n\n")
        return 8
    size = len(result.body)
    if "--spider" in opts:
        if not brief:
            log(
                f"Length: {size} [text/html]\nRemote file exists and could contain further "
                "links,\nbut recursion is disabled -- not retrieving.\n\n"
            )
        return 0
    dest = opts.get("--output-document")
    if dest is None:
        dest = urlsplit(url).path.rsplit("/", 1)[-1] or "index.html"
    if dest == "-":
        ctx.out(result.body.decode("utf-8", errors="replace"))
    if brief:
        log(f'{stamp} URL:{url} [{size}/{size}] -> "{dest}" [1]\n')
    else:
        shown = "STDOUT" if dest == "-" else dest
        log(
            f"Length: {size} [text/html]\nSaving to: {_LQ}{shown}{_RQ}\n\n"
            f"     0K {' ' * 54} 100% 10.2M=0s\n\n"
            f"{stamp} (10.2 MB/s) - {_LQ}{dest}{_RQ} saved [{size}/{size}]\n\n"
        )
    return 0


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


# --------------------------------------------------------------------------------------
# dpkg, java


def _dpkg_status(name: str) -> str:
    pkg = PACKAGES[name]
    return (
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
        f"Section: {pkg.section.split('/')[-1]}\nInstalled-Size: {pkg.kb * 4}\n"
        "Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>\n"
        f"Architecture: {pkg.arch}\nVersion: {pkg.version}\n"
        + (f"Depends: {', '.join(pkg.depends.split())}\n" if pkg.depends else "")
        + f"Description: {_description(name)}\n"
    )


async def _dpkg(args: list[str], ctx: _Ctx) -> int:
    if args[:1] in (["-s"], ["--status"]):
        return await _dpkg_query(["-s", *args[1:]], ctx)
    if args[:1] in (["-l"], ["--list"]):
        return await _dpkg_query(["-l", *args[1:]], ctx)
    ctx.err(
        "dpkg: error: need an action option\n\nType dpkg --help for help about installing "
        "and deinstalling packages [*];\nUse 'apt' or 'aptitude' for user-friendly package "
        "management;\n"
    )
    return 2


_DPKG_FIELD = re.compile(r"\$\{([\w:-]+)(?:;-?\d+)?\}")


async def _dpkg_query(args: list[str], ctx: _Ctx) -> int:
    parsed = _getopt(args, "f", {"--showformat"})
    if isinstance(parsed, str) or not parsed[0]:
        ctx.err("dpkg-query: error: need an action option\n")
        return 2
    opts, names = parsed
    actions = [k for k, _ in opts if k in ("-s", "--status", "-W", "--show", "-l", "--list")]
    fmt = next((v for k, v in opts if k in ("-f", "--showformat")), "${Package}\t${Version}\n")
    fmt = fmt.removeprefix("=")  # `-f='${Status}'` reaches us as -f=${Status}
    action = actions[0] if actions else ""
    host = ctx.host
    if action in ("-l", "--list") and not names:
        names = sorted(host.packages | BASE_PACKAGES)
    status = 0
    rows: list[str] = []
    for name in names:
        if name not in PACKAGES or not _installed(host, name):
            if action in ("-s", "--status"):
                ctx.err(
                    f"dpkg-query: package '{name}' is not installed and no information "
                    "is available\nUse dpkg --info (= dpkg-deb --info) to examine archive "
                    "files.\n"
                )
            else:
                ctx.err(f"dpkg-query: no packages found matching {name}\n")
            status = 1
            continue
        pkg = PACKAGES[name]
        if action in ("-s", "--status"):
            ctx.out(_dpkg_status(name) + ("\n" if len(names) > 1 else ""))
        elif action in ("-W", "--show"):
            fields = {
                "Package": name,
                "Version": pkg.version,
                "Status": "install ok installed",
                "db:Status-Abbrev": "ii ",
                "Architecture": pkg.arch,
                "binary:Package": name,
            }
            text = fmt
            for key, value in fields.items():
                text = text.replace("${" + key + "}", value)
            text = _DPKG_FIELD.sub("", text)  # fields the sandbox does not know
            ctx.out(text.replace("\\n", "\n").replace("\\t", "\t"))
        else:
            rows.append(f"ii  {name:<22} {pkg.version:<27} {pkg.arch:<12} {_description(name)}\n")
    if rows:
        ctx.out(
            "Desired=Unknown/Install/Remove/Purge/Hold\n"
            "| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend\n"
            "|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)\n"
            f"||/ {'Name':<22} {'Version':<27} {'Architecture':<12} Description\n"
            f"+++-{'=' * 22}-{'=' * 27}-{'=' * 12}-{'=' * 40}\n" + "".join(rows)
        )
    return status


async def _java(args: list[str], ctx: _Ctx) -> int:
    if not any(a in ("-version", "--version") for a in args):
        ctx.err("Usage: java [options] <mainclass> [args...]\n")
        return 1
    if _installed(ctx.host, "openjdk-17-jre-headless"):
        build, date = "17.0.9+9-Ubuntu-122.04", '"17.0.9" 2023-10-17'
    else:
        build, date = "11.0.21+9-post-Ubuntu-0ubuntu122.04", '"11.0.21" 2023-10-17'
    sink = ctx.out if args[0] == "--version" else ctx.err
    sink(
        f"openjdk version {date}\nOpenJDK Runtime Environment (build {build})\n"
        f"OpenJDK 64-Bit Server VM (build {build}, mixed mode, sharing)\n"
    )
    return 0


# --------------------------------------------------------------------------------------
# Dispatch

_BUILTINS = {"cd", "exit", "export", "command", ":"}
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
