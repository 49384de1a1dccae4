"""Proxies on loopback: an HTTP forward proxy (and CONNECT) and a SOCKS5 proxy.

Both take ``names``, host names (lower case) mapped to a loopback (host, port), so a test
can crawl ``http://api.example.org/`` without DNS, and optional ``credentials``.
"""

from __future__ import annotations

import http.client
import select
import socket
import struct
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.servers.auth import basic
from tests.servers.core import IDLE_TIMEOUT, LoopbackServer
from tests.servers.site import Conn, Hit, Site

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "proxy-authenticate"}
    | {"te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)


def relay(one: socket.socket, other: socket.socket, stopping: threading.Event) -> None:
    """Copy bytes both ways until either side closes (or the server stops)."""
    pair = [one, other]
    with suppress(OSError):
        while not stopping.is_set():
            readable, _, _ = select.select(pair, [], [], 0.1)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (other if sock is one else one).sendall(data)


def _connect(owner: LoopbackServer, target: tuple[str, int]) -> socket.socket:
    upstream = socket.create_connection(target, timeout=IDLE_TIMEOUT)
    owner.track(upstream)
    return upstream


class ForwardProxy(Site):
    """An HTTP proxy: absolute-form requests relayed with http.client, CONNECT tunnelled.

    ``hits`` has every request the proxy got, ``relayed`` only those it forwarded (after
    the Proxy-Authorization check, if any). Relayed requests carry ``Via: 1.1 test-proxy``,
    so the origin can tell.
    """

    def __init__(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(host, idle_timeout=IDLE_TIMEOUT)
        self.names = {name.lower(): target for name, target in (names or {}).items()}
        self._expected = basic(*credentials) if credentials else None
        self._relayed: list[Hit] = []
        self.route("*", self._proxy)

    @property
    def relayed(self) -> list[Hit]:
        with self._lock:
            return list(self._relayed)

    def _proxy(self, conn: Conn, hit: Hit) -> None:
        if self._expected and hit.headers.get("proxy-authorization") != self._expected:
            conn.respond(407, b"", {"Proxy-Authenticate": 'Basic realm="proxy"'})
            return
        with self._lock:
            self._relayed.append(hit)
        if hit.method == "CONNECT":
            self._tunnel(conn, hit)
            return
        split = urlsplit(hit.target)
        if split.scheme != "http" or not split.hostname:
            conn.respond(400, b"absolute-form http:// target expected")
            return
        target = self.names.get(split.hostname.lower(), (split.hostname, split.port or 80))
        status, headers, body = self._forward(hit, target)
        conn.respond(status, body, headers)

    def _forward(self, hit: Hit, target: tuple[str, int]) -> tuple[int, dict[str, str], bytes]:
        upstream = http.client.HTTPConnection(*target, timeout=IDLE_TIMEOUT)
        try:
            fields = {k: v for k, v in hit.headers.items() if k not in _HOP_BY_HOP}
            fields["via"] = "1.1 test-proxy"
            upstream.request(hit.method, hit.path, hit.body or None, fields)
            response = upstream.getresponse()
            body = response.read()
            headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, headers, body
        except OSError:
            return 502, {}, b"upstream unreachable"
        finally:
            upstream.close()

    def _tunnel(self, conn: Conn, hit: Hit) -> None:
        host, _, port = hit.target.rpartition(":")
        try:
            upstream = _connect(self, self.names.get(host.lower(), (host, int(port))))
        except (OSError, ValueError):
            conn.respond(502)
            return
        conn.no_keep_alive()
        try:
            conn.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            relay(conn.sock, upstream, self.stopping)
        finally:
            self.release(upstream)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("client closed during the SOCKS handshake")
        data += chunk
    return data


@dataclass
class SocksConnect:
    """One CONNECT the SOCKS5 proxy accepted."""

    host: str
    port: int
    username: str | None  # RFC 1929 credentials the client gave (None: no-auth method)
    password: str | None


class Socks5Proxy(LoopbackServer):
    """RFC 1928 SOCKS5, CONNECT only; username/password (RFC 1929) when ``credentials``.

    ``connects`` records every tunnel opened (target as the client named it), ``refused``
    counts handshakes turned away (no acceptable method, bad credentials).
    """

    def __init__(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(host, idle_timeout=IDLE_TIMEOUT)
        self.names = {name.lower(): target for name, target in (names or {}).items()}
        self._credentials = credentials
        self._connects: list[SocksConnect] = []
        self._refused = 0

    @property
    def base_url(self) -> str:
        return f"socks5://{self.address}"

    @property
    def connects(self) -> list[SocksConnect]:
        with self._lock:
            return list(self._connects)

    @property
    def refused(self) -> int:
        with self._lock:
            return self._refused

    def serve(self, sock: socket.socket, serial: int) -> None:
        given = self._authenticate(sock)
        if given is None:
            with self._lock:
                self._refused += 1
            return
        version, command, _, kind = _recv_exactly(sock, 4)
        host = self._address(sock, kind)
        (port,) = struct.unpack("!H", _recv_exactly(sock, 2))
        if version != 5 or command != 1 or host is None:
            sock.sendall(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            return
        try:
            upstream = _connect(self, self.names.get(host.lower(), (host, port)))
        except OSError:
            sock.sendall(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return
        with self._lock:
            self._connects.append(SocksConnect(host, port, *given))
        try:
            bound_host, bound_port = upstream.getsockname()[:2]
            reply = socket.inet_aton(bound_host) + struct.pack("!H", bound_port)
            sock.sendall(b"\x05\x00\x00\x01" + reply)
            relay(sock, upstream, self.stopping)
        finally:
            self.release(upstream)

    def _authenticate(self, sock: socket.socket) -> tuple[str | None, str | None] | None:
        """The method negotiation (and sub-negotiation); None if the client is refused."""
        version, count = _recv_exactly(sock, 2)
        methods = _recv_exactly(sock, count)
        wanted = 2 if self._credentials else 0
        if version != 5 or wanted not in methods:
            sock.sendall(b"\x05\xff")
            return None
        sock.sendall(bytes([5, wanted]))
        if not self._credentials:
            return None, None
        _, size = _recv_exactly(sock, 2)
        username = _recv_exactly(sock, size).decode()
        (size,) = _recv_exactly(sock, 1)
        password = _recv_exactly(sock, size).decode()
        if (username, password) != self._credentials:
            sock.sendall(b"\x01\x01")
            return None
        sock.sendall(b"\x01\x00")
        return username, password

    def _address(self, sock: socket.socket, kind: int) -> str | None:
        if kind == 1:
            return socket.inet_ntop(socket.AF_INET, _recv_exactly(sock, 4))
        if kind == 3:
            (size,) = _recv_exactly(sock, 1)
            return _recv_exactly(sock, size).decode("idna")
        if kind == 4:
            return socket.inet_ntop(socket.AF_INET6, _recv_exactly(sock, 16))
        return None
