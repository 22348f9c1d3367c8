"""Deploy stage 7: an Elastic Beanstalk application and load-balanced Tomcat environment.

The EC2 instance role and its instance profile, the service role, the application and the
environment are each found (by name, owned by this deployment) before anything is created,
so a second call creates nothing and returns the same environment. Plain functions over a
`tasks.aws.Aws`; the deploy flow wraps them in Prefect tasks.
"""

from __future__ import annotations

import logging

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.aws.beanstalk import (
    create_environment,
    ensure_application,
    environment_name,
    find_environment,
    wait_environment_ready,
)
from tasks.aws.cleanup import not_ours, owned
from tasks.aws.ec2 import StageError, authorize_ingress, deployment_tags
from tasks.aws.elbv2 import HTTPS_PORT, ensure_https_listener, find_listener
from tasks.aws.iam import ensure_instance_profile, ensure_instance_role, ensure_service_role
from tasks.aws.route53 import upsert_records
from tasks.deploy.models import BeanstalkResult, TlsResult

log = logging.getLogger(__name__)


def create_beanstalk(
    aws: Aws, settings: FleetSettings, timeout_s: float = 900, poll_s: float = 2.0
) -> BeanstalkResult:
    """Stage 7: roles (instances' and service), instance profile, application and a Ready
    load-balanced environment."""
    role = ensure_instance_role(aws, settings)
    profile = ensure_instance_profile(aws, settings, role)
    service_role = ensure_service_role(aws, settings)
    app = ensure_application(aws, settings)
    name = environment_name(settings)
    env = find_environment(aws, app, name)
    if env is not None and env.get("Status") == "Terminating":
        raise StageError(
            f"Beanstalk environment {name} is terminating; run again once it has terminated"
        )
    if env is not None:
        arn = env.get("EnvironmentArn")
        if arn:
            tags = aws.client("elasticbeanstalk").list_tags_for_resource(ResourceArn=arn)
            if not owned(tags.get("ResourceTags"), settings):
                raise not_ours("Beanstalk environment", name, settings)
    else:
        env = create_environment(aws, settings, app, name, profile, service_role)
    env_id = str(env["EnvironmentId"])
    ready, lb = wait_environment_ready(aws, app, name, env_id, timeout_s, poll_s)
    return BeanstalkResult(
        application=app,
        environment=name,
        cname=str(ready.get("CNAME") or ready.get("EndpointURL") or ""),
        load_balancer_arn=lb,
        instance_profile=profile,
        role=role,
        service_role=service_role,
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
