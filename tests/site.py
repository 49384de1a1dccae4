"""A programmable, hostile HTTP/1.1 server on loopback that the crawler's tests fetch from.

A test builds a tiny site (``site.route("/a", ok(b"hi"))``), points the crawler at
``site.url("/a")`` and then asserts on what the server saw: every request is recorded as a
:class:`Hit` (what was asked, when, on which TCP connection), and the site keeps the peak
number of requests in flight. Handlers write responses through :class:`Conn`; the factories
at the end of this module build well-behaved ones and hostile ones (stalls, resets, lying
lengths, endless bodies, gzip bombs).

Stdlib only, one thread per connection, keep-alive as in HTTP/1.1. ``stop()`` wakes every
sleeping handler and every blocked socket, so a test's teardown never hangs.
"""

from __future__ import annotations

import functools
import gzip
import ipaddress
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, TypeAlias

_MAX_HEAD = 65536  # bytes of request line + headers before we give up with 431
_LINGER = 1.0  # seconds a clean close waits for the client's own FIN
_JOIN = 2.0  # seconds stop() waits for the server's threads
_TICK = 0.01  # shortest pause between two writes of trickle()


@dataclass
class Hit:
    """One request as the server saw it.

    ``finished`` is taken just before the response's last write, or when the handler
    returns if that comes first (see ``Conn.finish``): a client that has read a whole
    response never finds its hit still in flight.
    """

    method: str
    path: str  # the request target, query string included
    headers: dict[str, str]  # names lower-cased; repeated fields joined with ", "
    started: float  # time.monotonic() when the request line was fully read
    finished: float | None  # time.monotonic() when done; None while in flight
    connection: int  # serial number of the TCP connection, from 1


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
        self._sock = sock
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
        self._sock.sendall(data)

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
            self._sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), dropping anything unsent."""
        self.keep_alive = False
        self.finish()
        with suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._release(self._sock)

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
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{name}: {value}" for name, value in fields.items()]
        self.head_sent = True
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Handler: TypeAlias = Callable[[Conn, Hit], None]


class SiteFactory(Protocol):
    """The type of the ``make_site`` fixture."""

    def __call__(self, host: str = "127.0.0.1") -> Site: ...


class Site:
    """An HTTP/1.1 server on a loopback address and an OS-chosen port, with routes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"Site host must be a loopback address, got {host!r}")
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._routes: dict[str, Handler] = {}
        self._default: Handler = ok(b"not found", 404, content_type="text/plain")
        self._hits: list[Hit] = []
        self._errors: list[Exception] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections = 0
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted."""
        with self._lock:
            return self._connections

    @property
    def errors(self) -> list[Exception]:
        """Handler bugs (anything but OSError); each was answered with a 500."""
        with self._lock:
            return list(self._errors)

    def start(self) -> Site:
        if self._listener is not None:
            raise RuntimeError("Site already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((self.host, 0))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"site-{self.port}-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every client socket; wait briefly for the threads."""
        with self._lock:
            if self._listener is None or self._stopping.is_set():
                return
            self._stopping.set()
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        self._wake_acceptor()
        deadline = time.monotonic() + _JOIN
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()

    def __enter__(self) -> Site:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wake_acceptor(self) -> None:
        assert self._listener is not None
        assert self._acceptor is not None
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._acceptor.join(0.5)
        if self._acceptor.is_alive():  # elsewhere: knock once, the loop sees _stopping
            with suppress(OSError), socket.create_connection((self.host, self.port), 0.5):
                pass
            self._acceptor.join(_JOIN)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    return
                self._connections += 1
                self._open.add(sock)
                self._threads = [thread for thread in self._threads if thread.is_alive()]
                thread = threading.Thread(
                    target=self._serve,
                    args=(sock, self._connections),
                    name=f"site-{self.port}-conn-{self._connections}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _release(self, sock: socket.socket) -> None:
        """Forget and close a client socket (idempotent; stop() only touches open ones)."""
        with self._lock:
            self._open.discard(sock)
            sock.close()

    def _serve(self, sock: socket.socket, serial: int) -> None:
        """One connection: requests one after another until either side ends it."""
        reader = _Reader(sock)
        try:
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while not self._stopping.is_set():
                    request = reader.head()
                    if request is None or not self._handle(sock, serial, reader, *request):
                        break
        finally:
            self._linger_close(sock)

    def _handle(
        self, sock: socket.socket, serial: int, reader: _Reader, head: bytes, line_at: float
    ) -> bool:
        """Record, read the body, run the handler; True to keep the connection."""
        method, target, version, headers = _parse(head)
        hit = Hit(method, target, headers, line_at, None, serial)
        with self._lock:
            self._hits.append(hit)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            handler = self._routes.get(target, self._default)
        conn = Conn(
            sock,
            method=method.upper(),
            keep_alive=_keep_alive(version, headers),
            stopping=self._stopping,
            release=self._release,
            finish=functools.partial(self._finish, hit),
        )
        try:
            _read_body(conn, reader, headers)
            handler(conn, hit)
        except OSError:  # the client went away, or the site is stopping
            conn.keep_alive = False
        except Exception as exc:  # a bug in a test's handler: answer 500, keep it for later
            self._fail(conn, exc)
        finally:
            conn.finish()
        return conn.keep_alive

    def _finish(self, hit: Hit) -> None:
        with self._lock:
            if hit.finished is None:
                hit.finished = time.monotonic()
                self._in_flight -= 1

    def _fail(self, conn: Conn, exc: Exception) -> None:
        with self._lock:
            self._errors.append(exc)
        conn.keep_alive = False
        if not conn.head_sent:
            body = f"handler failed: {exc!r}".encode()
            with suppress(OSError):
                conn.respond(500, body, {"Content-Type": "text/plain"})

    def _linger_close(self, sock: socket.socket) -> None:
        """Send FIN, let the client read and close first, then close (no RST on the data)."""
        with suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # fails harmlessly if close() already did it
        with suppress(OSError):
            sock.settimeout(_LINGER)
            deadline = time.monotonic() + _LINGER
            while time.monotonic() < deadline and sock.recv(65536):
                pass
        self._release(sock)


class _Reader:
    """Reads request heads and bodies off one socket, keeping what it read ahead."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def head(self) -> tuple[bytes, float] | None:
        """The next request head and when its request line arrived; None at end of stream."""
        line_at: float | None = None
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")  # stray CRLFs between requests
            if line_at is None and b"\n" in self._buffer:
                line_at = time.monotonic()
            end = _head_end(self._buffer)
            if end is not None and line_at is not None:
                head = bytes(self._buffer[: end[0]])
                del self._buffer[: end[1]]
                return head, line_at
            if len(self._buffer) > _MAX_HEAD:
                self._sock.sendall(b"HTTP/1.1 431 Too Large\r\nConnection: close\r\n\r\n")
                return None
            data = self._sock.recv(65536)
            if not data:
                return None
            self._buffer += data

    def discard(self, size: int) -> None:
        """Read and drop ``size`` bytes of request body."""
        taken = min(size, len(self._buffer))
        del self._buffer[:taken]
        size -= taken
        while size > 0:
            data = self._sock.recv(min(size, 65536))
            if not data:
                raise ConnectionResetError("client closed in the request body")
            size -= len(data)


def _head_end(buffer: bytearray) -> tuple[int, int] | None:
    """Where the head ends and the body starts, accepting bare LF line ends."""
    ends = [(i, i + len(sep)) for sep in (b"\n\r\n", b"\n\n") if (i := buffer.find(sep)) >= 0]
    return min(ends) if ends else None


def _parse(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Method, target, version and lower-cased header fields; tolerant of junk."""
    lines = head.decode("latin-1").split("\n")
    method, target, version = [*lines[0].split(), "", "", ""][:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return method, target, version, headers


def _keep_alive(version: str, headers: Mapping[str, str]) -> bool:
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if "close" in tokens:
        return False
    return version.upper() == "HTTP/1.1" or "keep-alive" in tokens


def _read_body(conn: Conn, reader: _Reader, headers: Mapping[str, str]) -> None:
    if "transfer-encoding" in headers:  # not supported: answer, then close
        conn.no_keep_alive()
        return
    try:
        size = int(headers.get("content-length", "0"))
    except ValueError:
        conn.no_keep_alive()
        return
    if size > 0 and "100-continue" in headers.get("expect", "").lower():
        conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    reader.discard(size)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# -- handler factories ---------------------------------------------------------------------


def ok(
    body: bytes = b"ok",
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "text/html",
) -> Handler:
    """A plain response with Content-Length."""
    fields = {"Content-Type": content_type, **(headers or {})}
    return lambda conn, hit: conn.respond(status, body, fields)


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Handler:
    """A response with the given status code (and nothing else unless asked)."""
    return lambda conn, hit: conn.respond(code, body, headers)


def sequence(*handlers: Handler) -> Handler:
    """The n-th hit of a path is answered by the n-th handler; the last one repeats."""
    if not handlers:
        raise ValueError("sequence() needs at least one handler")
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def handle(conn: Conn, hit: Hit) -> None:
        with lock:
            n = counts.get(hit.path, 0)
            counts[hit.path] = n + 1
        handlers[min(n, len(handlers) - 1)](conn, hit)

    return handle


def redirect(location: str, code: int = 301) -> Handler:
    return lambda conn, hit: conn.respond(code, b"", {"Location": location})


def retry_after(code: int, value: str) -> Handler:
    """E.g. ``retry_after(429, "2")`` or with an HTTP-date."""
    return lambda conn, hit: conn.respond(code, b"", {"Retry-After": value})


def slow(seconds: float, body: bytes = b"ok") -> Handler:
    """Answer 200 after ``seconds`` (for measuring concurrency and timeouts)."""

    def handle(conn: Conn, hit: Hit) -> None:
        if conn.sleep(seconds):
            conn.respond(200, body, {"Content-Type": "text/html"})
        else:
            conn.close()

    return handle


def stall_headers(seconds: float) -> Handler:
    """Read the request, send nothing for ``seconds``, then close the connection."""

    def handle(conn: Conn, hit: Hit) -> None:
        conn.sleep(seconds)
        conn.close()

    return handle


def trickle(total: int, per_second: int) -> Handler:
    """Content-Length ``total``, then the body at ``per_second`` bytes a second.

    Up to 100 bytes a second that is one 1-byte write every ``1/per_second`` seconds; faster
    rates write every 10 ms instead. The first write follows the head at once.
    """
    interval = max(1.0 / per_second, _TICK)
    step = max(1, round(per_second * interval))

    def handle(conn: Conn, hit: Hit) -> None:
        conn.send_head(200, {"Content-Length": str(total), "Content-Type": "text/html"})
        begun = time.monotonic()
        for n, offset in enumerate(range(0, total, step)):
            if not conn.sleep(begun + n * interval - time.monotonic()):
                conn.close()
                return
            if offset + step >= total:
                conn.finish()
            conn.write(b"x" * min(step, total - offset))

    return handle


def reset_mid_body(declared: int, sent: int) -> Handler:
    """Content-Length ``declared``, ``sent`` bytes of body, then a TCP RST."""

    def handle(conn: Conn, hit: Hit) -> None:
        conn.send_head(200, {"Content-Length": str(declared), "Content-Type": "text/html"})
        conn.write(b"x" * sent)
        conn.reset()

    return handle


def endless(chunk: int = 65536) -> Handler:
    """A chunked body that never ends (until the client goes away or the site stops)."""
    frame = b"%x\r\n" % chunk + b"x" * chunk + b"\r\n"

    def handle(conn: Conn, hit: Hit) -> None:
        conn.send_head(200, {"Transfer-Encoding": "chunked", "Content-Type": "text/html"})
        while not conn.stopping:
            conn.write(frame)
        conn.close()

    return handle


def lying_length(declared: int, sent: int) -> Handler:
    """Content-Length ``declared`` but only ``sent`` bytes, then a clean close (FIN)."""

    def handle(conn: Conn, hit: Hit) -> None:
        conn.send_head(200, {"Content-Length": str(declared), "Content-Type": "text/html"})
        conn.write(b"x" * sent)
        conn.close()

    return handle


def gzip_body(data: bytes) -> Handler:
    """``data``, correctly gzipped, with Content-Encoding: gzip."""
    return _gzipped(gzip.compress(data, mtime=0))


def gzip_bomb(inflated: int) -> Handler:
    """Gzip of ``inflated`` zero bytes: 1 GiB inflated is about 1 MB on the wire."""
    return _gzipped(_zeros_gzip(inflated))


def truncated_gzip(data: bytes) -> Handler:
    """A complete HTTP message whose gzip stream lacks its last 20 bytes (keeps the header)."""
    whole = gzip.compress(data, mtime=0)
    return _gzipped(whole[: max(10, len(whole) - 20)])


def corrupt_gzip() -> Handler:
    """Content-Encoding: gzip over a gzip header followed by garbage (invalid block type)."""
    return _gzipped(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff\xfe\xfd garbage" * 4)


def chunked(parts: list[bytes]) -> Handler:
    """Transfer-Encoding: chunked, one chunk per non-empty part, each in its own write."""

    def handle(conn: Conn, hit: Hit) -> None:
        conn.send_head(200, {"Transfer-Encoding": "chunked", "Content-Type": "text/html"})
        for part in parts:
            if part:
                conn.write(b"%x\r\n%s\r\n" % (len(part), part))
        conn.finish()
        conn.write(b"0\r\n\r\n")

    return handle


def _gzipped(body: bytes) -> Handler:
    fields = {"Content-Encoding": "gzip", "Content-Type": "text/html"}
    return lambda conn, hit: conn.respond(200, body, fields)


@functools.cache
def _zeros_gzip(inflated: int) -> bytes:
    """Gzip of ``inflated`` zero bytes, built from one compressed MiB repeated.

    After a full flush deflate starts afresh, so every further MiB compresses to the same
    bytes: we compress one and repeat it, instead of deflating the whole size.
    """
    unit = 1 << 20
    count, rest = divmod(inflated, unit)
    zeros = bytes(unit)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH) if count else b""
    tail = deflate.compress(bytes(rest)) + deflate.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * count + tail + struct.pack("<II", crc, inflated & 0xFFFFFFFF)
