"""Plumbing of the experiments: a sandbox child per experiment, the flows run as their CLIs
in subprocesses, API call deltas from the sandbox's state, resources counted through the
AWS API.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ROOT, TAG_KEY, Config, parameters


# -- plumbing ---------------------------------------------------------------------------
@contextlib.contextmanager
def sandbox(cfg: Config, *extra: str) -> Iterator[Any]:
    """A sandbox child on this run's address ranges (stopped on exit)."""
    from tasks.runtime.sandbox_process import SandboxProcess

    args = [
        "--install-latency",
        str(cfg.install_latency),
        "--boot-delay",
        str(cfg.boot_delay),
        "--cloud-init-seconds",
        str(cfg.cloud_init_seconds),
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
        "flows",
        "deploy",
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
        # counting is inspection: the sandbox's admin keys (the flows run as the operator)
        aws_access_key_id=sb.env.get(
            "SANDBOX_ADMIN_AWS_ACCESS_KEY_ID", sb.env.get("AWS_ACCESS_KEY_ID", "sandbox")
        ),
        aws_secret_access_key=sb.env.get(
            "SANDBOX_ADMIN_AWS_SECRET_ACCESS_KEY", sb.env.get("AWS_SECRET_ACCESS_KEY", "sandbox")
        ),
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


# -- the run's own facts, for its report -------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def _memory_gib() -> tuple[float | None, float | None]:
    """(total, available) RAM in GiB, or None where the platform does not say."""
    try:
        import psutil

        mem = psutil.virtual_memory()
        return round(mem.total / 2**30, 1), round(mem.available / 2**30, 1)
    except ImportError:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            page = os.sysconf("SC_PAGE_SIZE")
            return (
                round(page * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                round(page * os.sysconf("SC_AVPHYS_PAGES") / 2**30, 1),
            )
    return None, None


def load_1m() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_facts() -> dict[str, Any]:
    """The machine as it is now: cores, memory, load, OS and Python (read, not assumed)."""
    total, available = _memory_gib()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable or os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": total,
        "ram_available_gib": available,
        "load_1m": load_1m(),
        "system": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def recorded_run(cfg: Config, experiments: list[str]) -> Iterator[dict[str, Any]]:
    """What the report says about the run itself: start time, machine, parameters and
    experiments at the start; wall time and load at the end."""
    t0 = time.monotonic()
    run: dict[str, Any] = {
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "parameters": parameters(cfg),
        "experiments": list(experiments),
    }
    try:
        yield run
    finally:
        run["wall_s"] = round(time.monotonic() - t0, 1)
        run["load_1m_after"] = load_1m()
