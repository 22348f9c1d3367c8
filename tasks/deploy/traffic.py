"""The traffic generator of the traffic stages (6, 10 and 11, each in its room under
tasks/deploy/stages/): an instance of the deployment that sends real HTTP(S) requests.

The requests leave from the generator (an EC2 instance of this deployment, role
`traffic`), not from the controller: it runs plain `curl` over one SSH connection, so the
same commands work on either recipe's image (Ubuntu 22.04's curl, Amazon Linux 2023's
curl-minimal) and on the sandbox's emulated shell. Every wait is
bounded; the SSH key only travels inside a `SecretStr`.
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from blocks.settings import FleetSettings

from .. import actions
from ..aws import Aws
from ..aws.ec2 import (
    StageError,
    ensure_role_instance,
)
from ..models import Instance
from ..remote.config import HostInstallConfig, remote_config
from ..remote.connection import Connection, RemoteError
from ..waiting import WaitTimeout, wait_until
from .models import TrafficResult

ROLE = "traffic"
CURL_MAX_TIME_S = 10
URLS_PER_COMMAND = 20  # one `curl` invocation fetches this many URLs in turn
MAX_RECONNECTS = 3
WARMUP_POLL_S = 2.0

_INSTANCE_ID = re.compile(r"\bi-[0-9a-f]{8,17}\b")
_EB_ENVIRONMENT = re.compile(r"Elastic Beanstalk environment ([A-Za-z0-9][A-Za-z0-9-]*)")


# --------------------------------------------------------------------------------------
# Sending requests from the generator


@dataclass
class _Answer:
    url: str
    code: int  # 0: no HTTP answer (resolve, connect, TLS or timeout failure)
    backend: str | None


@dataclass
class _Batch:
    answers: list[_Answer] = field(default_factory=list)
    stderr: str = ""


def backend_of(body: str) -> str | None:
    """Which server answered: an instance id in the page, else a Beanstalk environment."""
    m = _INSTANCE_ID.search(body)
    if m:
        return m.group(0)
    m = _EB_ENVIRONMENT.search(body)
    return f"eb:{m.group(1)}" if m else None


def _curl_command(urls: list[str], marker: str, max_time: float) -> str:
    """One curl fetching `urls` in turn; after each body it prints `marker<code>marker`
    on a line of its own (000 when there was no HTTP answer). Real curl on Ubuntu and
    Amazon Linux 2023 and the sandbox's shell all understand it."""
    write_out = "\\n" + marker + "%{http_code}" + marker + "\\n"
    return " ".join(
        [
            "curl",
            "-sS",
            "--max-time",
            f"{max_time:g}",
            "-w",
            shlex.quote(write_out),
            *(shlex.quote(u) for u in urls),
        ]
    )


def _parse(stdout: str, urls: list[str], marker: str) -> list[_Answer]:
    pattern = re.compile(re.escape(marker) + r"(\d{3})" + re.escape(marker))
    answers: list[_Answer] = []
    start = 0
    for m in pattern.finditer(stdout):
        if len(answers) == len(urls):
            break
        body = stdout[start : m.start()]
        code = int(m.group(1))
        url = urls[len(answers)]
        answers.append(_Answer(url, code, backend_of(body) if code == 200 else None))
        start = m.end()
    return answers


class _Generator:
    """One SSH session to the generator (reconnected a bounded number of times)."""

    def __init__(self, inst: Instance, cfg: HostInstallConfig) -> None:
        self.inst = inst
        self.cfg = cfg
        self.conn = Connection(inst.public_ip, cfg, instance_id=inst.instance_id)
        self.reconnects = 0

    def __enter__(self) -> _Generator:
        self._connect()
        return self

    def __exit__(self, *_: object) -> None:
        self.conn.close()

    def _connect(self) -> None:
        try:
            self.conn.open()
        except RemoteError as exc:
            raise StageError(
                f"traffic generator {self.inst.instance_id} ({self.inst.public_ip}): {exc}"
            ) from None

    def fetch(self, urls: list[str], max_time: float = CURL_MAX_TIME_S) -> _Batch:
        """GET each of `urls` once (in order); answers for those that ran."""
        out = _Batch()
        for i in range(0, len(urls), URLS_PER_COMMAND):
            batch = urls[i : i + URLS_PER_COMMAND]
            marker = f"__traffic_{uuid.uuid4().hex[:12]}__"
            command = _curl_command(batch, marker, max_time)
            timeout = len(batch) * (max_time + 2) + 15
            while True:
                res = self.conn.run(command, timeout=timeout)
                if res.status is not None:
                    break
                if self.reconnects >= MAX_RECONNECTS:
                    raise StageError(
                        f"traffic generator {self.inst.instance_id}: {res.error} "
                        f"(after {self.reconnects} reconnects)"
                    )
                self.reconnects += 1
                self.conn.close()
                self._connect()
            if res.status == 127:
                raise StageError(
                    f"traffic generator {self.inst.instance_id} has no curl: "
                    f"{_last_line(res.stderr)}"
                )
            answers = _parse(res.stdout, batch, marker)
            answers += [_Answer(u, 0, None) for u in batch[len(answers) :]]
            out.answers += answers
            if res.stderr.strip():
                out.stderr = res.stderr
        return out


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _summarise(
    inst: Instance, target: str, answers: Iterable[_Answer]
) -> tuple[TrafficResult, dict[str, set[str]]]:
    by_scheme: dict[str, dict[str, int]] = {}
    backends: dict[str, set[str]] = {}
    requests = ok = 0
    for a in answers:
        scheme = urlsplit(a.url).scheme or "http"
        counts = by_scheme.setdefault(scheme, {"requests": 0, "ok": 0, "distinct": 0})
        seen = backends.setdefault(scheme, set())
        counts["requests"] += 1
        requests += 1
        if a.code == 200:
            counts["ok"] += 1
            ok += 1
            if a.backend:
                seen.add(a.backend)
        counts["distinct"] = len(seen)
    everyone = set().union(*backends.values()) if backends else set()
    result = TrafficResult(
        target=target,
        requests=requests,
        ok=ok,
        distinct_backends=len(everyone),
        by_scheme=by_scheme,
        generator_instance_id=inst.instance_id,
    )
    return result, backends


def _repeat(urls: list[str], requests_per_url: int) -> list[str]:
    """Each URL's requests back to back (a balancer's rotation is then seen per URL)."""
    return [u for u in urls for _ in range(requests_per_url)]


def send_requests(
    inst: Instance, cfg: HostInstallConfig, urls: list[str], requests_per_url: int
) -> TrafficResult:
    """From the generator `inst`, GET every URL `requests_per_url` times over one SSH
    connection; count 200s and distinct backends per scheme."""
    with _Generator(inst, cfg) as gen:
        batch = gen.fetch(_repeat(urls, requests_per_url))
    return _summarise(inst, ", ".join(urls), batch.answers)[0]


def _warm_up(gen: _Generator, urls: list[str], timeout_s: float) -> None:
    """Until each URL has answered 200 once (listeners and DNS records take a while to
    appear, on AWS as in the sandbox); StageError naming the URL and curl's last word."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    last: dict[str, str] = {}

    def all_answered() -> bool:
        remaining = deadline - time.monotonic()
        batch = gen.fetch(pending, max_time=max(1.0, min(CURL_MAX_TIME_S, remaining)))
        for a in batch.answers:
            if a.code == 200:
                pending.remove(a.url)
            else:
                last[a.url] = (
                    f"HTTP {a.code}" if a.code else _last_line(batch.stderr) or "no answer"
                )
        return not pending

    what = f"{', '.join(urls)} to answer 200 from generator {gen.inst.instance_id}"
    try:
        wait_until(what, all_answered, poll_s=WARMUP_POLL_S, deadline=deadline, jitter=0.0)
    except WaitTimeout:
        why = "; ".join(f"{u}: {last.get(u, 'no answer')}" for u in pending)
        raise StageError(
            f"no 200 answer within {timeout_s:.0f}s from the traffic generator "
            f"{gen.inst.instance_id}: {why}"
        ) from None


def traffic_check(
    aws: Aws,
    settings: FleetSettings,
    key_pem: str,
    urls: list[str],
    timeout_s: float,
    *,
    target: str | None = None,
) -> TrafficResult:
    """Generator up, each URL answering, then settings.traffic_requests GETs per URL;
    StageError if a scheme got no 200 at all."""
    inst, _ = ensure_role_instance(aws, settings, ROLE, timeout_s=timeout_s)
    cfg = remote_config(settings, key_pem)
    with _Generator(inst, cfg) as gen:
        _warm_up(gen, urls, timeout_s)
        batch = gen.fetch(_repeat(urls, settings.traffic_requests))
    result, _ = _summarise(inst, target or ", ".join(urls), batch.answers)
    schemes = ", ".join(
        f"{s} {c['ok']}/{c['requests']} from {c['distinct']}" for s, c in result.by_scheme.items()
    )
    actions.result(
        f"{result.target}: {result.ok}/{result.requests} answered 200 from "
        f"{result.distinct_backends} instance(s) ({schemes})"
    )
    dead = [s for s, c in result.by_scheme.items() if c["ok"] == 0]
    if dead:
        codes = Counter(f"{a.code:03d}" for a in batch.answers if a.code != 200)
        seen = ", ".join(f"{code} x{n}" for code, n in sorted(codes.items()))
        raise StageError(
            f"no 200 answer over {', '.join(dead)} from {result.target} "
            f"({result.ok}/{result.requests} ok; other answers: {seen or 'none'}; "
            f"curl's last error: {_last_line(batch.stderr)})"
        )
    return result
