"""What the standalone CLI costs outside the install phase, from a plain shell.

`tomcat-fleet install --inventory FILE` is run the way a user runs it against AWS: a plain
shell (only PATH and HOME, plus the settings a user exports: here the sandbox's env file,
as `set -a; . .sandbox.env` gives), no PREFECT_API_URL, so the CLI reports to its own
reusable Prefect server. The server's directory starts empty: run 1 starts a new server
(its database is migrated), the following runs reuse it. Each run installs on fresh
instances of one sandbox (launched before the run, not timed: on AWS they exist already).

Per run: wall seconds (measured here, process start to exit), the install phase the flow
reports (from the moment the command begins the install, before it imports Prefect, to
the last chunk's end), and `outside = wall - install`, split into what comes before the
install begins (start-up, argument checks), and after its last chunk (the flow run's end,
flushing logs and events, exit). The command's imports and the wait for the server run
during the install; they are shown too. Any line about logs or events that could not be
delivered counts as `undelivered`. The server is stopped at the end. Prints a table and,
last, one JSON line.

    python -m benchmarks.cli_overhead --hosts 24 --runs 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.bench.child import last_json

UNDELIVERED = (
    "Error logging to API",
    "Failed to send",
    "EventsWorker",
    "All connection attempts failed",
    "Traceback",
)


def cli() -> list[str]:
    return [sys.executable, "-m", "flows"]


def plain_env(sandbox_env: dict[str, str], prefect_dir: Path) -> dict[str, str]:
    """A plain shell's environment with the sandbox's settings exported, nothing else."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "TOMCAT_FLEET_PREFECT_DIR": str(prefect_dir),
    }
    return {**env, **sandbox_env}


def run_once(
    inventory: Path, env: dict[str, str], state_dir: Path, log_dir: Path
) -> dict[str, Any]:
    cmd = [
        *cli(),
        "install",
        "--inventory",
        str(inventory),
        "--host-key-policy",
        "insecure",
        "--deployment-name",
        "cli-bench",
        "--state-dir",
        str(state_dir),
        "--log-dir",
        str(log_dir),
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.monotonic() - t0
    (log_dir.parent / f"{inventory.stem}.stderr.log").write_text(proc.stderr)
    result = last_json(proc.stdout)
    marks = result.get("marks_s", {})
    install = float(result["install_s"])
    begun = float(marks.get("begun", marks.get("imported", 0.0)))
    before = -float(marks.get("process_start", 0.0)) + begun
    bad = [ln for ln in proc.stderr.splitlines() if any(u in ln for u in UNDELIVERED)]
    return {
        "server": "started" if "(started)" in proc.stderr else "reused",
        "returncode": proc.returncode,
        "installed": result.get("installed"),
        "wall_s": round(wall, 2),
        "install_s": round(install, 2),
        "outside_s": round(wall - install, 2),
        "before_install_s": round(before, 2),
        "after_install_s": round(wall - install - before, 2),
        "imports_during_s": round(float(marks.get("imported", 0.0)) - begun, 2),
        "server_wait_s": round(
            float(marks.get("services_up", 0.0)) - float(marks.get("imported", 0.0)), 2
        ),
        "flush_s": round(float(marks.get("flushed", 0.0)) - float(marks.get("flow_done", 0.0)), 2),
        "exit_s": round(
            wall + float(marks.get("process_start", 0.0)) - float(marks.get("flushed", 0.0)), 2
        ),
        "undelivered": len(bad),
        "undelivered_lines": bad[:3],
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hosts", type=int, default=24)
    ap.add_argument(
        "--runs", type=int, default=4, help="run 1 starts the server; the rest reuse it"
    )
    ap.add_argument("--install-latency", type=float, default=0.5)
    ap.add_argument("--public-ip-cidr", default="127.153.0.0/16")
    args = ap.parse_args()
    t_start = time.monotonic()

    from tasks.runtime.sandbox_process import SandboxProcess

    workdir = Path(tempfile.mkdtemp(prefix="cli-overhead-"))
    prefect_dir = workdir / "prefect"
    sandbox_args = [
        *("--install-latency", str(args.install_latency)),
        *("--boot-delay", "1", "--cloud-init-seconds", "1"),
        *("--public-ip-cidr", args.public_ip_cidr),
        "--no-token-buckets",  # launches between runs are not measured
    ]
    rows: list[dict[str, Any]] = []
    with SandboxProcess(sandbox_args) as sandbox:
        os.environ.update(sandbox.env)
        os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
        from blocks.settings import FleetSettings
        from tasks.bench.run import launch_fleet

        state_dir = workdir / "state"
        settings = FleetSettings(deployment_name="cli-bench", state_dir=str(state_dir))
        env = plain_env(sandbox.env, prefect_dir)
        try:
            for n in range(1, args.runs + 1):
                instances, _, _ = launch_fleet(settings, args.hosts)
                inventory = workdir / f"inventory-{n}.json"
                inventory.write_text(json.dumps(instances))
                row = {"run": n, **run_once(inventory, env, state_dir, workdir / "logs")}
                rows.append(row)
                print(
                    f"  run {n} ({row['server']}): wall {row['wall_s']:.1f}s, install "
                    f"{row['install_s']:.1f}s, outside {row['outside_s']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            subprocess.run(
                [*cli(), "server", "stop"], env=env, capture_output=True, timeout=60, check=False
            )

    cols = (
        "run",
        "server",
        "wall_s",
        "install_s",
        "outside_s",
        "before_install_s",
        "after_install_s",
        "imports_during_s",
        "server_wait_s",
        "flush_s",
        "exit_s",
        "undelivered",
    )
    print(" ".join(f"{c:>22}" if i > 1 else f"{c:>8}" for i, c in enumerate(cols)))
    for r in rows:
        print(" ".join(f"{r[c]!s:>22}" if i > 1 else f"{r[c]!s:>8}" for i, c in enumerate(cols)))
    print(
        json.dumps(
            {
                "benchmark": "cli_overhead",
                "hosts": args.hosts,
                "install_latency_s": args.install_latency,
                "cpus": os.cpu_count(),
                "elapsed_s": round(time.monotonic() - t_start, 1),
                "workdir": str(workdir),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "rows": [{k: v for k, v in r.items() if k != "undelivered_lines"} for r in rows],
            }
        )
    )
    return 0 if all(r["returncode"] == 0 and not r["undelivered"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
