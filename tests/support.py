"""Shared test helpers: the one sandbox factory (`make_sandbox`), boto3 clients and SSH
against a sandbox, the sandbox's env applied to this process, and polling."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import paramiko

from sandbox import Sandbox, SandboxConfig

# Sandboxes made here take their loopback ranges from 127.192.0.0/10 (outside the ranges
# pinned elsewhere: 127.100-102 defaults, 127.140/141 benchmark, 127.170/171 reliability):
# a pair of adjacent /20s (4,000 host addresses each) per sandbox, a new pair for every
# sandbox of this session. scripts/test.sh runs tests/e2e beside the other tests: each of
# the two runs takes its own half of the pool (TESTS_LOOPBACK_SLICE 0 or 1), and within it
# starts at an offset taken from the pid, so that other runs in parallel rarely meet.
_POOL = ipaddress.ip_network("127.192.0.0/10")
_PAIR_PREFIX = 20
_PAIRS = 2 ** (_PAIR_PREFIX - _POOL.prefixlen - 1)
_HALF = _PAIRS // 2
_SLICE = int(os.environ.get("TESTS_LOOPBACK_SLICE", "0")) % 2
_next_pair = itertools.count((os.getpid() * 37) % _HALF)


def loopback_pair() -> tuple[str, str]:
    """A (public, service) pair of loopback CIDRs no other sandbox of this session uses."""
    size = 2 ** (32 - _PAIR_PREFIX + 1)
    index = _SLICE * _HALF + next(_next_pair) % _HALF
    pair = ipaddress.ip_network((int(_POOL.network_address) + index * size, _PAIR_PREFIX - 1))
    first, second = pair.subnets()
    return str(first), str(second)


# A sandbox that gets all eleven stages done in seconds: installs, boots, cloud-init, RDS,
# Beanstalk and health checks compressed (the whole-deploy tests share it).
FAST_ALL_STAGES: dict[str, Any] = {
    "install_latency": 0.05,
    "boot_delay": 0.2,
    "cloud_init_seconds": 0.1,
    "rds_create_seconds": 0.3,
    "eb_launch_seconds": 0.5,
    "health_check_interval": 0.3,
    "drop_hold_seconds": 3.0,
}


def fast_all_stages(**overrides: Any) -> SandboxConfig:
    """`SandboxConfig` of `FAST_ALL_STAGES`, with `overrides` on top."""
    return SandboxConfig(**{**FAST_ALL_STAGES, **overrides})


@contextlib.contextmanager
def make_sandbox(cfg: SandboxConfig | None = None, *, env: bool = False) -> Iterator[Sandbox]:
    """Start a `Sandbox(cfg)` on a loopback range of its own (unless `cfg` sets
    `public_ip_cidr`/`service_ip_cidr` itself), with its env applied to this process when
    `env` is true (as `set -a; . .sandbox.env`), and stop it on exit."""
    cfg = cfg or SandboxConfig()
    if not {"public_ip_cidr", "service_ip_cidr"} & cfg.model_fields_set:
        public, service = loopback_pair()
        cfg = cfg.model_copy(update={"public_ip_cidr": public, "service_ip_cidr": service})
    with Sandbox(cfg) as sb:
        if env:
            with sandbox_env(sb):
                yield sb
        else:
            yield sb


@contextlib.contextmanager
def sandbox_env(sb: Sandbox) -> Any:
    """The sandbox's env file, applied to this process (as `set -a; . .sandbox.env`)."""
    saved = {k: os.environ.get(k) for k in sb.env()}
    os.environ.update(sb.env())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def client(sb: Sandbox, service: str, **kw: Any) -> Any:
    """A boto3 client of the sandbox's admin user (tests inspect; the flows run as the
    operator, with the env file's AWS credentials)."""
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=sb.endpoint,
        region_name=sb.cfg.region,
        aws_access_key_id=sb.admin.access_key_id,
        aws_secret_access_key=sb.admin.secret_access_key,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        **kw,
    )


def ssh(
    ip: str, port: int, key_pem: str, timeout: float = 5.0, user: str = "ubuntu"
) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    c.connect(
        ip,
        port=port,
        username=user,
        pkey=paramiko.RSAKey.from_private_key(io.StringIO(key_pem)),
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        look_for_keys=False,
        allow_agent=False,
    )
    return c


def run(c: paramiko.SSHClient, cmd: str, timeout: float = 30) -> tuple[int, str, str]:
    _, out, err = c.exec_command(cmd, timeout=timeout)
    status = out.channel.recv_exit_status()
    return status, out.read().decode(), err.read().decode()


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def eb_service_role(iam: Any, name: str = "sandbox-eb-service-role") -> list[dict[str, str]]:
    """CreateEnvironment's OptionSettings naming a service role Elastic Beanstalk can
    assume, created on first use through `iam` (the sandbox refuses an environment without
    one, as AWS does)."""
    import json

    from tasks.aws.iam import trust_policy

    trust = trust_policy("elasticbeanstalk.amazonaws.com")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return [
        {
            "Namespace": "aws:elasticbeanstalk:environment",
            "OptionName": "ServiceRole",
            "Value": name,
        }
    ]


def lb_port(sb: Sandbox, port: int) -> int:
    """Where a balancer's listener `port` (80, 443) really listens on loopback: the port
    itself, or its high fallback (8080, 8443) when the sandbox may not bind low ports."""
    return int(sb.state()["lb_ports"][str(port)])


class Traffic:
    """A continuous, bounded traffic generator: `workers` threads each send GET requests
    one after another (a new connection each) to `address:port` with `Host: host` until
    `stop()` or `max_s` seconds, and count 2xx answers, other answers and connection
    errors. Used as a context manager around what must not fail a request."""

    def __init__(
        self, address: str, port: int, host: str, *, workers: int = 4, max_s: float = 120.0
    ) -> None:
        import threading
        from collections import Counter

        self.address, self.port, self.host = address, port, host
        self.max_s = max_s
        self.counts: Counter[str] = Counter()
        self.backends: Counter[str] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, name=f"traffic-{n}", daemon=True)
            for n in range(workers)
        ]
        self.started = self.ended = 0.0

    def _one(self) -> tuple[str, str | None]:
        import http.client

        conn = http.client.HTTPConnection(self.address, self.port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": self.host, "Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            kind = "2xx" if 200 <= resp.status < 300 else f"http_{resp.status}"
            return kind, resp.getheader("X-Instance-Id")
        except OSError as exc:
            return "connection_error", repr(exc)
        finally:
            conn.close()

    def _run(self) -> None:
        deadline = self.started + self.max_s
        while not self.stopping.is_set() and time.monotonic() < deadline:
            kind, detail = self._one()
            with self.lock:
                self.counts[kind] += 1
                if kind == "2xx" and detail:
                    self.backends[detail] += 1
                elif kind != "2xx" and len(self.errors) < 20:
                    self.errors.append(f"{kind} {detail or ''}".strip())

    @property
    def sent(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.sent - self.counts["2xx"]

    def __enter__(self) -> Traffic:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=15)
        self.ended = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def max_out_of_service(
    transitions: Any, tg_arn: str, hosts: set[str], since: float, until: float
) -> int:
    """From the sandbox balancers' record of target states (`Balancers.transitions`): the
    most of `hosts` at once that were not `healthy` in target group `tg_arn` between
    `since` and `until` (monotonic), counting each host healthy at `since` unless a
    transition before it says otherwise."""
    state = dict.fromkeys(hosts, "healthy")
    worst = 0
    for at, arn, tid, new in list(transitions):
        if arn != tg_arn or tid not in hosts or at > until:
            continue
        state[tid] = new
        if at >= since:
            worst = max(worst, sum(s != "healthy" for s in state.values()))
    return worst
