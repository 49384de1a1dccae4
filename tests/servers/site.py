"""A programmable, hostile HTTP/1.1 site on loopback that the crawler's tests fetch from.

A test builds a tiny site (``site.route("/a", ok(b"hi"))``), points the crawler at
``site.url("/a")`` and then asserts on what the server saw: every request is recorded as a
:class:`Hit` (what was asked, when, on which TCP connection), and the site keeps the peak
number of requests in flight. Handlers write responses through :class:`Conn`
(tests/servers/handlers.py has well-behaved and hostile ones). Keep-alive as in HTTP/1.1.
"""

from __future__ import annotations

import functools
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias
from urllib.parse import urlsplit

from tests.servers.core import IDLE_TIMEOUT, LoopbackServer
from tests.servers.wire import RequestReader, body_length, keep_alive, parse_head, status_line


@dataclass
class Hit:
    """One request as the server saw it.

    ``finished`` is taken just before the response's last write, or when the handler
    returns if that comes first (see ``Conn.finish``): a client that has read a whole
    response never finds its hit still in flight.
    """

    method: str
    target: str  # the request target as sent, query string included
    headers: dict[str, str]  # names lower-cased; repeated fields joined with ", "
    started: float  # time.monotonic() when the request line was fully read
    finished: float | None  # time.monotonic() when done; None while in flight
    connection: int  # serial number of the TCP connection, from 1
    body: bytes = b""  # the request body (Content-Length framed)
    client_cert: dict[str, Any] | None = None  # the peer's certificate (mutual TLS)

    @property
    def path(self) -> str:
        """The target; of an absolute-form target (to a proxy), its path and query only."""
        if not self.target.lower().startswith(("http://", "https://")):
            return self.target
        split = urlsplit(self.target)
        return (split.path or "/") + (f"?{split.query}" if split.query else "")


class Conn:
    """The client connection as one handler sees it: answer properly, or misbehave."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        method: str,
        keep_alive: bool,
        stopping: threading.Event,
        release: Callable[[socket.socket], None],
        finish: Callable[[], None],
    ) -> None:
        self.sock = sock  # for a tunnel: the proxies relay raw bytes over it
        self._method = method
        self._stopping = stopping
        self._release = release
        self._finish = finish
        self.keep_alive = keep_alive  # False: the connection ends after this response
        self.head_sent = False

    @property
    def stopping(self) -> bool:
        """True once the site is shutting down: long-running handlers should give up."""
        return self._stopping.is_set()

    def write(self, data: bytes) -> None:
        """Send raw bytes; raises OSError once the client has gone."""
        self.sock.sendall(data)

    def finish(self) -> None:
        """Mark the request finished now (``Hit.finished``, no longer in flight).

        A handler that writes raw bytes calls this just before its last write, so that a
        client which has read the whole response never sees its hit still in flight.
        ``respond()``, ``close()`` and ``reset()`` call it themselves; otherwise the
        handler's return does.
        """
        self._finish()

    def send_head(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """Send the status line and header fields, adding ``Connection: close`` if ending."""
        self.write(self._head(status, headers))

    def respond(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        """Send a whole response in one write; Content-Length is added unless framed."""
        fields = dict(headers or {})
        names = {name.lower() for name in fields}
        framed = {"content-length", "transfer-encoding"} & names
        if not framed and not (status < 200 or status in (204, 304)):
            fields["Content-Length"] = str(len(body))
        head = self._head(status, fields)
        self.finish()
        self.write(head if self._method == "HEAD" else head + body)

    def no_keep_alive(self) -> None:
        """End the connection (cleanly) once the handler returns."""
        self.keep_alive = False

    def close(self) -> None:
        """Send FIN now, after whatever was written; the client sees a clean end of stream."""
        self.keep_alive = False
        self.finish()
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), dropping anything unsent."""
        self.keep_alive = False
        self.finish()
        with suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._release(self.sock)

    def sleep(self, seconds: float) -> bool:
        """Wait; True if the whole time passed, False if the site started stopping."""
        return not self._stopping.wait(max(0.0, seconds))

    def _head(self, status: int, headers: Mapping[str, str] | None) -> bytes:
        fields = dict(headers or {})
        given = {name.lower(): value.lower() for name, value in fields.items()}
        if "close" in given.get("connection", ""):
            self.keep_alive = False
        elif "connection" not in given and not self.keep_alive:
            fields["Connection"] = "close"
        lines = [status_line(status), *(f"{name}: {value}" for name, value in fields.items())]
        self.head_sent = True
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Handler: TypeAlias = Callable[[Conn, Hit], None]


class SiteFactory(Protocol):
    """The type of the ``make_site`` fixture."""

    def __call__(self, host: str = "127.0.0.1") -> Site: ...


def _not_found(conn: Conn, hit: Hit) -> None:
    conn.respond(404, b"not found", {"Content-Type": "text/plain"})


class Site(LoopbackServer):
    """An HTTP/1.1 server on a loopback address and an OS-chosen port, with routes.

    With ``ssl_context`` it speaks HTTPS, and unless told otherwise drops a client that
    is silent for ``IDLE_TIMEOUT`` seconds (which bounds a handshake that never ends).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> None:
        if ssl_context is not None and idle_timeout is None:
            idle_timeout = IDLE_TIMEOUT
        super().__init__(host, ssl_context=ssl_context, idle_timeout=idle_timeout)
        self._routes: dict[str, Handler] = {}
        self._default: Handler = _not_found
        self._hits: list[Hit] = []
        self._in_flight = 0
        self._max_in_flight = 0

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.address}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, handler: Handler) -> None:
        """Serve exactly ``path`` (query included) with ``handler``; ``"*"`` is the default."""
        with self._lock:
            if path == "*":
                self._default = handler
            else:
                self._routes[path] = handler

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def hits_for(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being handled at the same time, over the whole site."""
        with self._lock:
            return self._max_in_flight

    def serve(self, sock: socket.socket, serial: int) -> None:
        """Requests one after another until either side ends the connection."""
        reader = RequestReader(sock)
        while not self.stopping.is_set():
            request = reader.head()
            if request is None or not self._handle(sock, serial, reader, *request):
                break

    def _handle(
        self, sock: socket.socket, serial: int, reader: RequestReader, head: bytes, line_at: float
    ) -> bool:
        """Record, read the body, run the handler; True to keep the connection."""
        method, target, version, headers = parse_head(head)
        cert = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        hit = Hit(method, target, headers, line_at, None, serial, client_cert=cert or None)
        with self._lock:
            self._hits.append(hit)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            handler = self._routes.get(target, self._default)
        conn = Conn(
            sock,
            method=method.upper(),
            keep_alive=keep_alive(version, headers),
            stopping=self.stopping,
            release=self.release,
            finish=functools.partial(self._finish, hit),
        )
        try:
            self._read_body(conn, reader, hit)
            handler(conn, hit)
        except OSError:  # the client went away, or the site is stopping
            conn.keep_alive = False
        except Exception as exc:  # a bug in a test's handler: answer 500, keep it for later
            self._fail(conn, exc)
        finally:
            conn.finish()
        return conn.keep_alive

    def _read_body(self, conn: Conn, reader: RequestReader, hit: Hit) -> None:
        size = body_length(hit.headers)
        if size is None:  # cannot be framed: answer, then close
            conn.no_keep_alive()
            return
        if size > 0 and "100-continue" in hit.headers.get("expect", "").lower():
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        hit.body = reader.body(size)

    def _finish(self, hit: Hit) -> None:
        with self._lock:
            if hit.finished is None:
                hit.finished = time.monotonic()
                self._in_flight -= 1

    def _fail(self, conn: Conn, exc: Exception) -> None:
        self.failed(exc)
        conn.keep_alive = False
        if not conn.head_sent:
            body = f"handler failed: {exc!r}".encode()
            with suppress(OSError):
                conn.respond(500, body, {"Content-Type": "text/plain"})
