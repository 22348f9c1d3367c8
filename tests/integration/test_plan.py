"""`deploy --plan` and `teardown --plan` on the sandbox: read-only (the sandbox counts every
API call it serves, by service and action: a plan makes no call but Describe/List/Get/Head),
exit codes as `terraform plan -detailed-exitcode` (0 nothing to do, 2 changes), one entry
per resource. On an empty account every entry is `create`; after a full deploy every entry
is `no-op`; after one ingress rule is revoked and one target deregistered by hand, exactly
those two resources are `update`, naming the field; the teardown plan lists deletes."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.deploy import DeployReport, deploy
from flows.teardown import teardown
from sandbox import Sandbox, SandboxConfig
from tasks.cli.app import main
from tasks.plan.models import SCHEMA, Plan
from tasks.runtime.outcome import outcome_of

from ..support import client, make_sandbox

NAME = "plantest"
N = 2
READ_PREFIXES = ("Describe", "List", "Get", "Head", "GET ", "HEAD ")


@pytest.fixture(scope="module")
def sb() -> Any:
    cfg = SandboxConfig(
        install_latency=0.1,
        boot_delay=0.2,
        cloud_init_seconds=0.2,
        eb_launch_seconds=0.3,
        rds_create_seconds=0.3,
        health_check_interval=0.3,
    )
    with make_sandbox(cfg, env=True) as s:
        yield s


@pytest.fixture(scope="module")
def options(tmp_path_factory: Any) -> list[str]:
    base = tmp_path_factory.mktemp("plan")
    return [
        "--deployment-name",
        NAME,
        "--state-dir",
        str(base / "state"),
        "--log-dir",
        str(base / "logs"),
    ]


def calls(sb: Sandbox) -> Counter[str]:
    return Counter(sb.api.counters()["calls"])


def mutating(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """The calls served between two counts that are not reads (service:Action -> count)."""
    new = after - before
    return {k: v for k, v in new.items() if not k.split(":", 1)[1].startswith(READ_PREFIXES)}


def cli_plan(
    sb: Sandbox, capsys: pytest.CaptureFixture[str], args: list[str]
) -> tuple[int, dict[str, Any], dict[str, int]]:
    """Run `tomcat-fleet <args> --plan --json` in this process: its exit code, its JSON and
    the mutating calls the sandbox served meanwhile."""
    capsys.readouterr()
    before = calls(sb)
    code = main([*args, "--plan", "--json"])
    after = calls(sb)
    out = capsys.readouterr().out
    doc, writes = json.loads(out), mutating(before, after)
    with capsys.disabled():  # what each case observed, in the test log
        print(
            f"\n{args[0]} --plan: exit {code}, {len(doc['entries'])} entries, "
            f"{doc['changes']} changes {doc['counts']}, mutating calls {writes}"
        )
        for e in doc["entries"]:
            if e["action"] != "no-op" and doc["changes"] < 5:
                print(f"  {e['stage']} {e['kind']} {e['name']} {e['action']} ", end="")
                print(f"{e['field']}: {e['reason']}")
    return code, doc, writes


def changed(doc: dict[str, Any]) -> list[tuple[int, str, str, str, str]]:
    return [
        (e["stage"], e["kind"], e["name"], e["action"], e["field"])
        for e in doc["entries"]
        if e["action"] != "no-op"
    ]


def test_plan_empty_deployed_drifted_and_teardown(
    sb: Sandbox, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_args = ["deploy", "--instances", str(N), "--runner", "thread", *options]

    # (a) an empty account: every resource of the eleven stages is to be created
    code, doc, writes = cli_plan(sb, capsys, deploy_args)
    assert writes == {}, writes
    assert code == 2 and doc["schema"] == SCHEMA and doc["deployment_name"] == NAME
    assert doc["changes"] == len(doc["entries"]) > 0
    assert {e["action"] for e in doc["entries"]} == {"create"}, changed(doc)
    assert {e["stage"] for e in doc["entries"]} >= set(range(1, 12)) - {10}, doc["entries"]
    assert calls(sb)["ec2:RunInstances"] == 0

    # (b) after a real deploy of the eleven stages: nothing to do
    t0 = time.monotonic()
    ov = dict(zip(["deployment_name", "state_dir", "log_dir"], options[1::2], strict=True))
    before = calls(sb)
    state = deploy(instances=N, runner="thread", settings_overrides=ov, return_state=True)
    report = outcome_of(state)
    assert isinstance(report, DeployReport) and state.is_completed(), state.message
    # the count sees writes: the deploy's are there
    assert {"ec2:RunInstances", "elasticloadbalancing:RegisterTargets"} <= set(
        mutating(before, calls(sb))
    )
    with capsys.disabled():
        print(f"\ndeploy of the eleven stages: {time.monotonic() - t0:.1f}s")
    code, doc, writes = cli_plan(sb, capsys, deploy_args)
    assert writes == {}, writes
    assert code == 0 and doc["changes"] == 0, changed(doc)
    assert {e["action"] for e in doc["entries"]} == {"no-op"}
    # the flow's plan: the same, as the run's markdown artifact
    state = deploy(
        instances=N, runner="thread", settings_overrides=ov, plan=True, return_state=True
    )
    plan = outcome_of(state)
    assert isinstance(plan, Plan) and plan.changes == 0 and state.is_completed()
    with get_client(sync_client=True) as prefect:
        arts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    art = next(a for a in arts if a.key == f"{NAME}-deploy-plan")
    assert f"| 4 | no-op | target-group | `{NAME}-tg` |" in str(art.data)

    # (c) one ingress rule revoked, one target deregistered, by hand: exactly those two
    ec2, elb = client(sb, "ec2"), client(sb, "elbv2")
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [f"{NAME}-web", f"{NAME}-alb"]}]
        )["SecurityGroups"]
    }
    alb_group = groups[f"{NAME}-alb"]["GroupId"]
    web = groups[f"{NAME}-web"]
    rule = next(
        {**p, "UserIdGroupPairs": pairs}
        for p in web["IpPermissions"]
        if (pairs := [g for g in p.get("UserIdGroupPairs", []) if g["GroupId"] == alb_group])
    )
    rule.pop("IpRanges", None)
    ec2.revoke_security_group_ingress(GroupId=web["GroupId"], IpPermissions=[rule])
    tg = elb.describe_target_groups(Names=[f"{NAME}-tg"])["TargetGroups"][0]["TargetGroupArn"]
    target = sorted(
        d["Target"]["Id"]
        for d in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    )[0]
    elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": target, "Port": 8080}])
    code, doc, writes = cli_plan(sb, capsys, deploy_args)
    assert writes == {}, writes
    assert code == 2 and doc["changes"] == 2
    assert changed(doc) == [
        (4, "security-group", f"{NAME}-web", "update", "ingress rule"),
        (4, "target-group", f"{NAME}-tg", "update", "target group membership"),
    ]
    reasons = [e["reason"] for e in doc["entries"] if e["action"] == "update"]
    assert reasons == [f"add tcp 8080 from {NAME}-alb", f"register {target}"], reasons

    # (d) the teardown plan: a delete per resource, nothing deleted
    code, doc, writes = cli_plan(sb, capsys, ["teardown", "--deployment-name", NAME])
    kinds = Counter(e["kind"] for e in doc["entries"])
    assert writes == {}, writes
    assert code == 2 and doc["changes"] == len(doc["entries"]) > 0
    assert {e["action"] for e in doc["entries"]} == {"delete"}
    # the web hosts, the traffic generator, the jumphost and the Beanstalk environment's
    assert kinds["ec2-instance"] == N + 3
    assert {"load-balancer", "target-group", "certificate", "rds-instance", "key-pair"} <= set(
        kinds
    )
    assert client(sb, "ec2").describe_key_pairs(KeyNames=[NAME])["KeyPairs"]

    # after the teardown itself: nothing left to delete, exit 0
    state = teardown(deployment_name=NAME, settings_overrides=ov, return_state=True)
    assert state.is_completed(), state.message
    code, doc, writes = cli_plan(sb, capsys, ["teardown", "--deployment-name", NAME])
    assert writes == {} and code == 0 and doc["entries"] == [], doc["entries"]
