"""One SSH connection to one host (Fabric's `Connection` is the model), over paramiko.

`Connection(host, config)` waits for SSH with a jittered back-off (a booting host refuses,
resets or sends no banner for a while), verifies the host key with the configured policy,
and runs commands with a bounded wait for the exit status, reading output as it goes so a
chatty command never stalls on a full SSH window. It is a context manager, and can be
closed and opened again (a new session on the same object).

Secrets (the private key, plus any `secrets=` given) are redacted from every error message
and exception that leaves this module; `redact` (also `Connection.redact`) is the one
helper for it, which callers use on the output they log or raise.
"""

from __future__ import annotations

import io
import random
import shlex
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import paramiko

from tasks.backoff import backoff_delay
from tasks.errors import FleetError
from tasks.remote.config import HostInstallConfig
from tasks.remote.host_keys import HostKeyRejected, make_policy

REDACTED = "[redacted]"
_MIN_KEY_LINE = 16  # shorter lines of a multi-line secret are too common to be a leak
_DRAIN_AFTER_EXIT_S = 5.0  # bound on reading output that trails the exit status


class RemoteError(FleetError, RuntimeError):
    """A host could not be reached or refused us; the message is the (redacted) reason."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `[redacted]`: each secret as it is, shell-quoted,
    and (for a multi-line secret such as a private key) each of its lines of 16 or more
    characters that is not a `-----BEGIN/END-----` armour line."""
    if not text:
        return text
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms.update((secret, shlex.quote(secret)))
        if "\n" in secret.strip():
            for line in secret.splitlines():
                line = line.strip()
                if len(line) >= _MIN_KEY_LINE and "-----" not in line:
                    forms.add(line)
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def load_private_key(pem: str) -> paramiko.PKey:
    """An RSA, Ed25519 or ECDSA private key from its PEM/OpenSSH text (unencrypted)."""
    for cls in (paramiko.RSAKey, paramiko.Ed25519Key, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(pem))
        except Exception:  # wrong type or encrypted: try the next one
            continue
    raise ValueError("unsupported or encrypted private key") from None


@dataclass
class Result:
    """What one command did. `status` is None when there is no exit status (the connection
    was lost or the command outlived its timeout); `error` then says why."""

    status: int | None
    stdout: str
    stderr: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def failed(self) -> bool:
        return self.status != 0


def describe(exc: BaseException) -> str:
    """A short reason from an exception: `Type: text`, or `timed out`."""
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return f"{name}: {text}" if text else name


def _drain(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    while chan.recv_ready():
        data = chan.recv(65536)
        if not data:
            break
        out += data
    while chan.recv_stderr_ready():
        data = chan.recv_stderr(65536)
        if not data:
            break
        err += data


class Connection:
    """An SSH connection to `host` as `config.ssh_user` on `config.ssh_port`.

    `instance_id` names the host for the host-key policy (TOFU entries and console
    fingerprints are keyed by instance id, not address); it defaults to `host`.
    `wait_s` bounds the wait for SSH (default `config.ssh_wait_s`); `stop`, when set,
    cancels the wait (RemoteError "cancelled"). `open` is implicit on the first `run`.
    """

    def __init__(
        self,
        host: str,
        config: HostInstallConfig,
        *,
        instance_id: str | None = None,
        wait_s: float | None = None,
        stop: threading.Event | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.host = host
        self.config = config
        self.instance_id = instance_id or host
        self.wait_s = config.ssh_wait_s if wait_s is None else wait_s
        self.stop = stop or threading.Event()
        self.secrets = [*([config.private_key()] if config.key_pem else []), *secrets]
        self.client: paramiko.SSHClient | None = None
        self._pkey: paramiko.PKey | None = None
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"<Connection {self.config.ssh_user}@{self.host}:{self.config.ssh_port}>"

    # -- context manager ------------------------------------------------------------
    def __enter__(self) -> Connection:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def is_connected(self) -> bool:
        return self.client is not None

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def backoff(self, n: int) -> float:
        """The jittered back-off before retry `n` (0-based), from the config."""
        base, cap = self.config.backoff_base_s, self.config.backoff_cap_s
        return backoff_delay(n, base=base, cap=cap, jitter=base, rng=self._rng)

    # -- wait for SSH ------------------------------------------------------------------
    def open(self, wait_s: float | None = None) -> None:
        """Connect (no-op when connected), retrying until `wait_s` (default: this
        connection's); RemoteError with the reason when the host stays unreachable,
        refuses our key or offers a host key the policy rejects."""
        if self.client is not None:
            return
        try:
            self._open(self.wait_s if wait_s is None else wait_s)
        except RemoteError as exc:
            raise RemoteError(self.redact(str(exc))) from None

    def load_key(self) -> paramiko.PKey:
        """The private key, parsed once; RemoteError if it is not a usable key."""
        if self._pkey is None:
            try:
                self._pkey = load_private_key(self.config.private_key())
            except ValueError as exc:
                raise RemoteError(f"ssh: {exc}") from None
        return self._pkey

    def _open(self, wait_s: float) -> None:
        cfg = self.config
        pkey = self.load_key()
        started = time.monotonic()
        tries, last = 0, "no attempt"
        while True:
            if self.stop.is_set():
                raise RemoteError("cancelled")
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(
                make_policy(
                    cfg.host_key_policy,
                    instance_id=self.instance_id,
                    expected=cfg.expected_fingerprints.get(self.instance_id),
                    known_hosts_path=cfg.known_hosts_path,
                )
            )
            try:
                client.connect(
                    self.host,
                    port=cfg.ssh_port,
                    username=cfg.ssh_user,
                    pkey=pkey,
                    timeout=cfg.connect_timeout_s,
                    banner_timeout=cfg.connect_timeout_s,
                    auth_timeout=cfg.connect_timeout_s,
                    look_for_keys=False,
                    allow_agent=False,
                )
                self.client = client
                return
            except BaseException as exc:
                client.close()
                last = self._connect_error(exc)
            tries += 1
            elapsed = time.monotonic() - started
            remaining = wait_s - elapsed
            if remaining <= 0:
                raise RemoteError(
                    f"ssh: {self.host}:{cfg.ssh_port} not reachable after {elapsed:.1f}s ({last})"
                )
            if self.stop.wait(max(0.0, min(self.backoff(tries - 1), remaining))):
                raise RemoteError("cancelled")

    def _connect_error(self, exc: BaseException) -> str:
        """Why a connection attempt failed when worth retrying; RemoteError if not."""
        if isinstance(exc, HostKeyRejected | paramiko.BadHostKeyException):
            raise RemoteError(str(exc)) from None
        if isinstance(exc, paramiko.AuthenticationException):
            raise RemoteError(
                f"ssh: authentication failed for user {self.config.ssh_user} "
                "(the instance's key pair does not accept this private key)"
            ) from None
        if isinstance(exc, paramiko.SSHException) and str(exc) == "No existing session":
            # paramiko's start_client gives up silently at `timeout`, then says this
            return f"no SSH handshake within {self.config.connect_timeout_s:g}s"
        if isinstance(exc, paramiko.SSHException | EOFError | OSError):
            # refused / timed out / no banner yet / reset: the host is still booting
            return describe(exc)
        raise exc

    # -- one command ---------------------------------------------------------------------
    def run(self, command: str, timeout: float, stdin: str | None = None) -> Result:
        """Run `command`; wait at most `timeout` seconds for its exit status. `stdin`, when
        given, is written to the command's standard input; then (always) EOF is sent.
        Connects first if needed (RemoteError if that fails). `error` comes back redacted;
        stdout and stderr are the command's data, as it wrote them: pass what of them you
        log or raise through `redact`."""
        self.open()
        assert self.client is not None
        res = self._exec(self.client, command, timeout, stdin)
        res.error = self.redact(res.error)
        return res

    @staticmethod
    def _exec(
        client: paramiko.SSHClient, command: str, timeout_s: float, stdin: str | None
    ) -> Result:
        out, err = bytearray(), bytearray()

        def result(status: int | None, error: str = "") -> Result:
            return Result(
                status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), error
            )

        deadline = time.monotonic() + timeout_s
        try:
            stdin_file, stdout, _ = client.exec_command(command, timeout=timeout_s)
            chan = stdout.channel
            try:
                if stdin is not None:
                    stdin_file.write(stdin)
                    stdin_file.flush()
                stdin_file.close()  # EOF on the remote stdin
            except (paramiko.SSHException, EOFError, OSError):
                # the command may have exited without reading its input: its exit status
                # (or the lost connection) is what we report
                pass
            while True:
                _drain(chan, out, err)
                if chan.status_event.is_set():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return result(None, f"no exit status after {timeout_s:g}s")
                chan.status_event.wait(min(remaining, 1.0))
            drain_until = time.monotonic() + _DRAIN_AFTER_EXIT_S
            while not (chan.eof_received or chan.closed) and time.monotonic() < drain_until:
                _drain(chan, out, err)
                time.sleep(0.01)
            _drain(chan, out, err)
            if chan.exit_status == -1:  # closed without an exit status: the connection went
                transport = client.get_transport()
                exc = transport.get_exception() if transport is not None else None
                why = describe(exc) if exc else "connection closed before the command exited"
                return result(None, f"connection lost ({why})")
            return result(chan.exit_status)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return result(None, f"connection lost ({describe(exc)})")
