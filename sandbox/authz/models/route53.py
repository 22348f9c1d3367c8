"""Route 53: hosted zones, record changes (with the record-set condition keys), changes."""

from __future__ import annotations

import string

from ..checks import Checks

_PLAIN = set(string.ascii_lowercase + string.digits + "-_.")


def normalized_name(name: str) -> str:
    """A record name as route53:ChangeResourceRecordSetsNormalizedRecordNames holds it:
    lowercase, no trailing dot, other characters as a backslash and three octal digits."""
    name = name.lower().rstrip(".")
    out, i = [], 0
    while i < len(name):
        ch = name[i]
        if ch == "\\" and name[i + 1 : i + 4].isdigit():  # already escaped (\052)
            out.append(name[i : i + 4])
            i += 4
            continue
        out.append(ch if ch in _PLAIN else f"\\{ord(ch):03o}")
        i += 1
    return "".join(out)


def _zone(c: Checks) -> str:
    p = c.call.params
    zone = str(p.get("HostedZoneId") or p.get("Id") or "*").rsplit("/", 1)[-1]
    return c.arn("hostedzone", Id=zone)


def change_record_sets(c: Checks) -> None:
    changes = (c.call.params.get("ChangeBatch") or {}).get("Changes") or []
    names = [normalized_name(ch["ResourceRecordSet"]["Name"]) for ch in changes]
    types = [str(ch["ResourceRecordSet"]["Type"]).upper() for ch in changes]
    actions = [str(ch["Action"]).upper() for ch in changes]
    c.add(
        "hostedzone",
        _zone(c),
        keys={
            "route53:ChangeResourceRecordSetsNormalizedRecordNames": names,
            "route53:ChangeResourceRecordSetsRecordTypes": types,
            "route53:ChangeResourceRecordSetsActions": actions,
        },
    )


def on_zone(c: Checks) -> None:
    c.add("hostedzone", _zone(c))


def get_change(c: Checks) -> None:
    change = str(c.call.params.get("Id", "*")).rsplit("/", 1)[-1]
    c.add("change", c.arn("change", Id=change))


MODELS = {
    "ChangeResourceRecordSets": change_record_sets,
    "ListResourceRecordSets": on_zone,
    "GetHostedZone": on_zone,
    "DeleteHostedZone": on_zone,
    "GetChange": get_change,
}
