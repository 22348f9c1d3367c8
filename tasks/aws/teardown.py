"""Teardown: delete everything a deployment created, found through the APIs by its tag.

`teardown(aws, settings)` removes, in reverse dependency order, every resource tagged
``tomcat-fleet:deployment=<deployment>`` (and the Route53 records that point at them):

    Route53 records -> Beanstalk environments (terminate, wait) and applications ->
    listeners, load balancers (wait gone), target groups -> ACM certificates ->
    S3 buckets (every object version first) -> RDS instances (wait gone) ->
    EC2 instances (terminate in batches of 100, wait) -> security groups (cross-references
    revoked first, DependencyViolation retried) -> IAM instance profiles and roles (the
    instances' role and the Beanstalk service role, after the environments are gone) ->
    key pairs -> the RDS password Secret block (only with ``delete_secrets=True``).

Nothing is removed by name alone: a resource is removed only when its tags say it belongs to
the deployment (Route53 records cannot be tagged: a record is removed only when it is a
DNS-validation CNAME of one of the deployment's certificates or points at one of its load
balancers or Beanstalk environments). IAM roles and the instance profile are not listed but
read by the names the flows give them, then checked by tag: the shipped policy may not read
other owners' IAM entities (a same-named one of another owner is reported, never removed).
Things already gone are skipped, so a second teardown removes nothing and succeeds. Each
resource gets one line (deleted, already gone, kept, failed) and each wait one (what for,
how long); the report's `summary` says it all in one.
An error on one resource is recorded and the teardown goes on; every wait is bounded by one
overall deadline.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel, Field

from blocks.settings import FleetSettings
from tasks import actions
from tasks.aws import acm, beanstalk, ec2_cleanup, elbv2, iam, rds, route53, s3
from tasks.aws.cleanup import TAG_KEY, Cleanup, Gone, dns
from tasks.aws.client import Aws
from tasks.plan import diff
from tasks.plan.models import Plan

# kinds in the order they are removed (the report and the artifact keep this order)
KINDS: tuple[str, ...] = (
    "route53-record",
    "beanstalk-environment",
    "beanstalk-application",
    "listener",
    "load-balancer",
    "target-group",
    "certificate",
    "s3-bucket",
    "rds-instance",
    "ec2-instance",
    "security-group",
    "instance-profile",
    "iam-role",
    "key-pair",
    "secret",
)


class TeardownReport(BaseModel):
    """What a teardown removed (kind -> ids or names), how long it took, what failed."""

    removed: dict[str, list[str]] = Field(default_factory=dict)
    seconds: float = 0.0
    errors: list[str] = Field(default_factory=list)
    local_removed: list[str] = Field(default_factory=list)  # the deployment's local files
    local_kept: dict[str, str] = Field(default_factory=dict)  # path -> why it was kept
    summary: str = ""  # one line: what was deleted, already gone, kept, failed, waited for

    @property
    def total_removed(self) -> int:
        return sum(len(v) for v in self.removed.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(ids) for kind, ids in self.removed.items()}


def route53_targets(c: Cleanup) -> tuple[set[tuple[str, str]], set[str]]:
    """(validation CNAMEs only this deployment's certificates use, the DNS names of its load
    balancers and Beanstalk environments): what its records are recognised by."""
    certs, other_certs = acm.described_certificates(c)
    # a validation record another (live) certificate also relies on is left in place
    shared = acm.validation_cnames(certs) & acm.validation_cnames(other_certs)
    for name, _ in sorted(shared):
        actions.kept("route53-record", f"{name} CNAME", why="another certificate validates with it")
    validations = acm.validation_cnames(certs) - acm.validation_cnames(other_certs)
    targets = {dns(lb.get("DNSName")) for lb in elbv2.deployment_load_balancers(c)}
    targets |= {
        dns(env.get("CNAME")) for env in beanstalk.deployment_environments(c) if env.get("CNAME")
    }
    return validations, targets


def delete_route53_records(c: Cleanup) -> None:
    """DNS-validation CNAMEs of this deployment's certificates, and records (alias or
    CNAME) pointing at its load balancers or Beanstalk environments."""
    route53.delete_records(c, *route53_targets(c))


def delete_password_secret(c: Cleanup) -> None:
    """The Prefect Secret block holding the RDS password (`settings.password_block`)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = c.settings.password_block

    def delete() -> None:
        with get_client(sync_client=True) as client:
            try:
                doc = client.read_block_document_by_name(
                    name, block_type_slug="secret", include_secrets=False
                )
            except ObjectNotFound:
                raise Gone from None
            if doc.id is None:
                raise Gone
            client.delete_block_document(doc.id)

    c.attempt("secret", name, delete)


# the order of removal: what depends on something is removed before it
STEPS = (
    ("route53", delete_route53_records),
    ("beanstalk", beanstalk.delete_environments_and_applications),
    ("load-balancing", elbv2.delete_load_balancing),
    ("acm", acm.delete_certificates),
    ("s3", s3.delete_buckets),
    ("rds", rds.delete_db_instances),
    ("ec2-instances", ec2_cleanup.delete_instances),
    ("security-groups", ec2_cleanup.delete_security_groups),
    ("iam", iam.delete_profiles_and_roles),
    ("key-pairs", ec2_cleanup.delete_key_pairs),
)


# the deploy stage that makes each kind (by the resource's role tag where kinds are shared)
_STAGE_OF = {
    "route53-record": 5,
    "beanstalk-environment": 7,
    "beanstalk-application": 7,
    "listener": 4,
    "load-balancer": 4,
    "target-group": 4,
    "certificate": 5,
    "s3-bucket": 4,
    "rds-instance": 8,
    "instance-profile": 7,
    "iam-role": 7,
    "key-pair": 1,
    "secret": 8,
}
_STAGE_OF_ROLE = {"web": 1, "alb": 4, "traffic": 6, "jumphost": 9, "db": 8}


def _role_stage(tags: list[dict[str, str]] | None, default: int) -> int:
    role = next((t.get("Value") for t in tags or [] if t.get("Key") == "tomcat-fleet:role"), "")
    return _STAGE_OF_ROLE.get(str(role), default)


def plan_teardown(
    aws: Aws, settings: FleetSettings, secret: str | None = None, log: Any = None
) -> Plan:
    """What `teardown` would delete, found as it finds it (reads only), in its order; the
    Secret block `secret` when it is given (it exists and `delete_secrets` is set)."""
    c = Cleanup(aws, settings, KINDS, 60.0, 1.0, log or logging.getLogger(__name__))
    found: list[tuple[int, str, str]] = []

    def add(kind: str, name: str, stage: int | None = None) -> None:
        found.append((stage or _STAGE_OF[kind], kind, name))

    for _, rrset in route53.matching_records(c, *route53_targets(c)):
        add("route53-record", f"{dns(rrset['Name'])} {rrset['Type']}")
    envs = beanstalk.deployment_environments(c)
    for env in envs:
        if env.get("Status") not in ("Terminating", "Terminated"):
            add("beanstalk-environment", env["EnvironmentName"])
    for app in beanstalk.deployment_applications(c, envs):
        add("beanstalk-application", app)
    elb = aws.client("elbv2")
    for lb in elbv2.deployment_load_balancers(c):
        for li in elb.pages(
            "describe_listeners", "Listeners", LoadBalancerArn=lb["LoadBalancerArn"]
        ):
            name = f"{lb['LoadBalancerName']}:{li.get('Protocol')}:{li.get('Port')}"
            add("listener", name, 5 if li.get("Protocol") == "HTTPS" else 4)
        add("load-balancer", lb["LoadBalancerName"])
    for tg in elbv2.deployment_target_groups(c):
        add("target-group", tg["TargetGroupName"])
    for cert in acm.described_certificates(c)[0]:
        add("certificate", f"{cert.get('DomainName')} {acm.cert_id(cert['CertificateArn'])}")
    for bucket in s3.deployment_buckets(c):
        add("s3-bucket", bucket)
    for db in rds.deployment_db_instances(c):
        add("rds-instance", db["DBInstanceIdentifier"])
    for i in ec2_cleanup.deployment_instances(c):
        add("ec2-instance", i["InstanceId"], _role_stage(i.get("Tags"), 7))
    for g in ec2_cleanup.deployment_security_groups(c):
        name = f"{g['GroupId']} ({g.get('GroupName')})"
        add("security-group", name, _role_stage(g.get("Tags"), 7))
    for kind, name in iam.deployment_iam(c):
        add(kind, name)
    for kp in ec2_cleanup.deployment_key_pairs(c):
        add("key-pair", kp["KeyName"])
    if secret:
        add("secret", secret)
    return Plan(
        deployment_name=settings.deployment_name, command="teardown", entries=diff.deletes(found)
    )


def teardown(
    aws: Aws,
    settings: FleetSettings,
    timeout_s: float = 1200,
    poll_s: float = 2.0,
    delete_secrets: bool = False,
    log: Any = None,
) -> TeardownReport:
    """Delete everything of `settings.deployment_name`, in reverse dependency order.

    Never raises for a resource: errors are collected in the report's `errors` and the
    teardown continues. `timeout_s` bounds the whole run (every wait shares it); `poll_s`
    is the polling interval. The Secret block with the RDS password
    (`settings.password_block`) is deleted only when `delete_secrets` is True.
    """
    c = Cleanup(aws, settings, KINDS, timeout_s, poll_s, log or logging.getLogger(__name__))
    c.log.info("teardown of deployment %r (tag %s)", c.deployment, TAG_KEY)
    steps = [*STEPS, *([("secret", delete_password_secret)] if delete_secrets else [])]
    with actions.recording() as done:  # one line per resource, kept for the summary
        for name, step in steps:
            c.stage(name, step)
    return TeardownReport(
        removed=c.removed_by_kind,
        errors=c.errors,
        seconds=time.monotonic() - c.t0,
        summary=done.summary() or "nothing of the deployment found",
    )
