"""Tests for sandbox.tls (LocalCA) and sandbox.httpnet (aiohttp server, client, proxy)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from sandbox.httpnet import HttpError, Reply, local_of, peer_of, proxy, request, serve
from sandbox.tls import LocalCA

DOMAIN = "www.sandbox.example.com"


Request = web.BaseRequest
Response = web.StreamResponse


async def echo(req: Request) -> Response:
    info = {
        "method": req.method,
        "path": req.path_qs,
        "version": f"HTTP/{req.version.major}.{req.version.minor}",
        "headers": {k.lower(): v for k, v in req.headers.items()},
        "body": (await req.read()).decode(),
        "peer": list(peer_of(req)),
        "local": list(local_of(req)),
    }
    return web.json_response(info)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def run_with_server(
    test: Callable[[int], Awaitable[Any]],
    handler: Callable[[Request], Awaitable[Response]] = echo,
    **kwargs: Any,
) -> Any:
    async def main() -> Any:
        server = await serve("127.0.0.1", 0, handler, **kwargs)
        try:
            return await test(port_of(server))
        finally:
            server.close()

    return asyncio.run(main())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- server + client


def test_get_with_request() -> None:
    async def test(port: int) -> Reply:
        return await request("127.0.0.1", port, "GET", "/a?b=1", headers={"X-Test": "yes"})

    resp = run_with_server(test)
    assert resp.status == 200
    assert resp.reason == "OK"
    assert resp.headers["server"]
    info = json.loads(resp.body)
    assert info["method"] == "GET"
    assert info["path"] == "/a?b=1"
    assert info["headers"]["x-test"] == "yes"
    assert info["headers"]["host"] == "127.0.0.1"
    assert info["headers"]["connection"] == "close"


def test_head_has_no_body() -> None:
    def blocking(port: int) -> tuple[int, str | None, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("HEAD", "/")
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.getheader("Content-Length"), data

    async def test(port: int) -> tuple[tuple[int, str | None, bytes], Reply]:
        stdlib = await asyncio.to_thread(blocking, port)
        ours = await request("127.0.0.1", port, "HEAD", "/")
        return stdlib, ours

    (status, length, data), ours = run_with_server(test)
    assert status == 200
    assert length is not None and int(length) > 0
    assert data == b""
    assert ours.status == 200 and ours.body == b""


def test_keep_alive_two_requests_one_connection() -> None:
    def blocking(port: int) -> list[dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        seen = []
        first_sock = None
        for i in range(2):
            conn.request("GET", f"/{i}")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Connection") is None
            seen.append(json.loads(resp.read()))
            first_sock = first_sock or conn.sock
            assert conn.sock is first_sock
        conn.close()
        return seen

    async def test(port: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(blocking, port)

    seen = run_with_server(test)
    assert [s["path"] for s in seen] == ["/0", "/1"]
    assert seen[0]["peer"] == seen[1]["peer"]


def test_connection_close_and_http10_close() -> None:
    async def raw(port: int, payload: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        data = await asyncio.wait_for(reader.read(), 5)  # EOF proves the server closed
        writer.close()
        return data

    async def test(port: int) -> tuple[bytes, bytes]:
        a = await raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        b = await raw(port, b"GET / HTTP/1.0\r\n\r\n")
        return a, b

    a, b = run_with_server(test)
    assert a.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in a
    assert b.startswith(b"HTTP/1.1 200 OK\r\n")


def test_post_body_echo() -> None:
    async def handler(req: Request) -> Response:
        body = await req.read()
        return web.Response(status=201, headers={"X-Len": str(len(body))}, body=body[::-1])

    async def test(port: int) -> Reply:
        return await request("127.0.0.1", port, "POST", "/p", body=b"hello world")

    resp = run_with_server(test, handler)
    assert resp.status == 201
    assert resp.headers["x-len"] == "11"
    assert resp.body == b"dlrow olleh"


def test_bad_request_and_handler_error() -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/boom":
            raise RuntimeError("boom")
        return web.Response(status=200, body=b"ok")

    async def raw(port: int, payload: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data

    async def test(port: int) -> tuple[bytes, bytes, Reply]:
        bad = await raw(port, b"NONSENSE\r\n\r\n")
        boom = await raw(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        after = await request("127.0.0.1", port)  # the server still works
        return bad, boom, after

    bad, boom, after = run_with_server(test, handler)
    assert bad.startswith(b"HTTP/1.1 400 ")
    assert boom.startswith(b"HTTP/1.1 500 ") and b"Connection: close" in boom
    assert after.status == 200 and after.body == b"ok"


def test_admit_false_times_out() -> None:
    admitted: list[str] = []

    def admit(ip: str) -> bool:
        admitted.append(ip)
        return False

    async def test(port: int) -> HttpError:
        with pytest.raises(HttpError) as info:
            await request("127.0.0.1", port, timeout=0.3)
        return info.value

    err = run_with_server(test, admit=admit, hold_seconds=1)
    assert err.kind == "timeout"
    assert admitted == ["127.0.0.1"]


def test_refused() -> None:
    async def test() -> HttpError:
        with pytest.raises(HttpError) as info:
            await request("127.0.0.1", closed_port(), timeout=2)
        return info.value

    assert asyncio.run(test()).kind == "refused"


def test_local_address_is_the_peer() -> None:
    async def test(port: int) -> Reply:
        return await request("127.0.0.1", port, local_address="127.100.0.9")

    info = json.loads(run_with_server(test).body)
    assert info["peer"][0] == "127.100.0.9"
    assert info["local"][0] == "127.0.0.1"


def test_proxy_forwards_and_sets_forwarded_headers() -> None:
    async def main() -> Reply:
        upstream = await serve("127.0.0.1", 0, echo)
        up_port = port_of(upstream)

        async def front(req: Request) -> Response:
            extra = {"X-Forwarded-Proto": "http", "X-Forwarded-Port": str(local_of(req)[1])}
            return await proxy(
                req, "127.0.0.1", up_port, local_address=None, timeout=5, extra_headers=extra
            )

        lb = await serve("127.0.0.1", 0, front)
        try:
            return await request(
                "127.0.0.1",
                port_of(lb),
                "PUT",
                "/x",
                headers={"Host": "app.example.com", "X-Custom": "1"},
                body=b"payload",
                local_address="127.100.0.7",
            )
        finally:
            lb.close()
            upstream.close()

    resp = asyncio.run(main())
    assert resp.status == 200
    info = json.loads(resp.body)
    assert info["method"] == "PUT" and info["path"] == "/x"
    assert info["body"] == "payload"
    assert info["headers"]["x-forwarded-for"] == "127.100.0.7"
    assert info["headers"]["x-forwarded-proto"] == "http"
    assert info["headers"]["host"] == "app.example.com"
    assert info["headers"]["x-custom"] == "1"
    assert "connection" not in resp.headers or resp.headers["connection"] == "close"


def test_proxy_upstream_error_propagates() -> None:
    async def main() -> HttpError:
        req = make_mocked_request("GET", "/")
        with pytest.raises(HttpError) as info:
            await proxy(
                req, "127.0.0.1", closed_port(), local_address=None, timeout=2, extra_headers={}
            )
        return info.value

    assert asyncio.run(main()).kind == "refused"


# ---------------------------------------------------------------- TLS


def test_local_ca_is_reused(tmp_path: Any) -> None:
    first = LocalCA(str(tmp_path))
    pem = Path(first.ca_path).read_bytes()
    second = LocalCA(str(tmp_path))
    assert Path(second.ca_path).read_bytes() == pem
    ctx = first.server_context([DOMAIN, "alt.example.com"])
    assert first.server_context(["alt.example.com", DOMAIN]) is ctx


def tls_run(
    tmp_path: Any, domains: list[str], test: Callable[[int, LocalCA], Awaitable[Any]]
) -> Any:
    ca = LocalCA(str(tmp_path))

    async def main() -> Any:
        server = await serve("127.0.0.1", 0, echo, ssl=ca.server_context(domains))
        try:
            return await test(port_of(server), ca)
        finally:
            server.close()

    return asyncio.run(main())


def test_tls_request_verifies(tmp_path: Any) -> None:
    async def test(port: int, ca: LocalCA) -> Reply:
        return await request(
            "127.0.0.1", port, ssl=ca.client_context(), server_hostname=DOMAIN, timeout=5
        )

    resp = tls_run(tmp_path, [DOMAIN], test)
    assert resp.status == 200
    assert json.loads(resp.body)["headers"]["host"] == DOMAIN


def test_tls_wildcard(tmp_path: Any) -> None:
    async def test(port: int, ca: LocalCA) -> Reply:
        return await request(
            "127.0.0.1", port, ssl=ca.client_context(), server_hostname="api.example.com"
        )

    assert tls_run(tmp_path, ["*.example.com"], test).status == 200


@pytest.mark.parametrize("case", ["wrong_name", "untrusted"])
def test_tls_failures(tmp_path: Any, case: str) -> None:
    async def test(port: int, ca: LocalCA) -> HttpError:
        ctx = ca.client_context() if case == "wrong_name" else ssl.create_default_context()
        name = "other.example.org" if case == "wrong_name" else DOMAIN
        with pytest.raises(HttpError) as info:
            await request("127.0.0.1", port, ssl=ctx, server_hostname=name, timeout=5)
        return info.value

    assert tls_run(tmp_path, [DOMAIN], test).kind == "tls"


def test_tls_stdlib_clients(tmp_path: Any) -> None:
    def blocking(port: int, ca_path: str) -> tuple[int, int]:
        ctx = ssl.create_default_context(cafile=ca_path)
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn = http.client.HTTPSConnection(DOMAIN, port, context=ctx, timeout=5)
        conn.sock = ctx.wrap_socket(raw, server_hostname=DOMAIN)
        conn.request("GET", "/stdlib")
        status = conn.getresponse().status
        conn.close()
        url = f"https://localhost:{port}/urllib"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return status, resp.status

    async def test(port: int, ca: LocalCA) -> tuple[int, int]:
        return await asyncio.to_thread(blocking, port, ca.ca_path)

    assert tls_run(tmp_path, [DOMAIN, "localhost"], test) == (200, 200)
