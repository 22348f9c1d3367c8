"""One host from "maybe still booting" to "serving Tomcat": the install recipe.

`install_host` runs once per host inside a chunk task's thread pool: it keeps all of its
state local, bounds every wait, never raises and always closes its connection. An attempt
is one SSH session; a transient failure (a dropped connection, an apt mirror error, a held
dpkg lock) ends the session and the failing step is retried in a new one after a jittered
back-off, up to `host_attempts` sessions in total.
"""

from __future__ import annotations

import logging
import threading
import time

from tasks.errors import FleetError
from tasks.models import HostResult, Instance, StepTiming
from tasks.remote.config import HostInstallConfig
from tasks.remote.connection import Connection, RemoteError, Result

PROBE_NAME = "probe"
PROBE_TIMEOUT_S = 60.0
STDERR_TAIL_CHARS = 500


class _Stop(FleetError):
    """Ends the host with `reason` (a terminal failure, not a bug)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _last_line(*texts: str) -> str:
    for text in texts:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return "no output"


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
        self.conn = Connection(inst.public_ip, cfg, instance_id=inst.instance_id, stop=self.stop)
        self.who = f"{inst.instance_id} {inst.public_ip}"
        self.timings: list[StepTiming] = []
        self.attempts = 0
        self.stderr_tail = ""

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

    def connect(self) -> None:
        """A new session, waiting for SSH up to `ssh_wait_s`; raises `_Stop`."""
        try:
            self.conn.open()
        except RemoteError as exc:
            raise _Stop(str(exc)) from None

    # -- one command, timed ------------------------------------------------------------
    def timed(self, name: str, command: str, timeout: float) -> Result:
        started = time.monotonic()
        res = self.conn.run(command, timeout=timeout)
        self.timings.append(
            StepTiming(
                name=name, seconds=round(time.monotonic() - started, 3), exit_status=res.status
            )
        )
        return res

    def probe_after(self) -> tuple[str, str]:
        """After a reinstall: the probe must answer 0 (raises `_Stop` when it answers
        otherwise); ("probe", error) when the connection failed (transient)."""
        res = self.timed(PROBE_NAME, self.cfg.probe_command, PROBE_TIMEOUT_S)
        if res.status is None:
            return PROBE_NAME, res.error
        if res.status != 0:
            raise _Stop(
                f"probe after the install exited {res.status}: {_last_line(res.stderr, res.stdout)}"
            )
        return "", ""

    # -- the whole host ------------------------------------------------------------------
    def run(self) -> tuple[str, str | None, bool]:
        """(status, reason, already_installed); raises `_Stop` for terminal failures."""
        cfg = self.cfg
        try:
            self.conn.load_key()
        except RemoteError as exc:
            raise _Stop(str(exc)) from None
        probed = False
        index = 0  # the next step to run
        while True:
            self._check_stop()
            self.attempts += 1
            failing, error, exit_code = "", "", None
            self.connect()
            try:
                if not probed and cfg.reinstall:
                    probed = True  # a rollout runs the steps whatever the host serves now
                if not probed:
                    res = self.timed(PROBE_NAME, cfg.probe_command, PROBE_TIMEOUT_S)
                    if res.status == 0:
                        return "installed", None, True
                    if res.status is None:
                        failing, error = PROBE_NAME, res.error
                    else:
                        probed = True
                while not failing and index < len(cfg.steps):
                    self._check_stop()
                    step = cfg.steps[index]
                    res = self.timed(step.name, step.command, step.timeout_s)
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
                if not failing and cfg.reinstall:
                    failing, error = self.probe_after()
                if not failing:
                    return "installed", None, False
            finally:
                self.conn.close()
            # a transient failure: new session after a back-off, if attempts remain
            if self.attempts >= cfg.host_attempts:
                raise _Stop(f"step {failing}: gave up after {self.attempts} attempts: {error}")
            delay = self.conn.backoff(self.attempts - 1)
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
    finally:
        job.conn.close()
    result = HostResult(
        instance_id=inst.instance_id,
        public_ip=inst.public_ip,
        status="installed" if status == "installed" else "failed",
        reason=None if reason is None else job.conn.redact(reason),
        attempts=job.attempts,
        already_installed=already,
        seconds=round(time.monotonic() - started, 3),
        steps=job.timings,
        stderr_tail="" if status == "installed" else job.conn.redact(job.stderr_tail),
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
