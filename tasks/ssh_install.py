"""One host from "maybe still booting" to "serving Tomcat", over SSH with paramiko.

`install_host` runs once per host inside a chunk task's thread pool: it keeps all of its
state local, bounds every wait, never raises and always closes its SSH client. An attempt
is one SSH session; a transient failure (a dropped connection, an apt mirror error, a held
dpkg lock) ends the session and the failing step is retried in a new one after a jittered
back-off, up to `host_attempts` sessions in total.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Literal

import paramiko
from pydantic import BaseModel, Field, SecretStr

from tasks.aws.retry import backoff_delay
from tasks.host_keys import HostKeyRejected, make_policy
from tasks.models import HostResult, InstallStep, Instance, StepTiming

PROBE_NAME = "probe"
PROBE_TIMEOUT_S = 60.0
STDERR_TAIL_CHARS = 500
_DRAIN_AFTER_EXIT_S = 5.0  # bound on reading output that trails the exit status


class HostInstallConfig(BaseModel):
    """What `install_host` needs; plain and picklable (it crosses process boundaries).
    The private key is a `SecretStr`, so reprs and logs of the config never show it."""

    ssh_port: int = Field(ge=1, le=65535)
    ssh_user: str = Field(min_length=1)
    key_pem: SecretStr
    host_key_policy: Literal["strict", "tofu", "insecure"] = "tofu"
    known_hosts_path: str
    expected_fingerprints: dict[str, list[str]] = Field(default_factory=dict)
    connect_timeout_s: float = Field(10.0, gt=0)
    ssh_wait_s: float = Field(300.0, gt=0)
    host_attempts: int = Field(3, ge=1)
    steps: list[InstallStep]
    probe_command: str
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_cap_s: float = Field(10.0, ge=0)


def load_private_key(pem: str) -> paramiko.PKey:
    """An RSA, Ed25519 or ECDSA private key from its PEM/OpenSSH text (unencrypted)."""
    for cls in (paramiko.RSAKey, paramiko.Ed25519Key, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(pem))
        except Exception:  # wrong type or encrypted: try the next one
            continue
    raise ValueError("unsupported or encrypted private key") from None


class _Stop(Exception):
    """Ends the host with `reason` (a terminal failure, not a bug)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Exec:
    status: int | None  # None: no exit status (connection lost or timed out)
    stdout: str
    stderr: str
    error: str = ""  # why there is no exit status


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return f"{name}: {text}" if text else name


def _last_line(*texts: str) -> str:
    for text in texts:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return "no output"


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


def _exec(client: paramiko.SSHClient, command: str, timeout_s: float) -> _Exec:
    """Run one command; wait at most `timeout_s` for its exit status, reading as it goes
    (so a chatty command never stalls on a full SSH window)."""
    out, err = bytearray(), bytearray()

    def result(status: int | None, error: str = "") -> _Exec:
        return _Exec(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), error)

    deadline = time.monotonic() + timeout_s
    try:
        stdin, stdout, _ = client.exec_command(command, timeout=timeout_s)
        stdin.close()  # EOF on the remote stdin: nothing reads from us
        chan = stdout.channel
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
            why = _describe(exc) if exc else "connection closed before the command exited"
            return result(None, f"connection lost ({why})")
        return result(chan.exit_status)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        return result(None, f"connection lost ({_describe(exc)})")


class _HostInstall:
    """Per-host state for one `install_host` call (never shared between threads)."""

    def __init__(
        self,
        inst: Instance,
        cfg: HostInstallConfig,
        log: logging.Logger | None,
        stop: threading.Event | None,
    ) -> None:
        self.inst = inst
        self.cfg = cfg
        self.log = log
        self.stop = stop or threading.Event()
        self.rng = random.Random()
        self.who = f"{inst.instance_id} {inst.public_ip}"
        self.timings: list[StepTiming] = []
        self.attempts = 0
        self.stderr_tail = ""
        self.pkey: paramiko.PKey | None = None

    # -- helpers --------------------------------------------------------------------
    def _warn(self, msg: str, *args: object) -> None:
        if self.log is not None:
            self.log.warning("%s: " + msg, self.who, *args)

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise _Stop("cancelled")

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise _Stop("cancelled")

    def _backoff(self, n: int) -> float:
        base, cap = self.cfg.backoff_base_s, self.cfg.backoff_cap_s
        return backoff_delay(n, base=base, cap=cap, jitter=base, rng=self.rng)

    # -- wait for SSH ------------------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        """An authenticated client, retrying until `ssh_wait_s`; raises `_Stop`."""
        cfg, ip = self.cfg, self.inst.public_ip
        assert self.pkey is not None
        started = time.monotonic()
        tries, last = 0, "no attempt"
        while True:
            self._check_stop()
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(
                make_policy(
                    cfg.host_key_policy,
                    instance_id=self.inst.instance_id,
                    expected=cfg.expected_fingerprints.get(self.inst.instance_id),
                    known_hosts_path=cfg.known_hosts_path,
                )
            )
            try:
                client.connect(
                    ip,
                    port=cfg.ssh_port,
                    username=cfg.ssh_user,
                    pkey=self.pkey,
                    timeout=cfg.connect_timeout_s,
                    banner_timeout=cfg.connect_timeout_s,
                    auth_timeout=cfg.connect_timeout_s,
                    look_for_keys=False,
                    allow_agent=False,
                )
                return client
            except BaseException as exc:
                client.close()
                last = self._connect_error(exc)
            tries += 1
            elapsed = time.monotonic() - started
            remaining = cfg.ssh_wait_s - elapsed
            if remaining <= 0:
                raise _Stop(f"ssh: {ip}:{cfg.ssh_port} not reachable after {elapsed:.1f}s ({last})")
            self._sleep(min(self._backoff(tries - 1), remaining))

    def _connect_error(self, exc: BaseException) -> str:
        """Why a connection attempt failed when worth retrying; raises `_Stop` if not."""
        if isinstance(exc, HostKeyRejected | paramiko.BadHostKeyException):
            raise _Stop(str(exc)) from None
        if isinstance(exc, paramiko.AuthenticationException):
            raise _Stop(
                f"ssh: authentication failed for user {self.cfg.ssh_user} "
                "(the instance's key pair does not accept this private key)"
            ) from None
        if isinstance(exc, paramiko.SSHException) and str(exc) == "No existing session":
            # paramiko's start_client gives up silently at `timeout`, then says this
            return f"no SSH handshake within {self.cfg.connect_timeout_s:g}s"
        if isinstance(exc, paramiko.SSHException | EOFError | OSError):
            # refused / timed out / no banner yet / reset: the host is still booting
            return _describe(exc)
        raise exc

    # -- one command, timed ------------------------------------------------------------
    def timed(self, client: paramiko.SSHClient, name: str, command: str, timeout: float) -> _Exec:
        started = time.monotonic()
        res = _exec(client, command, timeout)
        self.timings.append(
            StepTiming(
                name=name, seconds=round(time.monotonic() - started, 3), exit_status=res.status
            )
        )
        return res

    # -- the whole host ------------------------------------------------------------------
    def run(self) -> tuple[str, str | None, bool]:
        """(status, reason, already_installed); raises `_Stop` for terminal failures."""
        cfg = self.cfg
        try:
            self.pkey = load_private_key(cfg.key_pem.get_secret_value())
        except ValueError as exc:
            raise _Stop(f"ssh: {exc}") from None
        probed = False
        index = 0  # the next step to run
        while True:
            self._check_stop()
            self.attempts += 1
            failing, error, exit_code = "", "", None
            client = self.connect()
            try:
                if not probed:
                    res = self.timed(client, PROBE_NAME, cfg.probe_command, PROBE_TIMEOUT_S)
                    if res.status == 0:
                        return "installed", None, True
                    if res.status is None:
                        failing, error = PROBE_NAME, res.error
                    else:
                        probed = True
                while not failing and index < len(cfg.steps):
                    self._check_stop()
                    step = cfg.steps[index]
                    res = self.timed(client, step.name, step.command, step.timeout_s)
                    if res.status == 0:
                        index += 1
                        continue
                    self.stderr_tail = res.stderr[-STDERR_TAIL_CHARS:]
                    if res.status is None:
                        failing, error = step.name, res.error
                    elif any(m in res.stderr for m in step.transient_markers):
                        failing, exit_code = step.name, res.status
                        error = f"exit {res.status}: {_last_line(res.stderr, res.stdout)}"
                    else:
                        raise _Stop(
                            f"step {step.name} exited {res.status}: "
                            f"{_last_line(res.stderr, res.stdout)}"
                        )
                if not failing:
                    return "installed", None, False
            finally:
                client.close()
            # a transient failure: new session after a back-off, if attempts remain
            if self.attempts >= cfg.host_attempts:
                raise _Stop(f"step {failing}: gave up after {self.attempts} attempts: {error}")
            delay = self._backoff(self.attempts - 1)
            what = f"exit {exit_code}" if exit_code is not None else error
            self._warn(
                "step %s transient (%s), retry %d/%d in %.1fs",
                failing,
                what,
                self.attempts + 1,
                cfg.host_attempts,
                delay,
            )
            self._sleep(delay)


def _redact(text: str | None, secret: str) -> str | None:
    """Belt and braces: no line of the private key survives into a reason or a tail."""
    if not text:
        return text
    for line in secret.splitlines():
        line = line.strip()
        if len(line) >= 16 and "-----" not in line and line in text:
            text = text.replace(line, "[redacted]")
    return text


def install_host(
    inst: Instance,
    cfg: HostInstallConfig,
    *,
    log: logging.Logger | None = None,
    stop: threading.Event | None = None,
) -> HostResult:
    """Wait for SSH, probe, run the install steps; always returns a `HostResult`."""
    started = time.monotonic()
    job = _HostInstall(inst, cfg, log, stop)
    already = False
    reason: str | None = None
    try:
        status, reason, already = job.run()
    except _Stop as stop_:
        status, reason = "failed", stop_.reason
    except Exception as exc:  # never raise into the pool: report it on the host
        status, reason = "failed", f"internal error: {type(exc).__name__}: {exc}"
    secret = cfg.key_pem.get_secret_value()
    result = HostResult(
        instance_id=inst.instance_id,
        public_ip=inst.public_ip,
        status="installed" if status == "installed" else "failed",
        reason=_redact(reason, secret),
        attempts=job.attempts,
        already_installed=already,
        seconds=round(time.monotonic() - started, 3),
        steps=job.timings,
        stderr_tail="" if status == "installed" else (_redact(job.stderr_tail, secret) or ""),
    )
    if log is not None:
        if result.status == "installed":
            how = "already installed" if already else "installed"
            log.info(
                "%s: %s in %.1fs (%d attempt(s))",
                job.who,
                how,
                result.seconds,
                result.attempts,
            )
        else:
            log.error(
                "%s: failed after %.1fs (%d attempt(s)): %s",
                job.who,
                result.seconds,
                result.attempts,
                result.reason,
            )
    return result


class RemoteError(RuntimeError):
    """A host could not be reached or refused us; the message is the reason."""


CommandResult = _Exec


def connect_host(inst: Instance, cfg: HostInstallConfig) -> paramiko.SSHClient:
    """An authenticated SSH client to one host (waits for boot as `install_host` does).
    Raises RemoteError with the same reasons `install_host` reports."""
    host = _HostInstall(inst, cfg, None, None)
    try:
        host.pkey = load_private_key(cfg.key_pem.get_secret_value())
        return host.connect()
    except _Stop as stop:
        raise RemoteError(_redact(stop.reason, cfg.key_pem.get_secret_value())) from None
    except ValueError as exc:
        raise RemoteError(f"ssh: {exc}") from None


def run_command(client: paramiko.SSHClient, command: str, timeout_s: float) -> CommandResult:
    """Run one command on a connected host: exit status (None if the connection went),
    stdout, stderr."""
    return _exec(client, command, timeout_s)
