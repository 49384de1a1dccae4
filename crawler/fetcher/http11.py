"""HTTP/1.1 for plain-HTTP origins reached directly: an httpx2 transport of asyncio
protocols, responses parsed by httptools (llhttp, the parser of Node.js and uvicorn).

Why not httpcore2 here: on a small response most of a fetch's CPU went to its per-request
machinery (anyio cancel scopes per read and write, pool locks, h11's pure-Python parser at
about 70 us a response against 4 us for llhttp). Why asyncio (the one exception to house
rule 2, see tests/test_imports.py): anyio's streams cost a cancel scope per read and write
and pause and resume reading at each read; a protocol is woken by the loop directly.
Waiting for the pool and connecting use anyio as everywhere else.

What the fetcher relies on is kept: the httpx2 transport contract and httpx2's errors; at
most `max_connections` per origin with keep-alive expiry (http11_pool.py); the connect,
read, write and pool timeouts of the request's `timeout` extension; a connection the server
closed or wrote to while idle is never reused; the guard, the crawl's resolver,
`note_connection` and `mark_sending` of network.py. HTTPS and proxies stay on httpcore2
(TLS, ALPN and h2, CONNECT and SOCKS).

Parsing is as strict as llhttp's defaults but where h11 (httpcore2's parser, which the
crawl used before) accepts what old servers send: see LENIENCIES.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Any

import anyio
import httptools
import httpx2

from crawler.fetcher.network import mark_sending

READ_LIMIT = 256 * 1024  # body bytes held before the connection stops reading
MAX_HEAD = 100 * 1024  # a response head larger than this is refused (as httpcore2 does)
# What h11 accepts and llhttp refuses by default, each seen from real servers: a line ended
# by a bare LF, a folded header line (joined) and control bytes in a header value (CR, LF
# and NUL are refused later, by the fetcher), both Transfer-Encoding and Content-Length
# (chunked wins), spaces after a chunk size. Smuggling is a server's risk, not a client's.
LENIENCIES = {
    "lenient_optional_cr_before_lf": True,
    "lenient_headers": True,
    "lenient_chunked_length": True,
    "lenient_spaces_after_chunk_size": True,
}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE = re.compile(rb"[\r\n\x00]")


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a request at a time, its response parsed as bytes arrive.

    The protocol callbacks parse and wake the one task waiting (`send`, `chunk`)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None
        self._parser = httptools.HttpResponseParser(self)
        self._parser.set_dangerous_leniencies(**LENIENCIES)
        self._waiter: asyncio.Future[Any] | None = None
        self._drained: asyncio.Future[Any] | None = None  # set while writing is paused
        self._paused = False  # reading paused: READ_LIMIT body bytes wait to be taken
        self.expecting = False  # a request is out whose response is not taken yet
        self.closed = False  # the server closed, the connection broke, or we closed it
        self.lost: BaseException | None = None  # what the connection broke with
        self.error: httpx2.TransportError | None = None
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.version = b"HTTP/1.1"
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.framed = False  # a Content-Length or chunked body: the close is no end
        self._head_bytes = 0
        self.chunks: deque[bytes] = deque()
        self._buffered = 0

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._peer = transport.get_extra_info("peername")

    def data_received(self, data: bytes) -> None:
        if not self.expecting or self.error is not None:
            self.close()  # bytes nobody asked for: what the server thinks is unknown
            return
        if not self.head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.keep_alive = False
            self.complete = self.head_done = True
        except httptools.HttpParserError as exc:
            self.error = httpx2.RemoteProtocolError(f"invalid response: {exc}")
        if not self.head_done and self._head_bytes > MAX_HEAD and self.error is None:
            self.error = httpx2.RemoteProtocolError(f"response head over {MAX_HEAD} bytes")
        if self._buffered > READ_LIMIT and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # --- httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request
            self.error = httpx2.RemoteProtocolError("more data after the response")

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # a trailer of a chunked body: dropped, as httpcore2 drops them
        self.headers.append((name, value))
        if len(name) in (14, 17):
            lowered = name.lower()
            if lowered == b"content-length" or lowered == b"transfer-encoding":
                self.framed = True

    def on_headers_complete(self) -> None:
        if self.complete:
            return  # the head of a second response (refused in on_message_begin)
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # informational (100, 103): the final response follows
            self.reason = b""
            self.framed = False
            return
        self.status = status
        self.version = _VERSIONS.get(self._parser.get_http_version(), b"HTTP/1.1")
        self.keep_alive = self._parser.should_keep_alive()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True

    # --- the requesting side

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        """Until a protocol callback wakes us; ReadTimeout after `timeout` seconds."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            timed_out = await _within(waiter, timeout)
        finally:
            self._waiter = None
        if timed_out:
            raise httpx2.ReadTimeout(f"nothing read for {timeout}s")

    async def send(self, request: httpx2.Request, timeouts: dict[str, Any]) -> None:
        """Write `request` and wait for its response's head."""
        transport = self._transport
        assert transport is not None
        self._reset()
        head = request_head(request)
        self.expecting = True
        mark_sending()
        transport.write(head)
        if has_body(request):
            await self._send_body(request, timeouts.get("write"))
        elif self._drained is not None:
            await self._drain(timeouts.get("write"))
        read = timeouts.get("read")
        while not self.head_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise self._closed_early()
            await self._wait(read)
        if self.error is not None and not self.complete:
            raise self.error

    async def _send_body(self, request: httpx2.Request, timeout: float | None) -> None:
        transport = self._transport
        assert transport is not None
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        async for part in request.stream:
            if part:
                transport.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                await self._drain(timeout)
        if chunked:
            transport.write(b"0\r\n\r\n")
        await self._drain(timeout)

    async def _drain(self, timeout: float | None) -> None:
        """Until the transport's write buffer is below its high-water mark again."""
        drained = self._drained
        if drained is None:
            return
        if self.closed:
            raise httpx2.WriteError(f"connection lost while sending: {self.lost}")
        if await _within(drained, timeout):
            raise httpx2.WriteTimeout(f"could not send for {timeout}s")

    def _closed_early(self) -> httpx2.TransportError:
        if self.lost is not None:
            return httpx2.ReadError(str(self.lost) or type(self.lost).__name__)
        return httpx2.RemoteProtocolError("Server disconnected without sending a response.")

    async def chunk(self, timeout: float | None) -> bytes:
        """The next part of the body; b"" at its end."""
        while True:
            if self.chunks:
                data = self.chunks.popleft()
                self._buffered -= len(data)
                if self._paused and self._buffered <= READ_LIMIT // 2:
                    self._paused = False
                    if self._transport is not None:
                        self._transport.resume_reading()
                return data
            if self.complete:
                return b""  # an error after the response's end only ends the connection
            if self.error is not None:
                raise self.error
            if self.closed:
                if self.lost is not None:
                    raise httpx2.ReadError(str(self.lost) or type(self.lost).__name__)
                if self.framed:
                    raise httpx2.RemoteProtocolError(
                        "peer closed connection without sending complete message body"
                    )
                self.complete = True  # the body ran to the close, as it said it would
                self.keep_alive = False
                return b""
            await self._wait(timeout)

    @property
    def reusable(self) -> bool:
        """Whether the response is read to its end and the connection may carry another."""
        return (
            self.complete
            and self.keep_alive
            and not self.closed
            and self.error is None
            and not self.chunks
        )

    def usable(self, now: float, expiry: float) -> bool:
        """Whether an idle connection may carry the next request: not expired and not
        closed (a close, or a byte from the server while idle, closes it at once)."""
        return not self.closed and now - self.idle_since < expiry

    def idle(self, now: float) -> None:
        self.expecting = False
        self.idle_since = now

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def aclose(self) -> None:
        self.close()

    def get_extra_info(self, name: str) -> Any:
        """What the fetcher asks of httpcore2's `network_stream` (the peer's address)."""
        return self._peer if name == "server_addr" else None


async def _within(future: asyncio.Future[Any], timeout: float | None) -> bool:
    """Wait for `future`, which only ever gets a result; True if `timeout` passed first.

    A timer, not a cancel scope: this runs at every read, where an anyio scope costs about
    14 us to enter and leave (httpcore2 entered one per read and per write)."""
    if timeout is None:
        await future
        return False
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        await future
    finally:
        timer.cancel()
    return future.result() is _TIMED_OUT


_TIMED_OUT: Any = object()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_TIMED_OUT)


def request_head(request: httpx2.Request) -> bytes:
    """The request line and header block, each header as httpx2 holds it."""
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or _UNSAFE.search(value):
            raise httpx2.LocalProtocolError(f"Illegal header: {name!r}")
        parts += (name, b": ", value, b"\r\n")
    if _UNSAFE.search(parts[2]) or b" " in parts[2]:
        raise httpx2.LocalProtocolError(f"Illegal target: {parts[2]!r}")
    parts.append(b"\r\n")
    return b"".join(parts)


def has_body(request: httpx2.Request) -> bool:
    headers = request.headers
    return "content-length" in headers or "transfer-encoding" in headers


_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}


async def open_connection(address: str, port: int, timeout: float | None) -> Connection:
    """A `Connection` to `address` (an IP address); httpx2's connect errors, as httpcore2
    raises them."""
    loop = asyncio.get_running_loop()
    try:
        with anyio.fail_after(timeout):
            _, connection = await loop.create_connection(Connection, address, port)
    except TimeoutError:
        raise httpx2.ConnectTimeout(f"connect to {address} port {port} timed out") from None
    except OSError as exc:
        raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
    return connection
