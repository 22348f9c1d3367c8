"""Deploy stage 8: a private, encrypted MySQL instance reachable only from the jumphost.

The DB's security group admits 3306 from the jumphost's group and nothing else. The master
password lives in a Prefect Secret block (generated once if missing); it never appears in
a log line, an exception message or the stage's result.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import string
from typing import Any, cast

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.client import WaitTimeout
from tasks.aws.ec2 import (
    TAG_KEY,
    StageError,
    authorize_ingress,
    deployment_tags,
    ensure_security_group,
)
from tasks.aws.retry import error_code
from tasks.deploy.models import RdsResult

log = logging.getLogger(__name__)

DB_PORT = 3306
PASSWORD_LENGTH = 24
_PASSWORD_ALPHABET = string.ascii_letters + string.digits  # nothing RDS rejects (/ @ " space)
_FAILED = frozenset(
    {
        "failed",
        "deleting",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-parameters",
        "incompatible-restore",
        "inaccessible-encryption-credentials",
        "restore-error",
        "storage-full",
    }
)


def db_instance_id(settings: FleetSettings) -> str:
    return f"{settings.deployment_name}-db"


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
        return value
    try:
        Secret(value=generate_password()).save(name)
        log.info("generated the RDS master password into Prefect Secret block %s", name)
    except ValueError:  # a racing caller saved it first: use theirs
        pass
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
def _describe_db(aws: Aws, ident: str) -> dict[str, Any] | None:
    try:
        dbs = aws.client("rds").describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"]
    except ClientError as exc:
        if error_code(exc) not in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
            raise
        return None
    return dict(dbs[0]) if dbs else None


def _check_existing(db: dict[str, Any], settings: FleetSettings, db_group: str) -> None:
    ident = db["DBInstanceIdentifier"]
    tags = db.get("TagList") or []
    if not any(
        t.get("Key") == TAG_KEY and t.get("Value") == settings.deployment_name for t in tags
    ):
        raise StageError(
            f"DB instance {ident!r} exists but is not tagged {TAG_KEY}={settings.deployment_name}; "
            "choose another TOMCAT_FLEET_DEPLOYMENT_NAME or remove it"
        )
    groups = [g.get("VpcSecurityGroupId") for g in db.get("VpcSecurityGroups", [])]
    if db_group not in groups:
        raise StageError(
            f"DB instance {ident!r} is not in security group {db_group} (it has {groups}); "
            "add that group to the instance (modify-db-instance --vpc-security-group-ids)"
        )


def _create_db(aws: Aws, settings: FleetSettings, ident: str, db_group: str) -> dict[str, Any]:
    password = ensure_db_password(settings)
    try:
        db = aws.client("rds").create_db_instance(
            DBInstanceIdentifier=ident,
            Engine=settings.db_engine,
            DBInstanceClass=settings.db_instance_class,
            AllocatedStorage=20,
            MasterUsername=settings.db_master_username,
            MasterUserPassword=password,
            StorageEncrypted=True,
            PubliclyAccessible=False,
            VpcSecurityGroupIds=[db_group],
            BackupRetentionPeriod=1,
            DeletionProtection=False,
            Tags=deployment_tags(settings, "db"),
        )["DBInstance"]
    except Exception as exc:
        if error_code(exc) not in ("DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault"):
            # the request carried the password: nothing of it may reach the message, and the
            # original exception is not chained (its traceback could show the arguments)
            raise StageError(
                f"cannot create DB instance {ident}: {type(exc).__name__}: "
                f"{_redact(str(exc), password)}"
            ) from None
        found = _describe_db(aws, ident)
        if found is None:
            raise StageError(f"DB instance {ident} exists yet cannot be described") from None
        return found
    log.info(
        "creating DB instance %s (%s %s)", ident, settings.db_engine, settings.db_instance_class
    )
    return dict(db)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def wait_db_available(aws: Aws, ident: str, timeout_s: float, poll_s: float) -> dict[str, Any]:
    """The DB instance once `available` with an endpoint (boto3's `db_instance_available`
    waiter, through the retrying client); StageError naming the status otherwise."""
    with contextlib.suppress(WaitTimeout):  # the status below says why
        aws.client("rds").wait(
            "db_instance_available",
            what=f"DB instance {ident} to be available",
            timeout_s=timeout_s,
            delay_s=poll_s,
            DBInstanceIdentifier=ident,
        )
    db = _describe_db(aws, ident)
    if db is None:
        raise StageError(f"DB instance {ident} disappeared while waiting for it")
    status = str(db.get("DBInstanceStatus"))
    if status == "available" and db.get("Endpoint", {}).get("Address"):
        return db
    if status in _FAILED:
        raise StageError(f"DB instance {ident} is {status}")
    raise StageError(f"DB instance {ident} not available after {timeout_s:.0f}s (status {status})")


def create_rds(
    aws: Aws, settings: FleetSettings, timeout_s: float = 1200, poll_s: float = 2.0
) -> RdsResult:
    """Stage 8: groups, password block and an available private DB instance."""
    _, db_group = ensure_db_groups(aws, settings)
    ident = db_instance_id(settings)
    db = _describe_db(aws, ident)
    if db is not None:
        _check_existing(db, settings, db_group)
        if _load_secret(settings.password_block) is None:
            raise StageError(
                f"DB instance {ident} exists but Prefect Secret block "
                f"{settings.password_block!r} holding its master password does not; restore "
                "the block, or reset the password (modify-db-instance) and save it there"
            )
    else:
        _create_db(aws, settings, ident, db_group)
    db = wait_db_available(aws, ident, timeout_s, poll_s)
    return RdsResult(
        db_instance_id=ident,
        endpoint=str(db["Endpoint"]["Address"]),
        port=int(db["Endpoint"].get("Port") or DB_PORT),
        security_group_id=db_group,
        master_username=str(db.get("MasterUsername") or settings.db_master_username),
        password_secret_block=settings.password_block,
    )
