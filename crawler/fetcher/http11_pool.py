"""The connections of one plain-HTTP origin (http11.py's), as an httpx2 transport."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx2

from crawler.fetcher.http11 import Connection, open_connection
from crawler.fetcher.network import note_connection

Connect = Callable[[str, int, float | None], Awaitable[Connection]]


class _Waiter:
    """A request queued for a connection of a full pool."""

    __slots__ = ("connection", "gave_up", "handed", "ready")

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.connection: Connection | None = None  # None: a free slot to connect with
        self.handed = False
        self.gave_up = False


class Http11Pool(httpx2.AsyncBaseTransport):
    """The connections of one origin: at most `max_connections`, idle ones kept for
    `keepalive_expiry` seconds, requests beyond the limit queued first come first served."""

    def __init__(self, connect: Connect, max_connections: int, keepalive_expiry: float) -> None:
        self._connect = connect
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._idle: list[Connection] = []  # the most recently used last
        self._count = 0  # connections open or opening
        self._queue: deque[_Waiter] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        connection = await self._acquire(request, timeouts)
        try:
            await connection.send(request, timeouts)
        except BaseException:
            await self._release(connection, reusable=False)
            raise
        return httpx2.Response(
            status_code=connection.status,
            headers=connection.headers,
            stream=Body(self, connection, timeouts.get("read")),
            extensions={
                "http_version": connection.version,
                "reason_phrase": connection.reason,
                "network_stream": connection,
            },
        )

    async def _acquire(self, request: httpx2.Request, timeouts: dict[str, Any]) -> Connection:
        if self._closed:
            raise httpx2.PoolTimeout("the pool is closed")
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(now, self._expiry):
                return connection
            self._count -= 1
            await connection.aclose()
        if self._count < self._max:
            self._count += 1
        else:
            handed = await self._wait_turn(timeouts.get("pool"))
            if handed is not None:
                return handed
        url = request.url
        try:
            return await self._connect(url.host, url.port or 80, timeouts.get("connect"))
        except BaseException:
            self._pass_on(None)
            raise

    async def _wait_turn(self, timeout: float | None) -> Connection | None:
        """Queue for the pool: a connection handed over, or None for a slot to connect."""
        waiter = _Waiter()
        self._queue.append(waiter)
        try:
            with anyio.fail_after(timeout):
                await waiter.ready.wait()
        except BaseException as exc:
            if waiter.handed:
                self._pass_on(waiter.connection)  # handed over just as this one gave up
            waiter.gave_up = True
            if isinstance(exc, TimeoutError):
                raise httpx2.PoolTimeout(f"no connection free within {timeout}s") from None
            raise
        return waiter.connection

    async def _release(self, connection: Connection, *, reusable: bool) -> None:
        if reusable and not self._closed:
            connection.idle(time.monotonic())
            self._pass_on(connection)
        else:
            self._pass_on(None)
            await connection.aclose()

    def _pass_on(self, connection: Connection | None) -> None:
        """Give a connection (None: a free slot) to the first request queued, else keep it."""
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.gave_up:
                waiter.connection, waiter.handed = connection, True
                waiter.ready.set()
                return
        if connection is None:
            self._count -= 1
        else:
            self._idle.append(connection)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        self._count -= len(idle)
        for connection in idle:
            await connection.aclose()


class Body(httpx2.AsyncByteStream):
    """A response body as it arrives; closing it gives the connection back to its pool."""

    def __init__(self, pool: Http11Pool, connection: Connection, timeout: float | None) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        while chunk := await connection.chunk(self._timeout):
            yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool._release(connection, reusable=connection.reusable)


def connector(addresses: Callable[[str, int], Awaitable[list[str]]]) -> Connect:
    """Connects to the first of a host's `addresses` (resolved and guarded) that answers."""

    async def connect(host: str, port: int, timeout: float | None) -> Connection:
        note_connection(host)
        last: Exception | None = None
        for address in await addresses(host, port):
            try:
                return await open_connection(address, port, timeout)
            except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    return connect
