"""What the product did, one line each, and a stage's one-line summary of it.

The AWS find/ensure/delete functions say what they found, created, changed or deleted
(`found`, `unchanged`, `created`, `changed`, `deleted`, and for teardown `gone`, `kept`,
`failed`); every wait reports itself (`tasks.waiting.wait_until` and
`tasks.aws.client.RetryingClient.wait` call `waited`), and so does every back-off retry
(`tasks.aws.retry` calls `retried`); a stage adds what it concluded with `result`.

Plain Python logging, no Prefect. A line goes to the `tomcat_fleet.actions` logger, or,
while a `recording` is open, to that recording's `sink` (the stage's task-run logger:
`tasks/deploy/stages/room.py` and the teardown flow open one), and is kept in the
recording, so the stage can say in one line what it did (`ActionLog.summary`: the deploy
report's `detail`). The recording is found through a context variable: the thread a stage
runs in, and every thread it starts with `contextvars.copy_context().run` (as
`tasks.remote.group` does), report to it. Prefect's run logger carries its run's ids on
every record, so a line sent through it from such a thread is filed under the right run.

Waits and retries outside any recording (a CLI starting its server, a test calling a
function directly) are logged at DEBUG: they belong to no stage. Lines name resources and
ids, never key material or passwords: pass none in.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

LOGGER = logging.getLogger("tomcat_fleet.actions")
SUMMARY_MAX = 300  # characters of `ActionLog.summary`
KEEP_MAX = 5000  # actions a recording keeps (every one is logged; the summary counts all)


@dataclass(frozen=True)
class Action:
    """One thing done: `verb` (found, unchanged, created, changed, deleted, gone, kept,
    failed, waited, retried, result) on a resource of `kind`, with its `ident` (id or ARN),
    `name` and `why`; waits and retries carry `seconds`."""

    verb: str
    kind: str
    ident: str = ""
    name: str = ""
    why: str = ""
    seconds: float = 0.0
    ok: bool = True

    @property
    def label(self) -> str:
        """`name (id)`, or whichever of the two there is."""
        if self.name and self.ident and self.name != self.ident:
            return f"{self.name} ({self.ident})"
        return self.name or self.ident

    @property
    def short(self) -> str:
        """The name, else the id: what a summary shows."""
        return self.name or self.ident

    def line(self) -> str:
        why = f": {self.why}" if self.why else ""
        what = f"{self.kind} {self.label}".strip()
        if self.verb == "unchanged":
            return f"found {what}, unchanged{why}"
        if self.verb == "gone":
            return f"{what} already gone{why}"
        if self.verb == "failed":
            return f"failed: {what}{why}"
        if self.verb == "waited":
            return f"waited {self.seconds:.1f}s for {self.kind}: {self.why}"
        if self.verb == "retried":
            return f"retry {self.name} of {self.kind} in {self.seconds:.2f}s after {self.ident}"
        if self.verb == "result":
            return self.why
        return f"{self.verb} {what}{why}"


class ActionLog:
    """The actions of one recording (a stage, a teardown); thread-safe. Actions are also
    added to the recording it is nested in (`parent`)."""

    def __init__(self, sink: Any = None, parent: ActionLog | None = None) -> None:
        self.sink = sink  # a logging.Logger or LoggerAdapter; None: the module's logger
        self.parent = parent
        self.actions: list[Action] = []
        self.counts: Counter[str] = Counter()  # by verb, every action (kept or not)
        self._lock = threading.Lock()

    def add(self, action: Action) -> None:
        with self._lock:
            self.counts[action.verb] += 1
            if len(self.actions) < KEEP_MAX:
                self.actions.append(action)
        if self.parent is not None:
            self.parent.add(action)

    def of(self, *verbs: str) -> list[Action]:
        with self._lock:
            return [a for a in self.actions if a.verb in verbs]

    def summary(self, limit: int = SUMMARY_MAX) -> str:
        """One line: what it concluded, then what it failed on, created, changed, deleted,
        found gone or left, how long it waited, its retries and what it found as it was;
        cut at `limit` characters."""
        parts = [a.why for a in self.of("result")]
        for verb, title in (
            ("failed", "failed"),
            ("created", "created"),
            ("changed", "changed"),
            ("deleted", "deleted"),
            ("gone", "already gone"),
            ("kept", "kept"),
        ):
            if self.counts[verb]:
                parts.append(f"{title} {_listing(self.of(verb), self.counts[verb])}")
        waits = self.of("waited")
        if waits:
            parts.append(_waits(waits))
        retries = self.of("retried")
        if retries:
            codes = Counter(a.ident for a in retries)
            slept = sum(a.seconds for a in retries)
            text = ", ".join(f"{c} x{n}" for c, n in codes.most_common())
            n = self.counts["retried"]
            parts.append(f"{n} {'retry' if n == 1 else 'retries'} ({text}; {slept:.1f}s)")
        found = self.of("found", "unchanged")
        if found:
            total = self.counts["found"] + self.counts["unchanged"]
            parts.append(f"found {_listing(found, total)}")
        text = "; ".join(p for p in parts if p)
        return text if len(text) <= limit else text[: limit - 1] + "…"


def _plural(kind: str) -> str:
    if kind.endswith("s"):
        return kind
    if kind.endswith("y") and kind[-2:-1] not in ("a", "e", "o", "u"):
        return kind[:-1] + "ies"
    return kind + "s"


def _listing(actions: list[Action], total: int) -> str:
    """`target group tg, 2 security groups, 4 instances`: by kind, in order of appearance,
    each resource once."""
    by_kind: dict[str, dict[str, str]] = {}  # kind -> id (else name) -> what is shown
    for a in actions:
        by_kind.setdefault(a.kind, {}).setdefault(a.ident or a.name, a.short)
    parts = [
        f"{kind} {next(iter(seen.values()))}".strip()
        if len(seen) == 1
        else f"{len(seen)} {_plural(kind)}"
        for kind, seen in by_kind.items()
    ]
    more = total - len(actions)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _waits(waits: list[Action]) -> str:
    """`waited 6.7s in 2 waits, longest 4 target(s) of tg to be healthy (6.2s)`, and every
    wait that was not done."""
    total = sum(a.seconds for a in waits)
    longest = max(waits, key=lambda a: a.seconds)
    text = f"waited {total:.1f}s"
    if len(waits) > 1:
        text += f" in {len(waits)} waits, longest {longest.kind} ({longest.seconds:.1f}s)"
    else:
        text += f" for {longest.kind}"
    late = [f"{a.kind} ({a.seconds:.1f}s)" for a in waits if not a.ok]
    return text + (f"; not done: {', '.join(late)}" if late else "")


_CURRENT: contextvars.ContextVar[ActionLog | None] = contextvars.ContextVar(
    "tomcat_fleet_actions", default=None
)


def current() -> ActionLog | None:
    """The open recording of this context, if any."""
    return _CURRENT.get()


@contextlib.contextmanager
def recording(sink: Any = None) -> Iterator[ActionLog]:
    """Keep this context's actions (and those of the threads it starts with a copy of its
    context) in a new `ActionLog`, and send their lines to `sink` (default: the sink of the
    recording this one is nested in, else the `tomcat_fleet.actions` logger)."""
    parent = _CURRENT.get()
    log = ActionLog(sink if sink is not None else (parent.sink if parent else None), parent)
    token = _CURRENT.set(log)
    try:
        yield log
    finally:
        _CURRENT.reset(token)


def record(action: Action, level: int = logging.INFO) -> None:
    """Log `action`'s line (to the open recording's sink, else the module's logger) and keep
    it in the open recording."""
    log = _CURRENT.get()
    if log is not None:
        log.add(action)
    target = log.sink if log is not None and log.sink is not None else LOGGER
    with contextlib.suppress(Exception):  # a log line never fails the work it reports
        target.log(level, "%s", action.line())


# -- what a find/ensure/delete function says ---------------------------------------------
def found(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    """An existing resource the caller uses (it may change it next: see `changed`)."""
    record(Action("found", kind, ident, name, why))


def unchanged(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    """An existing resource already as wanted: nothing sent."""
    record(Action("unchanged", kind, ident, name, why))


def created(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    record(Action("created", kind, ident, name, why))


def changed(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    """An existing resource modified; `why` says what changed (and what it was)."""
    record(Action("changed", kind, ident, name, why))


def deleted(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    record(Action("deleted", kind, ident, name, why))


def gone(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    """A resource to delete that no longer exists."""
    record(Action("gone", kind, ident, name, why))


def kept(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    """A resource left in place on purpose (not ours, still used by another)."""
    record(Action("kept", kind, ident, name, why), logging.WARNING)


def failed(kind: str, ident: str = "", name: str = "", why: str = "") -> None:
    """A resource the work could not handle; `why` holds the error."""
    record(Action("failed", kind, ident, name, why, ok=False), logging.ERROR)


def result(text: str, kind: str = "") -> None:
    """What the stage concluded, in its own words (first in its summary)."""
    record(Action("result", kind, why=text))


# -- what the wait helper and the retry loop say ------------------------------------------
def _quiet(level: int) -> int:
    """Waits and retries outside any recording belong to no stage: DEBUG."""
    return level if _CURRENT.get() is not None else logging.DEBUG


def waited(what: str, seconds: float, outcome: str, ok: bool = True) -> None:
    """One wait: what for, how long it took, how it ended (`done ...`, `not done ...`)."""
    what = what.removeprefix("waiting for ")
    level = logging.INFO if ok else logging.WARNING
    record(Action("waited", what, why=outcome, seconds=max(0.0, seconds), ok=ok), _quiet(level))


def retried(
    operation: str, code: str, delay: float, attempt: int, retries: int, *, throttled: bool
) -> None:
    """One back-off retry of `operation` after error `code`, sleeping `delay` seconds first
    (retry `attempt` of at most `retries`); throttling at INFO, other errors at WARNING."""
    level = logging.INFO if throttled else logging.WARNING
    record(
        Action("retried", operation, ident=code, name=f"{attempt}/{retries}", seconds=delay),
        _quiet(level),
    )
