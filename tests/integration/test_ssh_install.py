"""install_host and the host-key policies against a real sandbox fleet."""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blocks.settings import DEFAULT_INSTALL_STEPS, DEFAULT_PROBE
from sandbox import FaultRates, Sandbox, SandboxConfig
from tasks.models import HostResult, Instance
from tasks.remote.config import HostInstallConfig
from tasks.remote.host_keys import (
    parse_console_fingerprints,
)
from tasks.remote.recipe import install_host

from ..support import client, make_sandbox, wait_for

STEP_NAMES = [s.name for s in DEFAULT_INSTALL_STEPS]


class Env:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.ec2 = client(sb, "ec2")
        self.key = self.ec2.create_key_pair(KeyName="install")["KeyMaterial"]
        self.other_key = self.ec2.create_key_pair(KeyName="other")["KeyMaterial"]
        vpc = self.ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        self.sg = self._group(vpc, "web", [22, 8080])
        self.sg_no_ssh = self._group(vpc, "web-no-ssh", [8080])

    def _group(self, vpc: str, name: str, ports: list[int]) -> str:
        gid = self.ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        self.ec2.authorize_security_group_ingress(
            GroupId=gid,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": p,
                    "ToPort": p,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                }
                for p in ports
            ],
        )
        return gid

    def launch(self, n: int = 1, group: str | None = None) -> list[Instance]:
        res = self.ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=n,
            MaxCount=n,
            KeyName="install",
            SecurityGroupIds=[group or self.sg],
        )
        ids = [i["InstanceId"] for i in res["Instances"]]
        desc = self.ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]
        self.sb.wait_settled()
        return [Instance(instance_id=i["InstanceId"], public_ip=i["PublicIpAddress"]) for i in desc]

    def cfg(self, tmp_path: Path, **kw: Any) -> HostInstallConfig:
        base: dict[str, Any] = {
            "ssh_port": self.sb.ssh_port,
            "ssh_user": "ubuntu",
            "key_pem": self.key,
            "host_key_policy": "tofu",
            "known_hosts_path": str(tmp_path / "state" / "deploy" / "known_hosts"),
            "connect_timeout_s": 2.0,
            "ssh_wait_s": 20.0,
            "steps": DEFAULT_INSTALL_STEPS,
            "probe_command": DEFAULT_PROBE,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.5,
        }
        base.update(kw)
        return HostInstallConfig(**base)

    def console_fingerprints(self, iid: str) -> list[str]:
        def fps() -> list[str]:
            out = self.ec2.get_console_output(InstanceId=iid)["Output"]
            return parse_console_fingerprints(out or "")

        return wait_for(fps, timeout=10)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    cfg = SandboxConfig(
        install_latency=0.05, boot_delay=0.2, cloud_init_seconds=0.2, drop_hold_seconds=2
    )
    with make_sandbox(cfg) as sb:
        yield Env(sb)


def _no_secret(r: HostResult, *pems: str) -> None:
    text = f"{r.reason or ''}\n{r.stderr_tail}\n{r!r}"
    for pem in pems:
        body = [ln for ln in pem.splitlines() if ln and "-----" not in ln]
        assert "PRIVATE KEY" not in text
        assert not any(ln in text for ln in body)


def _get(ip: str) -> int:
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as resp:
        return int(resp.status)


def _known_hosts_lines(cfg: HostInstallConfig) -> list[str]:
    return Path(cfg.known_hosts_path).read_text().splitlines()


def _other_ed25519_blob() -> str:
    pub = Ed25519PrivateKey.generate().public_key()
    return pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


# -- against the sandbox -------------------------------------------------------------------


def test_install_then_already_installed(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (inst,) = env.launch()
    cfg = env.cfg(tmp_path)
    log = logging.getLogger("test.ssh_install")
    with caplog.at_level(logging.DEBUG, logger="test.ssh_install"):
        r = install_host(inst, cfg, log=log)
    assert r.status == "installed", r
    assert r.reason is None and not r.already_installed and r.stderr_tail == ""
    assert [s.name for s in r.steps] == ["probe", *STEP_NAMES]
    assert r.steps[0].exit_status != 0 and all(s.exit_status == 0 for s in r.steps[1:])
    assert r.attempts == 1 and r.seconds > 0
    assert _get(inst.public_ip) == 200
    assert _known_hosts_lines(cfg) == [
        line for line in _known_hosts_lines(cfg) if line.startswith(f"{inst.instance_id} ")
    ]
    assert len(_known_hosts_lines(cfg)) == 1

    again = install_host(inst, cfg, log=log)
    assert again.status == "installed" and again.already_installed, again
    assert [s.name for s in again.steps] == ["probe"] and again.steps[0].exit_status == 0
    assert len(_known_hosts_lines(cfg)) == 1  # same key: accepted, not re-recorded
    assert any(inst.instance_id in m and "installed" in m for m in caplog.messages)
    logged = "\n".join(caplog.messages)
    assert "PRIVATE KEY" not in logged
    _no_secret(r, env.key)
    _no_secret(again, env.key)


def test_parallel_hosts_share_one_known_hosts(env: Env, tmp_path: Path) -> None:
    insts = env.launch(4)
    cfg = env.cfg(tmp_path)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: install_host(i, cfg), insts))
    assert [r.status for r in results] == ["installed"] * 4, results
    ids = sorted(line.split()[0] for line in _known_hosts_lines(cfg))
    assert ids == sorted(i.instance_id for i in insts)


def test_wrong_key_fails_fast_with_authentication(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch()
    cfg = env.cfg(tmp_path, key_pem=env.other_key)
    wait_for(lambda: env.console_fingerprints(inst.instance_id))  # booted
    started = time.monotonic()
    r = install_host(inst, cfg)
    assert time.monotonic() - started < 5
    assert r.status == "failed" and "authentication" in (r.reason or ""), r
    _no_secret(r, env.key, env.other_key)


def test_tofu_rejects_a_changed_host_key(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch()
    cfg = env.cfg(tmp_path, steps=[])  # connect + probe is enough to record the key
    first = install_host(inst, cfg)
    assert first.status == "installed", first
    (line,) = _known_hosts_lines(cfg)
    assert line.startswith(f"{inst.instance_id} ssh-ed25519 ")
    Path(cfg.known_hosts_path).write_text(f"{inst.instance_id} {_other_ed25519_blob()}\n")
    r = install_host(inst, cfg)
    assert r.status == "failed" and "changed" in (r.reason or ""), r
    assert inst.instance_id in (r.reason or "") and "remove its line" in (r.reason or "")
    assert r.steps == []  # refused before running anything
    _no_secret(r, env.key)


def test_strict_with_console_fingerprints(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch()
    fps = env.console_fingerprints(inst.instance_id)
    assert fps and all(fp.startswith("SHA256:") and not fp.endswith("=") for fp in fps)
    cfg = env.cfg(
        tmp_path,
        host_key_policy="strict",
        expected_fingerprints={inst.instance_id: fps},
    )
    r = install_host(inst, cfg)
    assert r.status == "installed", r
    assert not Path(cfg.known_hosts_path).exists()  # strict never writes known_hosts

    bogus = cfg.model_copy(
        update={"expected_fingerprints": {inst.instance_id: ["SHA256:" + "A" * 43]}}
    )
    bad = install_host(inst, bogus)
    assert bad.status == "failed" and "refusing" in (bad.reason or ""), bad
    none = cfg.model_copy(update={"expected_fingerprints": {}})
    missing = install_host(inst, none)
    assert missing.status == "failed"
    assert f"no host key fingerprints for {inst.instance_id}" in (missing.reason or "")


def test_permanent_apt_failure_gives_up(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch()
    env.sb.fleet.hosts[inst.instance_id].state.faults.rates = FaultRates(install_failure=1.0)  # type: ignore[union-attr]
    cfg = env.cfg(tmp_path, host_attempts=2)
    r = install_host(inst, cfg)
    assert r.status == "failed", r
    assert "step install" in (r.reason or "") and "gave up after 2 attempts" in (r.reason or "")
    assert r.attempts == 2
    assert "Failed to fetch" in r.stderr_tail and len(r.stderr_tail) <= 500
    assert [s.exit_status for s in r.steps if s.name == "install"] == [100, 100]
    assert _get_status(inst.public_ip) is None  # never started
    _no_secret(r, env.key)


def _get_status(ip: str) -> int | None:
    try:
        return _get(ip)
    except OSError:
        return None


def test_flaky_apt_retries_the_failing_step(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch()
    faults = env.sb.fleet.hosts[inst.instance_id].state.faults  # type: ignore[union-attr]
    faults.rates = FaultRates(install_failure=0.5)
    # seeded: with this command order the first two installs fail and the third succeeds
    faults.rng = random.Random(13)
    cfg = env.cfg(tmp_path, host_attempts=6)
    r = install_host(inst, cfg)
    assert r.status == "installed" and r.attempts >= 1, r
    installs = [s.exit_status for s in r.steps if s.name == "install"]
    assert installs[-1] == 0 and 100 in installs and r.attempts == len(installs)
    # a retry resumes at the failing step: earlier steps ran once
    assert [s.name for s in r.steps].count("cloud-init") == 1
    assert _get(inst.public_ip) == 200


def test_no_ssh_ingress_is_not_reachable(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch(group=env.sg_no_ssh)
    cfg = env.cfg(tmp_path, ssh_wait_s=1.5, connect_timeout_s=0.5)
    started = time.monotonic()
    r = install_host(inst, cfg)
    took = time.monotonic() - started
    assert r.status == "failed" and "not reachable" in (r.reason or ""), r
    assert f"{inst.public_ip}:{env.sb.ssh_port}" in (r.reason or "")
    assert took < 4, took
    _no_secret(r, env.key)


def test_stop_event_cancels(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch(group=env.sg_no_ssh)
    stop = threading.Event()
    cfg = env.cfg(tmp_path, ssh_wait_s=30, connect_timeout_s=0.5)
    threading.Timer(0.7, stop.set).start()
    started = time.monotonic()
    r = install_host(inst, cfg, stop=stop)
    assert r.status == "failed" and r.reason == "cancelled", r
    assert time.monotonic() - started < 3


def test_dropped_connections_are_transient(env: Env, tmp_path: Path) -> None:
    (inst,) = env.launch()
    faults = env.sb.fleet.hosts[inst.instance_id].state.faults  # type: ignore[union-attr]
    faults.rates = FaultRates(ssh_drop=1.0)  # every command's connection is cut
    cfg = env.cfg(tmp_path, host_attempts=2)
    started = time.monotonic()
    r = install_host(inst, cfg)
    assert time.monotonic() - started < 5
    assert r.status == "failed" and r.attempts == 2, r
    assert "gave up after 2 attempts: connection lost" in (r.reason or "")
    assert [(s.name, s.exit_status) for s in r.steps] == [("probe", None), ("probe", None)]
    faults.rates = FaultRates()
    healed = install_host(inst, cfg)
    assert healed.status == "installed" and healed.attempts == 1, healed
