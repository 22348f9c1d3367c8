"""Stage 9, jumphost-mysql-check: one jumphost in the DB's trusted group proves the database
answers.

The jumphost admits SSH from the controller only; the stage installs the recipe's MySQL
client on it (mysql-client from apt, mariadb105 from dnf) and runs `SELECT 1` against the
RDS endpoint with the master password from its Secret block. The password never is on
the remote command line: `mysql` reads it from its standard input as an option file
(`--defaults-extra-file=/dev/stdin`), and every text that could reach a log line or an
exception is redacted (`tasks.remote.connection.redact`).
"""

from __future__ import annotations

import shlex
import time

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.ec2 import StageError, ensure_role_instance
from tasks.aws.retry import backoff_delay
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.models import JumphostResult, RdsResult
from tasks.deploy.stages.room import Room, ssh_key, stage_task
from tasks.deploy.stages.s08_rds import load_db_password
from tasks.deploy.survey import Survey
from tasks.models import Instance
from tasks.plan.models import PlanEntry
from tasks.remote.config import HostInstallConfig, remote_config
from tasks.remote.connection import Connection, RemoteError, Result

ROW = STAGES[9]

CLOUD_INIT = "cloud-init status --wait"
APT_TIMEOUT_S = 600.0
_TAIL = 400


def _tail(res: Result) -> str:
    text = (res.stderr.strip() or res.stdout.strip() or res.error or "no output")[-_TAIL:]
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


class _Session:
    """One SSH connection to the jumphost, reopened if it drops; everything it returns or
    raises has `secrets` redacted."""

    def __init__(
        self,
        inst: Instance,
        cfg: HostInstallConfig,
        deadline: float,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.inst, self.cfg, self.deadline = inst, cfg, deadline
        self.conn = Connection(inst.public_ip, cfg, instance_id=inst.instance_id, secrets=secrets)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def connect(self) -> Connection:
        if not self.conn.is_connected:
            wait = max(1.0, min(self.cfg.ssh_wait_s, self.remaining()))
            try:
                self.conn.open(wait_s=wait)
            except RemoteError as exc:
                raise StageError(f"jumphost {self.inst.instance_id}: {exc}") from None
        return self.conn

    def close(self) -> None:
        self.conn.close()

    def run(self, command: str, timeout_s: float, stdin: str | None = None) -> Result:
        budget = min(timeout_s, self.remaining())
        if budget <= 0:
            raise StageError(f"jumphost {self.inst.instance_id}: stage timed out")
        res = self.connect().run(command, timeout=budget, stdin=stdin)
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
            why = self.conn.redact(_tail(res) if res.status is not None else res.error)
            if attempt + 1 >= attempts:
                raise StageError(
                    f"jumphost {self.inst.instance_id}: {name} failed after {attempts} "
                    f"attempt(s) (exit {res.status}): {why}"
                )
            delay = backoff_delay(attempt, base=2.0, cap=30.0, jitter=1.0)
            actions.retried(
                f"{name} on jumphost {self.inst.instance_id}",
                f"exit {res.status}: {why}",
                delay,
                attempt + 1,
                attempts - 1,
                throttled=False,
            )
            time.sleep(min(delay, max(0.0, self.remaining())))


def mysql_command(rds: RdsResult, connect_timeout_s: int) -> str:
    """The client's command line: no password on it (it comes as an option file on stdin,
    `mysql_stdin`); `--defaults-extra-file` must be the first option."""
    return (
        f"mysql --defaults-extra-file=/dev/stdin -h {shlex.quote(rds.endpoint)} "
        f"-P {int(rds.port)} -u {shlex.quote(rds.master_username)} "
        f"--connect-timeout={int(connect_timeout_s)} -N -e 'SELECT 1'"
    )


def mysql_stdin(password: str) -> str:
    """The option file `mysql_command` reads from its standard input. A value holding `#`
    (a comment in an option file) or a backslash (an escape) is double-quoted, with
    backslashes doubled, as the client's option-file parser reads it; RDS allows neither
    quotes nor spaces in a master password, and a line break cannot be carried at all."""
    if "\n" in password or "\r" in password:
        raise ValueError("the DB password holds a line break; an option file cannot carry it")
    if "#" in password or "\\" in password:
        password = '"' + password.replace("\\", "\\\\") + '"'
    return f"[client]\npassword={password}\n"


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
    timeout_s: float = ROW.timeout_s,
    connect_timeout_s: int = 10,
    apt_attempts: int = 4,
) -> JumphostResult:
    """SELECT 1 against the DB from the jumphost; returns what it printed."""
    deadline = time.monotonic() + timeout_s
    inst, group = ensure_role_instance(aws, settings, "jumphost", timeout_s)
    password = load_db_password(settings, rds.password_secret_block)
    cfg = remote_config(settings, key_pem)
    session = _Session(inst, cfg, deadline, secrets=(password,))
    try:
        # cloud-init exits 2 when it finished with recoverable errors: the host is usable
        session.step("cloud-init", CLOUD_INIT, 900, ok=(0, 2))
        os_recipe = settings.os_recipe  # the client install is the recipe's (apt or dnf)
        if session.run(os_recipe.mysql_client_check, 60).status != 0:
            for name, command in os_recipe.mysql_client_steps:
                session.step(name, command, APT_TIMEOUT_S, apt_attempts)
        try:
            stdin = mysql_stdin(password)
        except ValueError as exc:
            raise StageError(f"{exc} (Secret block {rds.password_secret_block})") from None
        res = session.run(mysql_command(rds, connect_timeout_s), connect_timeout_s + 60, stdin)
    finally:
        session.close()
    out = res.stdout.strip()
    if res.status != 0 or out != "1":
        what = session.conn.redact(_tail(res) if res.status is not None else res.error)
        raise StageError(
            f"SELECT 1 on {rds.endpoint}:{rds.port} as {rds.master_username} from jumphost "
            f"{inst.instance_id} failed (exit {res.status}): {what}{_hint(res.stderr)}"
        )
    actions.result(
        f"SELECT 1 on {rds.endpoint}:{rds.port} from jumphost {inst.instance_id} answered {out}"
    )
    return JumphostResult(
        instance_id=inst.instance_id,
        public_ip=inst.public_ip,
        security_group_id=group,
        select_1=out,
    )


@stage_task(ROW)
def jumphost_stage(settings: FleetSettings, rds: RdsResult) -> JumphostResult:
    return jumphost_check(Aws(settings), settings, rds, ssh_key(settings))


def report(result: JumphostResult, _: FleetSettings) -> ReportPart:
    return ReportPart(resources={"jumphost": result.instance_id, "select_1": result.select_1})


def plan(s: Survey) -> list[PlanEntry]:
    """The jumphost, its group and SSH from here; SELECT 1 changes nothing."""
    return s.role_instance(ROW.number, "jumphost")


ROOM = Room(ROW, task=jumphost_stage, report=report, plan=plan)
