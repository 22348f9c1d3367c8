"""RDS: the deployment's DB instances; one line per one created or deleted
(`tasks.actions`). The master password never reaches a line."""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws.cleanup import TAG_KEY, Cleanup, StageError
from tasks.aws.client import Aws, WaitTimeout
from tasks.aws.ec2 import deployment_tags
from tasks.aws.retry import error_code
from tasks.remote.connection import redact


# -- find -------------------------------------------------------------------------------
def deployment_db_instances(c: Cleanup) -> list[dict[str, Any]]:
    """The DB instances tagged for this deployment."""
    rds = c.aws.client("rds")
    return [
        db for db in rds.pages("describe_db_instances", "DBInstances") if c.mine(db.get("TagList"))
    ]


# -- delete -----------------------------------------------------------------------------
def delete_db_instances(c: Cleanup) -> None:
    """Delete (no final snapshot) and wait until gone; one already deleting is waited for."""
    rds = c.aws.client("rds")
    dbs = deployment_db_instances(c)
    for db in dbs:
        if db.get("DBInstanceStatus") == "deleting":  # an earlier run's: waited for below
            actions.found("rds-instance", db["DBInstanceIdentifier"], why="already deleting")
            continue
        c.attempt(
            "rds-instance",
            db["DBInstanceIdentifier"],
            c.retrying,
            {"InvalidDBInstanceState", "InvalidDBInstanceStateFault"},
            rds.delete_db_instance,
            DBInstanceIdentifier=db["DBInstanceIdentifier"],
            SkipFinalSnapshot=True,
            DeleteAutomatedBackups=True,
        )
    for db in dbs:
        db_id = db["DBInstanceIdentifier"]
        c.waiter(
            f"RDS instance {db_id} to be deleted",
            "rds",
            "db_instance_deleted",
            DBInstanceIdentifier=db_id,
        )


DB_PORT = 3306


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


def describe_db(aws: Aws, ident: str) -> dict[str, Any] | None:
    try:
        dbs = aws.client("rds").describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"]
    except ClientError as exc:
        if error_code(exc) not in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
            raise
        return None
    return dict(dbs[0]) if dbs else None


def check_existing(db: dict[str, Any], settings: FleetSettings, db_group: str) -> None:
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


def create_db_instance(
    aws: Aws, settings: FleetSettings, ident: str, db_group: str, password: str
) -> dict[str, Any]:
    """A private, encrypted DB instance in `db_group`; a racing creator's one is described.
    Nothing of `password` reaches an exception or a log."""
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
                f"{redact(str(exc), [password])}"
            ) from None
        found = describe_db(aws, ident)
        if found is None:
            raise StageError(f"DB instance {ident} exists yet cannot be described") from None
        actions.found("DB instance", ident, why="created meanwhile by another run")
        return found
    why = f"{settings.db_engine} {settings.db_instance_class}, private, encrypted, in {db_group}"
    actions.created("DB instance", ident, why=why)
    return dict(db)


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
    db = describe_db(aws, ident)
    if db is None:
        raise StageError(f"DB instance {ident} disappeared while waiting for it")
    status = str(db.get("DBInstanceStatus"))
    if status == "available" and db.get("Endpoint", {}).get("Address"):
        return db
    if status in _FAILED:
        raise StageError(f"DB instance {ident} is {status}")
    raise StageError(f"DB instance {ident} not available after {timeout_s:.0f}s (status {status})")
