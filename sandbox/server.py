"""The running sandbox: AWS API thread + fleet event loop, as a context manager.

    with Sandbox(SandboxConfig(install_latency=0.2)) as sb:
        boto3.client("ec2", endpoint_url=sb.endpoint, ...)

`Sandbox.env()` is what `python -m sandbox` writes to its env file: everything a flow needs
to use the sandbox instead of AWS (endpoint URL, region, the operator's and admin's keys,
SSH port, the URL that tells the controller its public address, the CA that signs HTTPS listeners).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import psutil

import sandbox.accounts as accounts
import sandbox.iamauth as iamauth
import sandbox.moto_patches as moto_patches
import sandbox.snapshot as snapshot
import sandbox.ssm_seed as ssm_seed

from .awsapi import AwsApi, json_route, text_route
from .config import SandboxConfig
from .dns import DnsServer
from .fleet import Fleet
from .ports import free_port, port_problem
from .throttle import Ec2Limits, Limit, Throttler, action_class
from .tls import LocalCA

log = logging.getLogger("sandbox")
T = TypeVar("T")

RECONCILE_SECONDS = 0.5


class SandboxError(RuntimeError):
    """A sandbox could not start; the message says why in one line."""


def _check_port(host: str, port: int, what: str) -> None:
    problem = port_problem(host, port)
    if problem:
        raise SandboxError(
            f"{what} {port} on {host} is not available ({problem}); "
            f"choose another with --{what.replace('_', '-')} or stop what uses it"
        )


class Sandbox:
    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(
            target=self._run_loop, name="sandbox-fleet", daemon=True
        )
        self.api: AwsApi | None = None
        self.fleet: Fleet | None = None
        self.dns: DnsServer | None = None
        self._owned_dir: str | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Sandbox:
        cfg = self.cfg
        port = cfg.port or free_port(cfg.host)
        _check_port(cfg.host, port, "port")
        ssh_port = cfg.ssh_port or free_port(cfg.host)
        if cfg.ssh_port:
            _check_port(cfg.host, ssh_port, "ssh_port")
        self.ssh_port = ssh_port
        state_dir = cfg.state_dir
        if state_dir is None:
            state_dir = self._owned_dir = tempfile.mkdtemp(prefix="sandbox-")
        os.makedirs(state_dir, exist_ok=True)
        self.state_dir = state_dir
        self.ca = LocalCA(state_dir)
        # AWS-managed IAM policies (AWSElasticBeanstalkWebTier, ...) exist on AWS: load them
        os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        _reset_moto()
        moto_patches.register(self, cfg.public_ip_cidr, "127.102.0.0/16")
        throttler = Throttler(
            cfg.throttle_rate,
            buckets=cfg.token_buckets,
            ec2=Ec2Limits(
                describe=Limit(cfg.describe_bucket_size, cfg.describe_refill_per_s),
                mutating=Limit(cfg.mutate_bucket_size, cfg.mutate_refill_per_s),
                run_instances=Limit(cfg.run_instances_bucket_size, cfg.run_instances_refill_per_s),
            ),
            seed=cfg.seed,
        )
        self.api = AwsApi(
            cfg.host,
            port,
            throttler,
            routes={
                "state": json_route(self.state),
                "commands": json_route(lambda: self.fleet.commands.records() if self.fleet else []),
                "checkip": text_route(lambda: self.cfg.controller_ip + "\n"),
                "ca.pem": lambda: ("application/x-pem-file", self.ca_pem()),
            },
            on_call=self._on_call,
        )
        self.loop_thread.start()
        self._call(self._start_fleet())
        self.dns_port = self._start_dns()
        self.api.start()
        self._seed_route53()
        self._locked(lambda: ssm_seed.seed(moto_patches.ACCOUNT, self.cfg.region))
        self._locked(
            lambda: accounts.apply(
                cfg.account_profile, moto_patches.ACCOUNT, cfg.region, cfg.hosted_zone
            )
        )
        policy = Path(cfg.operator_policy_path) if cfg.operator_policy_path else iamauth.POLICY_PATH
        self.admin, self.operator = self._locked(
            lambda: iamauth.create_users(moto_patches.ACCOUNT, policy)
        )
        iamauth.enforce(cfg.enforce_iam)
        self.started_at = time.monotonic()
        return self

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self._stop_fleet(), timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.loop_thread.join(timeout=5)
        moto_patches.unregister()
        iamauth.enforce(False)
        if self._owned_dir:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    async def _start_fleet(self) -> None:
        self._wake = asyncio.Event()
        self.fleet = Fleet(self.cfg, self.ssh_port, self.ca, self._moto_call)
        self._tasks = [
            self.loop.create_task(self._reconcile_loop()),
            self.loop.create_task(self._health_loop()),
        ]

    def _start_dns(self) -> int:
        assert self.fleet is not None
        self.dns = DnsServer(self.cfg.host, self.cfg.dns_port, self.fleet.names)
        try:
            return self._call(self.dns.start())
        except OSError as exc:
            raise SandboxError(
                f"dns_port {self.cfg.dns_port} on {self.cfg.host} is not available "
                f"({exc.strerror or exc}); choose another with --dns-port or stop what uses it"
            ) from None

    async def _stop_fleet(self) -> None:
        if self.dns is not None:
            await self.dns.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.fleet is not None:
            await self.fleet.close()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # -- moto access ----------------------------------------------------------------------
    def _locked(self, fn: Callable[[], T]) -> T:
        assert self.api is not None
        with self.api.lock:
            return fn()

    async def _moto_call(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(self._locked, fn)

    def _on_call(self, service: str, action: str) -> None:
        if action_class(action) == "mutating" and self._wake is not None:
            self.loop.call_soon_threadsafe(self._wake.set)

    async def _reconcile_loop(self) -> None:
        assert self._wake is not None and self.fleet is not None
        while True:
            try:
                snap = await self._moto_call(lambda: snapshot.take(self.cfg.region))
                await self.fleet.apply(snap)
            except Exception:
                log.exception("reconcile failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECONCILE_SECONDS)

    async def _health_loop(self) -> None:
        assert self.fleet is not None
        interval = self.cfg.health_check_interval
        while True:
            try:
                await self.fleet.balancers.check_all(timeout=min(2.0, interval))
            except Exception:
                log.exception("health checks failed")
            await asyncio.sleep(interval)

    def _seed_route53(self) -> None:
        from moto.route53.models import route53_backends

        def create() -> None:
            backend = route53_backends[moto_patches.ACCOUNT]["aws"]
            backend.create_hosted_zone(
                self.cfg.hosted_zone + ".", private_zone=False, comment="sandbox default zone"
            )

        self._locked(create)

    def wait_settled(self, timeout: float = 10.0) -> None:
        """Block until the fleet has applied everything the API has accepted so far."""
        assert self.fleet is not None
        snap = self._locked(lambda: snapshot.take(self.cfg.region))
        self._call(self.fleet.apply(snap), timeout=timeout)

    # -- moto hooks (called in API threads, under the API lock) ---------------------------
    def console_output(self, instance_id: str) -> str:
        return self.fleet.console_output(instance_id) if self.fleet else ""

    def target_health(self, tg_arn: str, target_id: str, port: int) -> tuple[str, str, str]:
        if self.fleet is None:
            return "initial", "Elb.RegistrationInProgress", ""
        return self.fleet.balancers.lookup(tg_arn, target_id, port)

    def target_changed(self, tg_arn: str, target_id: str, port: int, what: str) -> None:
        if self.fleet is not None:
            self.fleet.balancers.target_changed(tg_arn, target_id, port, what)

    def eb_resources(self, env: Any) -> dict[str, Any]:
        return self.fleet.eb_resources(env) if self.fleet else {}

    def eb_terminate(self, env: Any) -> None:
        if self.fleet:
            self.fleet.eb_terminate(env)

    # -- what users and tests see --------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self.api is not None
        return f"http://{self.cfg.host}:{self.api.port}"

    def ca_pem(self) -> bytes:
        with open(self.ca.ca_path, "rb") as f:
            return f.read()

    def env(self) -> dict[str, str]:
        # no TOMCAT_FLEET_SSH_USER unless one user is forced: the recipe's is the image's
        forced = {"TOMCAT_FLEET_SSH_USER": self.cfg.ssh_user} if self.cfg.ssh_user else {}
        return forced | {
            "AWS_ENDPOINT_URL": self.endpoint,
            # the flows run as the operator (docs/iam-policy.json); tests inspect as admin
            "AWS_ACCESS_KEY_ID": self.operator.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.operator.secret_access_key,
            "SANDBOX_ADMIN_AWS_ACCESS_KEY_ID": self.admin.access_key_id,
            "SANDBOX_ADMIN_AWS_SECRET_ACCESS_KEY": self.admin.secret_access_key,
            "AWS_DEFAULT_REGION": self.cfg.region,
            "AWS_REGION": self.cfg.region,
            "TOMCAT_FLEET_AWS_ENDPOINT_URL": self.endpoint,
            "TOMCAT_FLEET_REGION": self.cfg.region,
            "TOMCAT_FLEET_SSH_PORT": str(self.ssh_port),
            "TOMCAT_FLEET_CONTROLLER_IP_URL": f"{self.endpoint}/_sandbox/checkip",
            "TOMCAT_FLEET_CA_BUNDLE": self.ca.ca_path,
            "TOMCAT_FLEET_HOSTED_ZONE": self.cfg.hosted_zone,
            "TOMCAT_FLEET_SANDBOX_STATE_URL": f"{self.endpoint}/_sandbox/state",
            "TOMCAT_FLEET_SANDBOX_LB_PORTS": self.lb_ports_text(),
            "TOMCAT_FLEET_SANDBOX_DNS": self.dns_address,
        }

    @property
    def dns_address(self) -> str:
        """`host:port` of the sandbox's DNS (UDP and TCP)."""
        return f"{self.cfg.host}:{self.dns_port}"

    def lb_ports_text(self) -> str:
        """Where load-balancer ports listen: "80:80,443:443", or "80:8080,443:8443" when
        this process may not bind ports below 1024."""
        assert self.fleet is not None
        return ",".join(f"{p}:{b}" for p, b in self.fleet.lb_ports.table().items())

    def write_env_file(self, path: str) -> None:
        lines = [f"{k}={v}" for k, v in self.env().items()]
        # it holds access keys: readable by its owner only
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(path, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# written by `python -m sandbox`; load with: set -a; . " + path + "\n")
            f.write("\n".join(lines) + "\n")

    def state(self) -> dict[str, Any]:
        assert self.api is not None
        fleet_state = self._call(self._fleet_state(), timeout=10)
        return {
            "endpoint": self.endpoint,
            "ssh_port": self.ssh_port,
            "dns": self.dns_address,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "config": self.cfg.model_dump(exclude={"faults"}),
            "api": self.api.counters(),
            **fleet_state,
        }

    def break_installs(self, instance_ids: list[str], broken: bool = True) -> None:
        """Fault injection at run time: on these hosts every package fetch fails (apt-get
        install exits 100, `Failed to fetch`), until called again with `broken=False`."""
        assert self.fleet is not None
        fleet = self.fleet

        async def apply() -> None:
            for iid in instance_ids:
                fleet.hosts[iid].state.faults.broken_mirror = broken

        self._call(apply())

    async def _fleet_state(self) -> dict[str, Any]:
        assert self.fleet is not None
        return self.fleet.state()


def _reset_moto() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
