"""The sandbox's AWS API endpoint: moto's WSGI app behind a thin middleware.

The middleware names each call (service and action), counts it, throttles calls the way
AWS does (token buckets per API; EC2 answers HTTP 503 `RequestLimitExceeded`, ELB and
Route 53 HTTP 400 `Throttling`), serialises calls into moto (its backends
are not thread-safe, and the fleet reads them), serves `/_sandbox/*` (state JSON, the
controller's public address, the CA certificate), and tells the fleet when to look again.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .throttle import Throttler, refusal

_CRED_RE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")

StartResponse = Callable[..., Any]


def _service(environ: dict[str, Any]) -> str:
    m = _CRED_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else "unknown"


def _action(environ: dict[str, Any], body: bytes) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target.rsplit(".", 1)[-1])
    for source in (environ.get("QUERY_STRING", ""), body.decode("utf-8", "replace")):
        qs = parse_qs(source)
        if "Action" in qs:
            return qs["Action"][0]
    path = re.sub(r"/[A-Za-z0-9]{10,}", "/{id}", environ.get("PATH_INFO", "/"))
    return f"{environ.get('REQUEST_METHOD', 'GET')} {path}"


def _resources(action: str, body: bytes) -> int:
    """EC2 resource tokens a call needs: instances asked for or acted on."""
    if action not in ("RunInstances", "TerminateInstances"):
        return 0
    qs = parse_qs(body.decode("utf-8", "replace"))
    if action == "RunInstances":
        raw = (qs.get("MaxCount") or ["1"])[0]
        return int(raw) if raw.isdigit() else 1
    return sum(1 for k in qs if k.startswith("InstanceId."))


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class AwsApi:
    """moto + middleware, served by a threaded werkzeug server."""

    def __init__(
        self,
        host: str,
        port: int,
        throttler: Throttler,
        routes: dict[str, Callable[[], tuple[str, bytes]]],
        on_call: Callable[[str, str], None],
    ) -> None:
        self.app = DomainDispatcherApplication(create_backend_app)
        self.throttler = throttler
        self.routes = routes
        self.on_call = on_call
        self.lock = threading.RLock()  # held while moto runs a call; the fleet reads under it
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.counter_lock = threading.Lock()
        self.server: BaseWSGIServer = make_server(
            host, port, self, threaded=True, request_handler=_QuietHandler
        )
        self.port = self.server.server_port
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="sandbox-aws-api", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self._sandbox_route(path, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service, action = _service(environ), _action(environ, body)
        key = f"{service}:{action}"
        with self.counter_lock:
            self.calls[key] += 1
        if not self.throttler.admit(service, action, _resources(action, body)):
            with self.counter_lock:
                self.throttled[key] += 1
            status, payload = refusal(service, str(uuid.uuid4()))
            start_response(
                status, [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))]
            )
            return [payload]
        with self.lock:
            chunks = list(self.app(environ, start_response))
        self.on_call(service, action)
        return chunks

    def _sandbox_route(self, path: str, start_response: StartResponse) -> Iterable[bytes]:
        route = self.routes.get(path.removeprefix("/_sandbox/"))
        if route is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such sandbox route\n"]
        content_type, payload = route()
        start_response(
            "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(payload)))]
        )
        return [payload]

    def counters(self) -> dict[str, Any]:
        with self.counter_lock:
            return {
                "calls": dict(sorted(self.calls.items())),
                "throttled": dict(sorted(self.throttled.items())),
                "total_calls": sum(self.calls.values()),
                "total_throttled": sum(self.throttled.values()),
            }


def json_route(fn: Callable[[], Any]) -> Callable[[], tuple[str, bytes]]:
    return lambda: ("application/json", json.dumps(fn(), indent=1, default=str).encode())


def text_route(fn: Callable[[], str]) -> Callable[[], tuple[str, bytes]]:
    return lambda: ("text/plain", fn().encode())
