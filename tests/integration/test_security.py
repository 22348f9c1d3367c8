"""Security properties of one real deploy (all eleven stages) + teardown on the sandbox.

* least privilege: the AWS operations the flows called (recorded by `tasks.aws.client`) need
  exactly the actions `docs/iam-policy.json` allows: none missing, none unused;
* secrets: the SSH private key, the RDS master password and the AWS secret key appear in
  no log file, state file, Prefect log, flow-run record, artifact, report or console output;
* safe defaults, read back through the AWS API before teardown: SSH only from the
  controller's CIDR, IMDSv2 required, EBS encrypted, RDS private and encrypted, the
  access-log bucket private (ACL, public access block, default encryption, no public
  policy).

One module-scoped run feeds every test; the estate's evidence is collected before the
teardown runs, so the tests may run in any order.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
import pytest

from blocks.settings import FleetSettings
from flows.deploy import DeployReport, deploy
from flows.teardown import teardown
from sandbox import Sandbox
from tasks.aws.client import recorded_operations, reset_operations
from tasks.aws.ec2 import TAG_KEY
from tasks.aws.grants import IAM_PROFILES, IAM_ROLES, LINKED_SERVICES, SCOPES
from tasks.aws.policy import (
    POLICY_PATH,
    actions_for,
    load_policy,
    policy_actions,
    render,
    shipped_operations,
)
from tasks.aws.teardown import TeardownReport

from ..support import client, fast_all_stages, make_sandbox

N = 4
DEPLOYMENT = "sectest"
# not the sandbox default: the flows must learn it from TOMCAT_FLEET_CONTROLLER_IP_URL
CONTROLLER_CIDR = "203.0.113.77/32"
WORLD = {"0.0.0.0/0", "::/0"}
PUBLIC_GRANTEES = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)
MIN_SECRET_LEN = 16
# project loggers raised to DEBUG/INFO for the run so their output is scanned too
VERBOSE = {
    "tasks": logging.DEBUG,
    "flows": logging.DEBUG,
    "blocks": logging.DEBUG,
    "tomcat_fleet": logging.DEBUG,
    "prefect.flow_runs": logging.INFO,
    "prefect.task_runs": logging.INFO,
}


@dataclass
class Run:
    sb: Sandbox
    settings: FleetSettings
    report: DeployReport
    teardown: TeardownReport
    operations: frozenset[str]
    secrets: dict[str, str]
    key_path: Path
    key_mode: int  # the private key file's mode while the deployment lived
    evidence: dict[str, Any]
    repaired: dict[str, Any] = field(default_factory=dict)  # the estate after the re-run
    sources: dict[str, str] = field(default_factory=dict)  # where -> text scanned
    counts: dict[str, int] = field(default_factory=dict)  # how many items per kind
    artifact_keys: list[str] = field(default_factory=list)
    output_captured: bool = False  # False under `pytest -s`: nothing to read back


# -- collecting ---------------------------------------------------------------------------
class _Records(logging.Handler):
    """Every log record of the run, formatted (with tracebacks), as pytest's caplog would."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))


@contextlib.contextmanager
def _verbose_logging() -> Iterator[_Records]:
    handler = _Records()
    saved = {name: logging.getLogger(name).level for name in VERBOSE}
    for name, level in VERBOSE.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _drain_capture(capman: Any) -> str | None:
    """What pytest captured so far (this process's and pool workers' stdout/stderr); it is
    written back so the test report still shows it. None when capture is off (-s)."""
    if capman is None or not capman.is_globally_capturing():
        return None
    out, err = capman.read_global_capture()
    sys.stdout.write(out)
    sys.stderr.write(err)
    return f"{out}\n{err}"


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _tagged(name: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{TAG_KEY}", "Values": [name]}]


def collect_evidence(sb: Sandbox, report: DeployReport) -> dict[str, Any]:
    """The estate as the AWS API describes it, read with the test's own client."""
    ec2, rds, s3 = client(sb, "ec2"), client(sb, "rds"), client(sb, "s3")
    instances = [
        i
        for r in ec2.describe_instances(
            Filters=[
                *_tagged(DEPLOYMENT),
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    ]
    # Elastic Beanstalk's own instance carries the deployment tag too (it passes the
    # environment's tags on); its launch template, not the flows, decides its volumes
    beanstalk = [i for i in instances if "elasticbeanstalk:environment-name" in _tags(i)]
    instances = [i for i in instances if i not in beanstalk]
    volume_ids = [m["Ebs"]["VolumeId"] for i in instances for m in i.get("BlockDeviceMappings", [])]
    bucket = report.resources["access_log_bucket"]
    db = rds.describe_db_instances(DBInstanceIdentifier=f"{DEPLOYMENT}-db")["DBInstances"][0]
    return {
        "web_group": report.resources["web_security_group"],
        "groups": ec2.describe_security_groups(Filters=_tagged(DEPLOYMENT))["SecurityGroups"],
        "instances": instances,
        "beanstalk_instances": beanstalk,
        "volumes": ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"] if volume_ids else [],
        "db": db,
        "bucket": bucket,
        "bucket_acl": s3.get_bucket_acl(Bucket=bucket),
        "public_access_block": s3.get_public_access_block(Bucket=bucket)[
            "PublicAccessBlockConfiguration"
        ],
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "ownership": s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"],
        "bucket_policy": json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]),
    }


def _flow_run_tree(pc: Any, roots: list[UUID]) -> list[Any]:
    """The flow runs `roots` and every subflow run below them, at any depth."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )

    runs = list(pc.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=roots))))
    frontier = roots
    while frontier:
        children = pc.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)
            )
        )
        children = [c for c in children if c.id not in {r.id for r in runs}]
        runs += children
        frontier = [c.id for c in children]
    return runs


def _all_pages(read: Any, page: int = 200, **kw: Any) -> list[Any]:
    out: list[Any] = []
    while True:
        batch = read(limit=page, offset=len(out), **kw)
        out += batch
        if len(batch) < page:
            return out


def collect_prefect(
    flow_run_ids: list[UUID],
) -> tuple[dict[str, str], dict[str, int], list[str]]:
    """Logs, flow-run records (parameters, state messages) and artifacts of the run's flow
    runs and their subflows, as text per source."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as pc:
        runs = _flow_run_tree(pc, flow_run_ids)
        ids = [r.id for r in runs]
        # logs arrive in batches (pool workers send their own): read until the count settles
        logs: list[Any] = []
        deadline = time.monotonic() + 15
        while True:
            now = _all_pages(
                pc.read_logs, log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))
            )
            if (len(now) == len(logs) and logs) or time.monotonic() > deadline:
                logs = now
                break
            logs = now
            time.sleep(1.0)
        artifacts = _all_pages(
            pc.read_artifacts,
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)),
        )
    sources = {
        "prefect logs": "\n".join(f"{log.name} {log.message}" for log in logs),
        "prefect flow runs": "\n".join(
            json.dumps(
                {
                    "name": r.name,
                    "flow": str(r.flow_id),
                    "parameters": r.parameters,
                    "state": r.state.model_dump(mode="json", exclude={"data"}) if r.state else None,
                },
                default=str,
            )
            for r in runs
        ),
        "prefect artifacts": "\n".join(
            json.dumps({"key": a.key, "description": a.description, "data": a.data}, default=str)
            for a in artifacts
        ),
    }
    counts = {
        "flow_runs": len(runs),
        "logs": len(logs),
        "artifacts": len(artifacts),
        # the install flow run's logs, its chunk task runs' included (no subflow between:
        # pool workers forward theirs, at the level their fork server started with)
        "install_logs": sum(
            1
            for log in logs
            for r in runs
            if r.id == log.flow_run_id and r.name.startswith("install-")
        ),
    }
    return sources, counts, sorted({a.key for a in artifacts if a.key})


def collect_files(roots: list[Path], skip: set[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.resolve() in skip:
                continue
            out[f"file {path}"] = path.read_bytes().decode("utf-8", errors="replace")
    return out


def _local_results(since: float) -> dict[str, str]:
    """Result files Prefect persisted during the run (none are expected)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    root = Path(str(PREFECT_LOCAL_STORAGE_PATH.value()))
    if not root.is_dir():
        return {}
    return {
        f"result {p}": p.read_bytes().decode("utf-8", errors="replace")
        for p in root.rglob("*")
        if p.is_file() and p.stat().st_mtime >= since
    }


# -- drift, repaired by a re-run -----------------------------------------------------------
def make_drift(sb: Sandbox, report: DeployReport) -> dict[str, Any]:
    """Change what stage 4 owns, behind the flows' back (as the admin): the target group's
    health check, a stale target, the ALB's security groups, the HTTP listener's action."""
    elb, ec2 = client(sb, "elbv2"), client(sb, "ec2")
    tg, lb = report.resources["target_group"], report.resources["load_balancer"]
    elb.modify_target_group(TargetGroupArn=tg, HealthCheckPath="/drifted")
    jumphost = report.resources["jumphost"]  # not a web host: a stale target
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": jumphost, "Port": 8080}])
    vpc = ec2.describe_security_groups(GroupIds=[report.resources["web_security_group"]])[
        "SecurityGroups"
    ][0]["VpcId"]
    stray = ec2.create_security_group(GroupName="drift-stray", Description="d", VpcId=vpc)
    elb.set_security_groups(LoadBalancerArn=lb, SecurityGroups=[stray["GroupId"]])
    http = next(
        li for li in elb.describe_listeners(LoadBalancerArn=lb)["Listeners"] if li["Port"] == 80
    )
    elb.modify_listener(
        ListenerArn=http["ListenerArn"],
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/plain"},
            }
        ],
    )
    return {"stray_group": stray["GroupId"], "stale": jumphost, "listener": http["ListenerArn"]}


def read_drift(sb: Sandbox, report: DeployReport, drift: dict[str, Any]) -> dict[str, Any]:
    elb = client(sb, "elbv2")
    tg, lb = report.resources["target_group"], report.resources["load_balancer"]
    group = elb.describe_target_groups(TargetGroupArns=[tg])["TargetGroups"][0]
    targets = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    balancer = elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]
    listener = elb.describe_listeners(ListenerArns=[drift["listener"]])["Listeners"][0]
    client(sb, "ec2").delete_security_group(GroupId=drift["stray_group"])
    return {
        "health_path": group["HealthCheckPath"],
        # a deregistered target drains (listed, `draining`) before it is gone, as on AWS
        "targets": sorted(
            t["Target"]["Id"] for t in targets if t["TargetHealth"]["State"] != "draining"
        ),
        "draining": sorted(
            t["Target"]["Id"] for t in targets if t["TargetHealth"]["State"] == "draining"
        ),
        "stale": drift["stale"],
        "groups": balancer["SecurityGroups"],
        "stray_group": drift["stray_group"],
        "listener_actions": listener["DefaultActions"],
    }


def prepare_teardown_extras(sb: Sandbox, report: DeployReport) -> None:
    """What the teardown also removes: egress between the deployment's groups, an inline
    policy on the deployment's role."""
    ec2, iam = client(sb, "ec2"), client(sb, "iam")
    groups = ec2.describe_security_groups(Filters=_tagged(DEPLOYMENT))["SecurityGroups"]
    web = report.resources["web_security_group"]
    other = next(g["GroupId"] for g in groups if g["GroupId"] != web)
    ec2.authorize_security_group_egress(
        GroupId=web,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8080,
                "ToPort": 8080,
                "UserIdGroupPairs": [{"GroupId": other}],
            }
        ],
    )
    iam.put_role_policy(
        RoleName=f"{DEPLOYMENT}-eb-ec2-role",
        PolicyName="added-by-hand",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
            }
        ),
    )


# -- the run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = Path(tmp_path_factory.mktemp("security"))
    overrides: dict[str, Any] = {
        "state_dir": str(base / "state"),
        "log_dir": str(base / "logs"),
        "deployment_name": DEPLOYMENT,
        "traffic_requests": 10,
        # not AWS's 300: stage 4 sets the target group's delay (ModifyTargetGroupAttributes)
        "deregistration_delay_s": 30,
    }
    cfg = fast_all_stages(controller_cidr=CONTROLLER_CIDR)
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        mp.setenv("PREFECT_LOGGING_LEVEL", "INFO")  # pool workers start with INFO logging
        with make_sandbox(cfg, env=True) as sb, _verbose_logging() as records:
            t0 = time.time()
            reset_operations()
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
            assert state.is_completed(), f"deploy failed: {state.message}"
            evidence = collect_evidence(sb, report)

            from prefect.blocks.system import Secret

            settings = FleetSettings(**overrides)
            key_path = settings.key_file_path()
            key_mode = stat.S_IMODE(key_path.stat().st_mode)  # teardown removes the file
            aws_secret = sb.env()["AWS_SECRET_ACCESS_KEY"]
            creds = boto3.Session().get_credentials()
            assert creds is not None and creds.secret_key == aws_secret  # the key in use
            secrets = {
                "ssh private key": key_path.read_text(),
                "rds password": str(Secret.load(settings.password_block).get()),
                "aws secret key": aws_secret,
            }

            # the paths a clean deploy does not take, on the same estate (no new full
            # deploy): drift of the ALB's pieces, repaired by a stage-subset re-run whose
            # install (stage 2, every host already serving) checks host keys strictly; then
            # cross-group egress and an inline role policy, which the teardown must remove
            drift = make_drift(sb, report)
            rerun = deploy(
                instances=N,
                stages="2-4",
                chunk_size=2,
                desired_count=2,
                settings_overrides={**overrides, "host_key_policy": "strict"},
                return_state=True,
            )
            assert rerun.is_completed(), f"re-run failed: {rerun.message}"
            repaired = read_drift(sb, report, drift)
            prepare_teardown_extras(sb, report)

            # ELB delivers access logs within minutes on AWS; the teardown must empty the
            # bucket (this object is the test's, written outside the recorded clients)
            account = client(sb, "sts").get_caller_identity()["Account"]
            client(sb, "s3").put_object(
                Bucket=evidence["bucket"],
                Key=f"alb/AWSLogs/{account}/elasticloadbalancing/us-east-1/access.log.gz",
                Body=b"h2 2024-01-01T00:00:00Z app/x 198.51.100.1:1 - 0 0 0 200 200 0 0\n",
            )
            td_state = teardown(
                deployment_name=DEPLOYMENT,
                delete_secrets=True,
                settings_overrides=overrides,
                return_state=True,
            )
            td_report = td_state.result(raise_on_failure=False)
            assert isinstance(td_report, TeardownReport), f"teardown failed: {td_state.message}"
            operations = recorded_operations()

            ids = [
                UUID(str(s.state_details.flow_run_id))
                for s in (state, td_state)
                if s.state_details.flow_run_id
            ]
            prefect_sources, counts, artifact_keys = collect_prefect(ids)
            captured = _drain_capture(capman)

    result = Run(
        sb=sb,
        settings=settings,
        report=report,
        teardown=td_report,
        operations=operations,
        secrets=secrets,
        key_path=key_path,
        key_mode=key_mode,
        evidence=evidence,
        repaired=repaired,
        counts=counts,
        artifact_keys=artifact_keys,
    )
    files = collect_files(
        [Path(overrides["log_dir"]), Path(overrides["state_dir"])], {key_path.resolve()}
    )
    result.counts["files"] = len(files)
    result.sources.update(files)
    result.sources.update(prefect_sources)
    result.sources.update(_local_results(t0))
    result.sources["deploy report"] = report.model_dump_json()
    result.sources["teardown report"] = td_report.model_dump_json()
    result.sources["log records"] = "\n".join(records.lines)
    result.counts["log_records"] = len(records.lines)
    if captured is not None:
        result.output_captured = True
        result.sources["captured stdout/stderr"] = captured
    return result


def test_deploy_and_teardown_completed(run: Run) -> None:
    assert [r.status for r in run.report.stages] == ["completed"] * 11
    assert run.report.install["installed"] == N
    assert run.teardown.errors == []
    assert run.teardown.counts()["s3-bucket"] == 1
    assert run.teardown.counts()["rds-instance"] == 1


def test_rerun_repaired_the_drift(run: Run) -> None:
    """The stages 2-4 re-run (strict host keys) put back what was changed behind its back."""
    r = run.repaired
    assert r["health_path"] == "/"
    assert sorted(run.report.resources["instances"]) == r["targets"]
    assert r["draining"] in ([], [r["stale"]])  # the stale target left (still draining)
    assert r["stray_group"] not in r["groups"] and r["groups"]
    assert [a["Type"] for a in r["listener_actions"]] == ["forward"]
    assert r["listener_actions"][0]["TargetGroupArn"] == run.report.resources["target_group"]


# -- least privilege ----------------------------------------------------------------------
def test_iam_policy_grants_exactly_the_actions_called(run: Run, tmp_path: Path) -> None:
    assert run.operations, "no AWS operation was recorded"
    policy = load_policy()
    assert policy["Version"] == "2012-10-17"
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow" and st.get("Sid")
        assert st["Action"] == sorted(st["Action"]), f"{st['Sid']}: actions not sorted"
        check_statement_shape(st)
    granted = policy_actions(policy)
    needed = actions_for(run.operations)
    missing, unused = sorted(needed - granted), sorted(granted - needed)
    if missing or unused:
        ops = tmp_path / "operations.json"
        ops.write_text(json.dumps(sorted(run.operations), indent=1))
        diff = "".join(
            difflib.unified_diff(
                POLICY_PATH.read_text().splitlines(keepends=True),
                render(run.operations).splitlines(keepends=True),
                str(POLICY_PATH),
                "regenerated",
            )
        )
        pytest.fail(
            f"docs/iam-policy.json is not least privilege for the operations called\n"
            f"missing (called, not granted): {missing}\n"
            f"unused (granted, never needed): {unused}\n"
            f"regenerate: python -m tasks.aws.policy --operations {ops} --output {POLICY_PATH}\n"
            f"{diff}"
        )


def check_statement_shape(st: dict[str, Any]) -> None:
    """Least privilege where AWS allows it: `Resource: "*"` only for actions AWS does not
    scope to a resource (or, for those, only under a tag condition); IAM only on the
    deployment's role/profile ARNs and the service-linked roles; each role passed only to
    the one service that assumes it."""
    sid, actions = st["Sid"], st["Action"]
    if st["Resource"] == "*":
        for action in actions:
            scopes = SCOPES.get(action, [])
            assert all(r == ["*"] for _, r, _ in scopes), f"{sid}: {action} on '*'"
            assert not scopes or "Condition" in st, f"{sid}: {action} on '*' unconditioned"
            # no IAM action on "*": the flows read IAM only by the names they give
            assert not action.startswith("iam:"), f"{sid}: {action} on '*'"
        return
    assert isinstance(st["Resource"], list) and st["Resource"], sid
    assert all(r.startswith("arn:aws:") for r in st["Resource"]), sid
    if any(a.startswith("iam:") for a in actions):
        linked = {
            f"arn:aws:iam::*:role/aws-service-role/{svc}/{role}"
            for svc, role in LINKED_SERVICES.items()
        }
        allowed = {r.format(P="aws") for r in IAM_ROLES + IAM_PROFILES} | linked
        assert set(st["Resource"]) <= allowed, sid
    if "iam:PassRole" in actions:
        assert actions == ["iam:PassRole"], sid
        services = st["Condition"]["StringEquals"]["iam:PassedToService"]
        assert len(services) == 1 and len(st["Resource"]) == 1, sid


def test_iam_operations_file_is_what_the_flows_called(run: Run) -> None:
    """docs/iam-operations.json (what docs/iam-policy.json is generated from) is exactly
    the set of operations this run's flows called."""
    assert set(shipped_operations()) == set(run.operations)


def test_iam_policy_file_is_what_the_generator_writes(run: Run) -> None:
    """Statement layout and order are the generator's, so a regenerated file diffs cleanly."""
    assert load_policy() == json.loads(render(run.operations))


# -- secrets --------------------------------------------------------------------------------
def needles(secrets: dict[str, str]) -> dict[str, list[str]]:
    """Per secret, the strings to look for: the whole value and, for a PEM, every body
    line (a leak may be re-wrapped, escaped or cut, but keeps whole base64 lines)."""
    out: dict[str, list[str]] = {}
    for name, value in secrets.items():
        found = [value.strip()]
        if "-----BEGIN" in value:
            found += [
                line.strip()
                for line in value.splitlines()
                if line.strip() and not line.startswith("-----") and len(line.strip()) >= 16
            ]
        out[name] = found
    return out


def leaks(sources: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """`<secret name> in <source>` for each hit; never the secret itself."""
    hits = []
    for name, forms in needles(secrets).items():
        for where, text in sources.items():
            if any(form in text for form in forms):
                hits.append(f"{name} in {where}")
    return hits


def test_secrets_are_real_and_searchable(run: Run) -> None:
    pem, password, aws_key = (
        run.secrets["ssh private key"],
        run.secrets["rds password"],
        run.secrets["aws secret key"],
    )
    assert pem.startswith("-----BEGIN") and "PRIVATE KEY-----" in pem
    assert len(needles(run.secrets)["ssh private key"]) >= 10  # whole PEM + its body lines
    assert len(password) >= MIN_SECRET_LEN
    assert len(aws_key) >= MIN_SECRET_LEN
    # the scan finds a secret when there is one: every needle, planted, is reported
    for name, forms in needles(run.secrets).items():
        for form in forms:
            assert leaks({"planted": f"xx {form} yy"}, {name: run.secrets[name]}) == [
                f"{name} in planted"
            ]
    # the private key on disk is readable by its owner only
    assert run.key_mode == 0o600
    assert not run.key_path.exists()  # a clean teardown removed the local key


def test_scan_covered_every_kind_of_output(run: Run) -> None:
    kinds = {where.split(" ", 1)[0] for where in run.sources}
    assert {"file", "prefect", "deploy", "teardown", "log"} <= kinds, kinds
    assert run.counts["files"] >= 3  # chunk logs, aggregate log, inventory
    assert run.counts["flow_runs"] >= 3  # deploy, install-tomcat, teardown
    assert run.counts["logs"] > 20 and run.counts["install_logs"] > 0
    assert run.counts["artifacts"] >= 5
    keys = run.artifact_keys
    for key in ("deploy-report", "inventory", "install-hosts", "install-summary", "teardown"):
        assert f"{DEPLOYMENT}-{key}" in keys, keys
    assert run.counts["log_records"] > 0
    if run.output_captured:  # the flows' console output, pool workers' included
        assert "install-tomcat" in run.sources["captured stdout/stderr"]


def test_no_secret_in_any_output(run: Run) -> None:
    hits = leaks(run.sources, run.secrets)
    assert hits == [], "secrets leaked:\n" + "\n".join(hits)


# -- safe defaults --------------------------------------------------------------------------
def _cidrs(perm: dict[str, Any]) -> set[str]:
    return {r["CidrIp"] for r in perm.get("IpRanges", [])} | {
        r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])
    }


def _covers(perm: dict[str, Any], port: int) -> bool:
    if perm.get("IpProtocol") == "-1":
        return True
    return perm.get("IpProtocol") == "tcp" and perm["FromPort"] <= port <= perm["ToPort"]


def test_ssh_ingress_only_from_the_controller(run: Run) -> None:
    ev = run.evidence
    assert run.sb.cfg.controller_cidr == CONTROLLER_CIDR
    web = next(g for g in ev["groups"] if g["GroupId"] == ev["web_group"])
    ssh = [p for p in web["IpPermissions"] if _covers(p, 22)]
    assert ssh, "the web group has no SSH rule: the install could not have reached the hosts"
    assert all(_cidrs(p) == {CONTROLLER_CIDR} and not p["UserIdGroupPairs"] for p in ssh), ssh
    # no group of the deployment (web, jumphost, traffic generator, alb, db) opens SSH wider
    for g in ev["groups"]:
        for p in g["IpPermissions"]:
            if _covers(p, 22):
                assert _cidrs(p) <= {CONTROLLER_CIDR}, (g["GroupName"], p)
                assert not _cidrs(p) & WORLD, (g["GroupName"], p)


def test_instances_require_imdsv2(run: Run) -> None:
    instances = run.evidence["instances"]
    assert len(instances) == N + 2  # the web fleet, the jumphost, the traffic generator
    assert len(run.evidence["beanstalk_instances"]) == 1  # stage 7 asks it for IMDSv2 too
    for i in instances + run.evidence["beanstalk_instances"]:
        meta = i.get("MetadataOptions") or {}
        assert meta.get("HttpTokens") == "required", (i["InstanceId"], meta)
        assert meta.get("HttpEndpoint") == "enabled", (i["InstanceId"], meta)


def test_ebs_volumes_encrypted(run: Run) -> None:
    instances, volumes = run.evidence["instances"], run.evidence["volumes"]
    attached = {a["InstanceId"] for v in volumes for a in v.get("Attachments", [])}
    assert attached == {i["InstanceId"] for i in instances}  # every instance's root volume
    for v in volumes:
        assert v.get("Encrypted") is True, (v["VolumeId"], v.get("Encrypted"))


def test_rds_private_and_encrypted(run: Run) -> None:
    db = run.evidence["db"]
    assert db["PubliclyAccessible"] is False
    assert db["StorageEncrypted"] is True
    # and reachable only from the jumphost's group, never from an address range
    groups = {g["GroupId"]: g for g in run.evidence["groups"]}
    for ref in db["VpcSecurityGroups"]:
        for p in groups[ref["VpcSecurityGroupId"]]["IpPermissions"]:
            assert not _cidrs(p), p


def test_access_log_bucket_private(run: Run) -> None:
    ev = run.evidence
    grants = ev["bucket_acl"]["Grants"]
    owner = ev["bucket_acl"]["Owner"]["ID"]
    for grant in grants:
        grantee = grant["Grantee"]
        assert grantee.get("URI") not in PUBLIC_GRANTEES, grant
        assert grantee.get("Type") == "CanonicalUser" and grantee.get("ID") == owner, grant
    assert ev["public_access_block"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = ev["encryption"]["Rules"]
    assert rules and all(
        r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        for r in rules
    )
    assert [r["ObjectOwnership"] for r in ev["ownership"]["Rules"]] == ["BucketOwnerEnforced"]
    for st in ev["bucket_policy"]["Statement"]:  # only ELB log delivery may write
        principal = st.get("Principal")
        assert principal != "*" and "*" not in (principal or {}).values(), st
        assert st["Effect"] == "Allow" and st["Action"] == "s3:PutObject", st
