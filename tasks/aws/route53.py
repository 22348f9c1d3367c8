"""Route53: records pointing at the deployment (records cannot be tagged: a record is the
deployment's when it validates one of its certificates or points at one of its endpoints).
One line per record created, changed, found as wanted or deleted (`tasks.actions`)."""

from __future__ import annotations

from typing import Any

from tasks import actions
from tasks.aws.cleanup import Cleanup, StageError, dns
from tasks.aws.client import Aws


def fqdn(name: str) -> str:
    """Lowercase with one trailing dot; Route53's octal escape for `*` undone."""
    return name.replace("\\052", "*").rstrip(".").lower() + "."


def existing_record(aws: Aws, zone_id: str, name: str, rtype: str) -> dict[str, Any] | None:
    resp = aws.client("route53").list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=name, StartRecordType=rtype, MaxItems="1"
    )
    for rrs in resp.get("ResourceRecordSets", []):
        if fqdn(rrs["Name"]) == fqdn(name) and rrs["Type"] == rtype:
            return dict(rrs)
    return None


def _same(have: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    """`have` already says what `want` says (values or alias target; the TTL is ignored)."""
    if have is None:
        return False
    if "AliasTarget" in want:
        a, b = have.get("AliasTarget") or {}, want["AliasTarget"]
        return (
            a.get("HostedZoneId") == b["HostedZoneId"]
            and fqdn(str(a.get("DNSName", ""))) == fqdn(str(b["DNSName"]))
            and bool(a.get("EvaluateTargetHealth")) == bool(b.get("EvaluateTargetHealth"))
        )

    def values(rrs: dict[str, Any]) -> list[str]:
        return sorted(r["Value"].rstrip(".").lower() for r in rrs.get("ResourceRecords", []))

    return values(have) == values(want)


def _value_text(rrs: dict[str, Any]) -> str:
    """What a record says: `alias to <name>` or its values."""
    if rrs.get("AliasTarget"):
        return f"alias to {str(rrs['AliasTarget'].get('DNSName', '')).rstrip('.')}"
    return ", ".join(str(r.get("Value", "")) for r in rrs.get("ResourceRecords", []))


def upsert_records(
    aws: Aws,
    zone_id: str,
    records: list[dict[str, Any]],
    comment: str,
    wait_s: float | None = None,
    delay_s: float = 2.0,
) -> int:
    """UPSERT the record sets of `records` that are missing or differ, in one change batch;
    with `wait_s`, wait (Route53's `resource_record_sets_changed` waiter) until INSYNC.
    Returns how many were changed. The one Route53 upsert of the project."""
    r53 = aws.client("route53")
    changes: list[dict[str, Any]] = []
    lines: list[tuple[Any, str, str]] = []  # (actions.created / changed, record, why)
    for rrs in records:
        have = existing_record(aws, zone_id, rrs["Name"], rrs["Type"])
        label = f"{fqdn(rrs['Name']).rstrip('.')} {rrs['Type']}"
        if _same(have, rrs):
            actions.unchanged("record", label, why=_value_text(rrs))
            continue
        changes.append({"Action": "UPSERT", "ResourceRecordSet": rrs})
        if have is None:
            lines.append((actions.created, label, f"{_value_text(rrs)} ({comment})"))
        else:
            lines.append((actions.changed, label, f"{_value_text(rrs)} (was {_value_text(have)})"))
    if not changes:
        return 0
    change = r53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Comment": comment, "Changes": changes}
    )["ChangeInfo"]
    for say, label, why in lines:
        say("record", label, why=why)
    if wait_s is not None and change.get("Status") != "INSYNC":
        names = ", ".join(str(c["ResourceRecordSet"]["Name"]) for c in changes)
        r53.wait(
            "resource_record_sets_changed",
            what=f"Route53 change for {names} to be INSYNC",
            timeout_s=wait_s,
            delay_s=delay_s,
            Id=change["Id"],
        )
    return len(changes)


def record_matches(
    rrset: dict[str, Any], validations: set[tuple[str, str]], targets: set[str]
) -> bool:
    kind = rrset.get("Type")
    name = dns(rrset.get("Name"))
    values = [dns(r.get("Value")) for r in rrset.get("ResourceRecords", [])]
    alias = rrset.get("AliasTarget")
    if kind == "CNAME" and values:
        if any((name, v) in validations for v in values):
            return True
        return any(v in targets for v in values)
    if alias and kind in ("A", "AAAA"):
        return dns(alias.get("DNSName")) in targets
    return False


def matching_records(
    c: Cleanup, validations: set[tuple[str, str]], targets: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """(zone id, record) of every record (in every zone) that is one of `validations`
    (name, value) or points at one of `targets` (DNS names)."""
    targets = targets - {""}
    if not validations and not targets:
        return []
    r53 = c.aws.client("route53")
    return [
        (zone["Id"], rrset)
        for zone in r53.pages("list_hosted_zones", "HostedZones")
        for rrset in r53.pages(
            "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone["Id"]
        )
        if record_matches(rrset, validations, targets)
    ]


# -- delete -----------------------------------------------------------------------------
def delete_records(c: Cleanup, validations: set[tuple[str, str]], targets: set[str]) -> None:
    """Every record `matching_records` finds."""
    r53 = c.aws.client("route53")
    for zone_id, rrset in matching_records(c, validations, targets):
        c.attempt(
            "route53-record",
            f"{dns(rrset['Name'])} {rrset['Type']}",
            r53.change_resource_record_sets,
            HostedZoneId=zone_id,
            ChangeBatch={
                "Comment": f"teardown {c.deployment}",
                "Changes": [{"Action": "DELETE", "ResourceRecordSet": rrset}],
            },
        )


def in_zone(name: str, zone: str) -> bool:
    n, z = fqdn(name), fqdn(zone)
    return n == z or n.endswith("." + z)


def find_hosted_zone(aws: Aws, zone: str) -> str:
    """The id (without `/hostedzone/`) of the public zone named exactly `zone`."""
    r53 = aws.client("route53")
    want = fqdn(zone)
    resp = r53.list_hosted_zones_by_name(DNSName=want, MaxItems="100")
    for hz in resp.get("HostedZones", []):
        if fqdn(hz["Name"]) == want and not (hz.get("Config") or {}).get("PrivateZone"):
            return str(hz["Id"]).split("/")[-1]
    raise StageError(
        f"hosted zone {zone.rstrip('.')} not found in Route53; create it or set "
        "TOMCAT_FLEET_HOSTED_ZONE"
    )
