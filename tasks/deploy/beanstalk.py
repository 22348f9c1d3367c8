"""Deploy stage 7: an Elastic Beanstalk application and load-balanced Tomcat environment.

The EC2 instance role and its instance profile, the application and the environment are
each found (by name, owned by this deployment) before anything is created, so a second
call creates nothing and returns the same environment. Plain functions over a
`tasks.aws.Aws`; the deploy flow wraps them in Prefect tasks.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from botocore.exceptions import ClientError

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.ec2 import TAG_KEY, StageError, authorize_ingress, deployment_tags
from tasks.aws.elbv2 import HTTPS_PORT, ensure_https_listener, find_listener
from tasks.aws.retry import error_code
from tasks.aws.route53 import upsert_records
from tasks.deploy.models import BeanstalkResult, TlsResult

log = logging.getLogger(__name__)

EB_POLICIES = (
    "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier",
    "arn:aws:iam::aws:policy/AWSElasticBeanstalkWorkerTier",
)
EC2_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
_GONE = ("Terminating", "Terminated")
# a new instance profile takes a few seconds to be visible to Elastic Beanstalk
_PROFILE_PROPAGATION_S = 60.0


def policy_arns(aws: Aws) -> list[str]:
    """The managed policies' ARNs in the region's partition (aws, aws-cn, aws-us-gov)."""
    try:
        partition = aws.session.get_partition_for_region(aws.settings.region)
    except Exception:  # an unknown region: the commercial partition
        partition = "aws"
    return [arn.replace("arn:aws:", f"arn:{partition}:", 1) for arn in EB_POLICIES]


def role_name(settings: FleetSettings) -> str:
    return f"{settings.deployment_name}-eb-ec2-role"


def profile_name(settings: FleetSettings) -> str:
    return f"{settings.deployment_name}-eb-profile"


def application_name(settings: FleetSettings) -> str:
    return f"{settings.deployment_name}-app"


EB_ENV_NAME_MAX = 40  # Beanstalk environment names: 4-40 letters, digits and hyphens


def environment_name(settings: FleetSettings) -> str:
    """`<deployment>-env`, shortened with a stable hash when over 40 characters."""
    name = f"{settings.deployment_name}-env"
    if len(name) <= EB_ENV_NAME_MAX:
        return name
    import hashlib

    digest = hashlib.sha256(settings.deployment_name.encode()).hexdigest()[:6]
    keep = EB_ENV_NAME_MAX - len("-env") - len(digest) - 1
    return f"{settings.deployment_name[:keep].rstrip('-')}-{digest}-env"


def _owned(tags: list[dict[str, str]] | None, settings: FleetSettings) -> bool:
    return any(
        t.get("Key") == TAG_KEY and t.get("Value") == settings.deployment_name for t in tags or []
    )


def _not_ours(kind: str, name: str, settings: FleetSettings) -> StageError:
    return StageError(
        f"{kind} {name!r} exists but is not tagged {TAG_KEY}={settings.deployment_name}; "
        "it belongs to something else: choose another TOMCAT_FLEET_DEPLOYMENT_NAME or remove it"
    )


def ensure_instance_role(aws: Aws, settings: FleetSettings) -> str:
    """The EC2 role Beanstalk instances assume, with the web and worker tier policies."""
    iam = aws.client("iam")
    name = role_name(settings)
    try:
        role = iam.get_role(RoleName=name)["Role"]
        if not _owned(role.get("Tags"), settings):
            raise _not_ours("IAM role", name, settings)
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        try:
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(EC2_TRUST_POLICY),
                Description=f"tomcat-fleet {settings.deployment_name}: Elastic Beanstalk EC2",
                Tags=deployment_tags(settings, "eb-ec2-role"),
            )
            log.info("created IAM role %s", name)
        except ClientError as exc2:
            if error_code(exc2) != "EntityAlreadyExists":  # a racing caller made it
                raise
    attached: set[str] = set()
    kwargs: dict[str, Any] = {"RoleName": name}
    while True:  # paged by hand so each page goes through the back-off wrapper
        page = iam.list_attached_role_policies(**kwargs)
        attached.update(p["PolicyArn"] for p in page.get("AttachedPolicies", []))
        if not page.get("IsTruncated"):
            break
        kwargs["Marker"] = page["Marker"]
    for arn in policy_arns(aws):
        if arn not in attached:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    return name


def ensure_instance_profile(aws: Aws, settings: FleetSettings, role: str) -> str:
    """The instance profile holding `role` (a profile holds at most one role)."""
    iam = aws.client("iam")
    name = profile_name(settings)
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        if not _owned(profile.get("Tags"), settings):
            raise _not_ours("instance profile", name, settings)
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        try:
            profile = iam.create_instance_profile(
                InstanceProfileName=name, Tags=deployment_tags(settings, "eb-profile")
            )["InstanceProfile"]
            log.info("created instance profile %s", name)
        except ClientError as exc2:
            if error_code(exc2) != "EntityAlreadyExists":
                raise
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    roles = [r["RoleName"] for r in profile.get("Roles", [])]
    if role in roles:
        return name
    if roles:
        raise StageError(
            f"instance profile {name!r} already holds role {roles[0]!r}, not {role!r}; "
            "remove that role from the profile (a profile holds one role)"
        )
    try:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
    except ClientError as exc:
        if error_code(exc) != "LimitExceeded":
            raise
        # a racing caller added a role first: fine only if it is ours
        now = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        if role not in [r["RoleName"] for r in now.get("Roles", [])]:
            raise StageError(
                f"instance profile {name!r} holds another role than {role!r}"
            ) from None
    return name


def ensure_application(aws: Aws, settings: FleetSettings) -> str:
    eb = aws.client("elasticbeanstalk")
    name = application_name(settings)
    apps = eb.describe_applications(ApplicationNames=[name])["Applications"]
    if any(a.get("ApplicationName") == name for a in apps):
        return name
    try:
        eb.create_application(
            ApplicationName=name,
            Description=f"tomcat-fleet {settings.deployment_name}",
            Tags=deployment_tags(settings, "app"),
        )
        log.info("created Beanstalk application %s", name)
    except ClientError as exc:
        msg = str(exc).lower()
        if error_code(exc) != "InvalidParameterValue" or "already exists" not in msg:
            raise
    return name


def _version_key(stack: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", stack))


def choose_solution_stack(aws: Aws, settings: FleetSettings) -> str:
    """The configured stack, else the newest Tomcat one (platform, Tomcat, Java versions)."""
    if settings.eb_solution_stack:
        return settings.eb_solution_stack
    stacks = aws.client("elasticbeanstalk").list_available_solution_stacks()["SolutionStacks"]
    tomcat = [s for s in stacks if "Tomcat" in s]
    if not tomcat:
        raise StageError(
            f"no Tomcat solution stack is offered in {settings.region}; "
            "set TOMCAT_FLEET_EB_SOLUTION_STACK"
        )
    return max(tomcat, key=_version_key)


def _find_environment(aws: Aws, app: str, name: str) -> dict[str, Any] | None:
    eb = aws.client("elasticbeanstalk")
    envs = eb.describe_environments(
        ApplicationName=app, EnvironmentNames=[name], IncludeDeleted=False
    )["Environments"]
    live = [e for e in envs if e.get("EnvironmentName") == name and e.get("Status") != "Terminated"]
    if not live:
        return None
    env = live[0]
    if env.get("ApplicationName") != app:
        raise StageError(
            f"environment {name!r} exists in application {env.get('ApplicationName')!r}, not "
            f"{app!r}; environment names are unique per region: remove it or rename the deployment"
        )
    return dict(env)


def _option_settings(profile: str) -> list[dict[str, str]]:
    return [
        {
            "Namespace": "aws:autoscaling:launchconfiguration",
            "OptionName": "IamInstanceProfile",
            "Value": profile,
        },
        {
            "Namespace": "aws:elasticbeanstalk:environment",
            "OptionName": "EnvironmentType",
            "Value": "LoadBalanced",
        },
        {
            "Namespace": "aws:elasticbeanstalk:environment",
            "OptionName": "LoadBalancerType",
            "Value": "application",
        },
    ]


def _create_environment(
    aws: Aws, settings: FleetSettings, app: str, name: str, profile: str
) -> dict[str, Any]:
    eb = aws.client("elasticbeanstalk")
    stack = choose_solution_stack(aws, settings)
    # Beanstalk sets `Name` itself (to the environment name) and rejects tag values equal
    # to the environment name, so the environment carries the other deployment tags.
    tags = [t for t in deployment_tags(settings, "env") if t["Key"] != "Name"]
    deadline = time.monotonic() + _PROFILE_PROPAGATION_S
    while True:
        try:
            env = eb.create_environment(
                ApplicationName=app,
                EnvironmentName=name,
                SolutionStackName=stack,
                OptionSettings=_option_settings(profile),
                Tags=tags,
            )
            log.info("creating Beanstalk environment %s on %r", name, stack)
            return dict(env)
        except ClientError as exc:
            message = str(exc).lower()
            if error_code(exc) != "InvalidParameterValue":
                raise
            if "already exists" in message:  # a racing caller created it
                found = _find_environment(aws, app, name)
                if found is not None:
                    return found
                raise
            if "instance profile" not in message or time.monotonic() > deadline:
                raise
            time.sleep(5.0)  # IAM is eventually consistent: the new profile is not seen yet


def _load_balancer(aws: Aws, env_id: str) -> str | None:
    res = aws.client("elasticbeanstalk").describe_environment_resources(EnvironmentId=env_id)
    lbs = res.get("EnvironmentResources", {}).get("LoadBalancers", [])
    return str(lbs[0]["Name"]) if lbs and lbs[0].get("Name") else None


def wait_environment_ready(
    aws: Aws, app: str, name: str, env_id: str, timeout_s: float, poll_s: float
) -> tuple[dict[str, Any], str]:
    """Poll until the environment is Ready and has its load balancer; (env, LB ARN)."""
    deadline = time.monotonic() + timeout_s
    status, lb = "unknown", None
    while True:
        env = _find_environment(aws, app, name)
        if env is None or env.get("EnvironmentId") != env_id:
            raise StageError(f"Beanstalk environment {name} ({env_id}) disappeared while waiting")
        status = str(env.get("Status"))
        if status in _GONE:
            raise StageError(f"Beanstalk environment {name} ({env_id}) is {status}")
        if status == "Ready":
            lb = _load_balancer(aws, env_id)
            if lb:
                return env, lb
        if time.monotonic() > deadline:
            what = f"status {status}" if status != "Ready" else "Ready but has no load balancer"
            raise StageError(
                f"Beanstalk environment {name} ({env_id}) not ready after {timeout_s:.0f}s "
                f"({what}, health {env.get('Health', '?')}); see its events in the console"
            )
        time.sleep(poll_s)


def create_beanstalk(
    aws: Aws, settings: FleetSettings, timeout_s: float = 900, poll_s: float = 2.0
) -> BeanstalkResult:
    """Stage 7: role, instance profile, application and a Ready load-balanced environment."""
    role = ensure_instance_role(aws, settings)
    profile = ensure_instance_profile(aws, settings, role)
    app = ensure_application(aws, settings)
    name = environment_name(settings)
    env = _find_environment(aws, app, name)
    if env is not None and env.get("Status") == "Terminating":
        raise StageError(
            f"Beanstalk environment {name} is terminating; run again once it has terminated"
        )
    if env is not None:
        arn = env.get("EnvironmentArn")
        if arn:
            tags = aws.client("elasticbeanstalk").list_tags_for_resource(ResourceArn=arn)
            if not _owned(tags.get("ResourceTags"), settings):
                raise _not_ours("Beanstalk environment", name, settings)
    else:
        env = _create_environment(aws, settings, app, name, profile)
    env_id = str(env["EnvironmentId"])
    ready, lb = wait_environment_ready(aws, app, name, env_id, timeout_s, poll_s)
    return BeanstalkResult(
        application=app,
        environment=name,
        cname=str(ready.get("CNAME") or ready.get("EndpointURL") or ""),
        load_balancer_arn=lb,
        instance_profile=profile,
        role=role,
    )


# -- stage 11's endpoint: the Beanstalk name over HTTPS ------------------------------------
def ensure_https_endpoint(
    aws: Aws, settings: FleetSettings, eb: BeanstalkResult, tls: TlsResult, timeout_s: float
) -> str:
    """settings.beanstalk_domain CNAME -> the environment (waited until INSYNC, bounded by
    `timeout_s`), and an HTTPS listener with the ACM certificate (which covers that name)
    on the environment's load balancer, forwarding as its port-80 listener does; port 443
    opened on the balancer's security groups (Beanstalk's own group only admits 80).
    Returns the listener's ARN."""
    cname = {
        "Name": settings.beanstalk_domain,
        "Type": "CNAME",
        "TTL": 60,
        "ResourceRecords": [{"Value": eb.cname}],
    }
    upsert_records(
        aws, tls.hosted_zone_id, [cname], "tomcat-fleet beanstalk https", wait_s=timeout_s
    )
    http = find_listener(aws, eb.load_balancer_arn, 80)
    if http is None:
        raise StageError(
            f"load balancer {eb.load_balancer_arn} has no port-80 listener to copy the "
            "default actions from; is the Beanstalk environment ready?"
        )
    arn = ensure_https_listener(
        aws,
        eb.load_balancer_arn,
        tls.certificate_arn,
        http["DefaultActions"],
        deployment_tags(settings, "beanstalk-https"),
    )
    groups = (
        aws.client("elbv2")
        .describe_load_balancers(LoadBalancerArns=[eb.load_balancer_arn])["LoadBalancers"][0]
        .get("SecurityGroups", [])
    )
    if groups:
        authorize_ingress(aws, groups, [HTTPS_PORT], lambda _port: "0.0.0.0/0")
    return arn
