"""EC2 work: key pair, security group and its ingress, launching and finding instances,
waiting for them, and reading host-key fingerprints from their console output.

Plain functions over a `tasks.aws.Aws`; the flows wrap them in Prefect tasks. Every call
goes through the back-off wrapper; batches of ids never exceed 100. Each resource found,
created or changed gets one line (`tasks.actions`). The delete side is `ec2_cleanup`.
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
from tasks import actions
from tasks.aws.cleanup import TAG_KEY, StageError
from tasks.aws.client import Aws, WaitTimeout
from tasks.aws.retry import error_code
from tasks.aws.ssm import latest_ami
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
        pairs = ec2.describe_key_pairs(KeyNames=[settings.key_name])["KeyPairs"]
    except ClientError as exc:
        if error_code(exc) != "InvalidKeyPair.NotFound":
            raise
        pairs = []
    if pairs:
        key_id = str(pairs[0].get("KeyPairId", ""))
        if settings.ssh_key_block:  # the key lives in the Secret block (load_key reads it)
            where = f"private key in Secret block {settings.ssh_key_block}"
            actions.found("key pair", key_id, settings.key_name, where)
            return path
        if not path.exists():
            raise StageError(
                f"key pair {settings.key_name!r} exists in EC2 but its private key is not at "
                f"{path}; set TOMCAT_FLEET_SSH_KEY_FILE to it, or delete the key pair"
            )
        actions.found("key pair", key_id, settings.key_name, f"private key at {path}")
        return path
    tags = [*deployment_tags(settings, "key"), {"Key": LIFE_TAG, "Value": new_life_id()}]
    made = ec2.create_key_pair(
        KeyName=settings.key_name,
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}],
    )
    material = made["KeyMaterial"]
    kept = f"Secret block {settings.ssh_key_block} and " if settings.ssh_key_block else ""
    actions.created(
        "key pair",
        str(made.get("KeyPairId", "")),
        settings.key_name,
        f"private key in {kept}{path}",
    )
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


def key_pair_exists(aws: Aws, settings: FleetSettings) -> bool:
    """The deployment's key pair (`settings.key_name`) exists in EC2."""
    try:
        return bool(aws.client("ec2").describe_key_pairs(KeyNames=[settings.key_name])["KeyPairs"])
    except ClientError as exc:
        if error_code(exc) != "InvalidKeyPair.NotFound":
            raise
        return False


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


def find_security_group(
    aws: Aws, settings: FleetSettings, role: str = "web", vpc: str | None = None
) -> dict[str, Any] | None:
    """The deployment's group of `role` (`<deployment>-<role>`, in the default VPC), or None."""
    name = f"{settings.deployment_name}-{role}"
    found = aws.client("ec2").describe_security_groups(
        Filters=[
            {"Name": "group-name", "Values": [name]},
            {"Name": "vpc-id", "Values": [vpc or default_vpc(aws)]},
        ]
    )["SecurityGroups"]
    return dict(found[0]) if found else None


def ensure_security_group(aws: Aws, settings: FleetSettings, role: str = "web") -> str:
    ec2 = aws.client("ec2")
    name = f"{settings.deployment_name}-{role}"
    vpc = default_vpc(aws)
    found = [g] if (g := find_security_group(aws, settings, role, vpc)) else []
    if found:
        group = str(found[0]["GroupId"])
        actions.found("security group", group, name, f"in {vpc}")
        return group
    group = str(
        ec2.create_security_group(
            GroupName=name,
            Description=f"tomcat-fleet {role}",
            VpcId=vpc,
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": deployment_tags(settings, role)}
            ],
        )["GroupId"]
    )
    actions.created("security group", group, name, f"in {vpc}")
    return group


def has_rule(perms: list[dict[str, Any]], port: int, source: str) -> bool:
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
        todo = [p for p in ports if not has_rule(perms, p, source_for(p))]
        missing = [_permission(p, source_for(p), description) for p in todo]
        rules = ", ".join(f"tcp {p} from {source_for(p)}" for p in (todo or ports))
        if not missing:
            actions.unchanged("security group", gid, why=f"ingress {rules} already open")
        else:
            extra: dict[str, Any] = (
                {"TagSpecifications": [{"ResourceType": "security-group-rule", "Tags": tags}]}
                if tags
                else {}
            )
            try:
                ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=missing, **extra)
                actions.changed("security group", gid, why=f"opened ingress {rules}")
            except ClientError as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise
                actions.unchanged("security group", gid, why=f"ingress {rules} opened meanwhile")
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
        ImageId=settings.ami_id or latest_ami(aws, settings.os_recipe.ami_parameter),
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
    ids = [i["InstanceId"] for i in res["Instances"]]
    for iid in ids:
        actions.created(
            "instance", iid, f"{settings.deployment_name}-{role}", settings.instance_type
        )
    return ids


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
            for waiter, check in (
                ("instance_status_ok", "instance"),
                ("system_status_ok", "system"),
            ):
                ec2.wait(
                    waiter,
                    what=f"{len(batch)} instance(s) running with {check} status ok",
                    deadline=deadline,
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
        return wait_until(
            f"public IPs of {len(ids)} instance(s)",
            with_public_ips,
            deadline=deadline,
            poll_s=poll_s,
        )
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
            actions.found("instance", found[0].instance_id, role, found[0].public_ip)
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
