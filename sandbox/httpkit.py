"""A minimal HTTP/1.1 server, client and reverse proxy on asyncio streams.

Built for the sandbox's emulated hosts and load balancers: one event loop serves many
listeners, so a connection costs one small task and no threads. The server speaks
keep-alive and Content-Length framing; the client does one request per connection and
turns every failure into `HttpError` with a short `kind`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from ssl import SSLContext, SSLError

log = logging.getLogger(__name__)

SERVER_NAME = "tomcat-fleet-sandbox"
IDLE_SECONDS = 15.0  # a keep-alive connection must start its next request within this
MAX_HEADERS = 100
MAX_BODY = 16 * 1024 * 1024
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
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    peer: tuple[str, int]
    local: tuple[str, int]


@dataclass
class Response:
    status: int = 200
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


class _Malformed(Exception):
    """The peer sent something that is not HTTP/1.x; `status` is what a server answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[Request], Awaitable[Response]]

# ---------------------------------------------------------------- shared parsing


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError as exc:  # StreamReader turns an over-long line into ValueError
        raise _Malformed("line too long", 431) from exc


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = await _read_line(reader)
        if not line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(line, None)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        name = name.lower()
        if not sep or not name or name != name.strip():
            raise _Malformed(f"bad header line {line[:80]!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise _Malformed("too many headers", 431)


def _content_length(headers: dict[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise _Malformed(f"bad Content-Length {raw!r}")
    length = int(raw)
    if length > MAX_BODY:
        raise _Malformed("body too large", 413)
    return length


def _is_chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await _read_line(reader)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _Malformed(f"bad chunk size {line[:40]!r}") from exc
        if size == 0:
            await _read_headers(reader)  # trailers, discarded
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise _Malformed("body too large", 413)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after the chunk


def _format_head(first_line: str, headers: dict[str, str]) -> bytes:
    lines = [first_line, *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _without(headers: dict[str, str], names: frozenset[str]) -> dict[str, str]:
    """`headers` minus `names` and anything the Connection header lists (case-insensitive)."""
    listed = {
        token.strip().lower()
        for key, value in headers.items()
        if key.lower() == "connection"
        for token in value.split(",")
    }
    drop = names | listed
    return {k: v for k, v in headers.items() if k.lower() not in drop}


def _addr(info: object) -> tuple[str, int]:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return ("", 0)


async def _close(writer: asyncio.StreamWriter, wait: float = 1.0) -> None:
    writer.close()
    with suppress(Exception):
        async with asyncio.timeout(wait):
            await writer.wait_closed()


# ---------------------------------------------------------------- server


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    admit: Callable[[str], bool] | None = None,
    hold_seconds: float = 20.0,
    ssl: SSLContext | None = None,
) -> asyncio.Server:
    """Listen on host:port and answer each request with `handler`.

    A connection whose peer address `admit` rejects is held open silently for
    `hold_seconds` and then closed, as if its packets were dropped.
    """

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _connection(reader, writer, handler, admit, hold_seconds)

    return await asyncio.start_server(
        on_connect,
        host,
        port,
        reuse_address=True,
        ssl=ssl,
        ssl_handshake_timeout=IDLE_SECONDS if ssl is not None else None,
    )


async def _connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    admit: Callable[[str], bool] | None,
    hold_seconds: float,
) -> None:
    peer = _addr(writer.get_extra_info("peername"))
    local = _addr(writer.get_extra_info("sockname"))
    try:
        if admit is not None and not admit(peer[0]):
            await asyncio.sleep(hold_seconds)
        else:
            await _serve_requests(reader, writer, handler, peer, local)
    except Exception as exc:
        log.debug("connection from %s:%s ended: %r", peer[0], peer[1], exc)
    finally:
        await _close(writer)


async def _serve_requests(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    peer: tuple[str, int],
    local: tuple[str, int],
) -> None:
    while True:
        try:
            async with asyncio.timeout(IDLE_SECONDS):
                req = await _read_request(reader, writer, peer, local)
        except _Malformed as exc:
            await _write_response(writer, _error(exc.status, str(exc)), "GET", keep_alive=False)
            return
        except TimeoutError:
            return
        if req is None:
            return
        resp, handled = await _call_handler(handler, req)
        keep_alive = handled and _wants_keep_alive(req)
        await _write_response(writer, resp, req.method, keep_alive=keep_alive)
        if not keep_alive:
            return


async def _call_handler(handler: Handler, req: Request) -> tuple[Response, bool]:
    """The handler's response and True, or a 500 and False when the handler raised."""
    try:
        return await handler(req), True
    except Exception:
        log.debug("handler failed for %s %s", req.method, req.path, exc_info=True)
        return _error(500, "internal server error"), False


def _error(status: int, message: str) -> Response:
    body = f"{status} {message}\n".encode()
    return Response(status, {"Content-Type": "text/plain; charset=utf-8"}, body)


def _wants_keep_alive(req: Request) -> bool:
    tokens = {t.strip().lower() for t in req.headers.get("connection", "").split(",")}
    return req.version == "HTTP/1.1" and "close" not in tokens


async def _read_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peer: tuple[str, int],
    local: tuple[str, int],
) -> Request | None:
    """The next request, or None when the client closed the connection between requests."""
    line = await _read_line(reader)
    while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests
        line = await _read_line(reader)
    if not line:
        return None
    method, path, version = _parse_request_line(line)
    headers = await _read_headers(reader)
    if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_request_body(reader, headers)
    return Request(method, path, version, headers, body, peer, local)


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _Malformed(f"bad request line {line[:80]!r}")
    method, path, version = parts
    return method.upper(), path, version


async def _read_request_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if _is_chunked(headers):
        return await _read_chunked(reader)
    length = _content_length(headers)
    return await reader.readexactly(length) if length else b""


async def _write_response(
    writer: asyncio.StreamWriter, resp: Response, method: str, *, keep_alive: bool
) -> None:
    head_only = method == "HEAD" or resp.status in _NO_BODY_STATUSES or resp.status < 200
    headers = _response_headers(resp, head_only=head_only, keep_alive=keep_alive)
    status_line = f"HTTP/1.1 {resp.status} {resp.reason}".rstrip()
    writer.write(_format_head(status_line, headers))
    if not head_only and resp.body:
        writer.write(resp.body)
    async with asyncio.timeout(IDLE_SECONDS):
        await writer.drain()


def _response_headers(resp: Response, *, head_only: bool, keep_alive: bool) -> dict[str, str]:
    headers = _without(resp.headers, HOP_BY_HOP)
    given = {k.lower(): k for k in headers}
    if not head_only or "content-length" not in given:
        headers.pop(given.get("content-length", ""), None)
        if resp.status not in _NO_BODY_STATUSES and resp.status >= 200:
            headers["Content-Length"] = str(len(resp.body))
    if "server" not in given:
        headers["Server"] = SERVER_NAME
    if "date" not in given:
        headers["Date"] = email.utils.formatdate(usegmt=True)
    if not keep_alive:
        headers["Connection"] = "close"
    return headers


# ---------------------------------------------------------------- client


async def request(
    address: str,
    port: int,
    method: str = "GET",
    path: str = "/",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    ssl: SSLContext | None = None,
    server_hostname: str | None = None,
    local_address: str | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a fresh connection; the whole exchange must finish within `timeout`.

    Response header names are lower-case. Raises `HttpError` on any failure.
    """
    method = method.upper()
    host = server_hostname or address
    wire = _encode_request(method, path, host, headers or {}, body)
    writer: asyncio.StreamWriter | None = None
    ok = False
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=ssl,
                server_hostname=server_hostname if ssl is not None else None,
                local_addr=(local_address, 0) if local_address else None,
            )
            writer.write(wire)
            await writer.drain()
            resp = await _read_response(reader, method)
            ok = True
            return resp
    except Exception as exc:
        raise _client_error(exc, address, port, timeout) from exc
    finally:
        if writer is not None:
            if ok:
                await _close(writer)
            else:
                writer.transport.abort()


def _client_error(exc: Exception, address: str, port: int, timeout: float) -> HttpError:
    where = f"{address}:{port}"
    if isinstance(exc, SSLError):
        return HttpError("tls", f"{where}: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return HttpError("refused", f"{where}: connection refused")
    if isinstance(exc, TimeoutError):
        return HttpError("timeout", f"{where}: no complete response within {timeout:g}s")
    if isinstance(exc, asyncio.IncompleteReadError):
        return HttpError("reset", f"{where}: connection closed before a full response")
    if isinstance(exc, _Malformed):
        return HttpError("reset", f"{where}: malformed response: {exc}")
    if isinstance(exc, OSError):
        return HttpError("reset", f"{where}: {exc.strerror or exc!r}")
    raise exc


def _encode_request(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes
) -> bytes:
    out = _without(headers, HOP_BY_HOP | {"content-length"})
    if not any(k.lower() == "host" for k in out):
        out = {"Host": host, **out}
    if body or method in ("POST", "PUT", "PATCH"):
        out["Content-Length"] = str(len(body))
    out["Connection"] = "close"
    return _format_head(f"{method} {path} HTTP/1.1", out) + body


async def _read_response(reader: asyncio.StreamReader, method: str) -> Response:
    while True:
        status = _parse_status_line(await _read_line(reader))
        headers = await _read_headers(reader)
        if not 100 <= status < 200:
            break  # skip interim responses such as 100 Continue
    if method == "HEAD" or status in _NO_BODY_STATUSES:
        return Response(status, headers, b"")
    return Response(status, headers, await _read_response_body(reader, headers))


def _parse_status_line(line: bytes) -> int:
    if not line:
        raise asyncio.IncompleteReadError(line, None)
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise _Malformed(f"bad status line {line[:80]!r}")
    return int(parts[1])


async def _read_response_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if _is_chunked(headers):
        return await _read_chunked(reader)
    length = _content_length(headers)
    if length is None:
        return await reader.read()  # body runs to EOF
    return await reader.readexactly(length)


# ---------------------------------------------------------------- proxy


async def proxy(
    req: Request,
    address: str,
    port: int,
    *,
    local_address: str | None,
    timeout: float,
    extra_headers: dict[str, str],
) -> Response:
    """Forward `req` to address:port like a load balancer; errors propagate as HttpError."""
    headers = _without(req.headers, HOP_BY_HOP | {"content-length"})
    prior = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{prior}, {req.peer[0]}" if prior else req.peer[0]
    headers.update({k.lower(): v for k, v in extra_headers.items()})
    resp = await request(
        address,
        port,
        req.method,
        req.path,
        headers=headers,
        body=req.body,
        local_address=local_address,
        timeout=timeout,
    )
    resp.headers = _without(resp.headers, HOP_BY_HOP)
    return resp
