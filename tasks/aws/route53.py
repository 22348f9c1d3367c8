"""Route53: records pointing at the deployment (records cannot be tagged: a record is the
deployment's when it validates one of its certificates or points at one of its endpoints)."""

from __future__ import annotations

from typing import Any

from tasks.aws.cleanup import Cleanup, dns


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


# -- delete -----------------------------------------------------------------------------
def delete_records(c: Cleanup, validations: set[tuple[str, str]], targets: set[str]) -> None:
    """Every record (in every zone) that is one of `validations` (name, value) or points at
    one of `targets` (DNS names)."""
    targets = targets - {""}
    if not validations and not targets:
        return
    r53 = c.aws.client("route53")
    for zone in r53.pages("list_hosted_zones", "HostedZones"):
        for rrset in r53.pages(
            "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone["Id"]
        ):
            if record_matches(rrset, validations, targets):
                c.attempt(
                    "route53-record",
                    f"{dns(rrset['Name'])} {rrset['Type']}",
                    r53.change_resource_record_sets,
                    HostedZoneId=zone["Id"],
                    ChangeBatch={
                        "Comment": f"teardown {c.deployment}",
                        "Changes": [{"Action": "DELETE", "ResourceRecordSet": rrset}],
                    },
                )
