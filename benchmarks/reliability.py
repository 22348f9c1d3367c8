"""Reliability under stress: throttling, hostile hosts and controller crashes, measured on
sandboxes and written to `docs/reliability.md`.

Three experiments, each on its own sandbox child (`sandbox.process.SandboxProcess`, public
IPs in `--public-ip-cidr`, services in `--service-ip-cidr`), all reporting to one Prefect
server (`flows.runtime.prefect_api()`); the flows run as their CLIs do, in subprocesses:

- throttle: for each refusal rate (fraction of EC2 calls answered RequestLimitExceeded) a
  `--hosts` install (`python -m flows.install_tomcat --instances N`, launching included)
  and a `--deploy-instances` deploy; completed or not, throttled calls (each one a retry
  taken by the back-off), API calls, wall seconds and seconds added over the 0 % run.
  Rates above `--raise-above` run with the raised retry budget (`--raised-retries`,
  `--raised-base`, `--raised-cap`); the settings used are reported per row.
- hostile: `--hostile-hosts` hosts on the `hostile` fault profile: an install with
  allow_failures 30 %, a deploy of stages 1-4 with a generous allowance (the ALB exists),
  the target group checked against the installed hosts (DescribeTargetHealth), then an
  install of the failed hosts only.
- crash: a clean reference deploy, then `--crashes` deployments each SIGKILLed (the whole
  process group) at a seeded random moment and re-run to completion; resources are counted
  through the AWS API and compared with the reference.

Prints a table per experiment and, last, one JSON line.

    python -m benchmarks.reliability                      # the full run (about 20 minutes)
    python -m benchmarks.reliability --hosts 8 --deploy-instances 8 --throttle-rates 0 0.5 \
        --hostile-hosts 10 --crashes 1 --no-write         # a quick smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.deploy.dag import NAMES, NEEDS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
TAG_KEY = "tomcat-fleet:deployment"
COUNT_KEYS = (
    "instances",
    "load_balancers",
    "target_groups",
    "certificates",
    "environments",
    "databases",
    "security_groups",
    "key_pairs",
    "buckets",
)


@dataclass
class Config:
    """Sizes and settings of one reliability run (the CLI flags)."""

    workdir: Path
    hosts: int = 200
    deploy_instances: int = 50
    deploy_stages: str = "1-11"
    throttle_rates: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.6, 0.9])
    raise_above: float = 0.3
    raised_retries: int = 100
    raised_base: float = 0.25
    raised_cap: float = 1.0
    hostile_hosts: int = 100
    hostile_allow: str = "30%"
    hostile_deploy_allow: str = "60%"
    ssh_wait_s: float = 30.0
    crashes: int = 5
    crash_instances: int = 10
    crash_stages: str = "1-11"
    install_latency: float = 1.0
    seed: int = 7
    public_ip_cidr: str = "127.170.0.0/16"
    service_ip_cidr: str = "127.171.0.0/16"
    timeout_s: float = 1800.0


# -- plumbing ---------------------------------------------------------------------------
@contextlib.contextmanager
def sandbox(cfg: Config, *extra: str) -> Iterator[Any]:
    """A sandbox child on this run's address ranges (stopped on exit)."""
    from sandbox.process import SandboxProcess

    args = [
        "--install-latency",
        str(cfg.install_latency),
        "--boot-delay",
        "1",
        "--cloud-init-seconds",
        "1",
        "--seed",
        str(cfg.seed),
        "--public-ip-cidr",
        cfg.public_ip_cidr,
        "--service-ip-cidr",
        cfg.service_ip_cidr,
        *extra,
    ]
    with SandboxProcess(args) as sb:
        yield sb


def sandbox_state(sb: Any) -> dict[str, Any]:
    url = sb.env["TOMCAT_FLEET_SANDBOX_STATE_URL"]
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def api_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """EC2 and all-service calls and throttles between two sandbox state snapshots."""
    b, a = before["api"], after["api"]

    def diff(kind: str, prefix: str = "") -> int:
        return sum(n - b[kind].get(k, 0) for k, n in a[kind].items() if k.startswith(prefix))

    return {
        "calls": a["total_calls"] - b["total_calls"],
        "ec2_calls": diff("calls", "ec2:"),
        "throttled": a["total_throttled"] - b["total_throttled"],
    }


def flow_env(sb: Any, cfg: Config, **settings: Any) -> dict[str, str]:
    """This process's env (PREFECT_API_URL included), the sandbox's and TOMCAT_FLEET_*."""
    env = {**os.environ, **sb.env}
    env["TOMCAT_FLEET_STATE_DIR"] = str(cfg.workdir / "state")
    env["TOMCAT_FLEET_LOG_DIR"] = str(cfg.workdir / "logs")
    env["PREFECT_LOGGING_LEVEL"] = "INFO"  # the crash experiment reads stage lines from it
    for key, value in settings.items():
        env[f"TOMCAT_FLEET_{key.upper()}"] = str(value)
    return env


@dataclass
class Run:
    rc: int
    wall_s: float
    out: dict[str, Any]
    log: Path


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return {}


def run_cli(cmd: list[str], env: dict[str, str], log: Path, timeout_s: float) -> Run:
    """Run `python -m <cmd>` in its own session; output to `log`; JSON summary parsed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *cmd],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = -9
    wall = time.monotonic() - t0
    return Run(rc=rc, wall_s=round(wall, 2), out=_last_json(log.read_text()), log=log)


def deploy_cmd(name: str, instances: int, stages: str, allow: str = "0") -> list[str]:
    return [
        "flows.deploy",
        "--instances",
        str(instances),
        "--stages",
        stages,
        "--deployment-name",
        name,
        "--allow-failures",
        allow,
    ]


def aws_client(sb: Any, service: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    make: Any = boto3.client
    return make(
        service,
        endpoint_url=sb.env["AWS_ENDPOINT_URL"],
        region_name=sb.env.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=sb.env.get("AWS_ACCESS_KEY_ID", "sandbox"),
        aws_secret_access_key=sb.env.get("AWS_SECRET_ACCESS_KEY", "sandbox"),
        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def _tagged(tags: list[dict[str, str]], name: str | None) -> bool:
    value = {t["Key"]: t.get("Value") for t in tags}.get(TAG_KEY)
    return value is not None if name is None else value == name


def count_resources(sb: Any, name: str | None) -> dict[str, int]:
    """Resources of deployment `name` (None: of every deployment; `untagged_*` counts what
    carries no deployment tag at all), counted through the AWS API."""
    ec2, elb, acm = aws_client(sb, "ec2"), aws_client(sb, "elbv2"), aws_client(sb, "acm")
    tag_filter = [{"Name": f"tag:{TAG_KEY}", "Values": [name] if name else ["*"]}]
    live = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    instances = [
        i for r in ec2.describe_instances(Filters=live)["Reservations"] for i in r["Instances"]
    ]
    lbs = elb.describe_load_balancers()["LoadBalancers"]
    tgs = elb.describe_target_groups()["TargetGroups"]

    def elb_tags(arns: list[str]) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for i in range(0, len(arns), 20):
            for d in elb.describe_tags(ResourceArns=arns[i : i + 20])["TagDescriptions"]:
                out[d["ResourceArn"]] = d.get("Tags", [])
        return out

    lb_tags = elb_tags([lb["LoadBalancerArn"] for lb in lbs])
    tg_tags = elb_tags([tg["TargetGroupArn"] for tg in tgs])
    certs = acm.list_certificates()["CertificateSummaryList"]
    cert_tags = {
        c["CertificateArn"]: acm.list_tags_for_certificate(CertificateArn=c["CertificateArn"]).get(
            "Tags", []
        )
        for c in certs
    }
    envs = [
        e
        for e in aws_client(sb, "elasticbeanstalk").describe_environments()["Environments"]
        if e["Status"] != "Terminated"
    ]
    dbs = aws_client(sb, "rds").describe_db_instances()["DBInstances"]
    groups = ec2.describe_security_groups(Filters=tag_filter)["SecurityGroups"]
    pairs = ec2.describe_key_pairs(Filters=tag_filter)["KeyPairs"]
    buckets = [b["Name"] for b in aws_client(sb, "s3").list_buckets().get("Buckets", [])]

    def named(n: str) -> bool:
        return n.startswith(f"{name}-") if name else True

    counts = {
        "instances": sum(_tagged(i.get("Tags", []), name) for i in instances),
        "load_balancers": sum(_tagged(t, name) for t in lb_tags.values()),
        "target_groups": sum(_tagged(t, name) for t in tg_tags.values()),
        "certificates": sum(_tagged(t, name) for t in cert_tags.values()),
        "environments": sum(named(e["EnvironmentName"]) for e in envs),
        "databases": sum(named(d["DBInstanceIdentifier"]) for d in dbs),
        "security_groups": len(groups),
        "key_pairs": len(pairs),
        "buckets": sum(named(b) for b in buckets),
    }
    if name is None:
        counts["untagged_instances"] = sum(not _tagged(i.get("Tags", []), None) for i in instances)
        counts["untagged_load_balancers"] = sum(not _tagged(t, None) for t in lb_tags.values())
        counts["untagged_target_groups"] = sum(not _tagged(t, None) for t in tg_tags.values())
    return counts


# -- experiment a: throttling -----------------------------------------------------------
def retry_settings(cfg: Config, rate: float) -> dict[str, Any]:
    from blocks.settings import FleetSettings

    if rate > cfg.raise_above:
        return {
            "aws_retries": cfg.raised_retries,
            "aws_backoff_base_s": cfg.raised_base,
            "aws_backoff_cap_s": cfg.raised_cap,
        }
    fields = FleetSettings.model_fields
    return {
        k: fields[k].default for k in ("aws_retries", "aws_backoff_base_s", "aws_backoff_cap_s")
    }


def throttle_experiment(cfg: Config) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rate in cfg.throttle_rates:
        settings = retry_settings(cfg, rate)
        tag = f"{round(rate * 100):02d}"
        with sandbox(cfg, "--throttle-rate", str(rate)) as sb:
            env = flow_env(sb, cfg, **settings)
            kinds = [k for k, n in (("install", cfg.hosts), ("deploy", cfg.deploy_instances)) if n]
            for kind in kinds:
                name = f"thr{tag}-{kind[0]}"
                if kind == "install":
                    cmd = ["flows.install_tomcat", "--instances", str(cfg.hosts)]
                    cmd += ["--deployment-name", name]
                    size = cfg.hosts
                else:
                    cmd = deploy_cmd(name, cfg.deploy_instances, cfg.deploy_stages)
                    size = cfg.deploy_instances
                before = sandbox_state(sb)
                run = run_cli(cmd, env, cfg.workdir / "runs" / f"{name}.log", cfg.timeout_s)
                delta = api_delta(before, sandbox_state(sb))
                if kind == "install":
                    done = run.rc == 0 and run.out.get("installed") == size
                    client_retries = run.out.get("throttle_retries")
                else:
                    stages = run.out.get("stages", {})
                    done = (
                        run.rc == 0
                        and bool(stages)
                        and all(s["status"] in ("completed", "skipped") for s in stages.values())
                    )
                    client_retries = None
                rows.append(
                    {
                        "rate": rate,
                        "kind": kind,
                        "size": size,
                        "completed": done,
                        "rc": run.rc,
                        "throttled": delta["throttled"],
                        "client_retries": client_retries,
                        "ec2_calls": delta["ec2_calls"],
                        "api_calls": delta["calls"],
                        "wall_s": run.wall_s,
                        "settings": settings,
                        "log": str(run.log),
                    }
                )
                print(
                    f"  throttle {rate:.0%} {kind:<7} {size:>4}: completed={done} "
                    f"throttled={delta['throttled']} calls={delta['calls']} "
                    f"wall={run.wall_s:.1f}s",
                    flush=True,
                )
    for row in rows:
        base = next(
            (r for r in rows if r["rate"] == 0.0 and r["kind"] == row["kind"] and r["completed"]),
            None,
        )
        row["added_s"] = round(row["wall_s"] - base["wall_s"], 2) if base else None
    return rows


# -- experiment b: hostile hosts --------------------------------------------------------
def _reason_group(reason: str) -> str:
    text = re.sub(r"i-[0-9a-f]+|\d+\.\d+\.\d+\.\d+(:\d+)?", "<id>", reason or "")
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text.split(";")[0].strip()[:90]


def _host_rows(deployment: str) -> list[dict[str, Any]]:
    """The install's one-row-per-host table artifact (`<deployment>-install-hosts`)."""
    from prefect.artifacts import Artifact

    art: Any = Artifact.get(f"{deployment}-install-hosts")
    if art is None or art.data is None:
        return []
    data = art.data
    return list(json.loads(data) if isinstance(data, str) else data)


def target_group_ids(sb: Any, deployment: str) -> set[str]:
    elb = aws_client(sb, "elbv2")
    tg = next(
        t
        for t in elb.describe_target_groups()["TargetGroups"]
        if t["TargetGroupName"].startswith(f"{deployment}-")
    )
    health = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
    return {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}


def hostile_experiment(cfg: Config) -> dict[str, Any]:
    """install (allow_failures 30 %) -> install of its failed hosts only -> deploy 1-4."""
    name = "hostile"
    out: dict[str, Any] = {
        "hosts": cfg.hostile_hosts,
        "allow_failures": cfg.hostile_allow,
        "deploy_allow": cfg.hostile_deploy_allow,
    }
    with sandbox(cfg, "--fault-profile", "hostile") as sb:
        env = flow_env(sb, cfg, ssh_wait_s=cfg.ssh_wait_s)
        runs = cfg.workdir / "runs"
        never = {h["instance_id"] for h in sandbox_state(sb)["hosts"] if h["never_boots"]}
        # 1. install with allow_failures 30 %
        cmd = ["flows.install_tomcat", "--instances", str(cfg.hostile_hosts)]
        cmd += ["--deployment-name", name, "--allow-failures", cfg.hostile_allow]
        first = run_cli(cmd, env, runs / "hostile-install.log", cfg.timeout_s)
        rows = _host_rows(name)
        installed = sum(r["status"] == "installed" for r in rows)
        failed = [r for r in rows if r["status"] == "failed"]
        within = len(failed) * 100 <= float(cfg.hostile_allow.rstrip("%")) * cfg.hostile_hosts
        out["install"] = {
            "rc": first.rc,
            "flow_state": first.out.get("flow_state"),
            "installed": installed,
            "failed": len(failed),
            "rows": len(rows),
            "every_host_accounted": len(rows) == cfg.hostile_hosts
            and all(r["status"] == "installed" or r["reason"] for r in rows),
            "within_allowance": within,
            "obeys_allow_failures": (first.out.get("flow_state") == "COMPLETED") == within,
            "reasons": dict(Counter(_reason_group(r["reason"]) for r in failed).most_common()),
            "wall_s": first.wall_s,
        }
        never = {h["instance_id"] for h in sandbox_state(sb)["hosts"] if h["never_boots"]}
        # 2. install again, the failed hosts only (an inventory of them; allow_failures 0:
        #    never-booting hosts must stay failed, so the flow must end FAILED if any do)
        failed_ids = {r["instance_id"] for r in failed}
        failed_inv = cfg.workdir / "hostile-failed.json"
        failed_inv.write_text(
            json.dumps(
                [{"instance_id": r["instance_id"], "public_ip": r["public_ip"]} for r in failed]
            )
        )
        rerun_out: dict[str, Any] = {"hosts": len(failed)}
        if failed:
            cmd = ["flows.install_tomcat", "--inventory", str(failed_inv)]
            cmd += ["--deployment-name", name, "--allow-failures", "0"]
            rerun = run_cli(cmd, env, runs / "hostile-rerun.log", cfg.timeout_s)
            rows2 = {r["instance_id"]: r for r in _host_rows(name)}
            fixed = {i for i in failed_ids if rows2.get(i, {}).get("status") == "installed"}
            still = failed_ids - fixed
            rerun_out |= {
                "rc": rerun.rc,
                "flow_state": rerun.out.get("flow_state"),
                "rows": len(rows2),
                "fixed": len(fixed),
                "still_failed": len(still),
                "never_boot_among_failed": len(failed_ids & never),
                "never_boot_fixed": len(fixed & never),
                "still_failed_not_never_boot": len(still - never),
                "obeys_allow_failures": (rerun.out.get("flow_state") == "COMPLETED") == (not still),
                "still_reasons": dict(
                    Counter(_reason_group(rows2[i]["reason"]) for i in still if i in rows2)
                ),
                "wall_s": rerun.wall_s,
            }
        out["rerun_failed"] = rerun_out
        # 3. deploy stages 1-4 on the same instances (stage 1 finds them; stage 2 probes
        #    every host and retries the failed ones; stage 4 registers the installed ones)
        deploy = run_cli(
            deploy_cmd(name, cfg.hostile_hosts, "1-4", cfg.hostile_deploy_allow),
            env,
            runs / "hostile-deploy.log",
            cfg.timeout_s,
        )
        inv_path = cfg.workdir / "state" / name / "inventory.json"
        inventory = (
            json.loads(inv_path.read_text())
            if inv_path.exists()
            else {"instances": [], "failed": []}
        )
        ok_ids = {i["instance_id"] for i in inventory["instances"]}
        dep_failed = {f["instance_id"] for f in inventory["failed"]}
        registered = target_group_ids(sb, name) if deploy.rc == 0 else set()
        mine = {
            i["InstanceId"]
            for r in aws_client(sb, "ec2").describe_instances(
                Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [name]}]
            )["Reservations"]
            for i in r["Instances"]
        }
        out["deploy"] = {
            "rc": deploy.rc,
            "stages": {k: v["status"] for k, v in deploy.out.get("stages", {}).items()},
            "installed": len(ok_ids),
            "failed": len(dep_failed),
            "every_host_accounted": ok_ids | dep_failed == mine and not ok_ids & dep_failed,
            "target_group": len(registered),
            "target_group_is_installed": registered == ok_ids,
            "failed_in_target_group": len(registered & dep_failed),
            "failed_never_boot": len(dep_failed & never),
            "wall_s": deploy.wall_s,
        }
        out["never_boot_hosts"] = len(never & mine)
    return out


# -- experiment c: crashes --------------------------------------------------------------
_FINISHED = re.compile(r"Task run '(\d\d) [a-z0-9-]+' - Finished in state (\w+)")


def stage_at_kill(log_text: str, stages: list[int]) -> str:
    """What was running when the log stopped: stages whose needs had finished but which
    had not (from Prefect's console log lines)."""
    if "deployment " not in log_text or "Beginning flow run" not in log_text:
        return "startup/validation"
    done = {int(m.group(1)) for m in _FINISHED.finditer(log_text) if m.group(2) == "Completed"}
    if re.search(r"subflow run '[^']+' for flow 'install-tomcat'", log_text):
        ended = re.findall(r"Flow run '([^']+)' - Finished in state", log_text)
        begun = re.findall(r"Beginning subflow run '([^']+)' for flow 'install-tomcat'", log_text)
        if begun and begun[-1] in ended:
            done.add(2)
    running = [n for n in stages if n not in done and all(d in done for d in NEEDS[n])]
    return ", ".join(f"{n} {NAMES[n]}" for n in running) or "report"


def _stage_list(spec: str) -> list[int]:
    from flows.deploy import parse_stages

    return parse_stages(spec)


def crash_experiment(cfg: Config) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    out: dict[str, Any] = {"instances": cfg.crash_instances, "stages": cfg.crash_stages}
    stages = _stage_list(cfg.crash_stages)
    runs = cfg.workdir / "runs"
    with sandbox(cfg) as sb:
        env = flow_env(sb, cfg)
        ref = run_cli(
            deploy_cmd("crref", cfg.crash_instances, cfg.crash_stages),
            env,
            runs / "crash-reference.log",
            cfg.timeout_s,
        )
        reference = count_resources(sb, "crref")
        out["reference"] = {"rc": ref.rc, "wall_s": ref.wall_s, "counts": reference}
        crashes = []
        for i in range(1, cfg.crashes + 1):
            name = f"crash{i}"
            kill_at = round(rng.uniform(2.0, max(2.5, ref.wall_s)), 2)
            log = runs / f"{name}-killed.log"
            with log.open("w") as fh:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        *deploy_cmd(name, cfg.crash_instances, cfg.crash_stages),
                    ],
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=ROOT,
                )
                t0 = time.monotonic()
                while proc.poll() is None and time.monotonic() - t0 < kill_at:
                    time.sleep(0.05)
                killed = proc.poll() is None
                if killed:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            time.sleep(0.5)  # let the kernel reap the pool workers of the killed group
            at_kill = stage_at_kill(log.read_text(), stages) if killed else "finished first"
            after_kill = count_resources(sb, name)
            rerun = run_cli(
                deploy_cmd(name, cfg.crash_instances, cfg.crash_stages),
                env,
                runs / f"{name}-rerun.log",
                cfg.timeout_s,
            )
            final = count_resources(sb, name)
            diff = {k: final[k] - reference[k] for k in COUNT_KEYS if final[k] != reference[k]}
            row = {
                "crash": i,
                "kill_at_s": kill_at,
                "killed": killed,
                "stage_at_kill": at_kill,
                "after_kill": after_kill,
                "rerun_rc": rerun.rc,
                "rerun_s": rerun.wall_s,
                "rerun_completed": rerun.rc == 0,
                "counts": final,
                "differences": diff,
            }
            crashes.append(row)
            print(
                f"  crash {i}: kill at {kill_at:.1f}s ({at_kill}); re-run rc={rerun.rc} "
                f"{rerun.wall_s:.1f}s; differences {diff or 'none'}",
                flush=True,
            )
        out["crashes"] = crashes
        everything = count_resources(sb, None)
        expected = {k: reference[k] * (1 + cfg.crashes) for k in COUNT_KEYS}
        out["sandbox_totals"] = everything
        out["no_untagged"] = all(v == 0 for k, v in everything.items() if k.startswith("untagged"))
        out["totals_match"] = all(everything[k] == expected[k] for k in COUNT_KEYS)
    return out


# -- reporting --------------------------------------------------------------------------
def _yes(v: Any) -> str:
    return "yes" if v else "**no**"


def throttle_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| refused | run | size | completed | throttled calls (= retries) | client retries "
        "| EC2 calls | all API calls | wall s | added s vs 0 % | retries / base / cap |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["settings"]
        added = "" if r["added_s"] is None else f"{r['added_s']:+.1f}"
        lines.append(
            f"| {r['rate']:.0%} | {r['kind']} | {r['size']} | {_yes(r['completed'])} | "
            f"{r['throttled']} | {'' if r['client_retries'] is None else r['client_retries']} | "
            f"{r['ec2_calls']} | {r['api_calls']} | {r['wall_s']:.1f} | "
            f"{added} | "
            f"{s['aws_retries']} / {s['aws_backoff_base_s']} / {s['aws_backoff_cap_s']} |"
        )
    return lines


def hostile_table(h: dict[str, Any]) -> list[str]:
    i, d, r = h["install"], h["deploy"], h["rerun_failed"]
    lines = [
        "| step | hosts | installed | failed | every host accounted | flow | wall s |",
        "|---|---|---|---|---|---|---|",
        f"| install, allow_failures {h['allow_failures']} | {h['hosts']} | {i['installed']} | "
        f"{i['failed']} | {_yes(i['every_host_accounted'])} | {i['flow_state']} "
        f"(within allowance: {_yes(i['within_allowance'])}; obeyed: "
        f"{_yes(i['obeys_allow_failures'])}) | {i['wall_s']:.1f} |",
    ]
    if r.get("hosts"):
        lines.append(
            f"| install of the failed hosts only, allow_failures 0 | {r['hosts']} | "
            f"{r['fixed']} (fixed) | {r['still_failed']} | "
            f"{_yes(r['rows'] == r['hosts'])} | {r['flow_state']} (obeyed: "
            f"{_yes(r['obeys_allow_failures'])}) | {r['wall_s']:.1f} |"
        )
    lines.append(
        f"| deploy stages 1-4, allow_failures {h.get('deploy_allow', '')} | {h['hosts']} | "
        f"{d['installed']} | {d['failed']} | {_yes(d['every_host_accounted'])} | "
        f"rc {d['rc']} | {d['wall_s']:.1f} |"
    )
    return lines


def crash_table(c: dict[str, Any]) -> list[str]:
    keys = [k for k in COUNT_KEYS]
    lines = [
        "| run | kill at s | stage in progress | re-run s | "
        + " | ".join(keys)
        + " | duplicates / leaks |",
        "|---|---|---|---|" + "---|" * len(keys) + "---|",
        f"| reference (clean) | | | {c['reference']['wall_s']:.1f} | "
        + " | ".join(str(c["reference"]["counts"][k]) for k in keys)
        + " | |",
    ]
    for row in c["crashes"]:
        lines.append(
            f"| crash {row['crash']} | {row['kill_at_s']:.1f} | {row['stage_at_kill']} | "
            f"{row['rerun_s']:.1f}{'' if row['rerun_completed'] else ' (failed)'} | "
            + " | ".join(str(row["counts"][k]) for k in keys)
            + f" | {row['differences'] or 'none'} |"
        )
    return lines


def print_tables(results: dict[str, Any]) -> None:
    for title, key, fn in (
        ("throttling", "throttle", throttle_table),
        ("hostile hosts", "hostile", hostile_table),
        ("crashes", "crash", crash_table),
    ):
        if key in results:
            print(f"\n== {title} ==")
            for line in fn(results[key]):
                print(line)


def verdict(results: dict[str, Any]) -> dict[str, bool]:
    v: dict[str, bool] = {}
    if "throttle" in results:
        v["throttle_all_completed"] = all(r["completed"] for r in results["throttle"])
    if "hostile" in results:
        h = results["hostile"]
        v["hostile_accounted"] = (
            h["install"]["every_host_accounted"] and h["deploy"]["every_host_accounted"]
        )
        v["hostile_obeys_allow_failures"] = h["install"]["obeys_allow_failures"] and h[
            "rerun_failed"
        ].get("obeys_allow_failures", True)
        v["hostile_target_group_only_installed"] = h["deploy"]["target_group_is_installed"]
        v["hostile_never_boot_stay_failed"] = h["rerun_failed"].get("never_boot_fixed", 0) == 0
    if "crash" in results:
        c = results["crash"]
        v["crash_no_duplicates_or_leaks"] = (
            all(not r["differences"] and r["rerun_completed"] for r in c["crashes"])
            and c["no_untagged"]
            and c["totals_match"]
        )
    return v


def _paragraphs(notes: list[str]) -> list[str]:
    return [line for note in notes for line in (note, "")]


def write_doc(cfg: Config, results: dict[str, Any], path: Path) -> None:
    today = datetime.date.today().isoformat()
    v = verdict(results)
    lines = [
        "# Reliability under stress",
        "",
        f"Regenerated by `python -m benchmarks.reliability` on {today}, one run on this "
        f"2-core machine ({platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}), against sandboxes (moto + emulated SSH/Tomcat "
        "fleet on loopback) that other sandboxes shared the cores with. Every number below "
        "is what that run measured; re-run the script to refresh it.",
        "",
        "Settings: "
        f"install latency {cfg.install_latency} s per host (jittered), boot 1 s, seed "
        f"{cfg.seed}; flows run as their CLIs (`python -m flows.install_tomcat`, "
        "`python -m flows.deploy`) in subprocesses, all on one Prefect server.",
        "",
        "## Throttling",
        "",
        f"The sandbox refuses the given fraction of EC2 calls with `RequestLimitExceeded` "
        f"(HTTP 503). Each rate: a {cfg.hosts}-host install (`--instances {cfg.hosts}`: "
        f"key pair, security group, RunInstances and the waits are throttled too) and a "
        f"{cfg.deploy_instances}-instance deploy of stages {cfg.deploy_stages}, each on a "
        "fresh deployment. *Throttled calls* is what the sandbox refused during the run; "
        "each refusal is followed by one back-off retry unless that call's budget was "
        "spent (`RetriesExhausted`, which fails the stage and shows in *completed*). "
        "*Client retries* is the install CLI's own count (launch and ingress). Rates above "
        f"{cfg.raise_above:.0%} ran with the raised budget "
        f"`TOMCAT_FLEET_AWS_RETRIES={cfg.raised_retries}`, "
        f"`TOMCAT_FLEET_AWS_BACKOFF_BASE_S={cfg.raised_base}`, "
        f"`TOMCAT_FLEET_AWS_BACKOFF_CAP_S={cfg.raised_cap}`; the others with the defaults.",
        "",
    ]
    if "throttle" in results:
        lines += throttle_table(results["throttle"])
        lines += ["", *_paragraphs(throttle_notes(cfg, results["throttle"]))]
    lines += [
        "Unit properties (`tests/test_backoff.py`, `tests/test_fuzz_inputs.py`, hypothesis): "
        "no back-off sleep exceeds its cap for any attempt, base or jitter; a throttled "
        "call is made at most `retries + 1` times and sleeps exactly `retries` times; a "
        "permanent error (`InvalidAMIID.NotFound`) is raised after exactly one call, "
        "without sleeping.",
        "",
        "## Hostile hosts",
        "",
    ]
    if "hostile" in results:
        h = results["hostile"]
        lines += [
            "`--fault-profile hostile` (seeded: install commands fail 25 % of the time, SSH "
            "connections drop 8 %, 20 % of hosts are 5× slower, 5 % never boot), "
            f"`TOMCAT_FLEET_SSH_WAIT_S={cfg.ssh_wait_s:g}` (how long a host may take to "
            f"boot), {h['hosts']} instances ({h['never_boot_hosts']} of them never boot).",
            "",
            *hostile_table(h),
            "",
            "Reasons of the first install's failures (ids and numbers folded):",
            "",
            *[f"- {n} × `{reason}`" for reason, n in h["install"]["reasons"].items()],
            "",
            *_paragraphs(hostile_notes(h)),
        ]
    lines += ["## Controller crashes", ""]
    if "crash" in results:
        c = results["crash"]
        lines += [
            f"`python -m flows.deploy --instances {c['instances']} --stages {c['stages']}` "
            "started in its own session and its whole process group SIGKILLed at a seeded "
            "random moment between 2 s and the reference run's wall time, then the same "
            "command re-run to completion. Counts are through the AWS API for the "
            "deployment's tag (instances pending or running, web fleet and jumphost; "
            "load balancers, target groups, certificates, security groups, key pairs by "
            "tag; Beanstalk environments not terminated, databases and log buckets by the "
            "deployment's name prefix) and compared with a clean reference deployment.",
            "",
            *crash_table(c),
            "",
            *_paragraphs(crash_notes(c)),
            f"Across the sandbox after all runs: {c['sandbox_totals']}; untagged "
            "instances, balancers or target groups: "
            f"{'none' if c['no_untagged'] else '**some**'}; totals equal the reference "
            f"× {1 + len(c['crashes'])}: {_yes(c['totals_match'])}.",
            "",
        ]
    if results.get("reused"):
        lines[2] += (
            f" The {', '.join(results['reused'])} section(s) come from an earlier run of the "
            "same script with the same settings (reused with `--results-from`)."
        )
    lines += ["## Verdict", "", *[f"- {k}: {_yes(ok)}" for k, ok in v.items()], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def throttle_notes(cfg: Config, rows: list[dict[str, Any]]) -> list[str]:
    notes: list[str] = []
    failed = [r for r in rows if not r["completed"]]
    if failed:
        notes.append(
            "Did not complete: "
            + ", ".join(
                f"{r['kind']} at {r['rate']:.0%} (rc {r['rc']}, log {r['log']})" for r in failed
            )
            + "."
        )
    for kind in ("install", "deploy"):
        mine = [r for r in rows if r["kind"] == kind and r["added_s"] is not None]
        if len(mine) > 1:
            worst = max(mine, key=lambda r: r["rate"])
            per = worst["added_s"] / worst["throttled"] if worst["throttled"] else 0.0
            notes.append(
                f"{kind}: at {worst['rate']:.0%} refused, {worst['throttled']} retries added "
                f"{worst['added_s']:.0f} s ({per:.2f} s per retry, the back-off sleeps "
                "included; calls made from parallel threads overlap their sleeps)."
            )
    if any(r["added_s"] is not None and r["added_s"] < 0 for r in rows):
        notes.append(
            "Added seconds carry the noise of a shared 2-core machine: a negative value "
            "means that run came out faster than its 0 % baseline; differences of ten "
            "seconds or so are within that noise."
        )
    notes.append(
        "Interpretation: the one back-off layer absorbs throttling without a single failed "
        "call as long as the retry budget covers the refusal rate (at a 90 % refusal rate a "
        "call needs 10 attempts on average and the default 8 retries would run out on about "
        "4 calls in 10, so the budget is raised there). The cost is time, not "
        "correctness: the installs on the hosts are not throttled, the EC2 calls around "
        "them are."
    )
    return notes


def hostile_notes(h: dict[str, Any]) -> list[str]:
    i, d, r = h["install"], h["deploy"], h["rerun_failed"]
    notes = [
        f"Every host ended installed or failed with a reason: "
        f"{_yes(i['every_host_accounted'] and d['every_host_accounted'])}. The first "
        f"install failed {i['failed']} of {h['hosts']} hosts against allow_failures "
        f"{h['allow_failures']} and ended {i['flow_state']} (as the allowance says: "
        f"{_yes(i['obeys_allow_failures'])}).",
    ]
    if r.get("hosts"):
        notes.append(
            f"Installing only the {r['hosts']} failed hosts again (an inventory of them) "
            f"fixed {r['fixed']}; {r['still_failed']} stay failed, "
            f"{r['never_boot_among_failed']} of the {r['hosts']} being hosts that never boot "
            f"(fixed among those: {r['never_boot_fixed']}; still failing although they "
            f"boot: {r['still_failed_not_never_boot']}). With allow_failures 0 that run "
            f"ended {r['flow_state']}, as it must while any host fails. Reasons still "
            f"failing: {r['still_reasons'] or 'none'}."
        )
    notes.append(
        f"The deploy (stages 1-4) found the same {h['hosts']} instances, probed every host "
        f"and ended with {d['installed']} installed and {d['failed']} failed "
        f"({d['failed_never_boot']} of them never boot). Its target group holds exactly the "
        f"installed hosts: {_yes(d['target_group_is_installed'])} ({d['target_group']} "
        f"registered, {d['failed_in_target_group']} failed hosts among them)."
    )
    return notes


def crash_notes(c: dict[str, Any]) -> list[str]:
    rows = c["crashes"]
    stages = sorted({r["stage_at_kill"] for r in rows})
    ok = all(not r["differences"] and r["rerun_completed"] for r in rows)
    return [
        f"Kills landed in: {'; '.join(stages)}. Every re-run completed: "
        f"{_yes(all(r['rerun_completed'] for r in rows))}; every deployment converged to the "
        f"reference counts with no duplicate or leaked resource: {_yes(ok)}. What makes "
        "this hold: instances carry their tags from RunInstances itself and are found by "
        "them before launching, with a ClientToken derived from what exists; every later "
        "resource is found by name and tag before it is created."
    ]


# -- main -------------------------------------------------------------------------------
def run_all(cfg: Config, experiments: list[str]) -> dict[str, Any]:
    """Run the chosen experiments (inside one Prefect server); returns their results."""
    from flows.runtime import prefect_api

    results: dict[str, Any] = {}
    with prefect_api():
        if "throttle" in experiments:
            results["throttle"] = throttle_experiment(cfg)
        if "hostile" in experiments:
            results["hostile"] = hostile_experiment(cfg)
        if "crash" in experiments:
            results["crash"] = crash_experiment(cfg)
    return results


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.reliability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Config(workdir=Path("."))
    ap.add_argument("--experiments", nargs="+", default=["throttle", "hostile", "crash"])
    ap.add_argument("--hosts", type=int, default=d.hosts)
    ap.add_argument("--deploy-instances", type=int, default=d.deploy_instances)
    ap.add_argument("--deploy-stages", default=d.deploy_stages)
    ap.add_argument("--throttle-rates", type=float, nargs="+", default=d.throttle_rates)
    ap.add_argument("--raise-above", type=float, default=d.raise_above)
    ap.add_argument("--raised-retries", type=int, default=d.raised_retries)
    ap.add_argument("--raised-base", type=float, default=d.raised_base)
    ap.add_argument("--raised-cap", type=float, default=d.raised_cap)
    ap.add_argument("--hostile-hosts", type=int, default=d.hostile_hosts)
    ap.add_argument("--ssh-wait-s", type=float, default=d.ssh_wait_s)
    ap.add_argument("--crashes", type=int, default=d.crashes)
    ap.add_argument("--crash-instances", type=int, default=d.crash_instances)
    ap.add_argument("--crash-stages", default=d.crash_stages)
    ap.add_argument("--install-latency", type=float, default=d.install_latency)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--public-ip-cidr", default=d.public_ip_cidr)
    ap.add_argument("--service-ip-cidr", default=d.service_ip_cidr)
    ap.add_argument("--workdir", default=None, help="default: a new temporary directory")
    ap.add_argument("--out", default=str(DOC), help="the markdown report to write")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the doc alone")
    ap.add_argument(
        "--results-from",
        default=None,
        help="a previous run's output (its last line is JSON): experiments not run now are "
        "taken from it, and the report says so",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="reliability-"))
    cfg = Config(
        workdir=workdir,
        hosts=args.hosts,
        deploy_instances=args.deploy_instances,
        deploy_stages=args.deploy_stages,
        throttle_rates=args.throttle_rates,
        raise_above=args.raise_above,
        raised_retries=args.raised_retries,
        raised_base=args.raised_base,
        raised_cap=args.raised_cap,
        hostile_hosts=args.hostile_hosts,
        ssh_wait_s=args.ssh_wait_s,
        crashes=args.crashes,
        crash_instances=args.crash_instances,
        crash_stages=args.crash_stages,
        install_latency=args.install_latency,
        seed=args.seed,
        public_ip_cidr=args.public_ip_cidr,
        service_ip_cidr=args.service_ip_cidr,
    )
    t0 = time.monotonic()
    results = run_all(cfg, args.experiments)
    if args.results_from:
        earlier = _last_json(Path(args.results_from).read_text())
        for key in ("throttle", "hostile", "crash"):
            if key not in results and key in earlier:
                results[key] = earlier[key]
                results.setdefault("reused", []).append(key)
    print_tables(results)
    if not args.no_write:
        write_doc(cfg, results, Path(args.out))
        print(f"\nwrote {args.out}")
    summary = {
        "benchmark": "reliability",
        "wall_s": round(time.monotonic() - t0, 1),
        "workdir": str(workdir),
        "verdict": verdict(results),
        **results,
    }
    print(json.dumps(summary, default=str))
    return 0 if all(summary["verdict"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
