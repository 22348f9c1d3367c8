"""What a stage room's `plan` is given (`Survey`): the run's settings, the instance count
asked for, read-only AWS access, and the reads several stages share (the deployment's
groups, instances, load balancer, certificate, hosted zone), each done once per plan.

Every read here is a Describe/List/Get call through the finders of tasks/aws/; the
comparisons are tasks/plan/diff.py's. Beside them, the entries the stages share: a
deployment security group, its ingress rules, and a one-instance role (the jumphost, the
traffic generator)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.acm import find_certificate
from tasks.aws.ec2 import (
    StageError,
    controller_cidr,
    find_instances,
    find_security_group,
    has_rule,
)
from tasks.aws.elbv2 import elb_name, find_by_name
from tasks.aws.route53 import find_hosted_zone
from tasks.deploy.inventory import read_inventory
from tasks.models import Instance
from tasks.plan import diff
from tasks.plan.models import PlanEntry

T = TypeVar("T")
WORLD = "0.0.0.0/0"


@dataclass
class Survey:
    """One plan's reads, cached by what they read."""

    settings: FleetSettings
    aws: Aws
    instances: int  # the web instances the deploy is asked for
    memo: dict[Any, Any] = field(default_factory=dict)

    def once(self, key: Any, read: Callable[[], T]) -> T:
        if key not in self.memo:
            self.memo[key] = read()
        return self.memo[key]

    # -- shared reads -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.settings.deployment_name

    def group(self, role: str) -> dict[str, Any] | None:
        return self.once(
            ("group", role), lambda: find_security_group(self.aws, self.settings, role)
        )

    def running(self, role: str) -> list[Instance]:
        return self.once(("running", role), lambda: find_instances(self.aws, self.settings, role))

    def cidr(self) -> str | None:
        """The CIDR the flows open SSH and the install ports to; None when this machine
        cannot learn its address (then a rule from any one CIDR counts as that rule)."""

        def read() -> str | None:
            try:
                return controller_cidr(self.settings, timeout=5.0)
            except StageError:
                return None

        return self.once("cidr", read)

    def inventory(self) -> dict[str, Any] | None:
        return self.once("inventory", lambda: read_inventory(self.settings))

    def installed(self) -> list[str] | None:
        """The installed hosts of the saved inventory (None without one)."""
        inv = self.inventory()
        if inv is None:
            return None
        return sorted(h for h, st in inv["status"].items() if st == "installed")

    def alb(self) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            elb = self.aws.client("elbv2")
            name = elb_name(self.settings, "alb")
            found = find_by_name(
                elb.describe_load_balancers, "LoadBalancers", name, "LoadBalancerNotFound"
            )
            return found[0] if found else None

        return self.once("alb", read)

    def target_group(self) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            elb = self.aws.client("elbv2")
            name = elb_name(self.settings, "tg")
            found = find_by_name(
                elb.describe_target_groups, "TargetGroups", name, "TargetGroupNotFound"
            )
            return found[0] if found else None

        return self.once("tg", read)

    def domains(self) -> list[str]:
        web = self.settings.web_domain
        return [web, *[d for d in [self.settings.beanstalk_domain] if d != web]]

    def certificate(self) -> dict[str, Any] | None:
        """The deployment's live certificate for the web and Beanstalk names, described."""

        def read() -> dict[str, Any] | None:
            arn = find_certificate(self.aws, self.settings, self.domains())
            if arn is None:
                return None
            got = self.aws.client("acm").describe_certificate(CertificateArn=arn)
            return dict(got["Certificate"])

        return self.once("certificate", read)

    def zone_id(self) -> str:
        return self.once(
            "zone", lambda: find_hosted_zone(self.aws, self.settings.hosted_zone or "")
        )

    # -- shared entries -----------------------------------------------------------------
    def group_entry(self, stage: int, role: str) -> PlanEntry:
        g = self.group(role)
        name = f"{self.name}-{role}"
        return diff.resource(
            stage,
            "security-group",
            name,
            exists=g is not None,
            create=f"the {role} group, tagged for the deployment",
            ok=str(g["GroupId"]) if g else "",
        )

    def ingress_entry(
        self,
        stage: int,
        group: str,
        ports: list[int],
        source: str | None,
        label: str,
        *,
        found: dict[str, Any] | bool | None = False,
    ) -> PlanEntry:
        """Group `group` (a role of this deployment, or `found`: a group read elsewhere)
        admits tcp `ports` from `source` (a CIDR or a group id; None: a group not made yet,
        `label` names it)."""
        g = self.group(group) if found is False else found
        name = f"{self.name}-{group}" if found is False else group
        want = [f"tcp {p} from {label}" for p in ports]
        perms = g.get("IpPermissions", []) if isinstance(g, dict) else []
        have = [
            w for p, w in zip(ports, want, strict=True) if source and has_rule(perms, p, source)
        ]
        return diff.resource(
            stage,
            "security-group",
            name,
            exists=isinstance(g, dict),
            create=f"with ingress {', '.join(want)}",
            drift=diff.members("ingress rule", want, have, remove=None),
            ok=f"ingress {', '.join(want)} open",
        )

    def controller_ingress_entry(self, stage: int, group: str, ports: list[int]) -> PlanEntry:
        """Group `group` admits tcp `ports` from this controller's CIDR (any one CIDR when
        it cannot be learnt here)."""
        cidr = self.cidr()
        if cidr is not None:
            return self.ingress_entry(stage, group, ports, cidr, cidr)
        g = self.group(group)
        perms = g.get("IpPermissions", []) if g else []
        cidrs = {r["CidrIp"] for p in perms for r in p.get("IpRanges", [])} - {WORLD}
        some = next((c for c in sorted(cidrs) if all(has_rule(perms, p, c) for p in ports)), None)
        return self.ingress_entry(stage, group, ports, some, "this controller")

    def role_instance(self, stage: int, role: str) -> list[PlanEntry]:
        """The one instance of `role` (e.g. the jumphost, the traffic generator), its group
        and SSH from this controller (tasks.aws.ec2.ensure_role_instance)."""
        have = len(self.running(role))
        return [
            self.group_entry(stage, role),
            self.controller_ingress_entry(stage, role, [22]),
            diff.count(stage, "ec2-instance", f"{self.name}-{role}", 1, min(have, 1), role),
        ]
