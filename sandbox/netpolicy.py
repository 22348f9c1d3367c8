"""Security-group evaluation: may a source reach a destination port?

Pure data in, bool out. A rule admits a source by CIDR (the source's address) or by
group reference (the source carries that group). Protocol "-1" means all traffic.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    protocol: str  # "tcp", "udp", "icmp" or "-1"
    from_port: int | None
    to_port: int | None
    cidr: str | None = None
    source_group: str | None = None


@dataclass(frozen=True)
class Source:
    """Who opens the connection: its address(es) and the groups it carries."""

    addresses: tuple[str, ...]
    groups: frozenset[str] = frozenset()


def rule_admits(rule: Rule, port: int, source: Source) -> bool:
    if rule.protocol not in ("tcp", "-1"):
        return False
    if rule.protocol == "tcp" and not (
        rule.from_port is not None
        and rule.to_port is not None
        and rule.from_port <= port <= rule.to_port
    ):
        return False
    if rule.source_group is not None:
        return rule.source_group in source.groups
    if rule.cidr is not None:
        net = ipaddress.ip_network(rule.cidr, strict=False)
        return any(ipaddress.ip_address(a) in net for a in source.addresses)
    return False


def allowed(
    rules_by_group: dict[str, list[Rule]], dest_groups: list[str], port: int, source: Source
) -> bool:
    """True when any ingress rule of any destination group admits the source on `port`."""
    return any(
        rule_admits(rule, port, source)
        for gid in dest_groups
        for rule in rules_by_group.get(gid, [])
    )
