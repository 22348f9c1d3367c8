"""Stage 8, rds: a private, encrypted MySQL instance reachable only from the jumphost.

The DB's security group admits 3306 from the jumphost's group and nothing else. The master
password lives in a Prefect Secret block (generated once if missing); it never appears in
a log line, an exception message or the stage's result. It waits for stage 5 when that runs
(the seed's order) but uses nothing of it. Not run, the DB instance is found by its
identifier and must be available (`find`).
"""

from __future__ import annotations

import secrets
import string
from typing import Any, cast

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import Aws
from tasks.aws.ec2 import (
    StageError,
    authorize_ingress,
    deployment_tags,
    ensure_security_group,
)
from tasks.aws.rds import (
    DB_PORT,
    check_existing,
    create_db_instance,
    db_instance_id,
    describe_db,
    wait_db_available,
)
from tasks.deploy.dag import STAGES
from tasks.deploy.deploy_report import ReportPart
from tasks.deploy.found import MissingStage
from tasks.deploy.models import RdsResult
from tasks.deploy.stages.room import Finding, Room, stage_task
from tasks.deploy.survey import Survey
from tasks.plan import diff
from tasks.plan.models import PlanEntry

ROW = STAGES[8]

PASSWORD_LENGTH = 24
_PASSWORD_ALPHABET = string.ascii_letters + string.digits  # nothing RDS rejects (/ @ " space)


# -- the password -------------------------------------------------------------------------
def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """Letters and digits, at least one of each kind (valid as an RDS master password)."""
    while True:
        pw = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))
        if (
            any(c.islower() for c in pw)
            and any(c.isupper() for c in pw)
            and any(c.isdigit() for c in pw)
        ):
            return pw


def _block_missing(exc: ValueError) -> bool:
    from prefect.exceptions import ObjectNotFound

    return isinstance(exc.__cause__, ObjectNotFound) or "Unable to find block" in str(exc)


def _load_secret(name: str) -> str | None:
    """The Secret block's value, or None when no such block exists."""
    from prefect.blocks.system import Secret

    try:
        block = Secret.load(name)
    except ValueError as exc:
        if _block_missing(exc):
            return None
        raise StageError(f"cannot read Prefect Secret block {name!r}: {exc}") from None
    value = cast(Any, block).get()
    if not isinstance(value, str) or not value:
        raise StageError(f"Prefect Secret block {name!r} does not hold a password string")
    return value


def load_db_password(settings: FleetSettings, block: str | None = None) -> str:
    """The DB master password from its Secret block (`block`, else the settings' one)."""
    name = block or settings.password_block
    value = _load_secret(name)
    if value is None:
        raise StageError(
            f"Prefect Secret block {name!r} (the RDS master password) does not exist; "
            "run the RDS stage first, or create the block"
        )
    return value


def ensure_db_password(settings: FleetSettings) -> str:
    """The password from the Secret block; generated and saved there when it is missing."""
    from prefect.blocks.system import Secret

    name = settings.password_block
    value = _load_secret(name)
    if value is not None:
        actions.found("Secret block", name=name, why="the RDS master password")
        return value
    try:
        Secret(value=generate_password()).save(name)
        actions.created("Secret block", name=name, why="the RDS master password, generated")
    except ValueError:  # a racing caller saved it first: use theirs
        actions.found("Secret block", name=name, why="the RDS master password, saved meanwhile")
    return load_db_password(settings)


# -- security groups ----------------------------------------------------------------------
def ensure_db_groups(aws: Aws, settings: FleetSettings) -> tuple[str, str]:
    """(jumphost group, DB group); the DB group admits 3306 from the jumphost group only."""
    jump = ensure_security_group(aws, settings, role="jumphost")
    db = ensure_security_group(aws, settings, role="db")
    authorize_ingress(
        aws,
        [db],
        [DB_PORT],
        lambda _p: jump,
        description="tomcat-fleet jumphost",
        tags=deployment_tags(settings, "db"),
    )
    return jump, db


# -- the instance -------------------------------------------------------------------------
def create_rds(
    aws: Aws, settings: FleetSettings, timeout_s: float = ROW.timeout_s, poll_s: float = 2.0
) -> RdsResult:
    """Groups, password block and an available private DB instance."""
    _, db_group = ensure_db_groups(aws, settings)
    ident = db_instance_id(settings)
    db = describe_db(aws, ident)
    if db is not None:
        check_existing(db, settings, db_group)
        actions.found("DB instance", ident, why=f"status {db.get('DBInstanceStatus')}")
        if _load_secret(settings.password_block) is None:
            raise StageError(
                f"DB instance {ident} exists but Prefect Secret block "
                f"{settings.password_block!r} holding its master password does not; restore "
                "the block, or reset the password (modify-db-instance) and save it there"
            )
    else:
        create_db_instance(aws, settings, ident, db_group, ensure_db_password(settings))
    db = wait_db_available(aws, ident, timeout_s, poll_s)
    actions.result(
        f"DB instance {ident} available at {db['Endpoint']['Address']}, private, "
        f"admitting the jumphost group only"
    )
    return RdsResult(
        db_instance_id=ident,
        endpoint=str(db["Endpoint"]["Address"]),
        port=int(db["Endpoint"].get("Port") or DB_PORT),
        security_group_id=db_group,
        master_username=str(db.get("MasterUsername") or settings.db_master_username),
        password_secret_block=settings.password_block,
    )


@stage_task(ROW)
def rds_stage(settings: FleetSettings) -> RdsResult:
    return create_rds(Aws(settings), settings)


def find(q: Finding) -> RdsResult:
    """The DB instance, found by its identifier; it must be available."""
    ident = db_instance_id(q.settings)
    db = describe_db(q.aws, ident)
    if db is None or db.get("DBInstanceStatus") != "available":
        state = "not found" if db is None else f"status {db.get('DBInstanceStatus')}"
        raise MissingStage(q.stage, ROW.number, "RDS instance", f"{ident} {state}")
    groups = [g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])]
    return RdsResult(
        db_instance_id=ident,
        endpoint=str(db["Endpoint"]["Address"]),
        port=int(db["Endpoint"].get("Port") or DB_PORT),
        security_group_id=groups[0] if groups else "",
        master_username=str(db.get("MasterUsername") or q.settings.db_master_username),
        password_secret_block=q.settings.password_block,
    )


def report(result: RdsResult, _: FleetSettings) -> ReportPart:
    return ReportPart(resources={"rds_endpoint": f"{result.endpoint}:{result.port}"})


def plan(s: Survey) -> list[PlanEntry]:
    """The jumphost and DB groups, 3306 from the jumphost only, the DB instance (available)
    and the Secret block of its password (read for existence; its value is not read out)."""
    n = ROW.number
    jump = s.group("jumphost")
    ident = db_instance_id(s.settings)
    db = describe_db(s.aws, ident)
    status = str(db.get("DBInstanceStatus")) if db else ""
    block = s.settings.password_block
    secret = _load_secret(block) is not None
    return [
        s.group_entry(n, "jumphost"),
        s.group_entry(n, "db"),
        s.ingress_entry(
            n, "db", [DB_PORT], str(jump["GroupId"]) if jump else None, f"{s.name}-jumphost"
        ),
        diff.resource(
            n,
            "secret-block",
            block,
            exists=secret,
            create="the RDS master password, generated",
            ok="the RDS master password",
        ),
        diff.resource(
            n,
            "rds-instance",
            ident,
            exists=db is not None,
            create="private, encrypted MySQL, waited until available",
            drift=[("status", f"wait for available (now {status})")]
            if status != "available"
            else [],
            ok=f"available at {(db or {}).get('Endpoint', {}).get('Address')}",
        ),
    ]


ROOM = Room(ROW, task=rds_stage, find=find, report=report, plan=plan)
