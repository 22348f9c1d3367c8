"""EC2: instances, key pairs, security groups (and their rules), tags.

Tags given at creation (`TagSpecifications`) are the request tags of the resource type they
name, and each tagged resource type also needs `ec2:CreateTags` with `ec2:CreateAction`
set to the creating action; a standalone `CreateTags` carries no `ec2:CreateAction`.
"""

from __future__ import annotations

from typing import Any

from ..checks import Checks, ModelError, tags_of

# resource id prefix -> EC2 resource type (CreateTags/DeleteTags name resources by id)
_ID_TYPES = {
    "i": "instance",
    "sg": "security-group",
    "sgr": "security-group-rule",
    "key": "key-pair",
    "ami": "image",
    "subnet": "subnet",
    "vpc": "vpc",
    "vol": "volume",
    "eni": "network-interface",
    "snap": "snapshot",
}
_ARN_PART = {
    "instance": "InstanceId",
    "security-group": "SecurityGroupId",
    "security-group-rule": "SecurityGroupRuleId",
    "key-pair": "KeyPairName",
    "image": "ImageId",
    "subnet": "SubnetId",
    "vpc": "VpcId",
    "volume": "VolumeId",
    "network-interface": "NetworkInterfaceId",
    "snapshot": "SnapshotId",
}


def _backend(c: Checks) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[c.call.account][c.call.region]


def _arn(c: Checks, rtype: str, ident: str = "*") -> str:
    return c.arn(rtype, **{_ARN_PART[rtype]: ident})


def _tags(c: Checks, resource_id: str) -> dict[str, str]:
    return tags_of(_backend(c).tags.get(resource_id, {}))


def _spec_tags(c: Checks) -> dict[str, dict[str, str]]:
    """TagSpecifications: resource type -> its request tags."""
    out: dict[str, dict[str, str]] = {}
    for spec in c.call.params.get("TagSpecifications") or []:
        out.setdefault(spec.get("ResourceType", ""), {}).update(tags_of(spec.get("Tags")))
    return out


def _tag_on_create(c: Checks, created: dict[str, str]) -> None:
    """ec2:CreateTags for every resource type the call tags (created: type -> ARN)."""
    for rtype, tags in _spec_tags(c).items():
        if rtype in created and tags:
            c.add(
                rtype,
                created[rtype],
                action="ec2:CreateTags",
                request_tags=tags,
                keys={"ec2:CreateAction": [c.call.action]},
                why="tags on create",
            )


def _key_pair(c: Checks, name: str | None = None, ident: str | None = None) -> Any:
    for kp in _backend(c).key_pairs.values():
        if kp.key_name == name or kp.id == ident:
            return kp
    return None


def _existing(c: Checks, rtype: str, resource_id: str) -> None:
    c.add(rtype, _arn(c, rtype, resource_id), resource_tags=_tags(c, resource_id))


def _group_ids(c: Checks, ids: list[str], names: list[str], vpc_id: str | None) -> list[str]:
    b = _backend(c)
    out = list(ids)
    for name in names:
        sg = b.get_security_group_from_name(name, vpc_id)
        if sg is None:
            raise ModelError(f"security group {name!r} not found")
        out.append(sg.id)
    if not out:  # the VPC's default group
        sg = b.get_security_group_from_name("default", vpc_id)
        if sg is not None:
            out.append(sg.id)
    return out


def _default_subnet(c: Checks) -> Any:
    subnets = list(_backend(c).get_default_subnets().values())
    return sorted(subnets, key=lambda s: s.availability_zone)[0] if subnets else None


def run_instances(c: Checks) -> None:
    p = c.call.params
    b = _backend(c)
    specs = _spec_tags(c)
    image = p.get("ImageId", "")
    if image.startswith("resolve:ssm:"):
        c.add(
            "parameter",
            c.arn("parameter", "ssm", ParameterNameWithoutLeadingSlash=image[12:].lstrip("/")),
            action="ssm:GetParameters",
            why="image given as an SSM parameter",
        )
    else:
        c.add("image", _arn(c, "image", image), resource_tags=_tags(c, image))
    created = {t: _arn(c, t) for t in ("instance", "volume", "network-interface")}
    for rtype, arn in created.items():
        c.add(rtype, arn, request_tags=specs.get(rtype, {}))
    subnet_id = p.get("SubnetId")
    nics = p.get("NetworkInterfaces") or []
    if not subnet_id and nics:
        subnet_id = nics[0].get("SubnetId")
    subnet = b.get_subnet(subnet_id) if subnet_id else _default_subnet(c)
    if subnet is None:
        raise ModelError("RunInstances: no subnet given and no default subnet")
    _existing(c, "subnet", subnet.id)
    groups = _group_ids(
        c,
        list(p.get("SecurityGroupIds") or []) + [g for n in nics for g in n.get("Groups") or []],
        list(p.get("SecurityGroups") or []),
        subnet.vpc_id,
    )
    for gid in groups:
        _existing(c, "security-group", gid)
    if p.get("KeyName"):
        kp = _key_pair(c, name=p["KeyName"])
        c.add(
            "key-pair",
            _arn(c, "key-pair", p["KeyName"]),
            resource_tags=tags_of(_tags(c, kp.id)) if kp else {},
        )
    _tag_on_create(c, created)
    profile = p.get("IamInstanceProfile") or {}
    if profile:
        from .iam import pass_profile_role

        pass_profile_role(c, profile.get("Arn") or profile.get("Name", ""), "ec2.amazonaws.com")


def create_key_pair(c: Checks) -> None:
    arn = _arn(c, "key-pair", c.call.params.get("KeyName", "*"))
    c.add("key-pair", arn, request_tags=_spec_tags(c).get("key-pair", {}))
    _tag_on_create(c, {"key-pair": arn})


def create_security_group(c: Checks) -> None:
    arn = _arn(c, "security-group")
    c.add("security-group", arn, request_tags=_spec_tags(c).get("security-group", {}))
    vpc_id = c.call.params.get("VpcId")
    if not vpc_id:
        vpc = _backend(c).get_default_vpc()
        vpc_id = vpc.id if vpc else None
    if vpc_id:
        _existing(c, "vpc", vpc_id)
    _tag_on_create(c, {"security-group": arn})


def _group_of_call(c: Checks) -> str:
    p = c.call.params
    if p.get("GroupId"):
        return str(p["GroupId"])
    vpc = _backend(c).get_default_vpc()
    ids = _group_ids(c, [], [p["GroupName"]], vpc.id if vpc else None) if p.get("GroupName") else []
    if not ids:
        raise ModelError(f"{c.call.action}: no GroupId or GroupName")
    return ids[0]


def authorize_ingress(c: Checks) -> None:
    _existing(c, "security-group", _group_of_call(c))
    tags = _spec_tags(c).get("security-group-rule", {})
    if tags:
        arn = _arn(c, "security-group-rule")
        c.add("security-group-rule", arn, request_tags=tags)
        _tag_on_create(c, {"security-group-rule": arn})


def on_group(c: Checks) -> None:
    _existing(c, "security-group", _group_of_call(c))


def delete_key_pair(c: Checks) -> None:
    p = c.call.params
    kp = _key_pair(c, name=p.get("KeyName"), ident=p.get("KeyPairId"))
    name = kp.key_name if kp else p.get("KeyName") or "*"
    c.add("key-pair", _arn(c, "key-pair", name), resource_tags=_tags(c, kp.id) if kp else {})


def instances(c: Checks) -> None:
    ids = c.call.params.get("InstanceIds") or [c.call.params.get("InstanceId")]
    for iid in ids:
        if iid:
            _existing(c, "instance", iid)


def tag_resources(c: Checks) -> None:
    """CreateTags / DeleteTags: each resource named, with the tags asked for (no
    ec2:CreateAction: this is not part of a create call)."""
    request = tags_of(c.call.params.get("Tags"))
    for rid in c.call.params.get("Resources") or []:
        rtype = _ID_TYPES.get(rid.split("-", 1)[0])
        if rtype is None:
            raise ModelError(f"{c.call.action}: resource {rid!r} of a type the sandbox lacks")
        ident = rid
        if rtype == "key-pair":
            kp = _key_pair(c, ident=rid)
            ident = kp.key_name if kp else rid
        c.add(rtype, _arn(c, rtype, ident), request_tags=request, resource_tags=_tags(c, rid))


MODELS = {
    "RunInstances": run_instances,
    "CreateKeyPair": create_key_pair,
    "ImportKeyPair": create_key_pair,
    "CreateSecurityGroup": create_security_group,
    "AuthorizeSecurityGroupIngress": authorize_ingress,
    "AuthorizeSecurityGroupEgress": authorize_ingress,
    "RevokeSecurityGroupIngress": on_group,
    "RevokeSecurityGroupEgress": on_group,
    "DeleteSecurityGroup": on_group,
    "DeleteKeyPair": delete_key_pair,
    "TerminateInstances": instances,
    "StopInstances": instances,
    "StartInstances": instances,
    "RebootInstances": instances,
    "GetConsoleOutput": instances,
    "CreateTags": tag_resources,
    "DeleteTags": tag_resources,
}
