"""A chunk's worker SIGKILLed mid-chunk: that chunk's task run fails and its hosts are
reported failed with the reason; the other chunks complete; the flow accounts for every
host. The process runner on a real sandbox, the session's Prefect server."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psutil

from blocks.settings import FleetSettings
from flows.install_tomcat import install_tomcat
from sandbox import SandboxConfig
from tasks.aws import Aws
from tasks.aws.ec2 import ensure_key_pair, ensure_security_group, launch_instances, wait_running
from tasks.models import InstallSummary
from tasks.runtime.outcome import outcome_of

from ..support import make_sandbox


def _workers() -> list[psutil.Process]:
    """The install's workers: children of this process's fork server."""
    me = psutil.Process()
    servers = [p for p in me.children() if "multiprocessing.forkserver" in " ".join(p.cmdline())]
    return [w for s in servers for w in s.children()]


def test_a_killed_worker_fails_its_chunk_alone(tmp_path: Any) -> None:
    cfg = SandboxConfig(install_latency=3.0, boot_delay=0.2, cloud_init_seconds=0.1)
    overrides = {
        "state_dir": str(tmp_path / "state"),
        "log_dir": str(tmp_path / "logs"),
        "deployment_name": "killtest",
        "host_key_policy": "insecure",
    }
    with make_sandbox(cfg, env=True):
        settings = FleetSettings(**overrides)
        aws = Aws(settings)
        ensure_key_pair(aws, settings)
        sg = ensure_security_group(aws, settings)
        hosts = wait_running(aws, launch_instances(aws, settings, 6, sg, "killtest-6"), 60)
        killed: list[int] = []

        def kill_one() -> None:  # once every chunk is installing, kill one worker
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                busy = [w for w in _workers() if w.cpu_times().user > 0.05]
                if len(_workers()) >= 3 and len(busy) >= 1:
                    time.sleep(1.0)  # inside the 3 s install of its hosts
                    victim = _workers()[0].pid
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        state = install_tomcat(
            hosts,
            chunk_size=2,
            max_workers=2,
            desired_count=3,
            runner="process",
            allow_failures="2",
            settings_overrides=overrides,
            return_state=True,
        )
        killer.join(5)
    summary = outcome_of(state)
    assert killed, "no worker was seen to kill"
    assert isinstance(summary, InstallSummary), state.message
    assert state.is_completed(), state.message  # 2 failures allowed
    failed = [r for r in summary.results if r.status == "failed"]
    assert len(failed) == 2 and summary.installed == 4, summary.results
    for r in failed:
        assert f"worker pid {killed[0]} was killed by signal SIGKILL" in (r.reason or ""), r
