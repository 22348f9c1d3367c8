"""The three experiments: throttling, hostile hosts, controller crashes."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from tasks.deploy.dag import NAMES
from tasks.deploy.scheduler import waits_in

from .config import COUNT_KEYS, ROOT, TAG_KEY, Config
from .harness import (
    api_delta,
    aws_client,
    count_resources,
    deploy_cmd,
    flow_env,
    run_cli,
    sandbox,
    sandbox_state,
)


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
                    cmd = ["flows", "install", "--instances", str(cfg.hosts)]
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
                        and all(
                            s["status"] == "completed"
                            for k, s in stages.items()
                            if int(k) in _stage_list(cfg.deploy_stages)
                        )
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
    from sandbox.config import FaultRates

    out["fault_profile"] = "hostile"
    out["fault_rates"] = FaultRates.profile("hostile").model_dump()
    with sandbox(cfg, "--fault-profile", "hostile") as sb:
        env = flow_env(sb, cfg, ssh_wait_s=cfg.ssh_wait_s)
        runs = cfg.workdir / "runs"
        never = {h["instance_id"] for h in sandbox_state(sb)["hosts"] if h["never_boots"]}
        # 1. install with allow_failures 30 %
        cmd = ["flows", "install", "--instances", str(cfg.hostile_hosts)]
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
            cmd = ["flows", "install", "--inventory", str(failed_inv)]
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
        # the inventory lists every launched host; `installed` names the ones installed
        ok_ids = set(
            inventory.get("installed") or [i["instance_id"] for i in inventory["instances"]]
        )
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
    """What was running when the log stopped: stages whose selected prerequisites had
    finished but which had not (from Prefect's console log lines)."""
    if "deployment " not in log_text or "Beginning flow run" not in log_text:
        return "startup/validation"
    done = {int(m.group(1)) for m in _FINISHED.finditer(log_text) if m.group(2) == "Completed"}
    if re.search(r"subflow run '[^']+' for flow 'install-tomcat'", log_text):
        ended = re.findall(r"Flow run '([^']+)' - Finished in state", log_text)
        begun = re.findall(r"Beginning subflow run '([^']+)' for flow 'install-tomcat'", log_text)
        if begun and begun[-1] in ended:
            done.add(2)
    waits = waits_in(stages)  # as the deploy flow's scheduler starts them
    running = [n for n in stages if n not in done and waits[n] <= done]
    return ", ".join(f"{n} {NAMES[n]}" for n in running) or "report"


def _stage_list(spec: str) -> list[int]:
    from tasks.inputs import parse_stages

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
        window = (2.0, max(2.5, ref.wall_s))
        out["kill_window_s"] = [window[0], round(window[1], 2)]
        for i in range(1, cfg.crashes + 1):
            name = f"crash{i}"
            kill_at = round(rng.uniform(*window), 2)
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
