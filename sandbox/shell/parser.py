"""Parsing and running one command line: lists (`&&`, `||`, `;`), leading `VAR=value`
assignments, output redirections, and the lookup of a command name (PATH directories,
builtins, commands that exist only once their package is installed).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .core import Handler, Sink, _Ctx, _discard, _ParseError
from .packages import _COMMAND_PACKAGES, _installed

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

_BUILTINS = {"cd", "exit", "export", "command", ":"}


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
    handler = _lookup(words[0], ctx)
    if handler is None:
        name = words[0]
        why = "No such file or directory" if "/" in name else "command not found"
        ctx.err(f"bash: line 1: {name}: {why}\n")
        return 127
    if assigns:
        ctx = ctx.but(env={**ctx.env, **assigns})
    return await handler(words[1:], ctx)


def _lookup(name: str, ctx: _Ctx) -> Handler | None:
    if "/" in name:
        if not name.startswith(_BIN_DIRS):
            return None
        name = name.rsplit("/", 1)[1]
        if name in _BUILTINS:
            return None
    handler = ctx.commands.get(name)
    needs = _COMMAND_PACKAGES.get(name)
    if handler is None or (needs and not any(_installed(ctx.host, p) for p in needs)):
        return None
    return handler
