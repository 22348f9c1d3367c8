"""Small helpers and probes of the local start: ports, HTTP(S), env files, waiting."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks import waiting
from tasks.runtime.local.state import LocalError
from tasks.runtime.tcp_ports import port_problem


# -- small helpers -----------------------------------------------------------------------
def check_port(port: int, what: str, option: str, host: str = "127.0.0.1") -> None:
    problem = port_problem(host, port)
    if problem:
        raise LocalError(
            f"{what} port {port} on {host} is in use ({problem}); stop what uses it "
            f"or choose another with {option}"
        )


def http_json(url: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def wait_until(pred: Any, timeout_s: float, what: str, proc: subprocess.Popen[Any]) -> Any:
    """The first truthy `pred()`, polled while `proc` (the service started) runs."""

    def ready() -> Any:
        value = pred()
        if value:
            return value
        if proc.poll() is not None:
            raise LocalError(f"{what} exited with status {proc.returncode}")
        return None

    try:
        return waiting.wait_until(what, ready, timeout_s=timeout_s, poll_s=0.3)
    except waiting.WaitTimeout:
        raise LocalError(f"{what} not ready after {timeout_s:.0f}s") from None


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def probe_http(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read(4000).decode(errors="replace")
            served = re.search(r"\bi-[0-9a-f]{8,}\b", body)
            return f"HTTP {resp.status}" + (f" from instance {served.group(0)}" if served else "")
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except OSError as exc:
        return f"no answer ({exc})"


def probe_https(addr: str, host: str, ca: str, port: int = 443) -> str:
    try:
        ctx = ssl.create_default_context(cafile=ca or None)
        with (
            socket.create_connection((addr, port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            status = tls.recv(200).decode(errors="replace").split("\r\n", 1)[0]
            return status or "no answer"
    except (OSError, ssl.SSLError) as exc:
        return f"no answer ({exc})"


@contextlib.contextmanager
def signals_end_run() -> Iterator[None]:
    """SIGTERM (from `stop` or a supervisor) behaves like Ctrl-C."""

    def raise_interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
