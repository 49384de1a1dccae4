"""Handlers for a Site: well-behaved answers, and hostile ones a crawler must survive.

Stalls, resets, lying lengths, endless bodies, gzip bombs: each factory returns a
``Handler`` for ``Site.route``. The hostile ones give up when the site stops.
"""

from __future__ import annotations

import functools
import gzip
import struct
import threading
import time
import zlib

from tests.servers.site import Conn, Handler, Hit

_TICK = 0.01  # shortest pause between two writes of trickle()


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


class Versioned:
    """A page whose server honours conditional requests (RFC 9110, 13.1): 304 with its
    validators when If-None-Match names its ETag (or, without If-None-Match, when
    If-Modified-Since is its Last-Modified), else 200 with them. `change` gives it a new
    version, as a site that was edited."""

    def __init__(
        self, body: bytes, etag: str | None = None, last_modified: str | None = None
    ) -> None:
        self.change(body, etag, last_modified)

    def change(self, body: bytes, etag: str | None, last_modified: str | None = None) -> None:
        self.body, self.etag, self.last_modified = body, etag, last_modified

    def _validators(self) -> dict[str, str]:
        fields = {"ETag": self.etag, "Last-Modified": self.last_modified}
        return {name: value for name, value in fields.items() if value is not None}

    def __call__(self, conn: Conn, hit: Hit) -> None:
        match = hit.headers.get("if-none-match")
        since = hit.headers.get("if-modified-since")
        if match is not None:
            fresh = self.etag is not None and self.etag in [t.strip() for t in match.split(",")]
        else:
            fresh = since is not None and since == self.last_modified
        if fresh:
            conn.respond(304, b"", self._validators())
        else:
            conn.respond(200, self.body, {"Content-Type": "text/html", **self._validators()})
