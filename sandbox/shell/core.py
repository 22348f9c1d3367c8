"""What every command of the emulated shell shares: the per-command context (host, network,
environment, output sinks), the handler type, the shell's exceptions, and the option parser
curl, wget and dpkg-query use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ..hoststate import HostState, Network

Sink = Callable[[str], None]
_LQ, _RQ = "\u2018", "\u2019"  # the curly quotes GNU tools print around names


def _discard(_: str) -> None:
    pass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


StdinSource = str | Callable[[], Awaitable[str]]


class Stdin:
    """The command line's standard input: the text the client sent, up to its EOF.

    Read at most once, as a pipe is: the first reader gets everything, later readers get
    EOF. `source` is the text itself, or a coroutine function that waits for the client's
    EOF (the SSH server's reader). With no source, reading gets EOF at once.
    """

    def __init__(self, source: StdinSource = "") -> None:
        self._source: StdinSource | None = source

    async def read(self) -> str:
        source, self._source = self._source, None
        if source is None:
            return ""
        return source if isinstance(source, str) else await source()


@dataclass
class _Ctx:
    host: HostState
    net: Network
    env: dict[str, str]
    out: Sink
    err: Sink
    commands: Mapping[str, Handler]  # name -> handler, what PATH and the builtins offer
    root: bool = False
    stdin: Stdin = field(default_factory=Stdin)

    def but(self, **changes: object) -> _Ctx:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def user(self) -> str:
        return "root" if self.root else self.env.get("USER", self.host.login_user)


Handler = Callable[[list[str], _Ctx], Awaitable[int]]


class _ShellExit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class _ParseError(Exception):
    pass


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
