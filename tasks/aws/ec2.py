"""EC2 work: key pair, security group and its ingress, launching and finding instances,
waiting for them, and reading host-key fingerprints from their console output.

Plain functions over a `tasks.aws.Aws`; the flows wrap them in Prefect tasks. Every call
goes through the back-off wrapper; batches of ids never exceed 100.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks.aws.cleanup import TAG_KEY, Cleanup, StageError, is_gone
from tasks.aws.client import Aws, WaitTimeout
from tasks.aws.retry import error_code
from tasks.aws.ssm import ubuntu_ami
from tasks.models import Instance
from tasks.planning import chunked
from tasks.remote.host_keys import parse_console_fingerprints
from tasks.waiting import wait_until

LIFE_TAG = "tomcat-fleet:life"  # on the key pair: one id per life of the deployment
BATCH = 100


def preflight(aws: Aws) -> None:
    """Fail early, before any host is touched, when the EC2 API cannot be reached."""
    from botocore.exceptions import BotoCoreError

    try:
        aws.client("ec2").throttling_only().describe_availability_zones()
    except (BotoCoreError, OSError) as exc:
        where = aws.endpoint_url or f"AWS ({aws.settings.region})"
        raise StageError(
            f"cannot reach the EC2 API at {where}: {exc}; check TOMCAT_FLEET_AWS_ENDPOINT_URL, "
            "the region and the network (is the sandbox running?)"
        ) from None


def deployment_tags(settings: FleetSettings, role: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_KEY, "Value": settings.deployment_name},
        {"Key": "Name", "Value": f"{settings.deployment_name}-{role}"},
        {"Key": "tomcat-fleet:role", "Value": role},
    ]


def controller_cidr(settings: FleetSettings, timeout: float = 10.0) -> str:
    """The CIDR SSH ingress is opened to: the setting, else this controller's address/32."""
    if settings.ingress_cidr:
        return str(ipaddress.ip_network(settings.ingress_cidr, strict=False))
    try:
        with urllib.request.urlopen(settings.controller_ip_url, timeout=timeout) as resp:
            ip = resp.read().decode().strip()
        return f"{ipaddress.ip_address(ip)}/32"
    except (OSError, ValueError) as exc:
        raise StageError(
            f"cannot learn this controller's public address from {settings.controller_ip_url} "
            f"({exc}); set TOMCAT_FLEET_INGRESS_CIDR to the CIDR allowed to SSH in"
        ) from None


def ensure_key_pair(aws: Aws, settings: FleetSettings) -> Path:
    """The deployment's key pair exists in EC2 and its private key is kept: on disk (0600)
    and, when `ssh_key_block` is set, in that Prefect Secret block."""
    ec2 = aws.client("ec2")
    path = settings.key_file_path()
    try:
        ec2.describe_key_pairs(KeyNames=[settings.key_name])
        exists = True
    except ClientError as exc:
        if error_code(exc) != "InvalidKeyPair.NotFound":
            raise
        exists = False
    if exists:
        if settings.ssh_key_block:  # the key lives in the Secret block (load_key reads it)
            return path
        if not path.exists():
            raise StageError(
                f"key pair {settings.key_name!r} exists in EC2 but its private key is not at "
                f"{path}; set TOMCAT_FLEET_SSH_KEY_FILE to it, or delete the key pair"
            )
        return path
    tags = [*deployment_tags(settings, "key"), {"Key": LIFE_TAG, "Value": new_life_id()}]
    material = ec2.create_key_pair(
        KeyName=settings.key_name,
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}],
    )["KeyMaterial"]
    if settings.ssh_key_block:  # containers keep no files between runs: keep it in Prefect
        from prefect.blocks.system import Secret

        Secret(value=material).save(settings.ssh_key_block, overwrite=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(material)
    return path


def new_life_id() -> str:
    return uuid.uuid4().hex[:16]


def life_id(aws: Aws, settings: FleetSettings) -> str:
    """The id of the deployment's current life: created once with its key pair (stage 1)
    and deleted with it by teardown, so every deploy after a teardown gets a new one. A key
    pair made before lives were tagged is read as it is: its KeyPairId, which EC2 gives
    each key pair it creates, is that life's id (nothing is tagged after the fact, which
    the shipped policy does not allow)."""
    ec2 = aws.client("ec2")
    try:
        pairs = ec2.describe_key_pairs(KeyNames=[settings.key_name])["KeyPairs"]
    except ClientError as exc:
        if error_code(exc) != "InvalidKeyPair.NotFound":
            raise
        raise StageError(
            f"key pair {settings.key_name!r} does not exist: run stage 1 "
            "(launch-instances) first, it creates the deployment's key pair"
        ) from None
    tags = {t["Key"]: t["Value"] for t in pairs[0].get("Tags", [])}
    return str(tags.get(LIFE_TAG) or pairs[0]["KeyPairId"])


def client_token(settings: FleetSettings, life: str, role: str, *parts: object) -> str:
    """A RunInstances ClientToken unique to the deployment's life, role and `parts`: the
    same call repeated in one life returns the same instances; after a teardown the life
    (and so the token) is new, so EC2 does not hand back the terminated ones. 48 hex
    characters (EC2 allows 64)."""
    raw = "|".join([settings.deployment_name, life, role, *map(str, parts)])
    return hashlib.sha256(raw.encode()).hexdigest()[:48]


def default_vpc(aws: Aws) -> str:
    vpcs = aws.client("ec2").describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])[
        "Vpcs"
    ]
    if not vpcs:
        raise StageError("this region has no default VPC; create one or choose another region")
    return str(vpcs[0]["VpcId"])


def ensure_security_group(aws: Aws, settings: FleetSettings, role: str = "web") -> str:
    ec2 = aws.client("ec2")
    name = f"{settings.deployment_name}-{role}"
    vpc = default_vpc(aws)
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]
    )["SecurityGroups"]
    if found:
        return str(found[0]["GroupId"])
    return str(
        ec2.create_security_group(
            GroupName=name,
            Description=f"tomcat-fleet {role}",
            VpcId=vpc,
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": deployment_tags(settings, role)}
            ],
        )["GroupId"]
    )


def _has_rule(perms: list[dict[str, Any]], port: int, source: str) -> bool:
    """Some rule of `perms` admits tcp `port` from `source` (a CIDR or a group id)."""
    return any(
        p.get("IpProtocol") in ("tcp", "-1")
        and (p.get("IpProtocol") == "-1" or p.get("FromPort", 0) <= port <= p.get("ToPort", -1))
        and (
            any(pair.get("GroupId") == source for pair in p.get("UserIdGroupPairs", []))
            if source.startswith("sg-")
            else any(r.get("CidrIp") == source for r in p.get("IpRanges", []))
        )
        for p in perms
    )


def _permission(port: int, source: str, description: str) -> dict[str, Any]:
    peer = {"Description": description}
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        **(
            {"UserIdGroupPairs": [{"GroupId": source, **peer}]}
            if source.startswith("sg-")
            else {"IpRanges": [{"CidrIp": source, **peer}]}
        ),
    }


def authorize_ingress(
    aws: Aws,
    group_ids: Iterable[str],
    ports: list[int],
    source_for: Callable[[int], str],
    *,
    description: str = "tomcat-fleet",
    tags: list[dict[str, str]] | None = None,
) -> dict[str, int]:
    """Open `ports` on each group once, all missing rules in one call per group: the one
    security-group rule upsert of the project.

    `source_for(port)` gives the source of a port's rule: a CIDR, or a security group id
    (``sg-...``, members of that group). A rule that already exists (found first, or
    reported as a duplicate by a racing caller) counts as success. `tags` tag the new rules.
    Returns how many rules each group gained.
    """
    ec2 = aws.client("ec2")
    added: dict[str, int] = {}
    for gid in sorted(set(group_ids)):
        perms = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0].get(
            "IpPermissions", []
        )
        missing = [
            _permission(p, source_for(p), description)
            for p in ports
            if not _has_rule(perms, p, source_for(p))
        ]
        if missing:
            extra: dict[str, Any] = (
                {"TagSpecifications": [{"ResourceType": "security-group-rule", "Tags": tags}]}
                if tags
                else {}
            )
            try:
                ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=missing, **extra)
            except ClientError as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise
        added[gid] = len(missing)
    return added


def launch_instances(
    aws: Aws,
    settings: FleetSettings,
    count: int,
    group_id: str,
    client_token: str,
    role: str = "web",
) -> list[str]:
    """RunInstances with a ClientToken: repeating the call returns the same instances."""
    ec2 = aws.client("ec2")
    res = ec2.run_instances(
        ImageId=settings.ami_id or ubuntu_ami(aws),
        InstanceType=settings.instance_type,
        MinCount=count,
        MaxCount=count,
        KeyName=settings.key_name,
        SecurityGroupIds=[group_id],
        ClientToken=client_token,
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/sda1",
                "Ebs": {
                    "VolumeSize": 8,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        TagSpecifications=[{"ResourceType": "instance", "Tags": deployment_tags(settings, role)}],
    )
    return [i["InstanceId"] for i in res["Instances"]]


def describe(aws: Aws, ids: list[str]) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2")
    out: list[dict[str, Any]] = []
    for batch in chunked(ids, BATCH):
        for r in ec2.describe_instances(InstanceIds=batch)["Reservations"]:
            out.extend(r["Instances"])
    return out


def wait_running(
    aws: Aws, ids: list[str], timeout_s: float = 600, poll_s: float = 2.0
) -> list[Instance]:
    """Wait until every instance runs, passes status checks and has a public IP."""
    ec2 = aws.client("ec2")
    deadline = time.monotonic() + timeout_s
    try:  # boto3's waiters, through the retrying client; pending instances are listed
        for batch in chunked(ids, BATCH):  # (IncludeAllInstances) so they hold the wait
            for waiter in ("instance_status_ok", "system_status_ok"):
                ec2.wait(
                    waiter,
                    what=f"{len(batch)} instance(s) running with status ok",
                    timeout_s=max(0.0, deadline - time.monotonic()),
                    delay_s=poll_s,
                    InstanceIds=batch,
                    IncludeAllInstances=True,
                )
    except WaitTimeout:
        pending = _not_ok(aws, ids)
        raise StageError(
            f"{len(pending)} instance(s) not running with status ok after "
            f"{timeout_s:.0f}s: {pending[:5]}"
        ) from None
    missing: list[str] = []

    def with_public_ips() -> list[Instance] | None:
        described = describe(aws, ids)
        missing[:] = [d["InstanceId"] for d in described if not d.get("PublicIpAddress")]
        return None if missing else [_instance(d) for d in described]

    try:
        return wait_until("public IPs", with_public_ips, deadline=deadline, poll_s=poll_s)
    except WaitTimeout:
        raise StageError(
            f"{len(missing)} instance(s) have no public IP after {timeout_s:.0f}s: {missing[:5]}"
        ) from None


def _not_ok(aws: Aws, ids: list[str]) -> list[str]:
    """The ids that are not running with both status checks ok (or not applicable)."""
    ok = ("ok", "not-applicable")
    done: set[str] = set()
    for batch in chunked(ids, BATCH):
        for st in aws.client("ec2").describe_instance_status(
            InstanceIds=batch, IncludeAllInstances=True
        )["InstanceStatuses"]:
            if (
                st["InstanceState"]["Name"] == "running"
                and st.get("InstanceStatus", {}).get("Status", "ok") in ok
                and st.get("SystemStatus", {}).get("Status", "ok") in ok
            ):
                done.add(st["InstanceId"])
    return sorted(set(ids) - done)


def _instance(d: dict[str, Any]) -> Instance:
    return Instance(
        instance_id=d["InstanceId"],
        public_ip=d["PublicIpAddress"],
        private_ip=d.get("PrivateIpAddress"),
        security_groups=[g["GroupId"] for g in d.get("SecurityGroups", [])],
    )


def find_instances(aws: Aws, settings: FleetSettings, role: str = "web") -> list[Instance]:
    """Running instances of this deployment and role."""
    ec2 = aws.client("ec2")
    res = ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": [settings.deployment_name]},
            {"Name": "tag:tomcat-fleet:role", "Values": [role]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    return [
        _instance(i)
        for r in res["Reservations"]
        for i in r["Instances"]
        if i.get("PublicIpAddress")
    ]


def console_fingerprints(aws: Aws, ids: list[str]) -> dict[str, list[str]]:
    """Host-key fingerprints each instance's cloud-init printed (empty until it has)."""
    ec2 = aws.client("ec2")
    out = {}
    for iid in ids:
        text = ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or ""
        out[iid] = parse_console_fingerprints(text)
    return out


_role_locks: dict[str, threading.Lock] = {}
_role_locks_guard = threading.Lock()


def ensure_role_instance(
    aws: Aws, settings: FleetSettings, role: str, timeout_s: float = 600
) -> tuple[Instance, str]:
    """(the one running instance of `role`, e.g. the jumphost or the traffic generator, and
    its security group): found if it exists, else launched, with SSH open from the
    controller's CIDR.

    Safe from several threads (a per-role lock) and processes: the RunInstances ClientToken
    is unique to the deployment's life and role, so a repeated call in one life returns the
    same instance and a deploy after a teardown launches a fresh one.
    """
    with _role_locks_guard:
        lock = _role_locks.setdefault(role, threading.Lock())
    with lock:
        group = ensure_security_group(aws, settings, role=role)
        cidr = controller_cidr(settings)
        authorize_ingress(aws, [group], [22], lambda _port: cidr)
        found = sorted(find_instances(aws, settings, role=role), key=lambda i: i.instance_id)
        if found:
            return found[0], group
        token = client_token(settings, life_id(aws, settings), role)
        ids = launch_instances(aws, settings, 1, group, client_token=token, role=role)
        gone = [
            d["InstanceId"]
            for d in describe(aws, ids)
            if d.get("State", {}).get("Name") in ("shutting-down", "terminated", "stopping")
        ]
        if gone:
            raise StageError(
                f"RunInstances for the {role} returned instance(s) no longer running: {gone}; "
                f"it was terminated in this life of {settings.deployment_name!r} and EC2 "
                "still remembers its ClientToken - tear the deployment down and deploy again"
            )
        return wait_running(aws, ids, timeout_s=timeout_s)[0], group


# -- delete -----------------------------------------------------------------------------
def delete_instances(c: Cleanup) -> None:
    """Terminate the deployment's instances in batches of 100 and wait until terminated."""
    ec2 = c.aws.client("ec2")
    live = ["pending", "running", "stopping", "stopped", "shutting-down"]
    ids = sorted(
        i["InstanceId"]
        for r in ec2.pages(
            "describe_instances",
            "Reservations",
            Filters=[
                {"Name": f"tag:{TAG_KEY}", "Values": [c.deployment]},
                {"Name": "instance-state-name", "Values": live},
            ],
        )
        for i in r["Instances"]
    )
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
                c.log.info(
                    "revoked %d %s rule(s) of %s referencing this deployment's groups",
                    len(refs),
                    direction,
                    g["GroupId"],
                )
            except Exception as exc:
                if not is_gone(exc):
                    c.error(f"security-group {g['GroupId']} revoke {direction}", exc)


def delete_security_groups(c: Cleanup) -> None:
    """Cross-references revoked, then every group; DependencyViolation (an instance or ENI
    not yet gone) is waited out with back-off, bounded by 20 rounds and the deadline."""
    ec2 = c.aws.client("ec2")
    groups = list(
        ec2.pages(
            "describe_security_groups",
            "SecurityGroups",
            Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [c.deployment]}],
        )
    )
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
    pairs = ec2.describe_key_pairs(
        Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [c.deployment]}]
    ).get("KeyPairs", [])
    for kp in pairs:
        if not c.mine(kp.get("Tags")):
            continue
        # by name: moto ignores KeyPairId (and deleting a missing name succeeds on AWS)
        c.attempt("key-pair", kp["KeyName"], ec2.delete_key_pair, KeyName=kp["KeyName"])


def default_subnets(aws: Aws, vpc_id: str) -> list[str]:
    """One default subnet per availability zone of the default VPC (at least two)."""
    subnets = aws.client("ec2").describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    by_az: dict[str, str] = {}
    for s in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"])):
        by_az.setdefault(s["AvailabilityZone"], s["SubnetId"])
    if len(by_az) < 2:
        raise StageError(
            f"the default VPC {vpc_id} has default subnets in {len(by_az)} availability zone(s); "
            "an ALB needs two: create default subnets (aws ec2 create-default-subnet)"
        )
    return list(by_az.values())
