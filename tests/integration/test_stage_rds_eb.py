"""Deploy stages 7-9 on the sandbox: Elastic Beanstalk, RDS and the jumphost's SELECT 1.
Real boto3 against moto, real SSH to the emulated jumphost, real Prefect Secret blocks on
the test session's server. No mocks of project code."""

from __future__ import annotations

import json
import logging
import shlex
import time
import urllib.request
from typing import Any

import pytest

from blocks.settings import FleetSettings
from sandbox import Sandbox, SandboxConfig
from tasks.aws import Aws
from tasks.aws.ec2 import TAG_KEY, StageError, ensure_key_pair, ensure_security_group
from tasks.aws.iam import EB_POLICIES, EB_SERVICE_POLICIES
from tasks.deploy.models import BeanstalkResult, RdsResult
from tasks.deploy.stages.s07_elastic_beanstalk import create_beanstalk
from tasks.deploy.stages.s08_rds import create_rds, load_db_password
from tasks.deploy.stages.s09_jumphost_mysql_check import jumphost_check

from ..support import client, make_sandbox, ssh


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        install_latency=0.05,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        rds_create_seconds=0.5,
        eb_launch_seconds=0.3,
        drop_hold_seconds=2,
    )
    with pytest.MonkeyPatch.context() as mp:
        # moto attaches AWS managed policies (AWSElasticBeanstalkWebTier, ...) only when it
        # loads them; real IAM always has them
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with make_sandbox(cfg, env=True) as s:
            yield s


@pytest.fixture(scope="module")
def settings(sb: Sandbox, tmp_path_factory: Any) -> FleetSettings:
    return FleetSettings(
        state_dir=str(tmp_path_factory.mktemp("stages") / "state"), deployment_name="dbtest"
    )


@pytest.fixture(scope="module")
def aws(settings: FleetSettings) -> Aws:
    return Aws(settings)


@pytest.fixture(scope="module")
def key_pem(aws: Aws, settings: FleetSettings) -> str:
    ensure_key_pair(aws, settings)
    return settings.key_file_path().read_text()


@pytest.fixture(scope="module")
def rds_result(aws: Aws, settings: FleetSettings) -> RdsResult:
    return create_rds(aws, settings, timeout_s=60, poll_s=0.2)


def _live_envs(eb: Any) -> list[dict[str, Any]]:
    return [e for e in eb.describe_environments()["Environments"] if e["Status"] != "Terminated"]


# -- stage 7 ------------------------------------------------------------------------------
def test_beanstalk_ready_with_a_balancer_and_idempotent(
    sb: Sandbox, aws: Aws, settings: FleetSettings
) -> None:
    eb, iam, elb = client(sb, "elasticbeanstalk"), client(sb, "iam"), client(sb, "elbv2")
    res = create_beanstalk(aws, settings, timeout_s=60, poll_s=0.2)
    assert isinstance(res, BeanstalkResult)
    assert (res.application, res.environment) == ("dbtest-app", "dbtest-env")
    assert (res.role, res.instance_profile) == ("dbtest-eb-ec2-role", "dbtest-eb-profile")
    assert res.cname.startswith("dbtest-env.")
    (env,) = eb.describe_environments(EnvironmentNames=["dbtest-env"])["Environments"]
    assert env["Status"] == "Ready"
    lbs = elb.describe_load_balancers(LoadBalancerArns=[res.load_balancer_arn])["LoadBalancers"]
    assert lbs[0]["LoadBalancerArn"] == res.load_balancer_arn

    role = iam.get_role(RoleName=res.role)["Role"]
    assert {"Key": TAG_KEY, "Value": "dbtest"} in role["Tags"]
    assert "ec2.amazonaws.com" in str(role["AssumeRolePolicyDocument"])
    attached = iam.list_attached_role_policies(RoleName=res.role)["AttachedPolicies"]
    assert {p["PolicyArn"] for p in attached} == set(EB_POLICIES)
    profile = iam.get_instance_profile(InstanceProfileName=res.instance_profile)
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [res.role]
    tags = eb.list_tags_for_resource(ResourceArn=env["EnvironmentArn"])["ResourceTags"]
    assert {"Key": TAG_KEY, "Value": "dbtest"} in tags
    # the service role Elastic Beanstalk assumes: in the deployment's prefix, tagged, trusting
    # elasticbeanstalk.amazonaws.com, with the AWS-managed policies an EB service role needs
    assert res.service_role == "dbtest-eb-service-role"
    service = iam.get_role(RoleName=res.service_role)["Role"]
    assert {"Key": TAG_KEY, "Value": "dbtest"} in service["Tags"]
    assert "elasticbeanstalk.amazonaws.com" in str(service["AssumeRolePolicyDocument"])
    attached = iam.list_attached_role_policies(RoleName=res.service_role)["AttachedPolicies"]
    assert {p["PolicyArn"] for p in attached} == set(EB_SERVICE_POLICIES)

    counts = (
        len(_live_envs(eb)),
        len(iam.list_roles()["Roles"]),
        len(iam.list_instance_profiles()["InstanceProfiles"]),
        len(eb.describe_applications()["Applications"]),
    )
    again = create_beanstalk(aws, settings, timeout_s=60, poll_s=0.2)
    assert again == res
    assert counts == (
        len(_live_envs(eb)),
        len(iam.list_roles()["Roles"]),
        len(iam.list_instance_profiles()["InstanceProfiles"]),
        len(eb.describe_applications()["Applications"]),
    )
    assert counts[0] == 1


def test_beanstalk_refuses_an_environment_without_a_usable_service_role(
    sb: Sandbox, aws: Aws, settings: FleetSettings
) -> None:
    """As Elastic Beanstalk does: the ServiceRole option must name a role that exists and
    trusts elasticbeanstalk.amazonaws.com (InvalidParameterValue otherwise)."""
    from botocore.exceptions import ClientError

    from tasks.aws.beanstalk import choose_solution_stack, ensure_application
    from tasks.aws.iam import EC2_TRUST_POLICY

    eb, iam = client(sb, "elasticbeanstalk"), client(sb, "iam")
    app = ensure_application(aws, settings)
    stack = choose_solution_stack(aws, settings)
    iam.create_role(RoleName="dbtest-not-eb", AssumeRolePolicyDocument=json.dumps(EC2_TRUST_POLICY))
    try:
        for value in (None, "dbtest-no-such-role", "dbtest-not-eb"):
            options = (
                []
                if value is None
                else [
                    {
                        "Namespace": "aws:elasticbeanstalk:environment",
                        "OptionName": "ServiceRole",
                        "Value": value,
                    }
                ]
            )
            with pytest.raises(ClientError) as err:
                eb.create_environment(
                    ApplicationName=app,
                    EnvironmentName="dbtest-norole",
                    SolutionStackName=stack,
                    OptionSettings=options,
                )
            assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
            assert "service role" in str(err.value)
    finally:
        iam.delete_role(RoleName="dbtest-not-eb")
    assert not [e for e in _live_envs(eb) if e["EnvironmentName"] == "dbtest-norole"]


# -- stage 8 ------------------------------------------------------------------------------
def test_rds_private_encrypted_and_reachable_only_from_the_jumphost(
    sb: Sandbox, aws: Aws, settings: FleetSettings, rds_result: RdsResult
) -> None:
    from prefect.blocks.system import Secret

    rds, ec2 = client(sb, "rds"), client(sb, "ec2")
    (db,) = rds.describe_db_instances(DBInstanceIdentifier="dbtest-db")["DBInstances"]
    assert db["DBInstanceStatus"] == "available"
    assert db["PubliclyAccessible"] is False and db["StorageEncrypted"] is True
    assert {"Key": TAG_KEY, "Value": "dbtest"} in db["TagList"]
    assert (rds_result.endpoint, rds_result.port) == (db["Endpoint"]["Address"], 3306)
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == [
        rds_result.security_group_id
    ]
    jump = ensure_security_group(aws, settings, role="jumphost")
    (group,) = ec2.describe_security_groups(GroupIds=[rds_result.security_group_id])[
        "SecurityGroups"
    ]
    rules = group["IpPermissions"]
    assert len(rules) == 1
    assert (rules[0]["FromPort"], rules[0]["ToPort"], rules[0]["IpProtocol"]) == (
        3306,
        3306,
        "tcp",
    )
    assert [p["GroupId"] for p in rules[0]["UserIdGroupPairs"]] == [jump]
    assert not rules[0].get("IpRanges") and not rules[0].get("Ipv6Ranges")

    password = str(Secret.load(settings.password_block).get())  # type: ignore[union-attr]
    assert len(password) == 24 and password.isalnum()
    assert password == load_db_password(settings)
    assert rds_result.password_secret_block == settings.password_block
    assert password not in rds_result.model_dump_json()


def test_rds_second_call_creates_nothing(
    sb: Sandbox, aws: Aws, settings: FleetSettings, rds_result: RdsResult
) -> None:
    rds, ec2 = client(sb, "rds"), client(sb, "ec2")
    before = load_db_password(settings)
    again = create_rds(aws, settings, timeout_s=60, poll_s=0.2)
    assert again == rds_result
    assert [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]] == [
        "dbtest-db"
    ]
    groups = ec2.describe_security_groups(
        Filters=[{"Name": f"tag:{TAG_KEY}", "Values": ["dbtest"]}]
    )["SecurityGroups"]
    # Beanstalk's stack's groups carry the environment's tags too (CloudFormation's as well)
    ours = [
        g for g in groups if "aws:cloudformation:stack-name" not in {t["Key"] for t in g["Tags"]}
    ]
    assert sorted(g["GroupName"] for g in ours) == ["dbtest-db", "dbtest-jumphost"]
    assert load_db_password(settings) == before


# -- stage 9 ------------------------------------------------------------------------------
def _jumphosts(sb: Sandbox) -> list[str]:
    res = client(sb, "ec2").describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": ["dbtest"]},
            {"Name": "tag:tomcat-fleet:role", "Values": ["jumphost"]},
        ]
    )
    return [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]


def test_jumphost_selects_one(
    sb: Sandbox, aws: Aws, settings: FleetSettings, rds_result: RdsResult, key_pem: str
) -> None:
    res = jumphost_check(aws, settings, rds_result, key_pem, timeout_s=120)
    assert res.select_1 == "1"
    assert _jumphosts(sb) == [res.instance_id]
    host = next(h for h in sb.state()["hosts"] if h["instance_id"] == res.instance_id)
    assert "mysql-client" in str(host["packages"])
    sg = client(sb, "ec2").describe_security_groups(GroupIds=[res.security_group_id])
    ssh_rules = sg["SecurityGroups"][0]["IpPermissions"]
    assert [(p["FromPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in ssh_rules] == [
        (22, [sb.cfg.controller_cidr])
    ]

    again = jumphost_check(aws, settings, rds_result, key_pem, timeout_s=120)
    assert again == res
    assert _jumphosts(sb) == [res.instance_id]


def test_jumphost_password_is_never_on_a_command_line(
    sb: Sandbox, aws: Aws, settings: FleetSettings, rds_result: RdsResult, key_pem: str
) -> None:
    """Issue 11: mysql reads the password from stdin; the sandbox records every remote
    command line it was sent (GET /_sandbox/commands), and none holds the password."""
    assert jumphost_check(aws, settings, rds_result, key_pem, timeout_s=120).select_1 == "1"
    with urllib.request.urlopen(f"{sb.endpoint}/_sandbox/commands", timeout=10) as resp:
        commands = json.dumps(json.load(resp))
    assert "--defaults-extra-file=/dev/stdin" in commands
    password = load_db_password(settings)
    assert password not in commands and "MYSQL_PWD" not in commands


def _recorded_commands(sb: Sandbox) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"{sb.endpoint}/_sandbox/commands", timeout=10) as resp:
        records: list[dict[str, str]] = json.load(resp)
    return records


def test_jumphost_mysql_through_stdin_keeps_the_password_off_command_lines(
    sb: Sandbox, aws: Aws, settings: FleetSettings, rds_result: RdsResult, key_pem: str
) -> None:
    """The password travels as an option file on stdin: the sandbox records every command
    line it is sent, and none holds it; a wrong password on stdin is refused."""
    res = jumphost_check(aws, settings, rds_result, key_pem, timeout_s=120)  # host + client
    ip = next(
        i["PublicIpAddress"]
        for r in client(sb, "ec2").describe_instances(InstanceIds=[res.instance_id])["Reservations"]
        for i in r["Instances"]
    )
    password, wrong = load_db_password(settings), "Wr0ngStdinPassw0rdX"
    command = (
        "mysql --defaults-extra-file=/dev/stdin "
        f"-h {shlex.quote(rds_result.endpoint)} -P {rds_result.port} "
        f"-u {shlex.quote(rds_result.master_username)} --connect-timeout=10 -N -e 'SELECT 1'"
    )
    before = len(_recorded_commands(sb))
    conn = ssh(ip, sb.ssh_port, key_pem)
    try:

        def run(stdin_text: str | None) -> tuple[int, str, str, float]:
            started = time.monotonic()
            stdin, stdout, stderr = conn.exec_command(command, timeout=30)
            if stdin_text is not None:
                stdin.write(stdin_text)
            stdin.channel.shutdown_write()  # EOF
            status = stdout.channel.recv_exit_status()
            out, err = stdout.read().decode(), stderr.read().decode()
            return status, out, err, time.monotonic() - started

        status, out, err, _ = run(f"[client]\npassword={password}\n")
        assert (status, out, err) == (0, "1\n", "")
        status, out, err, _ = run(f"[client]\npassword={wrong}\n")
        assert (status, out) == (1, "")
        assert err.startswith("ERROR 1045 (28000): Access denied for user ") and "YES" in err
        status, _, err, took = run(None)  # nothing but EOF: no hang, no password
        assert status == 1 and "(using password: NO)" in err and took < 5
    finally:
        conn.close()

    mine = _recorded_commands(sb)[before:]
    assert [(r["ip"], r["instance_id"], r["user"], r["command"]) for r in mine] == [
        (ip, res.instance_id, settings.ssh_user, command)
    ] * 3
    assert all(r["time"].endswith("+00:00") for r in mine)
    assert not [r for r in mine if password in r["command"] or wrong in r["command"]]


def test_wrong_password_fails_without_showing_it(
    aws: Aws,
    settings: FleetSettings,
    rds_result: RdsResult,
    key_pem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.blocks.system import Secret

    caplog.set_level(logging.DEBUG, logger="tasks")
    caplog.set_level(logging.DEBUG, logger="tomcat_fleet")  # the action lines (tasks.actions)

    wrong = "Wr0ngPassw0rdForTheTestX"
    Secret(value=wrong).save("dbtest-wrong-password", overwrite=True)
    bad = rds_result.model_copy(update={"password_secret_block": "dbtest-wrong-password"})
    with pytest.raises(StageError) as err:
        jumphost_check(aws, settings, bad, key_pem, timeout_s=120)
    message = str(err.value)
    assert "ERROR 1045" in message and "does not match" in message
    assert wrong not in message and load_db_password(settings) not in message
    assert wrong not in caplog.text


def test_db_group_without_the_rule_times_out(
    sb: Sandbox, aws: Aws, settings: FleetSettings, rds_result: RdsResult, key_pem: str
) -> None:
    ec2 = client(sb, "ec2")
    jump = ensure_security_group(aws, settings, role="jumphost")
    rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [rds_result.security_group_id]}]
    )["SecurityGroupRules"]
    ingress = [r for r in rules if not r["IsEgress"]]
    assert [r.get("ReferencedGroupInfo", {}).get("GroupId") for r in ingress] == [jump]
    ec2.revoke_security_group_ingress(
        GroupId=rds_result.security_group_id,
        SecurityGroupRuleIds=[r["SecurityGroupRuleId"] for r in ingress],
    )
    sb.wait_settled()
    with pytest.raises(StageError) as err:
        jumphost_check(aws, settings, rds_result, key_pem, timeout_s=60, connect_timeout_s=1)
    message = str(err.value)
    assert "ERROR 2003" in message and "security group" in message
    assert load_db_password(settings) not in message

    create_rds(aws, settings, timeout_s=60, poll_s=0.2)  # puts the rule back
    sb.wait_settled()
    assert jumphost_check(aws, settings, rds_result, key_pem, timeout_s=60).select_1 == "1"


def test_missing_password_block_is_a_stage_error(settings: FleetSettings) -> None:
    other = settings.model_copy(update={"db_password_block": "dbtest-no-such-block"})
    with pytest.raises(StageError, match="dbtest-no-such-block"):
        load_db_password(other)
