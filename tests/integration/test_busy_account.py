"""A busy account (`SandboxConfig(account_profile="busy")`, sandbox/accounts.py): all
eleven stages deploy under the shipped policy beside SSO roles, OrganizationAccountAccess-
Role, another deployment's estate and foreign IAM, EC2, ELB, ACM, Beanstalk, S3 and Route
53 resources; the teardown removes every resource of the deployment and leaves every
foreign one exactly as it was (the snapshot before the deploy equals the one after the
teardown). A teardown whose IAM names are taken by another owner reports them and removes
nothing of theirs.

One module-scoped run (deploy + teardown) feeds the tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from flows.deploy import DeployReport, deploy
from flows.teardown import teardown
from sandbox import Sandbox
from sandbox.accounts import OTHER, SECOND_ZONE, SSO_PATH, SSO_ROLES
from sandbox.authz.slr import ROLES as SERVICE_LINKED_ROLES
from tasks.aws.ec2 import TAG_KEY
from tasks.aws.teardown import TeardownReport
from tasks.runtime.outcome import outcome_of

from ..support import client, fast_all_stages, make_sandbox

N = 4
DEPLOYMENT = "busytest"
SLR_PATH = "/aws-service-role/"


@dataclass
class Run:
    sb: Sandbox
    overrides: dict[str, Any]
    before: dict[str, Any]  # foreign resources before the deploy
    service_linked_before: list[str]
    report: DeployReport
    during: dict[str, Any]  # the deployment's own resources, deployed
    teardown: TeardownReport
    after: dict[str, Any]  # foreign resources after the teardown
    left: dict[str, Any]  # the deployment's own resources after the teardown
    seconds: dict[str, float]


def _j(value: Any) -> str:
    """A comparable, order-free text of an API answer."""
    return json.dumps(value, sort_keys=True, default=str)


def _tags(tags: Any) -> list[tuple[str, str]]:
    return sorted((t["Key"], t.get("Value", "")) for t in tags or [])


def _mine(tags: Any, deployment: str = DEPLOYMENT) -> bool:
    return (TAG_KEY, deployment) in _tags(tags)


# -- what the account holds, read as the admin --------------------------------------------
def account(sb: Sandbox) -> dict[str, Any]:
    """Everything in the account, by kind: IAM roles and instance profiles with their
    tags and policies (service-linked roles apart: a service makes them on first use and
    they stay), live instances, security groups with their rules, key pairs, load
    balancers, target groups, listeners, certificates, Beanstalk applications and live
    environments, buckets, and the records of every hosted zone."""
    iam, ec2, elb = client(sb, "iam"), client(sb, "ec2"), client(sb, "elbv2")
    acm, eb, s3, r53 = (client(sb, s) for s in ("acm", "elasticbeanstalk", "s3", "route53"))
    out: dict[str, Any] = {}
    out["roles"] = {
        r["RoleName"]: {
            "path": r["Path"],
            "tags": _tags(iam.list_role_tags(RoleName=r["RoleName"])["Tags"]),
            "trust": _j(r["AssumeRolePolicyDocument"]),
            "attached": sorted(
                p["PolicyArn"]
                for p in iam.list_attached_role_policies(RoleName=r["RoleName"])["AttachedPolicies"]
            ),
            "inline": sorted(iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"]),
        }
        for r in iam.list_roles()["Roles"]
        if not r["Path"].startswith(SLR_PATH)
    }
    out["profiles"] = {
        p["InstanceProfileName"]: {
            "tags": _tags(
                iam.get_instance_profile(InstanceProfileName=p["InstanceProfileName"])[
                    "InstanceProfile"
                ].get("Tags")
            ),
            "roles": sorted(r["RoleName"] for r in p["Roles"]),
        }
        for p in iam.list_instance_profiles()["InstanceProfiles"]
    }
    out["instances"] = {
        i["InstanceId"]: {
            "state": i["State"]["Name"],
            "type": i["InstanceType"],
            "key": i.get("KeyName"),
            "groups": sorted(g["GroupId"] for g in i["SecurityGroups"]),
            "tags": _tags(i.get("Tags")),
        }
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("shutting-down", "terminated")
    }
    out["security_groups"] = {
        g["GroupId"]: {
            "name": g["GroupName"],
            "tags": _tags(g.get("Tags")),
            "ingress": sorted(_j(p) for p in g["IpPermissions"]),
            "egress": sorted(_j(p) for p in g["IpPermissionsEgress"]),
        }
        for g in ec2.describe_security_groups()["SecurityGroups"]
    }
    out["key_pairs"] = {
        k["KeyName"]: _tags(k.get("Tags")) for k in ec2.describe_key_pairs()["KeyPairs"]
    }
    lbs = elb.describe_load_balancers()["LoadBalancers"]
    tgs = elb.describe_target_groups()["TargetGroups"]
    arns = [lb["LoadBalancerArn"] for lb in lbs] + [tg["TargetGroupArn"] for tg in tgs]
    elb_tags = {
        d["ResourceArn"]: _tags(d["Tags"])
        for i in range(0, len(arns), 20)
        for d in elb.describe_tags(ResourceArns=arns[i : i + 20])["TagDescriptions"]
    }
    out["load_balancers"] = {
        lb["LoadBalancerArn"]: {
            "name": lb["LoadBalancerName"],
            "dns": lb["DNSName"],
            "groups": sorted(lb.get("SecurityGroups", [])),
            "tags": elb_tags.get(lb["LoadBalancerArn"]),
        }
        for lb in lbs
    }
    out["target_groups"] = {
        tg["TargetGroupArn"]: {
            "name": tg["TargetGroupName"],
            "port": tg.get("Port"),
            "health_path": tg.get("HealthCheckPath"),
            "tags": elb_tags.get(tg["TargetGroupArn"]),
            "targets": sorted(
                _j(d["Target"])
                for d in elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])[
                    "TargetHealthDescriptions"
                ]
            ),
        }
        for tg in tgs
    }
    out["listeners"] = {
        li["ListenerArn"]: {
            "port": li["Port"],
            "protocol": li["Protocol"],
            "actions": _j(li["DefaultActions"]),
            "certificates": _j(li.get("Certificates", [])),
        }
        for lb in lbs
        for li in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }
    out["certificates"] = {
        c["CertificateArn"]: {
            "domain": c["DomainName"],
            "status": acm.describe_certificate(CertificateArn=c["CertificateArn"])["Certificate"][
                "Status"
            ],
            "tags": _tags(
                acm.list_tags_for_certificate(CertificateArn=c["CertificateArn"])["Tags"]
            ),
        }
        for c in acm.list_certificates()["CertificateSummaryList"]
    }
    out["beanstalk_applications"] = {
        a["ApplicationName"]: _tags(
            eb.list_tags_for_resource(ResourceArn=a["ApplicationArn"])["ResourceTags"]
        )
        for a in eb.describe_applications()["Applications"]
    }
    out["beanstalk_environments"] = sorted(
        e["EnvironmentName"]
        for e in eb.describe_environments()["Environments"]
        if e["Status"] != "Terminated"
    )
    out["buckets"] = {b["Name"]: _bucket_tags(s3, b["Name"]) for b in s3.list_buckets()["Buckets"]}
    out["records"] = {
        z["Name"]: sorted(
            _j(rr)
            for rr in r53.list_resource_record_sets(HostedZoneId=z["Id"], MaxItems="300")[
                "ResourceRecordSets"
            ]
        )
        for z in r53.list_hosted_zones()["HostedZones"]
    }
    return out


def _bucket_tags(s3: Any, name: str) -> list[tuple[str, str]]:
    try:
        return _tags(s3.get_bucket_tagging(Bucket=name)["TagSet"])
    except ClientError:
        return []


def own(state: dict[str, Any], deployment: str = DEPLOYMENT) -> dict[str, list[str]]:
    """The deployment's resources in `account(...)`: tagged with its name, or (records,
    untaggable) named for it; IAM entities by the names the flows give them."""
    prefix = f"{deployment}-"
    out: dict[str, list[str]] = {
        kind: sorted(k for k, v in state[kind].items() if _mine(_tagged(v)))
        for kind in (
            "instances",
            "security_groups",
            "load_balancers",
            "target_groups",
            "certificates",
            "beanstalk_applications",
            "buckets",
            "key_pairs",
        )
    }
    out["beanstalk_instances"] = sorted(
        k
        for k, v in state["instances"].items()
        if _mine(_tagged(v))
        and "elasticbeanstalk:environment-name" in {t["Key"] for t in _tagged(v) or []}
    )
    out["roles"] = sorted(r for r in state["roles"] if r.startswith(prefix))
    out["profiles"] = sorted(p for p in state["profiles"] if p.startswith(prefix))
    out["beanstalk_environments"] = [
        e for e in state["beanstalk_environments"] if e.startswith(prefix)
    ]
    return out


def _tagged(value: Any) -> Any:
    """The tags of one entry of `account(...)` (a dict with "tags", or the tags)."""
    tags = value.get("tags") if isinstance(value, dict) else value
    return [{"Key": k, "Value": v} for k, v in tags or []]


def foreign(state: dict[str, Any], deployment: str = DEPLOYMENT) -> dict[str, Any]:
    """`state` without the deployment's own resources (see `own`)."""
    mine = own(state, deployment)
    out = {
        kind: {k: v for k, v in entries.items() if k not in mine.get(kind, [])}
        if isinstance(entries, dict) and kind != "records"
        else entries
        for kind, entries in state.items()
    }
    out["beanstalk_environments"] = [
        e for e in state["beanstalk_environments"] if e not in mine["beanstalk_environments"]
    ]
    return out


def service_linked_roles(sb: Sandbox) -> list[str]:
    return sorted(r["RoleName"] for r in client(sb, "iam").list_roles(PathPrefix=SLR_PATH)["Roles"])


# -- the run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = Path(tmp_path_factory.mktemp("busy"))
    overrides: dict[str, Any] = {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": DEPLOYMENT,
        "traffic_requests": 10,
    }
    cfg = fast_all_stages(account_profile="busy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with make_sandbox(cfg, env=True) as sb:
            before_all = account(sb)
            slr_before = service_linked_roles(sb)
            t0 = time.monotonic()
            state = deploy(
                instances=N,
                stages="1-11",
                chunk_size=2,
                desired_count=2,
                settings_overrides=overrides,
                return_state=True,
            )
            report = state.result(raise_on_failure=False)
            assert isinstance(report, DeployReport), f"deploy failed: {state.message}"
            t1 = time.monotonic()
            during = own(account(sb))
            td_state = teardown(
                deployment_name=DEPLOYMENT,
                delete_secrets=True,
                settings_overrides=overrides,
                return_state=True,
            )
            td_report = outcome_of(td_state)
            assert isinstance(td_report, TeardownReport), f"teardown: {td_state.message}"
            t2 = time.monotonic()
            after_all = account(sb)
            yield Run(
                sb=sb,
                overrides=overrides,
                before=foreign(before_all),
                service_linked_before=slr_before,
                report=report,
                during=during,
                teardown=td_report,
                after=foreign(after_all),
                left=own(after_all),
                seconds={"deploy": t1 - t0, "teardown": t2 - t1},
            )


# the first test runs the module's deploy + teardown (about 20 s on 2 cores, well inside
# the default 300 s timeout)
def test_busy_account_holds_what_real_accounts_hold(run: Run) -> None:
    before = run.before
    sso = {n: r for n, r in before["roles"].items() if n.startswith("AWSReservedSSO_")}
    assert set(sso) == set(SSO_ROLES)
    assert all(r["path"] == SSO_PATH and "AssumeRoleWithSAML" in r["trust"] for r in sso.values())
    assert "OrganizationAccountAccessRole" in before["roles"]
    assert before["roles"]["legacy-eb-ec2-role"]["tags"] == []
    assert (TAG_KEY, OTHER) in before["roles"]["other-eb-ec2-role"]["tags"]
    assert (TAG_KEY, OTHER) in before["profiles"]["other-eb-profile"]["tags"]
    for kind in ("instances", "security_groups", "load_balancers", "target_groups"):
        tagged = [v for v in before[kind].values() if (TAG_KEY, OTHER) in v["tags"]]
        assert tagged, kind
    assert any(not v["tags"] for v in before["instances"].values())  # untagged
    assert any((TAG_KEY, OTHER) in v for v in before["key_pairs"].values())
    assert [c["status"] for c in before["certificates"].values()] == ["ISSUED"]
    assert f"{OTHER}-app" in before["beanstalk_applications"]
    assert set(before["records"]) >= {f"{run.sb.cfg.hosted_zone}.", f"{SECOND_ZONE}."}
    assert any(
        f'"api.{run.sb.cfg.hosted_zone}."' in r
        for r in before["records"][f"{run.sb.cfg.hosted_zone}."]
    )
    # no service-linked role until a service makes its own
    assert run.service_linked_before == []


def test_every_stage_completed(run: Run) -> None:
    assert [r.status for r in run.report.stages] == ["completed"] * 11, [
        (r.name, r.status, r.error) for r in run.report.stages
    ]
    assert run.report.install["installed"] == N
    # what the deployment made, found by its tag and names
    assert len(run.during["instances"]) >= N + 2  # web hosts, traffic generator, jumphost
    for kind in ("security_groups", "load_balancers", "target_groups", "certificates"):
        assert run.during[kind], kind
    assert run.during["roles"] == [f"{DEPLOYMENT}-eb-ec2-role", f"{DEPLOYMENT}-eb-service-role"]
    assert run.during["profiles"] == [f"{DEPLOYMENT}-eb-profile"]


def test_teardown_without_errors_removes_everything_of_the_deployment(run: Run) -> None:
    assert run.teardown.errors == []
    counts = run.teardown.counts()
    assert counts["iam-role"] == 2 and counts["instance-profile"] == 1, counts
    # Elastic Beanstalk's own instance goes with its environment (terminated by Beanstalk)
    assert len(run.during["beanstalk_instances"]) == 1, run.during
    flows_instances = set(run.during["instances"]) - set(run.during["beanstalk_instances"])
    assert counts["ec2-instance"] == len(flows_instances), counts
    assert all(not v for v in run.left.values()), run.left
    assert run.seconds["teardown"] < 120, run.seconds


def test_foreign_resources_unchanged(run: Run) -> None:
    # Elastic Beanstalk keeps one storage bucket per region and account, made by the first
    # environment and shared by all of them: the environment's teardown leaves it, as AWS does
    after = dict(run.after)
    eb_bucket = f"elasticbeanstalk-{run.sb.cfg.region}-{run.sb.admin.arn.split(':')[4]}"
    assert eb_bucket in after["buckets"] and eb_bucket not in run.before["buckets"]
    after["buckets"] = {k: v for k, v in after["buckets"].items() if k != eb_bucket}
    for kind in run.before:
        assert after[kind] == run.before[kind], kind
    # service-linked roles the deploy made are kept (AWS's, shared by the account)
    made = service_linked_roles(run.sb)
    assert set(made) <= set(SERVICE_LINKED_ROLES.values()), made
    assert "AWSServiceRoleForElasticLoadBalancing" in made


def test_teardown_reports_iam_names_taken_by_another_owner(run: Run) -> None:
    """Deployment `legacy`: its role and profile names are taken by untagged entities."""
    before = account(run.sb)
    overrides = {**run.overrides, "deployment_name": "legacy"}
    state = teardown(deployment_name="legacy", settings_overrides=overrides, return_state=True)
    assert state.is_failed()
    report = outcome_of(state)
    assert isinstance(report, TeardownReport)
    assert report.total_removed == 0
    assert sorted(e.split(":", 1)[0] for e in report.errors) == [
        "iam-role legacy-eb-ec2-role",
        "instance-profile legacy-eb-profile",
    ], report.errors
    assert all("is not tagged" in e for e in report.errors)
    assert account(run.sb) == before
