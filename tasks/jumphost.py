"""Deploy stage 9: one jumphost in the DB's trusted group proves the database answers.

The jumphost admits SSH from the controller only; the stage installs the MySQL client on
it and runs `SELECT 1` against the RDS endpoint with the master password from its Secret
block. The password travels only inside the remote command (as MYSQL_PWD, so the client
prints no warning); every text that could reach a log line or an exception is redacted.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable

import paramiko
from pydantic import SecretStr

from blocks.settings import FleetSettings

from .aws import Aws
from .aws.ec2 import StageError, ensure_role_instance
from .aws.retry import backoff_delay
from .deploy.models import JumphostResult, RdsResult
from .deploy.rds import load_db_password
from .models import Instance
from .ssh_install import CommandResult, HostInstallConfig, RemoteError, connect_host, run_command

log = logging.getLogger(__name__)

APT_UPDATE = "sudo apt-get -o DPkg::Lock::Timeout=120 update -q"
APT_INSTALL = (
    "sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 "
    "install -y -q mysql-client"
)
HAS_CLIENT = "dpkg -s mysql-client"
CLOUD_INIT = "cloud-init status --wait"
APT_TIMEOUT_S = 600.0
_TAIL = 400


def _redactor(secret: str) -> Callable[[str], str]:
    forms = sorted({secret, shlex.quote(secret)}, key=len, reverse=True)

    def redact(text: str) -> str:
        for form in forms:
            if form:
                text = text.replace(form, "[redacted]")
        return text

    return redact


def _tail(res: CommandResult) -> str:
    text = (res.stderr.strip() or res.stdout.strip() or res.error or "no output")[-_TAIL:]
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


class _Session:
    """One SSH connection to the jumphost, reopened if it drops."""

    def __init__(self, inst: Instance, cfg: HostInstallConfig, deadline: float) -> None:
        self.inst, self.cfg, self.deadline = inst, cfg, deadline
        self.client: paramiko.SSHClient | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def connect(self) -> paramiko.SSHClient:
        if self.client is None:
            wait = max(1.0, min(self.cfg.ssh_wait_s, self.remaining()))
            try:
                self.client = connect_host(
                    self.inst, self.cfg.model_copy(update={"ssh_wait_s": wait})
                )
            except RemoteError as exc:
                raise StageError(f"jumphost {self.inst.instance_id}: {exc}") from None
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def run(self, command: str, timeout_s: float) -> CommandResult:
        budget = min(timeout_s, self.remaining())
        if budget <= 0:
            raise StageError(f"jumphost {self.inst.instance_id}: stage timed out")
        res = run_command(self.connect(), command, budget)
        if res.status is None:  # the connection went (or the command hung): start afresh
            self.close()
        return res

    def step(
        self,
        name: str,
        command: str,
        timeout_s: float,
        attempts: int = 1,
        ok: tuple[int, ...] = (0,),
    ) -> None:
        """Run `command` until its exit status is in `ok`, up to `attempts` times with
        back-off."""
        for attempt in range(attempts):
            res = self.run(command, timeout_s)
            if res.status is not None and res.status in ok:
                return
            why = _tail(res) if res.status is not None else res.error
            if attempt + 1 >= attempts:
                raise StageError(
                    f"jumphost {self.inst.instance_id}: {name} failed after {attempts} "
                    f"attempt(s) (exit {res.status}): {why}"
                )
            delay = backoff_delay(attempt, base=2.0, cap=30.0, jitter=1.0)
            log.warning(
                "jumphost %s: %s failed (exit %s: %s), retry %d/%d in %.1fs",
                self.inst.instance_id,
                name,
                res.status,
                why,
                attempt + 2,
                attempts,
                delay,
            )
            time.sleep(min(delay, max(0.0, self.remaining())))


def mysql_command(rds: RdsResult, password: str, connect_timeout_s: int) -> str:
    return (
        f"MYSQL_PWD={shlex.quote(password)} mysql -h {shlex.quote(rds.endpoint)} "
        f"-P {int(rds.port)} -u {shlex.quote(rds.master_username)} "
        f"--connect-timeout={int(connect_timeout_s)} -N -e 'SELECT 1'"
    )


def _hint(stderr: str) -> str:
    if "ERROR 2003" in stderr or "ERROR 2005" in stderr:
        return (
            "; the DB's security group must admit the jumphost's group on the DB port, and "
            "the endpoint must resolve from the jumphost"
        )
    if "ERROR 1045" in stderr:
        return "; the password in the Secret block does not match the DB's master password"
    return ""


def jumphost_check(
    aws: Aws,
    settings: FleetSettings,
    rds: RdsResult,
    key_pem: str,
    timeout_s: float = 600,
    connect_timeout_s: int = 10,
    apt_attempts: int = 4,
) -> JumphostResult:
    """Stage 9: SELECT 1 against the DB from the jumphost; returns what it printed."""
    deadline = time.monotonic() + timeout_s
    inst, group = ensure_role_instance(aws, settings, "jumphost", timeout_s)
    password = load_db_password(settings, rds.password_secret_block)
    redact = _redactor(password)
    cfg = HostInstallConfig(
        ssh_port=settings.ssh_port,
        ssh_user=settings.ssh_user,
        key_pem=SecretStr(key_pem),
        host_key_policy=settings.host_key_policy,
        known_hosts_path=str(settings.known_hosts_path),
        connect_timeout_s=settings.ssh_connect_timeout_s,
        ssh_wait_s=settings.ssh_wait_s,
        steps=[],
        probe_command="true",
    )
    session = _Session(inst, cfg, deadline)
    try:
        # cloud-init exits 2 when it finished with recoverable errors: the host is usable
        session.step("cloud-init", CLOUD_INIT, 900, ok=(0, 2))
        if session.run(HAS_CLIENT, 60).status != 0:
            session.step("apt-get update", APT_UPDATE, APT_TIMEOUT_S, apt_attempts)
            session.step("install mysql-client", APT_INSTALL, APT_TIMEOUT_S, apt_attempts)
        res = session.run(mysql_command(rds, password, connect_timeout_s), connect_timeout_s + 60)
    finally:
        session.close()
    out = res.stdout.strip()
    if res.status != 0 or out != "1":
        what = redact(_tail(res) if res.status is not None else res.error)
        raise StageError(
            f"SELECT 1 on {rds.endpoint}:{rds.port} as {rds.master_username} from jumphost "
            f"{inst.instance_id} failed (exit {res.status}): {what}{_hint(res.stderr)}"
        )
    log.info("jumphost %s: SELECT 1 on %s answered %s", inst.instance_id, rds.endpoint, out)
    return JumphostResult(
        instance_id=inst.instance_id,
        public_ip=inst.public_ip,
        security_group_id=group,
        select_1=out,
    )
