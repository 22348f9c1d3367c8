"""The same install from two entry paths: the CLI, and a deployment run a process worker
picks up (`prefect deployment run install-tomcat/default`, the saved inventory).

One sandbox and one Prefect server; each path installs on fresh hosts of its own (same
count, same latency). Per path: the install phase the flow logged, the wall time, and the
Prefect adjustments the flow run logged in force (`prefect adjustments: ...`). Prints a
table and, last, one JSON line.

    python -m benchmarks.entry_paths --hosts 24 --install-latency 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.bench.child import last_json

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "tomcat-fleet-process"


def _api(url: str, body: Any = None) -> Any:
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _flow_logs(api_url: str, run_id: str) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        logs = _api(
            f"{api_url}/logs/filter",
            {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200},
        )
        messages = [x["message"] for x in logs]
        if any("install phase" in m for m in messages) or time.monotonic() > deadline:
            return messages


def _phase(messages: list[str]) -> tuple[float | None, str]:
    phase = next((m for m in messages if "install phase" in m), "")
    found = re.search(r"install phase ([\d.]+)s", phase)
    adjusted = next((m for m in messages if m.startswith("prefect adjustments:")), "(none)")
    return (float(found.group(1)) if found else None), adjusted


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hosts", type=int, default=24)
    ap.add_argument("--install-latency", type=float, default=2.0)
    ap.add_argument("--public-ip-cidr", default="127.154.0.0/16")
    args = ap.parse_args()

    from tasks.runtime.prefect_api import prefect_api
    from tasks.runtime.sandbox_process import SandboxProcess

    work = Path(tempfile.mkdtemp(prefix="entry-paths-"))
    sandbox_args = [
        *("--install-latency", str(args.install_latency)),
        *("--boot-delay", "1", "--cloud-init-seconds", "1"),
        *("--public-ip-cidr", args.public_ip_cidr, "--no-token-buckets"),
    ]
    rows: list[dict[str, Any]] = []
    with SandboxProcess(sandbox_args) as sandbox, prefect_api():
        os.environ.update(sandbox.env)
        api_url = os.environ["PREFECT_API_URL"]
        from blocks.settings import FleetSettings
        from tasks.bench.run import launch_fleet
        from tasks.deploy.inventory import write_inventory
        from tasks.models import Instance

        base: dict[str, Any] = {"state_dir": str(work / "state"), "log_dir": str(work / "logs")}
        env = {**os.environ, **{f"TOMCAT_FLEET_{k.upper()}": v for k, v in base.items()}}

        # the CLI, on its own hosts
        cli_settings = FleetSettings(**base, deployment_name="entrycli")
        hosts, _, _ = launch_fleet(cli_settings, args.hosts)
        inventory = work / "cli-inventory.json"
        inventory.write_text(json.dumps(hosts))
        t0 = time.monotonic()
        res = subprocess.run(
            [
                *(sys.executable, "-m", "flows", "install", "--inventory", str(inventory)),
                *("--host-key-policy", "insecure", "--deployment-name", "entrycli"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall = time.monotonic() - t0
        out = last_json(res.stdout)
        cli_run = str(out.get("flow_run_id", ""))
        phase, adjusted = _phase(_flow_logs(api_url, cli_run)) if cli_run else (None, "")
        rows.append(
            {
                "path": "cli",
                "installed": out.get("installed"),
                "install_s": phase if phase is not None else out.get("install_s"),
                "wall_s": round(wall, 2),
                "adjustments": adjusted,
            }
        )

        # a deployment run through a process worker, on hosts of its own (saved inventory)
        worker_settings = FleetSettings(**base, deployment_name="entryworker")
        hosts, _, _ = launch_fleet(worker_settings, args.hosts)
        instances = [Instance(**h) for h in hosts]
        write_inventory(worker_settings, instances, [])
        wenv = {
            **env,
            "TOMCAT_FLEET_DEPLOYMENT_NAME": "entryworker",
            "TOMCAT_FLEET_HOST_KEY_POLICY": "insecure",
        }
        prefect = str(BIN / "prefect")
        subprocess.run(  # the deployments load AWS credentials from this block
            [sys.executable, "-m", "blocks.register", "--only", "aws"],
            cwd=ROOT,
            env=wenv,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"],
            cwd=ROOT,
            env=wenv,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [prefect, "--no-prompt", "deploy", "-n", "install-tomcat/default"],
            cwd=ROOT,
            env=wenv,
            check=True,
            capture_output=True,
            timeout=300,
        )
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", POOL],
            cwd=ROOT,
            env=wenv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            t0 = time.monotonic()
            res = subprocess.run(
                [
                    *(prefect, "deployment", "run", "install-tomcat/default"),
                    *("--watch", "--watch-timeout", "300"),
                ],
                cwd=work,
                env=wenv,
                capture_output=True,
                text=True,
                timeout=400,
            )
            wall = time.monotonic() - t0
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        found = re.search(r"UUID:\s*([0-9a-f-]{36})", res.stdout)
        run_id = found.group(1) if found else ""
        phase, adjusted = _phase(_flow_logs(api_url, run_id)) if run_id else (None, "")
        state = _api(f"{api_url}/flow_runs/{run_id}")["state_type"] if run_id else "?"
        if state != "COMPLETED":
            print(f"worker run {run_id or '?'}: {state}\n" + res.stdout[-1500:], file=sys.stderr)
            print("\n".join(_flow_logs(api_url, run_id)[-15:]) if run_id else "", file=sys.stderr)
        rows.append(
            {
                "path": "worker",
                "installed": args.hosts if state == "COMPLETED" else 0,
                "install_s": phase,
                "wall_s": round(wall, 2),
                "adjustments": adjusted,
            }
        )
    shutil.rmtree(work, ignore_errors=True)
    print(f"{'path':<7} {'installed':>9} {'install_s':>9} {'wall_s':>7}  adjustments")
    for r in rows:
        print(
            f"{r['path']:<7} {r['installed'] or 0:>9} {r['install_s'] or 0:>9.2f} "
            f"{r['wall_s']:>7.2f}  {r['adjustments']}"
        )
    cli, wk = rows
    ratio = (wk["install_s"] / cli["install_s"]) if cli["install_s"] and wk["install_s"] else None
    print(
        json.dumps(
            {
                "benchmark": "entry_paths",
                "hosts": args.hosts,
                "install_latency_s": args.install_latency,
                "rows": rows,
                "worker_install_x_cli": round(ratio, 3) if ratio else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
