"""The names Elastic Beanstalk gives an environment and what it builds, and its tags.

On AWS an environment `e-abcd123456` is a CloudFormation stack `awseb-e-abcd123456-stack`
whose resources CloudFormation names `<stack>-<logical id>-<random suffix>` (an application
load balancer and its target group `awseb-AWSEB-<suffix>`); Elastic Beanstalk's own bucket
is `elasticbeanstalk-<region>-<account>`. The sandbox derives the id from the environment's
ARN and each suffix from the id, so the authorizer knows at CreateEnvironment the names the
environment will have (as Elastic Beanstalk does when it calls CloudFormation), and
provisioning and teardown find the resources by them. Pure functions, no moto.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping

# the logical ids of the resources of Beanstalk's template the sandbox makes
AUTO_SCALING_GROUP = "AWSEBAutoScalingGroup"
LAUNCH_TEMPLATE = "AWSEBEC2LaunchTemplate"
INSTANCE_GROUP = "AWSEBSecurityGroup"
BALANCER_GROUP = "AWSEBLoadBalancerSecurityGroup"
BALANCER = "AWSEBV2LoadBalancer"
TARGET_GROUP = "AWSEBV2LoadBalancerTargetGroup"
LISTENER = "AWSEBV2LoadBalancerListener"
ALARM_HIGH = "AWSEBCloudwatchAlarmHigh"
ALARM_LOW = "AWSEBCloudwatchAlarmLow"
ALARMS = (ALARM_HIGH, ALARM_LOW)
GROUPS = (BALANCER_GROUP, INSTANCE_GROUP)

_LOWER = string.digits + string.ascii_lowercase
_UPPER = string.digits + string.ascii_uppercase


def _digest(text: str, alphabet: str, n: int) -> str:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    out = []
    for _ in range(n):
        value, r = divmod(value, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def environment_id(environment_arn: str) -> str:
    """`e-` and ten lowercase letters or digits, as Elastic Beanstalk's ids look."""
    return "e-" + _digest(environment_arn, _LOWER, 10)


def stack_name(env_id: str) -> str:
    return f"awseb-{env_id}-stack"


def suffix(env_id: str, logical_id: str) -> str:
    return _digest(f"{env_id}/{logical_id}", _UPPER, 12)


def physical_name(env_id: str, logical_id: str) -> str:
    """CloudFormation's name for a resource the template does not name."""
    return f"{stack_name(env_id)}-{logical_id}-{suffix(env_id, logical_id)}"


def balancer_name(env_id: str) -> str:
    return f"awseb-AWSEB-{suffix(env_id, BALANCER)}"


def target_group_name(env_id: str) -> str:
    return f"awseb-AWSEB-{suffix(env_id, TARGET_GROUP)}"


def bucket_name(region: str, account: str) -> str:
    return f"elasticbeanstalk-{region}-{account}"


def objects_prefix(env_id: str) -> str:
    """Where in its bucket Elastic Beanstalk keeps an environment's files."""
    return f"resources/environments/{env_id}/"


def environment_tags(env_tags: Mapping[str, str], env_name: str, env_id: str) -> dict[str, str]:
    """The environment's tags and those Elastic Beanstalk adds: what it gives the stack,
    and CloudFormation every resource that takes tags."""
    return {
        **env_tags,
        "elasticbeanstalk:environment-name": env_name,
        "elasticbeanstalk:environment-id": env_id,
        "Name": env_name,
    }


def stack_tags(stack: str, stack_id: str, logical_id: str) -> dict[str, str]:
    """The tags CloudFormation adds to a resource it creates (`aws:` keys: AWS's own, in no
    request's aws:RequestTag / aws:TagKeys)."""
    tags = {"aws:cloudformation:stack-name": stack, "aws:cloudformation:logical-id": logical_id}
    if stack_id:
        tags["aws:cloudformation:stack-id"] = stack_id
    return tags
