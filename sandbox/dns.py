"""DNS on loopback: every name the sandbox serves, answered with its loopback address.

The names are `Fleet.names()`: the load balancers' DNS names, the Beanstalk environments'
CNAMEs, and the Route 53 records of the sandbox's zones (aliases and CNAMEs) that lead to
one of them. A query for one of them gets an authoritative A record; a name the sandbox
knows without a loopback address (an RDS endpoint) gets an empty answer; any other name
NXDOMAIN. UDP and TCP on one port, on the sandbox's event loop:

    dig @127.0.0.1 -p PORT www.sandbox.example.com
    curl --resolve www.sandbox.example.com:443:ADDR ...   (what the flows print instead)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

log = logging.getLogger("sandbox.dns")

TTL_S = 5  # short: a balancer recreated by the next deploy gets a new address


def _ipv4(value: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None


def answer(query: bytes, names: Mapping[str, str]) -> bytes | None:
    """The reply to the DNS message `query` from `names` (lowercase name without trailing
    dot -> address), or None when `query` is not a DNS query (nothing is sent back)."""
    try:
        request = DNSRecord.parse(query)
    except Exception:  # dnslib raises DNSError and struct/index errors on garbage
        return None
    if request.header.qr:  # a response, not a query
        return None
    reply = request.reply()  # same id and question, QR and AA set
    reply.header.ra = 0  # authoritative only: it recurses for nobody
    for question in request.questions:
        name = str(question.qname).rstrip(".").lower()
        if name not in names:
            reply.header.rcode = RCODE.NXDOMAIN
            continue
        addr = _ipv4(names[name])
        if addr is not None and question.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(addr), ttl=TTL_S))
    return bytes(reply.pack())


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, names: Callable[[], Mapping[str, str]]) -> None:
        self.names = names
        self.transport: Any = None  # the loop's datagram transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        try:
            reply = answer(data, self.names())
        except Exception:
            log.exception("dns: answering a query failed")
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    """The sandbox's DNS, UDP and TCP on `host:port` (0: a port free for both)."""

    def __init__(self, host: str, port: int, names: Callable[[], Mapping[str, str]]) -> None:
        self.host, self.port, self.names = host, port, names
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        """Listen; the port it listens on. OSError when a given port cannot be bound."""
        attempts = 1 if self.port else 20
        for attempt in range(attempts):
            try:
                return await self._listen(self.port)
            except OSError:
                await self.close()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def _listen(self, port: int) -> int:
        loop = asyncio.get_running_loop()
        # UDP first: with port 0 the system picks one, and TCP takes the same number
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self.names), local_addr=(self.host, port), family=socket.AF_INET
        )
        self.udp = transport
        bound = int(transport.get_extra_info("sockname")[1])
        self.tcp = await asyncio.start_server(self._serve_tcp, self.host, bound)
        self.port = bound
        return bound

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                reply = answer(await reader.readexactly(size), self.names())
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        if self.tcp is not None:
            self.tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tcp.wait_closed(), 1.0)
            self.tcp = None
