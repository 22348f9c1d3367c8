"""Where flow runs report: an existing Prefect API, or a local server of our own.

Two shapes, neither importing Prefect:

* `prefect_api()`: for a test session or a benchmark driver, one `prefect server start`
  (SQLite, a temporary home) for the context, every child pointed at it, stopped after.
* `LocalServer`: for the `tomcat-fleet` CLI, ONE server reused across runs, started once
  under the project's state directory (`.tomcat-fleet/prefect`, or
  `TOMCAT_FLEET_PREFECT_DIR`), recorded in `server.json`, stopped with
  `tomcat-fleet server stop`. `plan()` fixes its URL (and sets PREFECT_API_URL) before
  Prefect is imported, since Prefect reads its settings once, at import; `ensure()` starts
  it only when a command really runs a flow.

`flush_prefect()` sends the log and event workers' queues while the server is still up, so
no run ends with "Error logging to API".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tasks.runtime.tcp_ports import free_port
from tasks.waiting import WaitTimeout, wait_until

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def server_command(port: int) -> list[str]:
    """`prefect server start` on 127.0.0.1:`port`, in this interpreter, its database
    migrated beside its imports (`tasks.runtime.prefect_server_main`)."""
    return [
        sys.executable,
        "-m",
        "tasks.runtime.prefect_server_main",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _start(port: int, home: str, log: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # no UI, so no block catalogue to fill: a block type is registered when a block of
        # it is saved. Registering every installed one took about 1 s of a new home's start.
        "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    }
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        server_command(port),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: str) -> None:
    failed = f"local Prefect server did not start; see {log}"

    def up() -> bool:
        if _healthy(url):
            return True
        if proc.poll() is not None:
            raise RuntimeError(failed)
        return False

    try:
        wait_until("the local Prefect server", up, timeout_s=timeout_s, poll_s=0.3)
    except WaitTimeout:
        raise RuntimeError(failed) from None


def flush_prefect(timeout_s: float = 10.0) -> None:
    """Send what Prefect's log and event workers still hold (no-op if Prefect is not loaded)."""
    if "prefect" not in sys.modules:
        return
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout_s)


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
    proc = _start(port, home, fd)
    try:
        _wait_healthy(url, proc, timeout_s, log_path)
        os.environ["PREFECT_API_URL"] = url
        yield url, proc.pid
    finally:
        flush_prefect()
        os.close(fd)
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


class LocalServer:
    """The CLI's one reusable Prefect server (see the module docstring)."""

    def __init__(self, home: Path | None = None) -> None:
        if home is None:
            from blocks.settings import RuntimeSettings

            home = Path(RuntimeSettings().prefect_dir or PROJECT_DIR / ".tomcat-fleet/prefect")
        self.home = Path(home).resolve()
        self.file = self.home / "server.json"
        self.log = self.home / "server.log"
        self._launched: subprocess.Popen[bytes] | None = None

    def _record(self) -> dict[str, int | str]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _alive(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def running(self) -> tuple[str, int] | None:
        """(URL, pid) of our server if it is up and healthy."""
        rec = self._record()
        url, pid = rec.get("url"), rec.get("pid")
        if isinstance(url, str) and isinstance(pid, int) and self._alive(pid) and _healthy(url):
            return url, pid
        return None

    def plan(self) -> str | None:
        """Fix the API URL this process will use, without starting anything: an existing
        PREFECT_API_URL (returns None: not ours), else our server's (recorded, or a free port
        chosen now). Call before Prefect is imported."""
        os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
        if os.environ.get("PREFECT_API_URL"):
            return None
        rec = self._record()
        url, pid = rec.get("url"), rec.get("pid")
        if not (isinstance(url, str) and isinstance(pid, int) and pid > 0 and self._alive(pid)):
            url = f"http://127.0.0.1:{free_port()}/api"
        os.environ["PREFECT_API_URL"] = url
        return url

    def launch(self, url: str) -> subprocess.Popen[bytes] | None:
        """Start our server at `url` (planned) unless it is up, without waiting for it
        (no thread either): the caller goes on with its own start while the server
        starts (a new home migrates its database). `ensure` waits for it."""
        if self._launched is not None:
            return self._launched
        up = self.running()
        if up and up[0] == url:
            return None
        self.home.mkdir(parents=True, exist_ok=True)
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        with open(self.log, "ab") as log:
            proc = _start(port, str(self.home), log.fileno())
        self.file.write_text(json.dumps({"url": url, "pid": proc.pid, "port": port}))
        self._launched = proc
        return proc

    def ensure(self, url: str, timeout_s: float = 120.0) -> tuple[str, int, bool]:
        """Our server at `url` (planned), started if it is not up: (url, pid, started)."""
        proc = self.launch(url)
        if proc is None:
            up = self.running()
            assert up is not None
            return url, up[1], False
        _wait_healthy(url, proc, timeout_s, str(self.log))
        return url, proc.pid, True

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Stop our server (its whole process group); the pid stopped, or None."""
        rec = self._record()
        pid = rec.get("pid")
        with contextlib.suppress(FileNotFoundError):
            self.file.unlink()
        if not isinstance(pid, int) or not self._alive(pid):
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)

        def gone() -> bool:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return not self._alive(pid)

        with contextlib.suppress(WaitTimeout):  # then it is killed
            wait_until(f"Prefect server {pid} to stop", gone, timeout_s=timeout_s, poll_s=0.2)
        if self._alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        return pid
