"""The world's HTTP(S) server: one asyncio process, routing by the Host header.

It listens on Shape.addresses loopback addresses (127.0.1.1 ...), one plain port and one
TLS port shared by all of them, and answers ``h{n}.world.test`` by its host's class (see
shape.CLASSES). HTTP/1.1 with keep-alive, written on asyncio.Protocol with no framework so
that one process serves thousands of requests/s; TLS offers no h2 (ALPN http/1.1 only).
"""

from __future__ import annotations

# The world is a test fixture, not crawler code: raw asyncio Protocols are the fastest
# server Python has without extra dependencies (anyio streams cost several times more).
import asyncio  # noqa: TID251
import json
import random
import socket
import ssl
import time
import zlib
from dataclasses import dataclass

from bench.world.shape import (
    LISTEN_NET,
    Ports,
    Shape,
    _unit,
    base_url,
    healthy_near,
    host_class,
    host_name,
    host_number,
)

ROBOTS = b"User-agent: *\nDisallow: /private/\n"
PAGE_LINKS = 8  # same-host links per page
SITE_PAGES = 50  # links go to /p0 .. /p49 of the host (seeds beyond that are unlinked)
CROSS_LINKS = 2  # links to other (healthy) hosts per page


def _filler(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = ["".join(rng.choices("aeioukmnprstlv", k=rng.randint(2, 9))) for _ in range(2000)]
    out: list[str] = []
    length = 0
    while length < size:
        para = "<p>" + " ".join(rng.choices(words, k=80)) + ".</p>\n"
        out.append(para)
        length += len(para)
    return "".join(out).encode()[:size]


@dataclass
class _Host:
    n: int
    kind: str
    base: str
    cross: bytes  # the cross-host links of every page of this host


class Site:
    """What each request gets: pure functions of the shape, plus per-URL hit counters for
    the classes that fail a URL's first request and answer its next."""

    def __init__(self, shape: Shape, ports: Ports) -> None:
        self.shape = shape
        self.ports = ports
        self.filler = _filler(64 * 1024, shape.seed)
        self.big = _filler(shape.big_bytes, shape.seed + 1)
        self._hosts: dict[int, _Host] = {}
        self._hits: dict[tuple[int, bytes], int] = {}
        self.requests = 0
        self.first_at = 0.0  # wall clock of the first request answered, 0: none yet
        self.last_at = 0.0

    def stats(self) -> dict[str, float]:
        """`GET /` with `Host: stats`: requests so far and when the first and last came
        (`GET /reset`: the same, after setting them back to none)."""
        return {"requests": self.requests, "first_at": self.first_at, "last_at": self.last_at}

    def host(self, n: int) -> _Host:
        found = self._hosts.get(n)
        if found is None:
            links = []
            for i in range(CROSS_LINKS):
                m = healthy_near(self.shape, (n * 7919 + i * 104729) % self.shape.hosts)
                url = f"{base_url(self.shape, self.ports, m)}/p{(n + i) % SITE_PAGES}"
                links.append(f'<li><a href="{url}">elsewhere {m}</a></li>\n')
            found = _Host(
                n,
                host_class(self.shape, n),
                base_url(self.shape, self.ports, n),
                "".join(links).encode(),
            )
            self._hosts[n] = found
        return found

    def page(self, host: _Host, path: bytes) -> bytes:
        seed = zlib.crc32(path)
        if host.kind == "big":
            size, filler = len(self.big), self.big
        else:
            size, filler = 4096 + int(_unit(host.n * 131 + seed, 7) * 12288), self.filler
        start = seed % (len(filler) - size) if len(filler) > size else 0
        own = "".join(
            f'<li><a href="/p{(seed + i * 13) % SITE_PAGES}">page</a></li>\n'
            for i in range(PAGE_LINKS)
        ).encode()
        name = host_name(host.n).encode()
        return b"".join(
            (
                b"<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>",
                name,
                b" ",
                path,
                b"</title></head>\n<body><ul>\n",
                own,
                host.cross,
                b"</ul>\n",
                filler[start : start + size],
                b"</body></html>\n",
            )
        )

    def second_hit(self, n: int, path: bytes) -> bool:
        """False on a URL's 1st, 3rd, ... request, True on its 2nd, 4th, ..."""
        key = (n, path)
        count = self._hits.get(key, 0)
        self._hits[key] = count + 1
        return count % 2 == 1

    def answer(self, host_header: bytes, path: bytes) -> tuple[bytes | None, float]:
        """The response's bytes (None: never answer) and the seconds to hold them."""
        self.requests += 1
        if host_header == b"stats":  # the benchmark's own question, not a crawl's request
            self.requests -= 1
            if path == b"/reset":
                self.requests, self.first_at, self.last_at = 0, 0.0, 0.0
            return response(200, json.dumps(self.stats()).encode(), b"application/json"), 0.0
        now = time.time()
        self.first_at = self.first_at or now
        self.last_at = now
        n = host_number(host_header.split(b":", 1)[0].decode("latin-1"))
        if n is None or n >= self.shape.hosts:
            return response(404, b"no such host\n"), 0.0
        host = self.host(n)
        kind = host.kind
        if path == b"/robots.txt":
            if kind == "robots_5xx":
                return response(500, b"robots.txt is broken\n"), 0.0
            if kind == "robots_stall":
                return None, 0.0
            return response(200, ROBOTS, b"text/plain"), 0.0
        if kind == "stall":
            return None, 0.0
        if kind == "throttle_hard" or (kind == "throttle" and not self.second_hit(n, path)):
            return response(429, b"slow down\n", extra=b"Retry-After: 1\r\n"), 0.0
        if kind == "flaky" and not self.second_hit(n, path):
            return response(503, b"try again\n"), 0.0
        if kind == "redirect":
            target = healthy_near(self.shape, n)
            where = f"{base_url(self.shape, self.ports, target)}/r{n}-{path[2:].decode()}"
            return response(301, b"moved\n", extra=f"Location: {where}\r\n".encode()), 0.0
        delay = self.shape.slow_seconds if kind == "slow" else 0.0
        return response(200, self.page(host, path)), delay


REASONS = {200: b"OK", 301: b"Moved Permanently", 404: b"Not Found", 429: b"Too Many Requests"}
REASONS |= {500: b"Internal Server Error", 503: b"Service Unavailable", 400: b"Bad Request"}


def response(
    status: int, body: bytes, ctype: bytes = b"text/html; charset=utf-8", extra: bytes = b""
) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        REASONS.get(status, b"Status"),
        ctype,
        len(body),
        extra,
    )
    return head + body


class Connection(asyncio.Protocol):
    """One client connection: requests answered in order, one at a time (a held answer -
    slow first byte - holds the ones pipelined behind it)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # an answer is held or will never come

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        while self.transport is not None and not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self.transport.close()
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            host = b""
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lower = name.strip().lower()
                if lower == b"host":
                    host = value.strip()
                elif lower == b"connection" and value.strip().lower() == b"close":
                    close = True
            if len(parts) != 3 or not host:
                self.transport.write(response(400, b"bad request\n"))
                self.transport.close()
                return
            data, delay = self.site.answer(host, parts[1].split(b"?", 1)[0])
            if data is None:
                self.busy = True  # stall: read on, answer nothing, until the client gives up
                return
            if delay > 0:
                self.busy = True
                asyncio.get_running_loop().call_later(delay, self._send_held, data, close)
                return
            self.transport.write(data)
            if close:
                self.transport.close()
                return

    def _send_held(self, data: bytes, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        self.busy = False
        if close:
            self.transport.close()
        else:
            self._serve()


async def serve(
    site: Site,
    http_socks: list[socket.socket],
    https_socks: list[socket.socket],
    tls: ssl.SSLContext,
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for sock in http_socks:
        servers.append(await loop.create_server(lambda: Connection(site), sock=sock))
    for sock in https_socks:
        servers.append(await loop.create_server(lambda: Connection(site), sock=sock, ssl=tls))
    await stop.wait()
    for server in servers:
        server.close()


def listen_addresses(shape: Shape) -> list[str]:
    return [f"{LISTEN_NET}{1 + i}" for i in range(shape.addresses)]
