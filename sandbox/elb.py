"""Load balancers on loopback: one real listener per ELBv2 listener, real health checks.

Each load balancer gets an address from the service range. A listener forwards requests
round-robin to the healthy targets of its target groups (502 when a target fails, 503 when
none is healthy); a deregistered target drains (`sandbox/draining.py`): no new requests, the
ones in flight finish. HTTPS listeners terminate TLS with a certificate the local CA issues for
the ACM certificate's domains, and only while that certificate is ISSUED: an HTTPS
listener without an issued certificate does not listen. Health checks are real HTTP GETs
from the balancer's address, so target security groups apply to them as to any other traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

import sandbox.httpnet as httpnet

from .ports import PortMap
from .snapshot import ListenerInfo, LoadBalancerInfo, TargetGroupInfo
from .tls import LocalCA

log = logging.getLogger("sandbox.elb")

HEALTHY_THRESHOLD = 1  # compressed from AWS's 5 so the sandbox converges in seconds
UNHEALTHY_THRESHOLD = 2


@dataclass
class TargetHealth:
    state: str = "initial"
    reason: str = "Elb.RegistrationInProgress"
    description: str = "Target registration is in progress"
    ok_streak: int = 0
    fail_streak: int = 0

    def record(self, ok: bool, reason: str, description: str) -> None:
        if self.state == "draining":  # no health checks while it drains
            return
        if ok:
            self.ok_streak, self.fail_streak = self.ok_streak + 1, 0
            if self.ok_streak >= HEALTHY_THRESHOLD:
                self.state, self.reason, self.description = "healthy", "", ""
        else:
            self.ok_streak, self.fail_streak = 0, self.fail_streak + 1
            if self.fail_streak >= UNHEALTHY_THRESHOLD:
                self.state, self.reason, self.description = "unhealthy", reason, description


@dataclass
class Balancer:
    info: LoadBalancerInfo
    address: str
    servers: dict[str, asyncio.AbstractServer] = field(default_factory=dict)  # listener arn
    requests: int = 0
    listener_info: dict[str, ListenerInfo] = field(default_factory=dict)
    tls_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # listener arn


class Balancers:
    """Keeps the loopback listeners in step with ELBv2's load balancers and listeners."""

    def __init__(
        self,
        ca: LocalCA,
        allocate: Callable[[], str],
        target_address: Callable[[str], str | None],
        admit: Callable[[tuple[str, ...], int, str], bool],
        hold_seconds: float,
        ports: PortMap | None = None,
    ) -> None:
        self.ports = ports or PortMap(None)
        self.ca = ca
        self.allocate = allocate
        self.target_address = target_address
        self.admit = admit
        self.hold_seconds = hold_seconds
        self.balancers: dict[str, Balancer] = {}
        self.target_groups: dict[str, TargetGroupInfo] = {}
        self.health: dict[tuple[str, str, int], TargetHealth] = {}
        self.certificates: dict[str, list[str]] = {}
        self.rr = itertools.count()
        # (monotonic time, target group arn, target id, new state): every change of a
        # target's state, "gone" once it left the group (tests measure service from it)
        self.transitions: deque[tuple[float, str, str, str]] = deque(maxlen=100_000)

    def _note(self, key: tuple[str, str, int], state: str) -> None:
        self.transitions.append((time.monotonic(), key[0], key[1], state))

    def target_changed(self, tg_arn: str, target_id: str, port: int, what: str) -> None:
        """Deregistered (`draining`: no new requests from now on, not from the next
        snapshot) or registered again (`initial`). Called from the API's threads: the
        entry is replaced, never changed, so a health check in flight writes to the old
        one."""
        key = (tg_arn, target_id, port)
        h = TargetHealth()
        if what == "draining":
            h.state, h.reason = "draining", "Target.DeregistrationInProgress"
            h.description = "Target deregistration is in progress"
        self.health[key] = h
        self._note(key, h.state)

    # -- reconciliation -------------------------------------------------------------
    async def apply(
        self,
        lbs: list[LoadBalancerInfo],
        tgs: dict[str, TargetGroupInfo],
        certificates: dict[str, list[str]],
    ) -> None:
        self.target_groups = tgs
        self.certificates = certificates
        seen = {lb.arn for lb in lbs}
        for arn in list(self.balancers):
            if arn not in seen:
                await self._close(self.balancers.pop(arn))
        for lb in lbs:
            bal = self.balancers.get(lb.arn)
            if bal is None:
                bal = self.balancers[lb.arn] = Balancer(lb, self.allocate())
            bal.info = lb
            wanted = {li.arn: li for li in lb.listeners}
            for arn in list(bal.servers):
                li = wanted.get(arn)
                if (
                    li is None
                    or li != bal.listener_info.get(arn)
                    or self._tls_names(li) != bal.tls_names.get(arn)
                ):
                    srv = bal.servers.pop(arn)
                    srv.close()
            for arn, li in wanted.items():
                if arn not in bal.servers:
                    with contextlib.suppress(OSError):
                        listening = await self._listen(bal, li)
                        if listening is not None:
                            bal.servers[arn] = listening
                            bal.listener_info[arn] = li
                            bal.tls_names[arn] = self._tls_names(li)
        live = {(tg.arn, tid, port) for tg in tgs.values() for tid, port in tg.targets}
        for key in list(self.health):
            if key not in live:
                del self.health[key]
                self._note(key, "gone")

    def _tls_names(self, li: ListenerInfo) -> tuple[str, ...]:
        """The names of the listener's ISSUED certificates (none for HTTP)."""
        names: list[str] = []
        for arn in li.certificate_arns if li.protocol == "HTTPS" else ():
            names += self.certificates.get(arn, [])  # holds ISSUED certificates only
        return tuple(names)

    async def _listen(self, bal: Balancer, li: ListenerInfo) -> asyncio.AbstractServer | None:
        ctx = None
        if li.protocol == "HTTPS":
            names = self._tls_names(li)
            if not names:
                log.warning("listener %s: no ISSUED certificate, not serving TLS", li.arn)
                return None
            ctx = self.ca.server_context(list(names))

        async def handle(req: web.BaseRequest) -> web.StreamResponse:
            return await self._forward(bal, li, req)

        return await httpnet.serve(
            bal.address,
            self.ports.bound(li.port),  # 80 -> base+80 when low ports cannot be bound
            handle,
            admit=lambda ip: self.admit(bal.info.groups, li.port, ip),
            hold_seconds=self.hold_seconds,
            ssl=ctx,
        )

    async def _close(self, bal: Balancer) -> None:
        for srv in bal.servers.values():
            srv.close()
        bal.servers.clear()

    async def close(self) -> None:
        for bal in self.balancers.values():
            await self._close(bal)

    # -- traffic ----------------------------------------------------------------------
    def healthy_targets(self, li: ListenerInfo) -> list[tuple[str, int]]:
        out = []
        for tg_arn in li.target_group_arns:
            tg = self.target_groups.get(tg_arn)
            for tid, port in tg.targets if tg else ():
                h = self.health.get((tg_arn, tid, port))
                if h and h.state == "healthy":
                    out.append((tid, port))
        return out

    async def _forward(
        self, bal: Balancer, li: ListenerInfo, req: web.BaseRequest
    ) -> web.StreamResponse:
        bal.requests += 1
        targets = self.healthy_targets(li)
        if not targets:
            return _error(503, "Service Temporarily Unavailable")
        tid, port = targets[next(self.rr) % len(targets)]
        address = self.target_address(tid)
        if address is None:
            return _error(502, "Bad Gateway")
        proto = "https" if li.protocol == "HTTPS" else "http"
        try:
            return await httpnet.proxy(
                req,
                address,
                port,
                local_address=bal.address,
                timeout=10.0,
                extra_headers={"X-Forwarded-Proto": proto, "X-Forwarded-Port": str(li.port)},
            )
        except httpnet.HttpError as exc:
            return _error(504 if exc.kind == "timeout" else 502, "Bad Gateway")

    # -- health checks ----------------------------------------------------------------
    def _source_for(self, tg_arn: str) -> str | None:
        for bal in self.balancers.values():
            for li in bal.info.listeners:
                if tg_arn in li.target_group_arns:
                    return bal.address
        return None

    async def check_all(self, timeout: float) -> None:
        jobs = []
        for tg in list(self.target_groups.values()):
            source = self._source_for(tg.arn)
            for tid, port in tg.targets:
                key = (tg.arn, tid, port)
                if key not in self.health:
                    self.health[key] = TargetHealth()
                    self._note(key, "initial")
                h = self.health[key]
                if h.state == "draining":
                    continue
                if source is None:
                    h.state, h.reason = "unused", "Target.NotInUse"
                    h.description = (
                        "Target group is not configured to receive traffic from the load balancer"
                    )
                    continue
                jobs.append(self._checked(key, self._check(tg, tid, port, source, h, timeout)))
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)

    async def _checked(self, key: tuple[str, str, int], check: Any) -> None:
        """`check`, noting the target's new state if it changed (and is still current)."""
        h = self.health.get(key)
        before = h.state if h else None
        await check
        if h is not None and self.health.get(key) is h and h.state != before:
            self._note(key, h.state)

    async def _check(
        self,
        tg: TargetGroupInfo,
        tid: str,
        port: int,
        source: str,
        h: TargetHealth,
        timeout: float,
    ) -> None:
        address = self.target_address(tid)
        hc_port = port if tg.health_port == "traffic-port" else int(tg.health_port)
        if address is None:
            h.record(False, "Target.FailedHealthChecks", "Health checks failed")
            return
        try:
            resp = await httpnet.request(
                address, hc_port, "GET", tg.health_path, local_address=source, timeout=timeout
            )
        except httpnet.HttpError as exc:
            reason = "Target.Timeout" if exc.kind == "timeout" else "Target.FailedHealthChecks"
            desc = "Request timed out" if exc.kind == "timeout" else "Health checks failed"
            h.record(False, reason, desc)
            return
        if resp.status == 200:
            h.record(True, "", "")
        else:
            h.record(
                False,
                "Target.ResponseCodeMismatch",
                f"Health checks failed with these codes: [{resp.status}]",
            )

    def lookup(self, tg_arn: str, target_id: str, port: int) -> tuple[str, str, str]:
        h = self.health.get((tg_arn, target_id, port))
        if h is None:
            return TargetHealth().state, TargetHealth().reason, TargetHealth().description
        return h.state, h.reason, h.description

    def state(self) -> dict[str, Any]:
        return {
            bal.info.dns_name: {
                "arn": bal.info.arn,
                "address": bal.address,
                "listeners": [
                    {
                        "port": li.port,
                        "protocol": li.protocol,
                        "bound_port": self.ports.bound(li.port),
                        "listening": li.arn in bal.servers,
                    }
                    for li in bal.info.listeners
                ],
                "requests": bal.requests,
            }
            for bal in self.balancers.values()
        }


def _error(status: int, text: str) -> web.Response:
    body = f"<html><body><h1>{status} {text}</h1></body></html>\n".encode()
    return httpnet.response(status, {"Content-Type": "text/html", "Server": "awselb/2.0"}, body)
