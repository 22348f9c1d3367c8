"""Account profiles: what the sandbox's AWS account holds before the flows run.

* `fresh` (the default): an empty account, as today: the default VPC, the sandbox's hosted
  zone, the public Ubuntu AMI, nothing else.
* `busy`: what a real account in use holds, none of it the flows': IAM Identity Center
  (SSO) roles under `/aws-reserved/sso.amazonaws.com/` trusting their SAML provider,
  `OrganizationAccountAccessRole`, foreign roles and instance profiles (some named like
  ours: an untagged `legacy-eb-ec2-role`, another deployment's `other-eb-ec2-role` and
  `other-eb-profile`), another deployment's estate (`tomcat-fleet:deployment=other`: key
  pair, security groups, an instance, target group, ALB and listener, an issued ACM
  certificate, a Beanstalk application, its access-log bucket), untagged instances,
  security groups, key pair and bucket, a second hosted zone with records, and foreign
  records in the sandbox's zone (`api.<zone>`, ...).

Service-linked roles are not created: the account has none until a service makes its
own on first use (`sandbox.authz.slr`), which is the case the shipped policy must cover.

`apply(name, ...)` writes moto's backends in-process; call it under the API lock, after
the Route 53 and SSM seeding and before IAM enforcement is turned on.
"""

from __future__ import annotations

import json
from typing import Any

ACCOUNT_PROFILES = ("fresh", "busy")
TAG_KEY = "tomcat-fleet:deployment"  # tasks.aws.cleanup.TAG_KEY (the sandbox imports no tasks)
OTHER = "other"  # the other deployment's name
SECOND_ZONE = "corp.example.net"
MANAGEMENT_ACCOUNT = "210987654321"  # the organization's management account
SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
SSO_PROVIDER = "AWSSSO_5f3a9c1d2e4b6a70_DO_NOT_DELETE"
# IAM Identity Center names its roles AWSReservedSSO_<permission set>_<16 hex digits>
SSO_ROLES = {
    "AWSReservedSSO_AdministratorAccess_4c2d9e8f1a3b5c7d": "AdministratorAccess",
    "AWSReservedSSO_ReadOnly_9a8b7c6d5e4f3a2b": "ReadOnlyAccess",
}
AMI = "ami-0c7217cdde317cfec"  # sandbox.ssm_seed.UBUNTU_2204_AMI


def check(name: str) -> str:
    if name not in ACCOUNT_PROFILES:
        raise ValueError(
            f"unknown account profile {name!r}; choose one of {', '.join(ACCOUNT_PROFILES)}"
        )
    return name


def apply(name: str, account: str, region: str, zone: str) -> None:
    """Fill the account with profile `name` (`fresh`: nothing). Under the API lock."""
    if check(name) == "busy":
        _busy(account, region, zone.rstrip("."))


def other_tags(role: str) -> list[dict[str, str]]:
    """Tags as the flows put them, for the other deployment."""
    return [
        {"Key": TAG_KEY, "Value": OTHER},
        {"Key": "Name", "Value": f"{OTHER}-{role}"},
        {"Key": "tomcat-fleet:role", "Value": role},
    ]


def _as_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def _trust(principal: dict[str, Any], action: str = "sts:AssumeRole", **cond: Any) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if cond:
        statement["Condition"] = cond
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _busy(account: str, region: str, zone: str) -> None:
    _iam(account)
    ec2 = _ec2(account, region)
    lb_dns, lb_zone = _load_balancing(account, region, ec2)
    cert_records = _certificate(account, region)
    _beanstalk(account, region)
    _buckets(account)
    _route53(account, zone, lb_dns, lb_zone, cert_records)


# -- IAM ----------------------------------------------------------------------------------
def _iam(account: str) -> None:
    from moto.iam.models import iam_backends

    iam = iam_backends[account]["aws"]
    iam.create_saml_provider(SSO_PROVIDER, _SAML_METADATA)
    saml = {"Federated": f"arn:aws:iam::{account}:saml-provider/{SSO_PROVIDER}"}
    ec2 = {"Service": "ec2.amazonaws.com"}
    roles: list[tuple[str, str, str, list[dict[str, str]], str | None]] = [
        *(
            (
                name,
                SSO_PATH,
                _trust(
                    saml,
                    "sts:AssumeRoleWithSAML",
                    StringEquals={"SAML:aud": "https://signin.aws.amazon.com/saml"},
                ),
                [],
                policy,
            )
            for name, policy in SSO_ROLES.items()
        ),
        (
            "OrganizationAccountAccessRole",
            "/",
            _trust({"AWS": f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:root"}),
            [],
            "AdministratorAccess",
        ),
        # Elastic Beanstalk's console defaults, made by someone once
        ("aws-elasticbeanstalk-ec2-role", "/", _trust(ec2), [], "AWSElasticBeanstalkWebTier"),
        (
            "aws-elasticbeanstalk-service-role",
            "/",
            _trust({"Service": "elasticbeanstalk.amazonaws.com"}),
            [],
            None,
        ),
        ("ci-deployer", "/automation/", _trust({"AWS": f"arn:aws:iam::{account}:root"}), [], None),
        # named like ours: untagged, and the other deployment's (tagged)
        ("legacy-eb-ec2-role", "/", _trust(ec2), [], "AWSElasticBeanstalkWebTier"),
        ("other-eb-ec2-role", "/", _trust(ec2), other_tags("eb-ec2-role"), None),
        (
            "other-eb-service-role",
            "/",
            _trust({"Service": "elasticbeanstalk.amazonaws.com"}),
            other_tags("eb-service-role"),
            None,
        ),
    ]
    for name, path, trust, tags, policy in roles:
        iam.create_role(
            role_name=name,
            assume_role_policy_document=trust,
            path=path,
            permissions_boundary=None,
            description=f"{name} (busy account profile)",
            tags=tags,
            max_session_duration="3600",
        )
        managed = [
            arn for arn in iam.managed_policies if policy and arn.endswith(f"/{policy}")
        ]  # only when moto loaded AWS's managed policies (MOTO_IAM_LOAD_MANAGED_POLICIES)
        for arn in managed[:1]:
            iam.attach_role_policy(arn, name)
    profiles = [
        ("aws-elasticbeanstalk-ec2-role", "aws-elasticbeanstalk-ec2-role", []),
        ("legacy-eb-profile", "legacy-eb-ec2-role", []),
        ("other-eb-profile", "other-eb-ec2-role", other_tags("eb-profile")),
    ]
    for profile, role, tags in profiles:
        iam.create_instance_profile(profile, "/", role_names=[role], tags=tags)


# -- EC2 ----------------------------------------------------------------------------------
def _ec2(account: str, region: str) -> dict[str, Any]:
    """Key pairs, security groups and instances; returns what load balancing needs."""
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[account][region]
    vpc = ec2.default_vpc.id
    subnets = [s for _, s in sorted(ec2.get_default_subnets().items()) if s.vpc_id == vpc]
    ec2.create_key_pair(OTHER, "rsa", _as_dict(other_tags("key")))
    ec2.create_key_pair("ops-admin", "ed25519", {})
    groups = {
        role: ec2.create_security_group(
            f"{OTHER}-{role}", f"tomcat-fleet {role}", vpc, _as_dict(other_tags(role))
        ).id
        for role in ("web", "alb")
    }
    bastion = ec2.create_security_group("bastion", "SSH from the office", vpc, {"Name": "bastion"})
    legacy = ec2.create_security_group("legacy-web", "legacy web servers", vpc, {})
    _ingress(ec2, groups["web"], 8080, source=groups["alb"])
    _ingress(ec2, groups["alb"], 80, cidr="0.0.0.0/0")
    _ingress(ec2, bastion.id, 22, cidr="203.0.113.0/24")
    _ingress(ec2, legacy.id, 80, cidr="0.0.0.0/0")
    other = _run(ec2, region, "t3.small", OTHER, [groups["web"]], other_tags("web"))
    _run(ec2, region, "t3.micro", "ops-admin", [bastion.id], {"Name": "bastion"})
    _run(ec2, region, "t3.medium", None, [legacy.id], {})
    return {"vpc": vpc, "subnets": [s.id for s in subnets[:2]], "groups": groups, "web": other}


def _ingress(ec2: Any, group: str, port: int, cidr: str = "", source: str = "") -> None:
    ec2.authorize_security_group_ingress(
        group_name_or_id=group,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        ip_ranges=[{"CidrIp": cidr}] if cidr else [],
        source_groups=[{"GroupId": source}] if source else [],
    )


def _run(
    ec2: Any,
    region: str,
    instance_type: str,
    key: str | None,
    groups: list[str],
    tags: list[dict[str, str]] | dict[str, str],
) -> str:
    """One instance, as RunInstances makes it (moto's response layer fills these)."""
    tag_dict = _as_dict(tags) if isinstance(tags, list) else tags
    reservation = ec2.run_instances(
        AMI,
        1,
        None,
        [],
        instance_type=instance_type,
        is_instance_type_default=False,
        placement=None,
        region_name=region,
        subnet_id=None,
        key_name=key,
        security_group_ids=groups,
        nics=[],
        private_ip=None,
        associate_public_ip=None,
        tags={"instance": tag_dict} if tag_dict else {},
        ebs_optimized=False,
        instance_market_options={},
        launch_template={},
        hibernation_options={},
        monitoring_state="disabled",
        metadata_options={},
        client_token="ABCDE",
    )
    return str(reservation.instances[0].id)


# -- load balancing, ACM, Beanstalk, S3 ---------------------------------------------------
def _load_balancing(account: str, region: str, ec2: dict[str, Any]) -> tuple[str, str]:
    """The other deployment's target group, ALB and HTTP listener: (DNS name, zone id)."""
    from moto.elbv2.models import elbv2_backends

    elb = elbv2_backends[account][region]
    tg = elb.create_target_group(
        f"{OTHER}-tg",
        vpc_id=ec2["vpc"],
        protocol="HTTP",
        port=8080,
        healthcheck_path="/",
        target_type="instance",
        tags=other_tags("tg"),
    )
    elb.register_targets(tg.arn, [{"Id": ec2["web"], "Port": 8080}])
    lb = elb.create_load_balancer(
        f"{OTHER}-alb",
        security_groups=[ec2["groups"]["alb"]],
        subnet_ids=ec2["subnets"],
        scheme="internet-facing",
        loadbalancer_type="application",
        tags=other_tags("alb"),
    )
    elb.create_listener(
        load_balancer_arn=lb.arn,
        protocol="HTTP",
        port="80",
        ssl_policy="",
        certificate=None,
        actions=[{"Type": "forward", "TargetGroupArn": tg.arn}],
        tags=other_tags("http"),
    )
    return str(lb.dns_name), str(lb.canonical_hosted_zone_id)


def _certificate(account: str, region: str) -> list[dict[str, Any]]:
    """The other deployment's DNS-validated certificate; its validation CNAMEs (in the
    second zone, where its names live), so that ACM issues it."""
    from moto.acm.models import acm_backends

    acm = acm_backends[account][region]
    arn = acm.request_certificate(
        f"www.{SECOND_ZONE}", f"{OTHER}-www", [f"www.{SECOND_ZONE}"], other_tags("cert")
    )
    cert = acm.get_certificate(arn)
    return [
        o["ResourceRecord"]
        for o in cert.describe()["Certificate"].get("DomainValidationOptions", [])
        if "ResourceRecord" in o
    ]


def _beanstalk(account: str, region: str) -> None:
    from moto.elasticbeanstalk.models import eb_backends

    app = eb_backends[account][region].create_application(f"{OTHER}-app")
    app.tags = _as_dict(other_tags("eb-app"))  # type: ignore[attr-defined]


def _buckets(account: str) -> None:
    from moto.s3.models import s3_backends

    s3 = s3_backends[account]["aws"]
    s3.create_bucket(f"{OTHER}-alb-logs-{account}", "us-east-1")
    s3.put_bucket_tagging(f"{OTHER}-alb-logs-{account}", _as_dict(other_tags("alb-logs")))
    s3.create_bucket(f"company-backups-{account}", "us-east-1")


# -- Route 53 -------------------------------------------------------------------------------
def _route53(
    account: str, zone: str, lb_dns: str, lb_zone: str, cert_records: list[dict[str, Any]]
) -> None:
    from moto.route53.models import route53_backends

    r53 = route53_backends[account]["aws"]
    default = next(z for z in r53.zones.values() if z.name.rstrip(".") == zone)
    second = r53.create_hosted_zone(
        SECOND_ZONE + ".", private_zone=False, comment="another team's zone"
    )

    def simple(name: str, kind: str, *values: str, ttl: int = 300) -> dict[str, Any]:
        return {
            "Name": name,
            "Type": kind,
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
        }

    alias = {
        "Name": f"www.{SECOND_ZONE}",
        "Type": "A",
        "AliasTarget": {
            "HostedZoneId": lb_zone,
            "DNSName": f"dualstack.{lb_dns}.",
            "EvaluateTargetHealth": False,
        },
    }
    records = {
        default.id: [
            simple(f"api.{zone}", "A", "203.0.113.10"),
            simple(f"status.{zone}", "CNAME", "status.example.org"),
            simple(zone, "MX", f"10 mail.{zone}"),
            simple(f"_dmarc.{zone}", "TXT", '"v=DMARC1; p=none"'),
        ],
        second.id: [
            alias,
            *(simple(rr["Name"], "CNAME", rr["Value"]) for rr in cert_records),
            simple(f"intranet.{SECOND_ZONE}", "A", "10.20.0.10"),
            simple(f"vpn.{SECOND_ZONE}", "CNAME", "vpn.example.org"),
            simple(SECOND_ZONE, "TXT", '"v=spf1 -all"'),
        ],
    }
    for zone_id, rrsets in records.items():
        r53.change_resource_record_sets(
            zone_id, [{"Action": "CREATE", "ResourceRecordSet": rr} for rr in rrsets]
        )


_SAML_METADATA = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
    'entityID="https://portal.sso.us-east-1.amazonaws.com/saml/assertion/sandbox">'
    '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>'
    "</md:EntityDescriptor>"
)
