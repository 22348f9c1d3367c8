"""HTTP on the sandbox's loopback network, on aiohttp: servers, a client and a proxy.

- `serve` listens with aiohttp's low-level server (`aiohttp.web.Server`) behind a gate that
  applies security groups: a connection whose peer the gate refuses is held silently and
  then dropped, like packets a security group drops (before any TLS handshake). HTTPS
  listeners start TLS only for admitted connections. Responses are HTTP/1.1, as Tomcat's
  and ELB's are, whatever version the client spoke.
- `request` is one exchange on a fresh connection (aiohttp's client), from a chosen local
  address; every failure becomes `HttpError` with a short `kind`.
- `proxy` forwards a request the way a load balancer does (X-Forwarded-For and friends).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http import HttpVersion11
from yarl import URL

log = logging.getLogger(__name__)

IDLE_SECONDS = 15.0  # keep-alive idle time and TLS handshake limit
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass
class Reply:
    """A response the client received; header names lower-case."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""


class HttpError(Exception):
    """A failed client exchange; `kind` is "refused", "timeout", "tls" or "reset"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def peer_of(req: web.BaseRequest) -> tuple[str, int]:
    return _addr(req.transport.get_extra_info("peername") if req.transport else None)


def local_of(req: web.BaseRequest) -> tuple[str, int]:
    return _addr(req.transport.get_extra_info("sockname") if req.transport else None)


def _addr(info: object) -> tuple[str, int]:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return ("", 0)


def without_hop_by_hop(headers: Mapping[str, str], extra: frozenset[str] = frozenset()) -> dict:
    """`headers` minus hop-by-hop ones, `extra` and what Connection lists (case-insensitive)."""
    listed = {
        token.strip().lower()
        for key, value in headers.items()
        if key.lower() == "connection"
        for token in value.split(",")
    }
    drop = HOP_BY_HOP | extra | listed
    out: dict[str, str] = {}
    for key, value in headers.items():
        if key.lower() not in drop:
            out[key] = f"{out[key]}, {value}" if key in out else value
    return out


# ---------------------------------------------------------------- server


class _Gate(asyncio.Protocol):
    """Admits a connection (then TLS, then aiohttp) or holds it silently and drops it."""

    def __init__(
        self,
        server: web.Server,
        admit: Callable[[str], bool] | None,
        hold_seconds: float,
        tls: _ssl.SSLContext | None,
    ) -> None:
        self.server = server
        self.admit = admit
        self.hold_seconds = hold_seconds
        self.tls = tls
        self.inner: asyncio.Protocol | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.early: list[bytes] = []  # application data TLS decrypted before the hand-over
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        loop = asyncio.get_running_loop()
        peer = _addr(transport.get_extra_info("peername"))
        if self.admit is not None and not self.admit(peer[0]):
            self.timer = loop.call_later(self.hold_seconds, transport.abort)
            return
        self.admitted = True
        if self.tls is None:
            self._hand_over(transport)
            return
        transport.pause_reading()  # the ClientHello waits for start_tls
        self.task = loop.create_task(self._start_tls(loop, transport))

    async def _start_tls(self, loop: asyncio.AbstractEventLoop, raw: asyncio.Transport) -> None:
        assert self.tls is not None
        try:
            tls = await loop.start_tls(
                raw, self, self.tls, server_side=True, ssl_handshake_timeout=IDLE_SECONDS
            )
        except (OSError, _ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.debug("TLS handshake failed: %r", exc)
            raw.abort()
            return
        if tls is None:
            raw.abort()
            return
        self._hand_over(tls)

    def _hand_over(self, transport: asyncio.BaseTransport) -> None:
        self.inner = self.server()
        self.inner.connection_made(transport)
        for data in self.early:
            self.inner.data_received(data)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
        elif self.admitted:
            self.early.append(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.inner is not None:
            self.inner.connection_lost(exc)


def _as_http11(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
    """aiohttp answers in the client's version; Tomcat and ELB answer HTTP/1.1."""
    loop = asyncio.get_running_loop()
    return web.BaseRequest(
        message._replace(version=HttpVersion11), payload, protocol, writer, task, loop
    )


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    admit: Callable[[str], bool] | None = None,
    hold_seconds: float = 20.0,
    ssl: _ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Listen on host:port and answer each request with `handler` (aiohttp's server).

    A connection whose peer address `admit` rejects is held open silently for
    `hold_seconds` and then closed, as if its packets were dropped.
    """
    server = web.Server(
        handler,
        request_factory=_as_http11,
        access_log=None,
        keepalive_timeout=IDLE_SECONDS,
    )
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Gate(server, admit, hold_seconds, ssl), host, port, reuse_address=True
    )


# ---------------------------------------------------------------- client


async def request(
    address: str,
    port: int,
    method: str = "GET",
    path: str = "/",
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    local_address: str | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection; the whole exchange must finish within `timeout`.

    Response header names are lower-case. Raises `HttpError` on any failure.
    """
    method = method.upper()
    out = without_hop_by_hop(headers or {}, frozenset({"content-length"}))
    if not any(k.lower() == "host" for k in out):
        out["Host"] = server_hostname or address
    out["Connection"] = "close"
    scheme = "https" if ssl is not None else "http"
    url = URL(f"{scheme}://{address}:{port}{path}", encoded=True)
    connector = aiohttp.TCPConnector(
        ssl=ssl if ssl is not None else False,
        local_addr=(local_address, 0) if local_address else None,
        force_close=True,
    )
    try:
        async with asyncio.timeout(timeout):
            async with (
                aiohttp.ClientSession(
                    connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout()
                ) as session,
                session.request(
                    method,
                    url,
                    headers=out,
                    data=body if body or method in ("POST", "PUT", "PATCH") else None,
                    server_hostname=server_hostname if ssl is not None else None,
                    skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                    allow_redirects=False,
                ) as resp,
            ):
                data = await resp.read()
                lowered: dict[str, str] = {}
                for key, value in resp.headers.items():
                    k = key.lower()
                    lowered[k] = f"{lowered[k]}, {value}" if k in lowered else value
                return Reply(resp.status, lowered, data)
    except Exception as exc:
        raise _client_error(exc, address, port, timeout) from exc


def _client_error(exc: Exception, address: str, port: int, timeout: float) -> HttpError:
    where = f"{address}:{port}"
    if isinstance(exc, (aiohttp.ClientSSLError, _ssl.SSLError)):
        return HttpError("tls", f"{where}: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, ConnectionRefusedError
    ):
        return HttpError("refused", f"{where}: connection refused")
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return HttpError("timeout", f"{where}: no complete response within {timeout:g}s")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return HttpError("reset", f"{where}: {exc!r}")
    raise exc


# ---------------------------------------------------------------- proxy


async def proxy(
    req: web.BaseRequest,
    address: str,
    port: int,
    *,
    local_address: str | None,
    timeout: float,
    extra_headers: Mapping[str, str],
) -> web.Response:
    """Forward `req` to address:port like a load balancer; errors propagate as HttpError."""
    headers = {
        k.lower(): v
        for k, v in without_hop_by_hop(req.headers, frozenset({"content-length"})).items()
    }
    prior = headers.get("x-forwarded-for")
    peer = peer_of(req)[0]
    headers["x-forwarded-for"] = f"{prior}, {peer}" if prior else peer
    headers.update({k.lower(): v for k, v in extra_headers.items()})
    reply = await request(
        address,
        port,
        req.method,
        req.raw_path,
        headers=headers,
        body=await req.read(),
        local_address=local_address,
        timeout=timeout,
    )
    back = without_hop_by_hop(reply.headers, frozenset({"content-length"}))
    return web.Response(status=reply.status, headers=back, body=reply.body)


def response(status: int, headers: Mapping[str, str], body: bytes) -> web.Response:
    return web.Response(status=status, headers=dict(headers), body=body)
