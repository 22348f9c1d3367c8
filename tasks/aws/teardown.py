"""Teardown: delete everything a deployment created, found through the APIs by its tag.

`teardown(aws, settings)` removes, in reverse dependency order, every resource tagged
``tomcat-fleet:deployment=<deployment>`` (and the Route53 records that point at them):

    Route53 records -> Beanstalk environments (terminate, wait) and applications ->
    listeners, load balancers (wait gone), target groups -> ACM certificates ->
    S3 buckets (every object version first) -> RDS instances (wait gone) ->
    EC2 instances (terminate in batches of 100, wait) -> security groups (cross-references
    revoked first, DependencyViolation retried) -> IAM instance profiles and roles ->
    key pairs -> the RDS password Secret block (only with ``delete_secrets=True``).

Nothing is found by name alone: a resource is removed only when its tags say it belongs to
the deployment (Route53 records cannot be tagged: a record is removed only when it is a
DNS-validation CNAME of one of the deployment's certificates or points at one of its load
balancers or Beanstalk environments). Things already gone are skipped silently, so a second
teardown removes nothing and succeeds. An error on one resource is recorded and the teardown
goes on; every wait is bounded by one overall deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.ec2 import TAG_KEY
from tasks.aws.retry import backoff_delay, error_code
from tasks.planning import chunked

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

# error codes that mean "already gone": skipped silently
GONE_CODES: frozenset[str] = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "InvalidGroup.NotFound",
        "InvalidGroupId.NotFound",
        "InvalidPermission.NotFound",
        "InvalidKeyPair.NotFound",
        "LoadBalancerNotFound",
        "TargetGroupNotFound",
        "ListenerNotFound",
        "ResourceNotFoundException",
        "NoSuchBucket",
        "NoSuchKey",
        "NoSuchHostedZone",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "NoSuchEntity",
    }
)

_ALL_KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]


class TeardownReport(BaseModel):
    """What a teardown removed (kind -> ids or names), how long it took, what failed."""

    removed: dict[str, list[str]] = Field(default_factory=dict)
    seconds: float = 0.0
    errors: list[str] = Field(default_factory=list)

    @property
    def total_removed(self) -> int:
        return sum(len(v) for v in self.removed.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(ids) for kind, ids in self.removed.items()}


class _Gone(Exception):
    """The resource no longer exists: nothing to do, nothing to report."""


def _is_gone(exc: BaseException) -> bool:
    code = error_code(exc)
    if code in GONE_CODES:
        return True
    # Route53 says a record to delete does not exist with InvalidChangeBatch
    return code == "InvalidChangeBatch" and "not found" in str(exc).lower()


def _tag_value(tags: Any) -> str | None:
    """The deployment tag's value from a list of {Key, Value} or a plain dict."""
    if isinstance(tags, dict):
        value = tags.get(TAG_KEY)
        return None if value is None else str(value)
    for tag in tags or []:
        if tag.get("Key") == TAG_KEY:
            return str(tag.get("Value"))
    return None


def _dns(name: str | None) -> str:
    """A DNS name normalised for comparison: lowercase, no trailing dot, no `dualstack.`."""
    out = (name or "").strip().rstrip(".").lower()
    return out.removeprefix("dualstack.")


def _pages(
    call: Callable[..., dict[str, Any]],
    key: str,
    token_in: str,
    token_out: str,
    **kwargs: Any,
) -> Iterator[dict[str, Any]]:
    """Every item of a paginated list call (through the retrying client)."""
    token: str | None = None
    while True:
        page = call(**kwargs, **({token_in: token} if token else {}))
        yield from page.get(key, [])
        token = page.get(token_out)
        if not token:
            return


class _Teardown:
    def __init__(
        self,
        aws: Aws,
        settings: FleetSettings,
        timeout_s: float,
        poll_s: float,
        log: Any,
    ) -> None:
        self.aws = aws
        self.settings = settings
        self.deployment = settings.deployment_name
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout_s
        self.timeout_s = timeout_s
        self.poll_s = max(0.05, poll_s)
        self.log = log
        self.report = TeardownReport(removed={k: [] for k in KINDS})

    # -- bookkeeping ----------------------------------------------------------------------
    def mine(self, tags: Any) -> bool:
        return _tag_value(tags) == self.deployment

    def removed(self, kind: str, ident: str) -> None:
        self.report.removed[kind].append(ident)
        self.log.info("removed %s %s", kind, ident)

    def error(self, what: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            code = error_code(exc) or type(exc).__name__
            text = f"{what}: {code}: {exc}"
        else:
            text = f"{what}: {exc}"
        self.report.errors.append(text)
        self.log.error("teardown: %s", text)

    def attempt(self, kind: str, ident: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> bool:
        """Run one deletion, `fn(*args, **kw)`; True when it removed something (already
        gone: False, silently; failed: False, error recorded)."""
        try:
            fn(*args, **kw)
        except _Gone:
            return False
        except Exception as exc:
            if _is_gone(exc):
                return False
            self.error(f"{kind} {ident}", exc)
            return False
        self.removed(kind, ident)
        return True

    def stage(self, name: str, fn: Callable[[], Any]) -> None:
        """One stage; an error that escapes it (e.g. listing failed) is recorded."""
        try:
            fn()
        except Exception as exc:
            self.error(f"stage {name}", exc)

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self, what: str, done: Callable[..., bool], *args: Any, **kw: Any) -> bool:
        """Poll `done(*args, **kw)` until True or the deadline; a timeout is an error."""
        while True:
            try:
                if done(*args, **kw):
                    return True
            except Exception as exc:
                if not _is_gone(exc):
                    self.error(f"waiting for {what}", exc)
                    return False
                return True
            if self.remaining <= 0:
                self.error(
                    f"waiting for {what}", f"not done within the {self.timeout_s:.0f}s deadline"
                )
                return False
            time.sleep(min(self.poll_s, max(0.0, self.remaining)))

    def retrying(self, codes: set[str], fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """`fn(*args, **kw)`, retrying the given error codes with bounded back-off (at most
        30 retries, never past the deadline)."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kw)
            except ClientError as exc:
                if error_code(exc) not in codes:
                    raise
                delay = backoff_delay(attempt, base=self.poll_s, cap=max(self.poll_s, 15.0))
                if attempt >= 30 or self.remaining < delay:
                    raise
                attempt += 1
                time.sleep(delay)

    # -- discovery ------------------------------------------------------------------------
    def load_balancers(self) -> list[dict[str, Any]]:
        elb = self.aws.client("elbv2")
        lbs = list(_pages(elb.describe_load_balancers, "LoadBalancers", "Marker", "NextMarker"))
        return self._elb_tagged(lbs, "LoadBalancerArn")

    def target_groups(self) -> list[dict[str, Any]]:
        elb = self.aws.client("elbv2")
        tgs = list(_pages(elb.describe_target_groups, "TargetGroups", "Marker", "NextMarker"))
        return self._elb_tagged(tgs, "TargetGroupArn")

    def _elb_tagged(self, items: list[dict[str, Any]], arn_key: str) -> list[dict[str, Any]]:
        elb = self.aws.client("elbv2")
        by_arn = {i[arn_key]: i for i in items}
        out = []
        for batch in chunked(list(by_arn), 20):
            for desc in elb.describe_tags(ResourceArns=batch)["TagDescriptions"]:
                if self.mine(desc.get("Tags")):
                    out.append(by_arn[desc["ResourceArn"]])
        return out

    def certificates(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(this deployment's certificates, everyone else's), each described."""
        acm = self.aws.client("acm")
        mine: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for summary in _pages(
            acm.list_certificates,
            "CertificateSummaryList",
            "NextToken",
            "NextToken",
            Includes={"keyTypes": _ALL_KEY_TYPES},
        ):
            arn = summary["CertificateArn"]
            try:
                tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
            except ClientError as exc:
                if _is_gone(exc):
                    continue
                raise
            (mine if self.mine(tags) else others).append(cert)
        return mine, others

    def environments(self) -> list[dict[str, Any]]:
        """This deployment's Beanstalk environments, terminated ones included."""
        eb = self.aws.client("elasticbeanstalk")
        out = []
        for env in _pages(
            eb.describe_environments, "Environments", "NextToken", "NextToken", IncludeDeleted=True
        ):
            try:
                tags = eb.list_tags_for_resource(ResourceArn=env["EnvironmentArn"]).get(
                    "ResourceTags", []
                )
            except ClientError as exc:
                if _is_gone(exc) or error_code(exc) == "InvalidParameterValue":
                    continue
                raise
            if self.mine(tags):
                out.append(env)
        return out

    # -- stages ---------------------------------------------------------------------------
    def route53(self) -> None:
        """DNS-validation CNAMEs of this deployment's certificates, and records (alias or
        CNAME) pointing at its load balancers or Beanstalk environments."""
        certs, other_certs = self.certificates()

        def validation(certs: list[dict[str, Any]]) -> set[tuple[str, str]]:
            return {
                (_dns(rr.get("Name")), _dns(rr.get("Value")))
                for cert in certs
                for opt in cert.get("DomainValidationOptions", [])
                if (rr := opt.get("ResourceRecord")) and rr.get("Type", "CNAME") == "CNAME"
            }

        # a validation record another (live) certificate also relies on is left in place
        validations = validation(certs) - validation(other_certs)
        targets = {_dns(lb.get("DNSName")) for lb in self.load_balancers()}
        targets |= {_dns(env.get("CNAME")) for env in self.environments() if env.get("CNAME")}
        targets.discard("")
        if not validations and not targets:
            return
        r53 = self.aws.client("route53")
        for zone in _pages(r53.list_hosted_zones, "HostedZones", "Marker", "NextMarker"):
            for rrset in self._record_sets(zone["Id"]):
                if self._record_matches(rrset, validations, targets):
                    ident = f"{_dns(rrset['Name'])} {rrset['Type']}"
                    self.attempt(
                        "route53-record",
                        ident,
                        r53.change_resource_record_sets,
                        HostedZoneId=zone["Id"],
                        ChangeBatch={
                            "Comment": f"teardown {self.deployment}",
                            "Changes": [{"Action": "DELETE", "ResourceRecordSet": rrset}],
                        },
                    )

    def _record_sets(self, zone_id: str) -> Iterator[dict[str, Any]]:
        r53 = self.aws.client("route53")
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id}
        while True:
            page = r53.list_resource_record_sets(**kwargs)
            yield from page.get("ResourceRecordSets", [])
            if not page.get("IsTruncated"):
                return
            kwargs["StartRecordName"] = page["NextRecordName"]
            kwargs["StartRecordType"] = page["NextRecordType"]
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
            else:
                kwargs.pop("StartRecordIdentifier", None)

    @staticmethod
    def _record_matches(
        rrset: dict[str, Any], validations: set[tuple[str, str]], targets: set[str]
    ) -> bool:
        kind = rrset.get("Type")
        name = _dns(rrset.get("Name"))
        values = [_dns(r.get("Value")) for r in rrset.get("ResourceRecords", [])]
        alias = rrset.get("AliasTarget")
        if kind == "CNAME" and values:
            if any((name, v) in validations for v in values):
                return True
            return any(v in targets for v in values)
        if alias and kind in ("A", "AAAA"):
            return _dns(alias.get("DNSName")) in targets
        return False

    def beanstalk(self) -> None:
        eb = self.aws.client("elasticbeanstalk")
        envs = self.environments()
        live = [e for e in envs if e.get("Status") not in ("Terminating", "Terminated")]
        for env in live:
            name, env_id = env["EnvironmentName"], env["EnvironmentId"]
            if env.get("Status") in ("Launching", "Updating"):  # terminate it once settled
                self.wait(f"beanstalk environment {name} to settle", self._eb_settled, env_id)
            self.attempt(
                "beanstalk-environment", name, eb.terminate_environment, EnvironmentId=env_id
            )
        for env in envs:
            if env.get("Status") != "Terminated":
                self.wait(
                    f"beanstalk environment {env['EnvironmentName']} to terminate",
                    self._eb_terminated,
                    env["EnvironmentId"],
                )
        # applications: those tagged for this deployment, and those holding its environments
        apps = {e["ApplicationName"] for e in envs if e.get("ApplicationName")}
        for app in eb.describe_applications().get("Applications", []):
            arn = app.get("ApplicationArn")
            if app["ApplicationName"] in apps or not arn:
                continue
            try:
                tags = eb.list_tags_for_resource(ResourceArn=arn).get("ResourceTags", [])
            except ClientError:
                continue  # moto cannot tag applications; AWS can
            if self.mine(tags):
                apps.add(app["ApplicationName"])
        for name in sorted(apps):
            self.attempt("beanstalk-application", name, self._delete_application, name)

    def _delete_application(self, name: str) -> None:
        eb = self.aws.client("elasticbeanstalk")
        if not eb.describe_applications(ApplicationNames=[name]).get("Applications"):
            raise _Gone
        eb.delete_application(ApplicationName=name, TerminateEnvByForce=True)

    def _eb_status(self, env_id: str) -> str | None:
        eb = self.aws.client("elasticbeanstalk")
        envs = eb.describe_environments(EnvironmentIds=[env_id], IncludeDeleted=True).get(
            "Environments", []
        )
        return str(envs[0]["Status"]) if envs else None

    def _eb_settled(self, env_id: str) -> bool:
        return self._eb_status(env_id) not in ("Launching", "Updating")

    def _eb_terminated(self, env_id: str) -> bool:
        return self._eb_status(env_id) in (None, "Terminated")

    def load_balancing(self) -> None:
        elb = self.aws.client("elbv2")
        lbs = self.load_balancers()
        for lb in lbs:
            arn = lb["LoadBalancerArn"]
            try:
                listeners = list(
                    _pages(
                        elb.describe_listeners,
                        "Listeners",
                        "Marker",
                        "NextMarker",
                        LoadBalancerArn=arn,
                    )
                )
            except ClientError as exc:
                if _is_gone(exc):
                    continue
                raise
            # HTTPS first (it holds the certificate), then HTTP and the rest
            listeners.sort(key=lambda li: (li.get("Protocol") != "HTTPS", li.get("Port", 0)))
            for li in listeners:
                self.attempt(
                    "listener",
                    f"{lb['LoadBalancerName']}:{li.get('Protocol')}:{li.get('Port')}",
                    elb.delete_listener,
                    ListenerArn=li["ListenerArn"],
                )
            self.attempt(
                "load-balancer",
                lb["LoadBalancerName"],
                elb.delete_load_balancer,
                LoadBalancerArn=arn,
            )
        for lb in lbs:
            self.wait(
                f"load balancer {lb['LoadBalancerName']} to be gone",
                self._lb_gone,
                lb["LoadBalancerArn"],
            )
        for tg in self.target_groups():
            self.attempt(
                "target-group",
                tg["TargetGroupName"],
                self.retrying,
                {"ResourceInUse"},
                elb.delete_target_group,
                TargetGroupArn=tg["TargetGroupArn"],
            )

    def _lb_gone(self, arn: str) -> bool:
        elb = self.aws.client("elbv2")
        return not elb.describe_load_balancers(LoadBalancerArns=[arn]).get("LoadBalancers")

    def certificates_stage(self) -> None:
        acm = self.aws.client("acm")
        certs, _ = self.certificates()
        for cert in certs:
            arn = cert["CertificateArn"]
            self.attempt(
                "certificate",
                f"{cert.get('DomainName')} {arn.rsplit('/', 1)[-1]}",
                self.retrying,
                {"ResourceInUseException"},
                acm.delete_certificate,
                CertificateArn=arn,
            )

    def buckets(self) -> None:
        s3 = self.aws.client("s3")
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            try:
                tags = s3.get_bucket_tagging(Bucket=name).get("TagSet", [])
            except ClientError:
                continue  # NoSuchTagSet, another region's bucket, no access: not ours
            if self.mine(tags):
                self.attempt("s3-bucket", name, self._empty_and_delete, name)

    def _empty_and_delete(self, bucket: str) -> None:
        s3 = self.aws.client("s3")
        kwargs: dict[str, Any] = {"Bucket": bucket}
        while True:
            page = s3.list_object_versions(**kwargs)
            objects = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for batch in chunked(objects, 1000):
                res = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                failed = [e for e in res.get("Errors", []) if e.get("Code") != "NoSuchKey"]
                if failed:
                    raise RuntimeError(
                        f"{len(failed)} object(s) not deleted, first {failed[0].get('Key')}: "
                        f"{failed[0].get('Code')} {failed[0].get('Message')}"
                    )
            if not page.get("IsTruncated"):
                break
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")
        # objects written without versioning, if the listing above missed any
        for obj in _pages(
            s3.list_objects_v2,
            "Contents",
            "ContinuationToken",
            "NextContinuationToken",
            Bucket=bucket,
        ):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)

    def databases(self) -> None:
        rds = self.aws.client("rds")
        dbs = [
            db
            for db in _pages(rds.describe_db_instances, "DBInstances", "Marker", "Marker")
            if self.mine(db.get("TagList"))
        ]
        for db in dbs:
            if db.get("DBInstanceStatus") == "deleting":
                continue  # an earlier run's deletion is still going: wait for it below
            self.attempt(
                "rds-instance",
                db["DBInstanceIdentifier"],
                self.retrying,
                {"InvalidDBInstanceState", "InvalidDBInstanceStateFault"},
                rds.delete_db_instance,
                DBInstanceIdentifier=db["DBInstanceIdentifier"],
                SkipFinalSnapshot=True,
                DeleteAutomatedBackups=True,
            )
        for db in dbs:
            db_id = db["DBInstanceIdentifier"]
            self.wait(f"RDS instance {db_id} to be deleted", self._db_gone, db_id)

    def _db_gone(self, db_id: str) -> bool:
        rds = self.aws.client("rds")
        return not rds.describe_db_instances(DBInstanceIdentifier=db_id).get("DBInstances")

    def instances(self) -> None:
        ec2 = self.aws.client("ec2")
        live = ["pending", "running", "stopping", "stopped", "shutting-down"]
        ids = sorted(
            i["InstanceId"]
            for r in _pages(
                ec2.describe_instances,
                "Reservations",
                "NextToken",
                "NextToken",
                Filters=[
                    {"Name": f"tag:{TAG_KEY}", "Values": [self.deployment]},
                    {"Name": "instance-state-name", "Values": live},
                ],
            )
            for i in r["Instances"]
        )
        for batch in chunked(ids, 100):
            try:
                ec2.terminate_instances(InstanceIds=batch)
            except Exception:  # one bad id fails the whole batch: go one by one
                for iid in batch:
                    self.attempt("ec2-instance", iid, ec2.terminate_instances, InstanceIds=[iid])
                continue
            for iid in batch:
                self.removed("ec2-instance", iid)
        pending = set(ids)

        def all_terminated() -> bool:
            for batch in chunked(sorted(pending), 100):
                try:
                    res = ec2.describe_instances(InstanceIds=batch)
                except ClientError as exc:
                    if not _is_gone(exc):
                        raise
                    res = {"Reservations": []}
                    for iid in batch:  # find which ids are gone, one by one
                        try:
                            res["Reservations"] += ec2.describe_instances(InstanceIds=[iid])[
                                "Reservations"
                            ]
                        except ClientError as exc2:
                            if not _is_gone(exc2):
                                raise
                            pending.discard(iid)
                for r in res["Reservations"]:
                    for i in r["Instances"]:
                        if i["State"]["Name"] == "terminated":
                            pending.discard(i["InstanceId"])
            return not pending

        if ids:
            self.wait(f"{len(ids)} instance(s) to terminate", all_terminated)

    def security_groups(self) -> None:
        ec2 = self.aws.client("ec2")
        groups = list(
            _pages(
                ec2.describe_security_groups,
                "SecurityGroups",
                "NextToken",
                "NextToken",
                Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [self.deployment]}],
            )
        )
        ids = {g["GroupId"] for g in groups}
        # rules that reference another group of this deployment would block its deletion
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
                    self.log.info(
                        "revoked %d %s rule(s) of %s referencing this deployment's groups",
                        len(refs),
                        direction,
                        g["GroupId"],
                    )
                except Exception as exc:
                    if not _is_gone(exc):
                        self.error(f"security-group {g['GroupId']} revoke {direction}", exc)
        names = {g["GroupId"]: f"{g['GroupId']} ({g.get('GroupName')})" for g in groups}
        pending = sorted(ids)
        attempt = 0
        while pending:
            blocked: list[tuple[str, ClientError]] = []
            for gid in pending:
                try:
                    ec2.delete_security_group(GroupId=gid)
                    self.removed("security-group", names[gid])
                except ClientError as exc:
                    if _is_gone(exc):
                        continue
                    if error_code(exc) == "DependencyViolation":
                        blocked.append((gid, exc))
                    else:
                        self.error(f"security-group {names[gid]}", exc)
                except Exception as exc:
                    self.error(f"security-group {names[gid]}", exc)
            if not blocked:
                return
            delay = backoff_delay(attempt, base=self.poll_s, cap=max(self.poll_s, 15.0))
            if attempt >= 20 or self.remaining < delay:
                for gid, err in blocked:
                    self.error(f"security-group {names[gid]} (after {attempt + 1} attempts)", err)
                return
            attempt += 1
            time.sleep(delay)
            pending = [gid for gid, _ in blocked]

    def iam(self) -> None:
        iam = self.aws.client("iam")
        profiles = []
        for p in _pages(iam.list_instance_profiles, "InstanceProfiles", "Marker", "Marker"):
            tags = p.get("Tags")
            if tags is None:  # AWS lists profiles without their tags
                try:
                    tags = iam.get_instance_profile(InstanceProfileName=p["InstanceProfileName"])[
                        "InstanceProfile"
                    ].get("Tags", [])
                except ClientError as exc:
                    if _is_gone(exc):
                        continue
                    raise
            if self.mine(tags):
                profiles.append(p)
        for p in profiles:
            name = p["InstanceProfileName"]

            def delete_profile(p: dict[str, Any] = p, name: str = name) -> None:
                for role in p.get("Roles", []):
                    try:
                        iam.remove_role_from_instance_profile(
                            InstanceProfileName=name, RoleName=role["RoleName"]
                        )
                    except ClientError as exc:
                        if not _is_gone(exc):
                            raise
                iam.delete_instance_profile(InstanceProfileName=name)

            self.attempt("instance-profile", name, delete_profile)
        roles = []
        for role in _pages(iam.list_roles, "Roles", "Marker", "Marker"):
            if role.get("Path", "/").startswith("/aws-service-role/"):
                continue
            try:
                tags = iam.list_role_tags(RoleName=role["RoleName"]).get("Tags", [])
            except ClientError as exc:
                if _is_gone(exc):
                    continue
                raise
            if self.mine(tags):
                roles.append(role["RoleName"])
        for name in roles:
            self.attempt("iam-role", name, self._delete_role, name)

    def _delete_role(self, name: str) -> None:
        iam = self.aws.client("iam")
        for p in _pages(
            iam.list_instance_profiles_for_role,
            "InstanceProfiles",
            "Marker",
            "Marker",
            RoleName=name,
        ):
            iam.remove_role_from_instance_profile(
                InstanceProfileName=p["InstanceProfileName"], RoleName=name
            )
        for pol in _pages(
            iam.list_attached_role_policies, "AttachedPolicies", "Marker", "Marker", RoleName=name
        ):
            iam.detach_role_policy(RoleName=name, PolicyArn=pol["PolicyArn"])
        for pol_name in _pages(
            iam.list_role_policies, "PolicyNames", "Marker", "Marker", RoleName=name
        ):
            iam.delete_role_policy(RoleName=name, PolicyName=pol_name)
        iam.delete_role(RoleName=name)

    def key_pairs(self) -> None:
        ec2 = self.aws.client("ec2")
        pairs = ec2.describe_key_pairs(
            Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [self.deployment]}]
        ).get("KeyPairs", [])
        for kp in pairs:
            if not self.mine(kp.get("Tags")):
                continue
            # by name: moto ignores KeyPairId (and deleting a missing name succeeds on AWS)
            self.attempt("key-pair", kp["KeyName"], ec2.delete_key_pair, KeyName=kp["KeyName"])

    def secret(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        name = self.settings.password_block

        def delete() -> None:
            with get_client(sync_client=True) as client:
                try:
                    doc = client.read_block_document_by_name(
                        name, block_type_slug="secret", include_secrets=False
                    )
                except ObjectNotFound:
                    raise _Gone from None
                if doc.id is None:
                    raise _Gone
                client.delete_block_document(doc.id)

        self.attempt("secret", name, delete)

    def run(self, delete_secrets: bool) -> TeardownReport:
        self.log.info("teardown of deployment %r (tag %s)", self.deployment, TAG_KEY)
        self.stage("route53", self.route53)
        self.stage("beanstalk", self.beanstalk)
        self.stage("load-balancing", self.load_balancing)
        self.stage("acm", self.certificates_stage)
        self.stage("s3", self.buckets)
        self.stage("rds", self.databases)
        self.stage("ec2-instances", self.instances)
        self.stage("security-groups", self.security_groups)
        self.stage("iam", self.iam)
        self.stage("key-pairs", self.key_pairs)
        if delete_secrets:
            self.stage("secret", self.secret)
        self.report.seconds = time.monotonic() - self.t0
        return self.report


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
    run = _Teardown(aws, settings, timeout_s, poll_s, log or logging.getLogger(__name__))
    return run.run(delete_secrets)
