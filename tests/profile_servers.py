"""Loopback servers for the fetch-profile tests, each recording what it saw.

    Site handlers (tests/site.py)   basic_required, bearer_required, cookie_required, DigestRealm
    Server                          a threaded TCP server on 127.0.0.x that stops cleanly
    ├── HTTPServer                  HTTP/1.1 routes, optionally TLS (and client certificates)
    ├── ForwardProxy                absolute-form HTTP proxy (and CONNECT), Proxy-Authorization
    └── Socks5Proxy                 RFC 1928 CONNECT, no auth or RFC 1929 username/password
    TokenServer                     an OAuth2 client-credentials token endpoint on an HTTPServer,
                                    plus a Site handler that accepts only its live tokens
    TLSFiles                        a private CA (trustme) and the PEM files a profile names
    Servers                         starts the above on demand and stops them at teardown

Also the helpers an end-to-end profile test needs: a TOML writer for `[[profile]]` tables,
`run_crawl` (`crawler run --config FILE` in-process), the request headers of the WARC
request records, and a search of a crawl's files for secrets. Stdlib only, plus trustme and
cryptography (already test dependencies) for certificates.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.server
import json
import re
import secrets
import select
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import trustme
from cryptography.hazmat.primitives import serialization
from warcio.archiveiterator import ArchiveIterator

from crawler.cli import main
from tests.crawling import sets, write_seeds
from tests.site import Conn, Handler, Hit

_TIMEOUT = 10.0  # seconds a server thread waits on an idle client before giving up


def basic(username: str, password: str) -> str:
    """The Authorization (or Proxy-Authorization) value of HTTP Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# -- Site handlers that demand credentials -----------------------------------------------------


def basic_required(username: str, password: str, body: bytes = b"<html>basic ok</html>") -> Handler:
    """200 for the right Basic credentials, else 401 with a Basic challenge."""
    expected = basic(username, password)

    def handle(conn: Conn, hit: Hit) -> None:
        if hit.headers.get("authorization") == expected:
            conn.respond(200, body, {"Content-Type": "text/html"})
        else:
            conn.respond(401, b"", {"WWW-Authenticate": 'Basic realm="test"'})

    return handle


def bearer_required(token: str, body: bytes = b"<html>bearer ok</html>") -> Handler:
    """200 for `Authorization: Bearer <token>`, else 401 with a Bearer challenge."""

    def handle(conn: Conn, hit: Hit) -> None:
        if hit.headers.get("authorization") == f"Bearer {token}":
            conn.respond(200, body, {"Content-Type": "text/html"})
        else:
            conn.respond(401, b"", {"WWW-Authenticate": 'Bearer realm="test"'})

    return handle


def cookie_required(name: str, value: str, body: bytes = b"<html>members</html>") -> Handler:
    """200 if the request carries the cookie `name=value`, else 403."""

    def handle(conn: Conn, hit: Hit) -> None:
        pairs = [p.strip() for p in hit.headers.get("cookie", "").split(";")]
        if f"{name}={value}" in pairs:
            conn.respond(200, body, {"Content-Type": "text/html"})
        else:
            conn.respond(403, b"login first", {"Content-Type": "text/plain"})

    return handle


_DIGEST_FIELD = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_digest(value: str) -> dict[str, str] | None:
    """The fields of an `Authorization: Digest ...` value (names lower-cased), or None."""
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "digest":
        return None
    return {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _DIGEST_FIELD.finditer(rest)}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class DigestRealm:
    """RFC 7616 Digest with MD5 and qop=auth: challenges, then checks every response hash.

    `verified` lists the request targets whose credentials were proven; `rejected` counts
    requests that carried a Digest header that did not verify (a wrong password shows here).
    """

    def __init__(self, realm: str, username: str, password: str) -> None:
        self.realm = realm
        self._username = username
        self._ha1 = _md5(f"{username}:{realm}:{password}")
        self._opaque = secrets.token_hex(8)
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self.verified: list[str] = []
        self.rejected = 0

    def handler(self, body: bytes = b"<html>digest ok</html>") -> Handler:
        def handle(conn: Conn, hit: Hit) -> None:
            fields = parse_digest(hit.headers.get("authorization", ""))
            if fields is not None and self._verify(fields, hit):
                conn.respond(200, body, {"Content-Type": "text/html"})
                return
            nonce = secrets.token_hex(16)
            with self._lock:
                self._nonces.add(nonce)
                self.rejected += fields is not None
            challenge = (
                f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", '
                f'algorithm=MD5, opaque="{self._opaque}"'
            )
            conn.respond(401, b"", {"WWW-Authenticate": challenge})

        return handle

    def _verify(self, fields: Mapping[str, str], hit: Hit) -> bool:
        with self._lock:
            known = fields.get("nonce") in self._nonces
        if not known or fields.get("algorithm", "MD5").upper() != "MD5":
            return False
        expected = {"username": self._username, "realm": self.realm, "uri": hit.path}
        expected |= {"qop": "auth", "opaque": self._opaque}
        if any(fields.get(k) != v for k, v in expected.items()):
            return False
        ha2 = _md5(f"{hit.method}:{hit.path}")
        parts = [self._ha1, fields["nonce"], fields.get("nc", ""), fields.get("cnonce", "")]
        if _md5(":".join([*parts, "auth", ha2])) != fields.get("response"):
            return False
        with self._lock:
            self.verified.append(hit.path)
        return True


# -- threaded servers --------------------------------------------------------------------------


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self,
        owner: Server,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
    ) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner.failed(sys.exc_info()[1])


class Server:
    """A threaded TCP server on a loopback address; `stop()` closes every connection."""

    handler: type[socketserver.BaseRequestHandler]

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._errors: list[BaseException] = []
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def errors(self) -> list[BaseException]:
        """Bugs in a handler (anything but OSError: clients that go away are normal)."""
        with self._lock:
            return list(self._errors)

    def start(self) -> Server:
        self._server = _TCPServer(self, (self.host, 0), self.handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self.stopping.is_set():
            return
        self.stopping.set()
        self._server.shutdown()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def failed(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, OSError):
            with self._lock:
                self._errors.append(exc)


def _relay(one: socket.socket, other: socket.socket, stopping: threading.Event) -> None:
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


def _connect(owner: Server, target: tuple[str, int]) -> socket.socket:
    upstream = socket.create_connection(target, timeout=_TIMEOUT)
    owner.track(upstream)
    return upstream


@dataclass
class Request:
    """One request as an HTTPServer or ForwardProxy saw it."""

    method: str
    target: str  # the request target as sent (absolute-form through a proxy)
    headers: dict[str, str]  # names lower-cased; repeated fields joined with ", "
    body: bytes
    client_cert: dict[str, Any] | None = None  # the peer's certificate (mutual TLS)
    at: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> str:
        split = urlsplit(self.target)
        return (split.path or "/") + (f"?{split.query}" if split.query else "")


Reply: TypeAlias = tuple[int, dict[str, str], bytes]
Route: TypeAlias = Callable[[Request], Reply]


class _HTTPHandler(http.server.BaseHTTPRequestHandler):
    """Reads a request, records it, and lets the owner answer; keep-alive, optional TLS."""

    protocol_version = "HTTP/1.1"
    timeout = _TIMEOUT
    server: _TCPServer

    def setup(self) -> None:
        owner = self.server.owner
        self._plain = self.request
        owner.track(self._plain)
        self.request.settimeout(_TIMEOUT)  # also bounds a TLS handshake that never ends
        context = getattr(owner, "ssl_context", None)
        if context is not None:
            try:
                self.request = context.wrap_socket(self.request, server_side=True)
            except OSError:
                owner.untrack(self._plain)
                owner.handshake_failed()  # type: ignore[attr-defined]
                raise
            owner.track(self.request)
        super().setup()

    def finish(self) -> None:
        with suppress(OSError):
            super().finish()
        owner = self.server.owner
        owner.untrack(self._plain)
        owner.untrack(self.request)
        if self.request is not self._plain:  # socketserver closes only the plain socket
            with suppress(OSError):
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _request(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): ", ".join(self.headers.get_all(k) or []) for k in self.headers}
        cert = self.request.getpeercert() if isinstance(self.request, ssl.SSLSocket) else None
        return Request(self.command, self.path, headers, body, cert or None)

    def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, HTTPServer | ForwardProxy)
        owner.handle(self)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_CONNECT = _dispatch


class HTTPServer(Server):
    """HTTP/1.1 with routes by path (query included; `"*"`: any other path); TLS when given
    an SSL context."""

    handler = _HTTPHandler

    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(host)
        self.ssl_context = ssl_context
        self._routes: dict[str, Route] = {}
        self._requests: list[Request] = []
        self._handshake_failures = 0

    def url(self, path: str) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def route(self, path: str, route: Route) -> None:
        with self._lock:
            self._routes[path] = route

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def handshake_failures(self) -> int:
        """TLS handshakes that failed (an untrusted certificate, no client certificate)."""
        with self._lock:
            return self._handshake_failures

    def handshake_failed(self) -> None:
        with self._lock:
            self._handshake_failures += 1

    def handle(self, handler: _HTTPHandler) -> None:
        request = handler._request()
        with self._lock:
            self._requests.append(request)
            route = self._routes.get(request.path) or self._routes.get("*")
        if route is None:
            handler._send(404, {"Content-Type": "text/plain"}, b"not found")
            return
        handler._send(*route(request))


def page(body: bytes = b"<html>ok</html>", status: int = 200) -> Route:
    """A route answering `body` with `status`."""
    return lambda request: (status, {"Content-Type": "text/html"}, body)


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "proxy-authenticate"}
    | {"te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)


class ForwardProxy(Server):
    """An HTTP proxy: absolute-form requests relayed with http.client, CONNECT tunnelled.

    `names` maps host names (lower case) to a loopback (host, port), so a test can crawl
    `http://api.example.org/` without DNS. `seen` has every request the proxy got;
    `relayed` only those it forwarded (after the Proxy-Authorization check, if any).
    Relayed requests carry `Via: 1.1 test-proxy`, so the origin can tell.
    """

    handler = _HTTPHandler

    def __init__(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(host)
        self.names = {name.lower(): target for name, target in (names or {}).items()}
        self._expected = basic(*credentials) if credentials else None
        self._seen: list[Request] = []
        self._relayed: list[Request] = []

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def seen(self) -> list[Request]:
        with self._lock:
            return list(self._seen)

    @property
    def relayed(self) -> list[Request]:
        with self._lock:
            return list(self._relayed)

    def handle(self, handler: _HTTPHandler) -> None:
        request = handler._request()
        with self._lock:
            self._seen.append(request)
        if self._expected and request.headers.get("proxy-authorization") != self._expected:
            handler._send(407, {"Proxy-Authenticate": 'Basic realm="proxy"'}, b"")
            return
        with self._lock:
            self._relayed.append(request)
        if request.method == "CONNECT":
            self._tunnel(handler, request)
            return
        split = urlsplit(request.target)
        if split.scheme != "http" or not split.hostname:
            handler._send(400, {}, b"absolute-form http:// target expected")
            return
        target = self.names.get(split.hostname.lower(), (split.hostname, split.port or 80))
        status, headers, body = self._forward(request, target)
        handler._send(status, headers, body)

    def _forward(self, request: Request, target: tuple[str, int]) -> Reply:
        upstream = http.client.HTTPConnection(*target, timeout=_TIMEOUT)
        try:
            fields = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
            fields["via"] = "1.1 test-proxy"
            upstream.request(request.method, request.path, request.body or None, fields)
            response = upstream.getresponse()
            body = response.read()
            headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, headers, body
        except OSError:
            return 502, {}, b"upstream unreachable"
        finally:
            upstream.close()

    def _tunnel(self, handler: _HTTPHandler, request: Request) -> None:
        host, _, port = request.target.rpartition(":")
        try:
            upstream = _connect(self, self.names.get(host.lower(), (host, int(port))))
        except (OSError, ValueError):
            handler._send(502, {}, b"")
            return
        handler.close_connection = True
        try:
            handler.wfile.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            handler.wfile.flush()
            _relay(handler.connection, upstream, self.stopping)
        finally:
            self.untrack(upstream)
            upstream.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("client closed during the SOCKS handshake")
        data += chunk
    return data


class _SocksHandler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def setup(self) -> None:
        self.server.owner.track(self.request)
        self.request.settimeout(_TIMEOUT)

    def finish(self) -> None:
        self.server.owner.untrack(self.request)

    def handle(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, Socks5Proxy)
        owner.serve(self.request)


@dataclass
class SocksConnect:
    """One CONNECT the SOCKS5 proxy accepted."""

    host: str
    port: int
    username: str | None  # RFC 1929 credentials the client gave (None: no-auth method)
    password: str | None


class Socks5Proxy(Server):
    """RFC 1928 SOCKS5, CONNECT only; username/password (RFC 1929) when `credentials`.

    `connects` records every tunnel opened (target as the client named it), `refused`
    counts handshakes turned away (no acceptable method, bad credentials).
    """

    handler = _SocksHandler

    def __init__(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(host)
        self.names = {name.lower(): target for name, target in (names or {}).items()}
        self._credentials = credentials
        self._connects: list[SocksConnect] = []
        self._refused = 0

    @property
    def url(self) -> str:
        return f"socks5://{self.address}"

    @property
    def connects(self) -> list[SocksConnect]:
        with self._lock:
            return list(self._connects)

    @property
    def refused(self) -> int:
        with self._lock:
            return self._refused

    def serve(self, sock: socket.socket) -> None:
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
            _relay(sock, upstream, self.stopping)
        finally:
            self.untrack(upstream)
            upstream.close()

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


# -- OAuth2 client credentials -----------------------------------------------------------------


@dataclass
class Token:
    value: str
    issued: float  # time.monotonic()
    used: int = 0  # resource requests it was accepted for
    revoked: bool = False  # refused by the resource from the start


class TokenServer:
    """An RFC 6749 client-credentials token endpoint (`POST /token`) and its resource.

    The client must authenticate with HTTP Basic `client_id:client_secret` (section 2.3.1)
    and send `grant_type=client_credentials` (and `scope`, when one is expected) as a form.
    Tokens announce `expires_in` but the resource accepts one only for `lifetime` seconds
    after issue and for `uses` requests (None: no such limit): either makes a token expire
    server-side, early if wanted. `fail_status` makes every token request fail with it;
    `delay` holds each token request that long (so concurrent fetches overlap with it).
    The next `revoke` tokens issued are refused by the resource from the start (a test may
    set `revoke` again, e.g. before a restart).
    """

    def __init__(
        self,
        server: HTTPServer,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        expires_in: int = 3600,
        lifetime: float | None = None,
        uses: int | None = None,
        fail_status: int | None = None,
        delay: float = 0.0,
        revoke: int = 0,
    ) -> None:
        self.server = server
        self.revoke = revoke
        self._client = basic(client_id, client_secret)
        self._scope = scope
        self._expires_in = expires_in
        self._lifetime = lifetime
        self._uses = uses
        self.fail_status = fail_status
        self._delay = delay
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._refusals: list[str] = []
        self.accepted: list[str] = []  # token value of each resource request let through
        self.rejected: list[str] = []  # Authorization value of each resource request refused
        server.route("/token", self._token)

    @property
    def token_url(self) -> str:
        return self.server.url("/token")

    @property
    def token_requests(self) -> list[Request]:
        return [r for r in self.server.requests if r.path == "/token"]

    @property
    def issued(self) -> list[Token]:
        with self._lock:
            return list(self._tokens.values())

    @property
    def refusals(self) -> list[str]:
        """Why token requests were refused (a malformed client request shows here)."""
        with self._lock:
            return list(self._refusals)

    def _token(self, request: Request) -> Reply:
        if self._delay:
            self.server.stopping.wait(self._delay)
        if self.fail_status is not None:
            return self.fail_status, {"Content-Type": "application/json"}, b'{"error":"down"}'
        problem = self._check(request)
        if problem is not None:
            with self._lock:
                self._refusals.append(problem)
            error = {"error": "invalid_client" if "client" in problem else "invalid_request"}
            return 400, {"Content-Type": "application/json"}, json.dumps(error).encode()
        value = f"at-{secrets.token_hex(12)}"
        with self._lock:
            self._tokens[value] = Token(value, time.monotonic(), revoked=self.revoke > 0)
            self.revoke = max(0, self.revoke - 1)
        answer = {"access_token": value, "token_type": "Bearer", "expires_in": self._expires_in}
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return 200, headers, json.dumps(answer).encode()

    def _check(self, request: Request) -> str | None:
        if request.method != "POST":
            return f"method {request.method}"
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return f"content type {kind!r}"
        form = parse_qs(request.body.decode("ascii", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return f"grant_type {form.get('grant_type')}"
        if self._scope is not None and form.get("scope") != [self._scope]:
            return f"scope {form.get('scope')}"
        if request.headers.get("authorization") != self._client:
            return "client authentication"
        return None

    def resource(self, body: bytes = b"<html>api</html>", seconds: float = 0.0) -> Handler:
        """A Site handler: 200 (after `seconds`) for a live token, else 401 invalid_token."""

        def handle(conn: Conn, hit: Hit) -> None:
            given = hit.headers.get("authorization", "")
            if not self._accept(given):
                challenge = 'Bearer error="invalid_token"'
                conn.respond(401, b"", {"WWW-Authenticate": challenge})
                return
            if conn.sleep(seconds):
                conn.respond(200, body, {"Content-Type": "text/html"})
            else:
                conn.close()

        return handle

    def route(self, body: bytes = b"<html>api</html>", refusal: bytes = b"") -> Route:
        """The resource as an HTTPServer route (e.g. beside the token endpoint, same origin);
        `refusal` is the body of its 401."""

        def answer(request: Request) -> Reply:
            if not self._accept(request.headers.get("authorization", "")):
                return 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, refusal
            return 200, {"Content-Type": "text/html"}, body

        return answer

    def _accept(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        with self._lock:
            token = self._tokens.get(value) if scheme.lower() == "bearer" else None
            live = token is not None and not token.revoked
            if token is not None and self._lifetime is not None:
                live = live and time.monotonic() - token.issued < self._lifetime
            if token is not None and self._uses is not None:
                live = live and token.used < self._uses
            if token is not None and live:
                token.used += 1
                self.accepted.append(token.value)
            else:
                self.rejected.append(authorization)
            return live


# -- TLS material ------------------------------------------------------------------------------


class TLSFiles:
    """A private CA (trustme) whose PEM files live in `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self, *identities: str, client_certs: bool = False) -> ssl.SSLContext:
        """A server context with a certificate for `identities` (default 127.0.0.1).

        `client_certs`: the handshake requires a client certificate issued by this CA.
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*(identities or ("127.0.0.1",))).configure_cert(context)
        if client_certs:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context

    def client_files(
        self, identity: str = "client@example", password: str | None = None
    ) -> tuple[Path, Path]:
        """PEM files (certificate chain, private key) of a client certificate.

        With `password` the key is written encrypted (PKCS#8, best available encryption).
        """
        cert = self.ca.issue_cert(identity)
        cert_file = self.folder / f"{identity}.pem"
        key_file = self.folder / f"{identity}{'-encrypted' if password else ''}.key"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key = cert.private_key_pem.bytes()
        if password is not None:
            loaded = serialization.load_pem_private_key(key, password=None)
            key = loaded.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password.encode()),
            )
        key_file.write_bytes(key)
        return cert_file, key_file


class Servers:
    """Starts the servers above on demand; `close()` stops them and re-raises handler bugs."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._started: list[Server] = []
        self._tls: TLSFiles | None = None

    def _start(self, server: Server) -> Any:
        self._started.append(server.start())
        return server

    def http(
        self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> HTTPServer:
        result: HTTPServer = self._start(HTTPServer(host, ssl_context))
        return result

    def proxy(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> ForwardProxy:
        result: ForwardProxy = self._start(ForwardProxy(host, names, credentials))
        return result

    def socks(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> Socks5Proxy:
        result: Socks5Proxy = self._start(Socks5Proxy(host, names, credentials))
        return result

    def tokens(
        self, client_id: str, client_secret: str, host: str = "127.0.0.4", **options: Any
    ) -> TokenServer:
        return TokenServer(self.http(host), client_id, client_secret, **options)

    def tls(self) -> TLSFiles:
        if self._tls is None:
            self._tls = TLSFiles(self._folder / "tls")
        return self._tls

    def close(self) -> None:
        for server in self._started:
            server.stop()
        errors = [error for server in self._started for error in server.errors]
        if errors:
            raise errors[0]


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on `host` where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# -- configuration and crawl helpers -----------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """One value in TOML syntax (strings as basic strings, dicts as inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def write_config(
    path: Path,
    profiles: list[dict[str, Any]],
    sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A TOML file with `[section]` tables and one `[[profile]]` table per profile."""
    lines: list[str] = []
    for section, values in (sections or {}).items():
        lines.append(f"[{section}]")
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for profile in profiles:
        lines.append("[[profile]]")
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in profile.items()]
        lines.append("")
    text = "\n".join(lines)
    parsed = tomllib.loads(text)  # the writer's own check: what we meant is what TOML says
    assert parsed.get("profile", []) == [_plain(p) for p in profiles], text
    path.write_text(text, encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def run_args(data_dir: Path, urls: list[str], config: Path, *assignments: str) -> list[str]:
    """Arguments of `crawler run` over `urls` with `--config` and the fast test settings."""
    seeds = write_seeds(data_dir.parent / f"{data_dir.name}-seeds.txt", urls)
    return [
        "run",
        "--data-dir",
        str(data_dir),
        "--seeds",
        str(seeds),
        "--config",
        str(config),
        *sets(*assignments),
    ]


def run_crawl(data_dir: Path, urls: list[str], config: Path, *assignments: str) -> int:
    """`crawler run --config FILE` in-process; returns the exit code."""
    return main(run_args(data_dir, urls, config, *assignments))


def request_headers(data_dir: Path) -> dict[str, list[dict[str, str]]]:
    """URL -> the HTTP headers (names lower-cased) of each WARC request record for it."""
    found: dict[str, list[dict[str, str]]] = {}
    for path in sorted((data_dir / "warc").glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type != "request":
                    continue
                url = record.rec_headers.get_header("WARC-Target-URI")
                headers = {k.lower(): v for k, v in record.http_headers.headers}
                found.setdefault(url, []).append(headers)
    return found


def readable_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed too when it is gzip (WARC and rotated index files)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        with suppress(OSError, EOFError):
            return data + gzip.decompress(data)
    return data


def files_containing(folder: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in any file under `folder` (gzip read through)."""
    hits: list[tuple[str, str]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = readable_bytes(path)
        hits += [(str(path.relative_to(folder)), n) for n in needles if n.encode() in data]
    return hits
