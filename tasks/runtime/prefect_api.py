"""Where flow runs report: an existing Prefect API, or one local server started for the run.

Process-pool workers are new processes; without an API URL each would start its own
temporary server. So a CLI run without PREFECT_API_URL starts exactly one
`prefect server start` (SQLite) for itself, points every child at it, and stops it after.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

from sandbox.ports import free_port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def prefect_api(timeout_s: float = 90.0) -> Iterator[tuple[str, int | None]]:
    """Yield (API URL, pid of the server we started or None); start a local server only
    when none is configured."""
    os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
    existing = os.environ.get("PREFECT_API_URL")
    if existing:
        yield existing, None
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    home = os.environ.get("PREFECT_HOME") or tempfile.mkdtemp(prefix="prefect-home-")
    fd, log_path = tempfile.mkstemp(prefix="prefect-server-", suffix=".log")
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=fd,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"local Prefect server did not start; see {log_path}")
            time.sleep(0.3)
        os.environ["PREFECT_API_URL"] = url
        yield url, proc.pid
    finally:
        os.close(fd)
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
