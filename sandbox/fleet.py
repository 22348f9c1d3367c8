"""The local fleet: one emulated host per running EC2 instance, plus the services around it.

`Fleet` lives on the sandbox's asyncio loop. It reconciles against moto snapshots: a new
running instance boots after the configured delay (SSH server on its public IP, host key
printed to its console), a terminated one disappears. It also owns the load balancers,
Elastic Beanstalk environments and RDS endpoints, name resolution for the emulated shell,
and the security-group check every server applies to the connections it accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncssh
from aiohttp import web

import sandbox.httpnet as httpnet

from .config import SandboxConfig
from .elb import Balancers
from .faults import host_faults, jittered
from .hoststate import HostState, HttpResult
from .netpolicy import Rule, Source, allowed
from .ports import lb_port_map
from .shell import serves_root
from .snapshot import DatabaseInfo, InstanceInfo, Snapshot
from .sshd import CommandLog, HostSshd
from .ssm_seed import image_of
from .tls import LocalCA

log = logging.getLogger("sandbox.fleet")

TOMCAT_PORT = 8080


@dataclass
class Host:
    state: HostState
    info: InstanceInfo
    host_key: asyncssh.SSHKey
    launched_at: float
    booted: bool = False
    sshd: HostSshd | None = None
    tomcat: asyncio.AbstractServer | None = None
    boot_task: asyncio.Task[None] | None = None

    @property
    def hostname(self) -> str:
        return "ip-" + (self.info.private_ip or "0.0.0.0").replace(".", "-")


@dataclass
class Environment:
    name: str
    address: str
    app_server: asyncio.AbstractServer | None = None
    lb_arn: str | None = None
    tg_arn: str | None = None
    requests: int = 0


@dataclass
class FleetCounters:
    faults: Counter[str] = field(default_factory=Counter)


def _addresses(cidr: str) -> Iterator[str]:
    for addr in ipaddress.ip_network(cidr).hosts():
        if int(addr) & 0xFF not in (0, 1, 255):
            yield str(addr)


class Fleet:
    def __init__(
        self,
        cfg: SandboxConfig,
        ssh_port: int,
        ca: LocalCA,
        moto_call: Callable[[Callable[[], Any]], Any],
    ) -> None:
        self.cfg = cfg
        self.ssh_port = ssh_port
        self.ca = ca
        self.moto_call = moto_call  # runs a function under the API lock in a worker thread
        self.rates = cfg.fault_rates
        self.hosts: dict[str, Host] = {}
        self.by_public: dict[str, Host] = {}
        self.rules: dict[str, list[Rule]] = {}
        self.databases: dict[str, DatabaseInfo] = {}
        self.db_seen: set[str] = set()
        self.environments: dict[str, Environment] = {}
        self.counters = FleetCounters()
        self.commands = CommandLog()  # every command line the hosts were sent
        self.service_ips = _addresses(cfg.service_ip_cidr)
        self.service_net = ipaddress.ip_network(cfg.service_ip_cidr)
        self.records: list[tuple[str, str, str]] = []
        probe = str(self.service_net.network_address + 1)  # never given to a service
        self.lb_ports = lb_port_map(probe, cfg.lb_port_base)
        self.balancers = Balancers(
            ca,
            self._allocate,
            self.target_address,
            self.admits_groups,
            cfg.drop_hold_seconds,
            self.lb_ports,
        )
        self.rng = random.Random(cfg.seed)
        self.loop = asyncio.get_running_loop()

    def _allocate(self) -> str:
        return next(self.service_ips)

    # -- security groups ----------------------------------------------------------------
    def source_of(self, peer_ip: str) -> Source:
        host = self.by_public.get(peer_ip)
        if host is not None:
            addrs = (host.state.public_ip, host.state.private_ip)
            return Source(addrs, frozenset(host.state.groups))
        for bal in self.balancers.balancers.values():
            if bal.address == peer_ip:
                return Source((peer_ip, "172.31.255.10"), frozenset(bal.info.groups))
        for env in self.environments.values():
            if env.address == peer_ip:
                return Source((peer_ip, "172.31.255.20"), frozenset())
        return Source((self.cfg.controller_ip,))

    def admits_groups(self, groups: tuple[str, ...], port: int, peer_ip: str) -> bool:
        if not groups:  # moto may leave a balancer without groups: nothing to enforce
            return True
        return allowed(self.rules, list(groups), port, self.source_of(peer_ip))

    # -- reconciliation ---------------------------------------------------------------
    async def apply(self, snap: Snapshot) -> None:
        self.rules = snap.rules
        self.records = snap.records
        running = {i.id: i for i in snap.instances if i.state == "running" and i.public_ip}
        for iid in list(self.hosts):
            if iid not in running:
                await self._retire(self.hosts.pop(iid))
        for iid, info in running.items():
            host = self.hosts.get(iid)
            if host is None:
                self._admit_instance(info)
            else:
                host.info = info
                host.state.groups = list(info.groups)
        self._apply_databases(snap.databases)
        await self.balancers.apply(snap.load_balancers, snap.target_groups, snap.certificates)
        await self._apply_environments(snap)

    def _admit_instance(self, info: InstanceInfo) -> None:
        assert info.public_ip
        faults = host_faults(self.cfg.seed, info.id, self.rates)
        rng = random.Random(f"{self.cfg.seed}:{info.id}")
        image = image_of(info.image_id)  # its system: shell, login user, Tomcat
        state = HostState(
            os=image.os,
            login_user=image.login_user,
            instance_id=info.id,
            public_ip=info.public_ip,
            private_ip=info.private_ip or "172.31.0.10",
            groups=list(info.groups),
            faults=faults,
            install_latency=self.cfg.install_latency * faults.slow_factor,
            latency_jitter=self.cfg.latency_jitter,
            rng=rng,
            booted_at=float("inf"),
            cloud_init_seconds=self.cfg.cloud_init_seconds,
        )
        if faults.never_boots:
            self.counters.faults["never_boot"] += 1
        if faults.slow_factor > 1:
            self.counters.faults["slow_host"] += 1
        host = Host(state, info, asyncssh.generate_private_key("ssh-ed25519"), time.monotonic())
        self.hosts[info.id] = host
        self.by_public[info.public_ip] = host
        if not faults.never_boots:
            delay = jittered(self.cfg.boot_delay, self.cfg.latency_jitter, rng)
            host.boot_task = asyncio.get_running_loop().create_task(self._boot(host, delay))

    async def _boot(self, host: Host, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            host.sshd = HostSshd(
                host.state,
                self,
                host.host_key,
                host.info.public_key,
                self.cfg.ssh_user or host.state.login_user,
                self.ssh_port,
                lambda ip: self.admits_groups(tuple(host.state.groups), 22, ip),
                self.cfg.drop_hold_seconds,
                self.commands,
            )
        except OSError as exc:
            log.error(
                "cannot listen for %s on %s:%s: %s",
                host.info.id,
                host.state.public_ip,
                self.ssh_port,
                exc,
            )
            return
        host.state.booted_at = time.monotonic()
        host.booted = True

    async def _retire(self, host: Host) -> None:
        self.by_public.pop(host.state.public_ip, None)
        if host.boot_task:
            host.boot_task.cancel()
        if host.sshd:
            await host.sshd.close()
        await self.stop_tomcat(host.state)

    def _apply_databases(self, dbs: list[DatabaseInfo]) -> None:
        self.databases = {db.address.lower(): db for db in dbs}
        # a DB deleted and created again under the same identifier (a deployment's next
        # life) is new: forget the ids that are gone
        self.db_seen &= {db.id for db in dbs}
        for db in dbs:
            if db.id not in self.db_seen and db.status == "creating":
                self.db_seen.add(db.id)
                self.loop.create_task(self._make_available(db.id))

    async def _make_available(self, db_id: str) -> None:
        from .moto_patches import mark_database_available

        await asyncio.sleep(self.cfg.rds_create_seconds)
        await self.moto_call(lambda: mark_database_available(self.cfg.region, db_id))

    async def close(self) -> None:
        for host in list(self.hosts.values()):
            await self._retire(host)
        self.hosts.clear()
        await self.balancers.close()
        for env in self.environments.values():
            if env.app_server:
                env.app_server.close()

    # -- Elastic Beanstalk ---------------------------------------------------------------
    async def _apply_environments(self, snap: Snapshot) -> None:
        for info in snap.environments:
            env = self.environments.get(info.name)
            if env is None and info.status == "Launching":
                env = self.environments[info.name] = Environment(info.name, self._allocate())
                asyncio.get_running_loop().create_task(self._launch_environment(env))

    async def _launch_environment(self, env: Environment) -> None:
        await asyncio.sleep(self.cfg.eb_launch_seconds)
        if self.environments.get(env.name) is not env:
            return  # terminated while it was launching: nothing to provision

        async def page(req: web.BaseRequest) -> web.StreamResponse:
            env.requests += 1
            return _tomcat_page(f"Elastic Beanstalk environment {env.name}")

        env.app_server = await httpnet.serve(env.address, TOMCAT_PORT, page)
        from .beanstalk import provision_environment

        lb_arn, tg_arn = await self.moto_call(
            lambda: provision_environment(self.cfg.region, env.name, env.address, TOMCAT_PORT)
        )
        if not lb_arn:  # terminated meanwhile
            env.app_server.close()
            return
        env.lb_arn, env.tg_arn = lb_arn, tg_arn

    def eb_resources(self, env: Any) -> dict[str, Any]:
        """Called under the API lock: what Beanstalk built for the environment."""
        from .beanstalk import describe

        return describe(self.cfg.region, env)

    def eb_terminate(self, env: Any) -> None:
        """Called under the API lock: remove what Beanstalk built, mark it terminated."""
        from .beanstalk import release_environment

        local = self.environments.pop(env.environment_name, None)
        release_environment(self.cfg.region, env.environment_id)
        if local and local.app_server:
            self.loop.call_soon_threadsafe(local.app_server.close)
        env.status = "Terminated"

    # -- names ----------------------------------------------------------------------------
    def names(self) -> dict[str, str]:
        """Every DNS name the sandbox serves -> its loopback address."""
        out = {}
        for bal in self.balancers.balancers.values():
            out[bal.info.dns_name.lower()] = bal.address
        for env in self.environments.values():
            bal_addr = self._env_balancer_address(env)
            out[f"{env.name}.{self.cfg.region}.elasticbeanstalk.com".lower()] = (
                bal_addr or env.address
            )
        for addr in self.databases:
            out[addr] = "rds:" + addr
        for name, _kind, target in self.records:  # Route53 aliases and CNAMEs to served names
            resolved = out.get(target.rstrip(".").lower())
            if resolved:
                out.setdefault(name, resolved)
        return out

    def _env_balancer_address(self, env: Environment) -> str | None:
        bal = self.balancers.balancers.get(env.lb_arn or "")
        return bal.address if bal else None

    def resolve(self, name: str) -> str | None:
        name = name.lower().rstrip(".")
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name)
            return name
        if name == "localhost":
            return "127.0.0.1"
        return self.names().get(name)

    def target_address(self, target_id: str) -> str | None:
        host = self.hosts.get(target_id)
        if host is not None:
            return host.state.public_ip
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(target_id)
            return target_id
        return None

    # -- Network protocol (used by the emulated shell) ----------------------------------
    async def http_get(
        self, host: HostState, url: str, *, verify_tls: bool, timeout: float
    ) -> HttpResult:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        name = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        if name in ("localhost", "127.0.0.1"):
            name_address: str | None = host.public_ip  # the host's own loopback
        else:
            name_address = self.resolve(name)
        if name_address is None or name_address.startswith("rds:"):
            return HttpResult(None, error="resolve")
        if ipaddress.ip_address(name_address) in self.service_net:
            port = self.lb_ports.bound(port)  # the sandbox's DNS carries the balancer's port
        ctx = None
        if https:
            ctx = self.ca.client_context() if verify_tls else _insecure_context()
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            resp = await httpnet.request(
                name_address,
                port,
                "GET",
                path,
                ssl=ctx,
                server_hostname=name if https else None,
                local_address=host.public_ip,
                timeout=timeout,
            )
        except httpnet.HttpError as exc:
            return HttpResult(None, error=exc.kind if exc.kind != "reset" else "refused")
        return HttpResult(resp.status, resp.body, dict(resp.headers))

    async def mysql_login(
        self, host: HostState, endpoint: str, port: int, user: str, password: str, timeout: float
    ) -> str | None:
        db = self.databases.get(endpoint.lower().rstrip("."))
        if db is None:
            return f"ERROR 2005 (HY000): Unknown MySQL server host '{endpoint}' (-2)"
        source = Source((host.public_ip, host.private_ip), frozenset(host.groups))
        reachable = (
            db.status == "available"
            and port == db.port
            and allowed(self.rules, list(db.groups), port, source)
        )
        if not reachable:
            await asyncio.sleep(timeout)
            return f"ERROR 2003 (HY000): Can't connect to MySQL server on '{endpoint}:{port}' (110)"
        if user != db.user or password != db.password:
            using = "YES" if password else "NO"
            return (
                f"ERROR 1045 (28000): Access denied for user '{user}'@'{host.private_ip}' "
                f"(using password: {using})"
            )
        return None

    async def start_tomcat(self, host: HostState) -> None:
        local = self.hosts.get(host.instance_id)
        if local is None or local.tomcat is not None:
            return

        async def page(req: web.BaseRequest) -> web.StreamResponse:
            host.http_requests += 1
            if not serves_root(host):  # tomcat10 without its ROOT webapp (tomcat10-webapps)
                return _tomcat_404(req.path)
            return _tomcat_page(
                f"instance {host.instance_id}",
                instance_id=host.instance_id,
                version="10.1.28" if host.os == "al2023" else "9.0.58",
            )

        local.tomcat = await httpnet.serve(
            host.public_ip,
            TOMCAT_PORT,
            page,
            # the host's own address is its loopback (`curl localhost`): no group applies
            admit=lambda ip: (
                ip == host.public_ip or self.admits_groups(tuple(host.groups), TOMCAT_PORT, ip)
            ),
            hold_seconds=self.cfg.drop_hold_seconds,
        )

    async def stop_tomcat(self, host: HostState) -> None:
        local = self.hosts.get(host.instance_id)
        if local is not None and local.tomcat is not None:
            local.tomcat.close()
            local.tomcat = None

    # -- console output (GetConsoleOutput) -------------------------------------------------
    def console_output(self, instance_id: str) -> str:
        host = self.hosts.get(instance_id)
        if host is None or not host.booted:
            return ""
        key = host.host_key
        fp = key.get_fingerprint("sha256")
        pub = key.export_public_key("openssh").decode().split()
        line = f"{pub[0]} {pub[1]} root@{host.hostname}"
        kernel, cloud_init = _CONSOLE_VERSIONS.get(host.state.os, _CONSOLE_VERSIONS["ubuntu-22.04"])
        return "\n".join(
            [
                f"[    0.000000] Linux version {kernel}",
                f"Cloud-init v. {cloud_init} running 'modules:final'",
                "ec2: #############################################################",
                "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
                f"ec2: 256 {fp} root@{host.hostname} (ED25519)",
                "ec2: -----END SSH HOST KEY FINGERPRINTS-----",
                "ec2: #############################################################",
                "-----BEGIN SSH HOST KEY KEYS-----",
                line,
                "-----END SSH HOST KEY KEYS-----",
                f"Cloud-init v. {cloud_init} finished. Datasource DataSourceEc2Local.",
                "",
            ]
        )

    # -- state JSON ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        hosts = []
        for host in self.hosts.values():
            s = host.state
            hosts.append(
                {
                    "instance_id": s.instance_id,
                    "public_ip": s.public_ip,
                    "private_ip": s.private_ip,
                    "booted": host.booted,
                    "never_boots": s.faults.never_boots,
                    "slow_factor": s.faults.slow_factor,
                    "ssh_logins": s.ssh_logins,
                    "commands_run": s.commands_run,
                    "packages": sorted(s.packages),
                    "tomcat": "running"
                    if host.tomcat is not None
                    else ("installed" if {"tomcat9", "tomcat10"} & s.packages else "absent"),
                    "os": s.os,
                    "image_id": host.info.image_id,
                    "http_requests": s.http_requests,
                }
            )
        return {
            "hosts": hosts,
            "load_balancers": self.balancers.state(),
            "environments": {
                name: {
                    "address": env.address,
                    "load_balancer": env.lb_arn,
                    "requests": env.requests,
                }
                for name, env in self.environments.items()
            },
            "databases": {
                db.address: {"id": db.id, "status": db.status, "port": db.port}
                for db in self.databases.values()
            },
            "names": self.names(),
            "lb_ports": self.lb_ports.table(),
            "faults": dict(self.counters.faults),
        }


# what the console's first lines name, per system: kernel, cloud-init version
_CONSOLE_VERSIONS = {
    "ubuntu-22.04": ("5.15.0-1051-aws (buildd@lcy02-amd64-011)", "23.3.3-0ubuntu0~22.04.1"),
    "al2023": ("6.1.115-126.197.amzn2023.x86_64 (mockbuild@ip-10-0-34-61)", "22.2.2"),
}


def _tomcat_page(
    title: str, instance_id: str | None = None, version: str = "9.0.58"
) -> web.Response:
    body = (
        "<!DOCTYPE html>\n<html><head><title>Apache Tomcat</title></head><body>\n"
        f"<h1>It works !</h1>\n<p>Apache Tomcat/{version} on {title}</p>\n"
        + (f'<p id="instance-id">{instance_id}</p>\n' if instance_id else "")
        + "</body></html>\n"
    ).encode()
    headers = {"Content-Type": "text/html;charset=UTF-8", "Server": "Apache-Coyote/1.1"}
    if instance_id:
        headers["X-Instance-Id"] = instance_id
    return httpnet.response(200, headers, body)


def _tomcat_404(path: str) -> web.Response:
    body = (
        '<!doctype html><html lang="en"><head><title>HTTP Status 404 – Not Found</title>'
        "</head><body><h1>HTTP Status 404 – Not Found</h1><p><b>Message</b> The requested "
        f"resource [{path}] is not available</p><h3>Apache Tomcat/10.1.28</h3></body></html>"
    ).encode()
    return httpnet.response(404, {"Content-Type": "text/html;charset=utf-8"}, body)


def _insecure_context() -> Any:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
