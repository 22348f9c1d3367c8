"""How a URL of the estate opens from this machine.

On AWS a URL opens as it is. On the sandbox its name (a balancer's DNS name, a Beanstalk
CNAME, a Route 53 record of the sandbox's zone) resolves only through the sandbox's own
DNS, and the balancer's port 80/443 may listen at 8080/8443 (no right to bind low ports).
The sandbox says both in its state (`TOMCAT_FLEET_SANDBOX_STATE_URL`: `names`,
`lb_ports`, `dns`), read here over HTTP like any other service: the product never imports
the sandbox. From them each URL gets the line a plain shell opens it with,
`curl --resolve NAME:PORT:ADDR URL` (or `--connect-to NAME:PORT:ADDR:BOUND` when the port
moved, `--cacert` for HTTPS), and a URL on the loopback address itself.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from blocks.settings import RuntimeSettings

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class LocalView:
    """What this machine needs to open the sandbox's URLs (None of it exists on AWS)."""

    names: Mapping[str, str]  # DNS name (lowercase, no trailing dot) -> loopback address
    lb_ports: Mapping[int, int] = field(default_factory=dict)  # 80 -> 8080 when moved
    dns: str = ""  # host:port of the sandbox's DNS
    ca_bundle: str | None = None  # the CA that signs the sandbox's HTTPS listeners


@dataclass(frozen=True)
class Opening:
    """One URL and how it opens here: `local_url` (the loopback address and port on the
    sandbox, the URL itself on AWS) and `curl`, a line a plain shell runs."""

    name: str
    url: str
    local_url: str
    curl: str
    address: str | None = None  # the loopback address the name resolves to (sandbox)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def view_from_state(state: Mapping[str, Any], ca_bundle: str | None = None) -> LocalView:
    """A LocalView from the sandbox's `/_sandbox/state` JSON."""
    names = {
        str(k).rstrip(".").lower(): str(v)
        for k, v in dict(state.get("names") or {}).items()
        if _ipv4(str(v))
    }
    ports = {int(k): int(v) for k, v in dict(state.get("lb_ports") or {}).items()}
    return LocalView(names, ports, str(state.get("dns") or ""), ca_bundle)


def read_local_view(ca_bundle: str | None = None, timeout_s: float = 5.0) -> LocalView | None:
    """The sandbox's view when the settings name its state endpoint and it answers; None on
    AWS (no endpoint) or when it does not answer (then URLs are shown as they are)."""
    try:
        url = RuntimeSettings().sandbox_state_url
    except ValueError:  # an invalid runtime setting: the URLs are shown as they are
        return None
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            state = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return view_from_state(state, ca_bundle)


def _ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def opening(name: str, url: str, view: LocalView | None) -> Opening:
    """How `url` opens here: through the sandbox's view when its host is a name the sandbox
    serves, else as it is."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    scheme = parts.scheme or "http"
    cacert = ["--cacert", view.ca_bundle] if view and view.ca_bundle and scheme == "https" else []
    addr = view.names.get(host) if view else None
    if view is None or addr is None:
        return Opening(name, url, url, shlex.join(["curl", *cacert, url]))
    port = parts.port or DEFAULT_PORTS.get(scheme, 80)
    bound = view.lb_ports.get(port, port)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    local = f"{scheme}://{addr}:{bound}{path}"
    if bound == port:
        route = ["--resolve", f"{host}:{port}:{addr}"]
    else:
        route = ["--connect-to", f"{host}:{port}:{addr}:{bound}"]
    return Opening(name, url, local, shlex.join(["curl", *cacert, *route, url]), addr)


def openings(urls: Mapping[str, str], view: LocalView | None) -> dict[str, Opening]:
    """`opening` of every URL, by its name."""
    return {name: opening(name, url, view) for name, url in urls.items() if url}
