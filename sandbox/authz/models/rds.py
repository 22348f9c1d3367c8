"""RDS: DB instances. Tags given at creation also need `rds:AddTagsToResource` (RDS has no
create-action key); the account's first DB instance needs the RDS service-linked role."""

from __future__ import annotations

from typing import Any

from ..checks import Checks, tags_of
from ..slr import need_service_linked_role


def _backend(c: Checks) -> Any:
    from moto.rds.models import rds_backends

    return rds_backends[c.call.account][c.call.region]


def _db_tags(c: Checks, ident: str) -> dict[str, str]:
    db = _backend(c).databases.get(ident)
    return tags_of(db.tags) if db is not None else {}


def _db(c: Checks, ident: str) -> str:
    return c.arn("db", DbInstanceName=ident)


def create_db_instance(c: Checks) -> None:
    p = c.call.params
    ident = p.get("DBInstanceIdentifier", "*")
    tags = c.call.tags()
    c.add("db", _db(c, ident), request_tags=tags)
    engine = str(p.get("Engine") or "mysql")
    version = str(p.get("EngineVersion") or "8.0")
    major = ".".join(version.split(".")[:2])
    default_og = f"default:{engine}-{major.replace('.', '-')}"
    c.add(
        "subgrp",
        c.arn("subgrp", SubnetGroupName=p.get("DBSubnetGroupName") or "default"),
        request_tags=tags,
    )
    c.add(
        "pg",
        c.arn("pg", ParameterGroupName=p.get("DBParameterGroupName") or f"default.{engine}{major}"),
        request_tags=tags,
    )
    c.add(
        "og",
        c.arn(
            "og",
            OptionGroupName=p.get("OptionGroupName") or default_og,
        ),
        request_tags=tags,
    )
    for group in p.get("DBSecurityGroups") or []:
        c.add("secgrp", c.arn("secgrp", SecurityGroupName=group), request_tags=tags)
    if tags:
        c.add(
            "db",
            _db(c, ident),
            action="rds:AddTagsToResource",
            request_tags=tags,
            why="tags on create",
        )
    need_service_linked_role(c, "rds.amazonaws.com")


def by_identifier(c: Checks) -> None:
    ident = c.call.params.get("DBInstanceIdentifier")
    if ident:
        c.add("db", _db(c, ident), resource_tags=_db_tags(c, ident))
    else:  # a list of every DB instance is authorized against db:*
        c.add("db", _db(c, "*"))


def _arn_resource(c: Checks, arn: str) -> tuple[str, str]:
    kind, _, name = arn.split(":", 5)[-1].partition(":")
    return kind, name


def tag_resource(c: Checks) -> None:
    arn = c.call.params.get("ResourceName", "")
    kind, name = _arn_resource(c, arn)
    tags = tags_of(c.call.params.get("Tags"))
    current = _db_tags(c, name) if kind == "db" else {}
    c.add(kind, arn, request_tags=tags or None, resource_tags=current)


MODELS = {
    "CreateDBInstance": create_db_instance,
    "DeleteDBInstance": by_identifier,
    "DescribeDBInstances": by_identifier,
    "ModifyDBInstance": by_identifier,
    "AddTagsToResource": tag_resource,
    "RemoveTagsFromResource": tag_resource,
    "ListTagsForResource": tag_resource,
}
