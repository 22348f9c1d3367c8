"""One host's SSH server: a raw accept loop (so security groups can drop a connection
before any banner is sent) handing admitted sockets to asyncssh.

Only the launch key pair's public key is accepted, for the configured login user. Each
`exec` request runs through the emulated shell, with the client's stdin (read up to its
EOF by the commands that read it); an injected fault may cut the connection in the middle
of a command, as a network drop would. Every command line sent is recorded in a
`CommandLog` (served at `GET /_sandbox/commands`), so tests can prove no secret is on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncssh

from .hoststate import HostState, Network
from .shell import run_command

log = logging.getLogger("sandbox.sshd")

# A client that sends neither data nor EOF on stdin for this long is taken to send nothing
# (a real host would wait for ever; the project's clients always send EOF).
STDIN_IDLE_S = 5.0


@dataclass(frozen=True)
class CommandRecord:
    """One exec request as the host received it (never its stdin)."""

    ip: str  # the host's public address
    instance_id: str
    user: str  # the SSH login user
    command: str
    time: str  # ISO 8601, UTC


class CommandLog:
    """Every command line the fleet's hosts were sent, in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CommandRecord] = []

    def add(self, record: CommandRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[dict[str, str]]:
        with self._lock:
            return [asdict(r) for r in self._records]


async def _read_stdin(process: asyncssh.SSHServerProcess[str]) -> str:
    """What the client sends on stdin, up to its EOF (see STDIN_IDLE_S)."""
    chunks: list[str] = []
    while True:
        try:
            chunk = await asyncio.wait_for(process.stdin.read(65536), STDIN_IDLE_S)
        except TimeoutError:
            log.debug("stdin: no EOF after %ss of silence; taken as EOF", STDIN_IDLE_S)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return "".join(chunks)


class _Server(asyncssh.SSHServer):
    def __init__(self, user: str, authorized: bytes | None, host: HostState) -> None:
        self.user = user
        self.authorized = authorized
        self.host = host

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = (
            username == self.user
            and self.authorized is not None
            and key.public_data == self.authorized
        )
        if ok:
            self.host.ssh_logins += 1
        return ok


class HostSshd:
    """Listens on `<public_ip>:<port>` for one host until `close()`."""

    def __init__(
        self,
        host: HostState,
        net: Network,
        host_key: asyncssh.SSHKey,
        public_key: str | None,
        user: str,
        port: int,
        admit: Callable[[str], bool],
        hold_seconds: float,
        commands: CommandLog | None = None,
    ) -> None:
        self.host = host
        self.commands = commands
        self.net = net
        self.admit = admit
        self.hold_seconds = hold_seconds
        authorized = asyncssh.import_public_key(public_key).public_data if public_key else None
        self.options = asyncssh.SSHServerConnectionOptions(
            server_factory=lambda: _Server(user, authorized, host),
            server_host_keys=[host_key],
            process_factory=self._process,
            allow_scp=False,
            keepalive_interval=0,
            login_timeout=30,
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host.public_ip, port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.accept_task = asyncio.get_running_loop().create_task(self._accept())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except (OSError, asyncio.CancelledError):
                return
            conn.setblocking(False)
            if self.admit(addr[0]):
                self._spawn(self._serve(conn))
            else:
                self._spawn(self._hold(conn))

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await asyncssh.run_server(conn, options=self.options)
        except (OSError, asyncssh.Error) as exc:
            log.debug("ssh %s: %s", self.host.instance_id, exc)
            conn.close()

    async def _hold(self, conn: socket.socket) -> None:
        """A dropped packet: the client hears nothing until it gives up."""
        try:
            await asyncio.sleep(self.hold_seconds)
        finally:
            conn.close()

    async def _process(self, process: asyncssh.SSHServerProcess[str]) -> None:
        command = process.command
        if not command:
            process.stderr.write("sandbox: interactive shells are not supported\n")
            process.exit(1)
            return
        if self.commands is not None:
            self.commands.add(
                CommandRecord(
                    ip=self.host.public_ip,
                    instance_id=self.host.instance_id,
                    user=str(process.get_extra_info("username", "")),
                    command=command,
                    time=datetime.now(UTC).isoformat(timespec="milliseconds"),
                )
            )
        env = {str(k): str(v) for k, v in (process.env or {}).items()}
        run = asyncio.ensure_future(
            run_command(
                command,
                env,
                self.host,
                self.net,
                process.stdout.write,
                process.stderr.write,
                lambda: _read_stdin(process),
            )
        )
        if self.host.faults.drops_connection():
            # cut the connection part-way through, like a network drop
            await asyncio.wait({run}, timeout=self.host.rng.uniform(0.0, 0.2))
            run.cancel()
            with contextlib.suppress(BaseException):
                await run
            process.channel.get_connection().abort()
            return
        try:
            status = await run
        except Exception as exc:  # an emulator bug must not look like a dropped host
            log.exception("shell failed on %s", self.host.instance_id)
            process.stderr.write(f"sandbox shell error: {exc}\n")
            status = 255
        process.exit(status)

    async def close(self) -> None:
        self.accept_task.cancel()
        self.sock.close()
        for task in list(self.tasks):
            task.cancel()
