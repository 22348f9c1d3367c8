"""EC2's delete side, for teardown: the deployment's instances (terminated in batches, waited
for), its security groups (cross-references revoked first, DependencyViolation waited out)
and its key pairs. Found by the deployment's tag; one line per resource (`tasks.actions`)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tasks import actions
from tasks.aws.cleanup import TAG_KEY, Cleanup, is_gone
from tasks.aws.ec2 import BATCH
from tasks.aws.retry import error_code
from tasks.planning import chunked
from tasks.waiting import WaitTimeout


def deployment_instances(c: Cleanup) -> list[dict[str, Any]]:
    """The deployment's instances not yet terminated, by id."""
    live = ["pending", "running", "stopping", "stopped", "shutting-down"]
    pages = c.aws.client("ec2").pages(
        "describe_instances",
        "Reservations",
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": [c.deployment]},
            {"Name": "instance-state-name", "Values": live},
        ],
    )
    return sorted((i for r in pages for i in r["Instances"]), key=lambda i: i["InstanceId"])


def deployment_security_groups(c: Cleanup) -> list[dict[str, Any]]:
    return list(
        c.aws.client("ec2").pages(
            "describe_security_groups",
            "SecurityGroups",
            Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [c.deployment]}],
        )
    )


def deployment_key_pairs(c: Cleanup) -> list[dict[str, Any]]:
    pairs = (
        c.aws.client("ec2")
        .describe_key_pairs(Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [c.deployment]}])
        .get("KeyPairs", [])
    )
    return [kp for kp in pairs if c.mine(kp.get("Tags"))]


def delete_instances(c: Cleanup) -> None:
    """Terminate the deployment's instances in batches of 100 and wait until terminated."""
    ec2 = c.aws.client("ec2")
    ids = [i["InstanceId"] for i in deployment_instances(c)]
    for batch in chunked(ids, BATCH):
        try:
            ec2.terminate_instances(InstanceIds=batch)
        except Exception:  # one bad id fails the whole batch: go one by one
            for iid in batch:
                c.attempt("ec2-instance", iid, ec2.terminate_instances, InstanceIds=[iid])
            continue
        for iid in batch:
            c.removed("ec2-instance", iid)
    pending = set(ids)

    def describe_or_drop(batch: list[str]) -> list[dict[str, Any]]:
        try:
            return list(ec2.describe_instances(InstanceIds=batch)["Reservations"])
        except ClientError as exc:
            if not is_gone(exc):
                raise
        found: list[dict[str, Any]] = []
        for iid in batch:  # find which ids are gone, one by one
            try:
                found += ec2.describe_instances(InstanceIds=[iid])["Reservations"]
            except ClientError as exc2:
                if not is_gone(exc2):
                    raise
                pending.discard(iid)
        return found

    def all_terminated() -> bool:
        for batch in chunked(sorted(pending), BATCH):
            for r in describe_or_drop(batch):
                for i in r["Instances"]:
                    if i["State"]["Name"] == "terminated":
                        pending.discard(i["InstanceId"])
        return not pending

    if ids:
        c.wait(f"{len(ids)} instance(s) to terminate", all_terminated)


def _only_group_refs(perm: dict[str, Any], group_ids: set[str]) -> dict[str, Any] | None:
    """The part of a rule that references groups in `group_ids` (None when there is none)."""
    pairs = [
        {"GroupId": p["GroupId"], **({"UserId": p["UserId"]} if p.get("UserId") else {})}
        for p in perm.get("UserIdGroupPairs", [])
        if p.get("GroupId") in group_ids
    ]
    if not pairs:
        return None
    out: dict[str, Any] = {"IpProtocol": perm["IpProtocol"], "UserIdGroupPairs": pairs}
    for key in ("FromPort", "ToPort"):
        if key in perm:
            out[key] = perm[key]
    return out


def _revoke_cross_references(c: Cleanup, groups: list[dict[str, Any]]) -> None:
    """Rules that reference another group of this deployment would block its deletion."""
    ec2 = c.aws.client("ec2")
    ids = {g["GroupId"] for g in groups}
    for g in groups:
        for direction, perms_key in (
            ("ingress", "IpPermissions"),
            ("egress", "IpPermissionsEgress"),
        ):
            refs = [r for p in g.get(perms_key, []) if (r := _only_group_refs(p, ids))]
            if not refs:
                continue
            try:
                if direction == "ingress":
                    ec2.revoke_security_group_ingress(GroupId=g["GroupId"], IpPermissions=refs)
                else:
                    ec2.revoke_security_group_egress(GroupId=g["GroupId"], IpPermissions=refs)
                actions.changed(
                    "security group",
                    g["GroupId"],
                    g.get("GroupName", ""),
                    f"revoked {len(refs)} {direction} rule(s) referencing this deployment's groups",
                )
            except Exception as exc:
                if not is_gone(exc):
                    c.error(f"security-group {g['GroupId']} revoke {direction}", exc)


def delete_security_groups(c: Cleanup) -> None:
    """Cross-references revoked, then every group; DependencyViolation (an instance or ENI
    not yet gone) is waited out with back-off, bounded by 20 rounds and the deadline."""
    ec2 = c.aws.client("ec2")
    groups = deployment_security_groups(c)
    _revoke_cross_references(c, groups)
    names = {g["GroupId"]: f"{g['GroupId']} ({g.get('GroupName')})" for g in groups}
    pending = sorted(names)
    blocked: list[tuple[str, ClientError]] = []
    rounds = 0

    def delete_pending() -> bool:
        """One round over the pending groups; True once none is blocked."""
        nonlocal pending, blocked, rounds
        rounds += 1
        blocked = []
        for gid in pending:
            try:
                ec2.delete_security_group(GroupId=gid)
                c.removed("security-group", names[gid])
            except ClientError as exc:
                if is_gone(exc):
                    actions.gone("security-group", names[gid])
                    continue
                if error_code(exc) == "DependencyViolation":
                    blocked.append((gid, exc))
                else:
                    c.error(f"security-group {names[gid]}", exc)
            except Exception as exc:
                c.error(f"security-group {names[gid]}", exc)
        pending = [gid for gid, _ in blocked]
        return not blocked

    try:
        c.until("security groups to be deletable", delete_pending, max_checks=21)
    except WaitTimeout:
        for gid, err in blocked:
            c.error(f"security-group {names[gid]} (after {rounds} attempts)", err)


def delete_key_pairs(c: Cleanup) -> None:
    """The deployment's key pairs (and with them its life id: the next deploy starts a new
    life, with new ClientTokens)."""
    ec2 = c.aws.client("ec2")
    for kp in deployment_key_pairs(c):
        # by name: moto ignores KeyPairId (and deleting a missing name succeeds on AWS)
        c.attempt("key-pair", kp["KeyName"], ec2.delete_key_pair, KeyName=kp["KeyName"])
