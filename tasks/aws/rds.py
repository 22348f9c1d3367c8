"""RDS: the deployment's DB instances."""

from __future__ import annotations

from tasks.aws.cleanup import Cleanup


# -- delete -----------------------------------------------------------------------------
def _db_gone(c: Cleanup, db_id: str) -> bool:
    rds = c.aws.client("rds")
    return not rds.describe_db_instances(DBInstanceIdentifier=db_id).get("DBInstances")


def delete_db_instances(c: Cleanup) -> None:
    """Delete (no final snapshot) and wait until gone; one already deleting is waited for."""
    rds = c.aws.client("rds")
    dbs = [
        db for db in rds.pages("describe_db_instances", "DBInstances") if c.mine(db.get("TagList"))
    ]
    for db in dbs:
        if db.get("DBInstanceStatus") == "deleting":
            continue  # an earlier run's deletion is still going: wait for it below
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
        c.wait(f"RDS instance {db_id} to be deleted", _db_gone, c, db_id)
