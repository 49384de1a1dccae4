"""Transport of the fetcher: guarded DNS + connect, one small pool per origin, proxies, and
the mapping of httpx2 errors onto the crawler's own."""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import anyio
import httpcore2
import httpx2

from crawler import errors
from crawler.dns import Resolver
from crawler.guard import AddressGuard
from crawler.settings import FetchSettings

KEEPALIVE_SECONDS = 30.0
ACCEPT_ENCODING = "gzip, deflate"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves host names (through the crawl's resolver) and connects only to addresses the
    guard permits."""

    def __init__(
        self,
        guard: AddressGuard | None,
        opened: ContextVar[list[str] | None],
        resolver: Resolver | None = None,
    ) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._guard = guard
        self._opened = opened
        self._resolver = resolver or Resolver()

    async def _addresses(self, host: str, port: int) -> list[str]:
        if is_ip(host):
            if self._guard is not None and not self._guard.permits(host, port):
                raise errors.BlockedAddress(f"{host} is a blocked address")
            return [host]
        found = list(await self._resolver.resolve(host))
        if self._guard is None:
            return found
        allowed = [a for a in found if self._guard.permits(a, port)]
        if not allowed:
            raise errors.BlockedAddress(f"{host} resolves to blocked address(es) {found}")
        return allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        opened = self._opened.get()
        if opened is not None:
            opened.append(host)
        last: Exception | None = None
        for address in await self._addresses(host, port):
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
            else:
                return Connection(stream)
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:  # pragma: no cover - never configured
        raise errors.BlockedAddress("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class Connection(httpcore2.AsyncNetworkStream):
    """A connected stream whose fixed facts (socket, addresses, TLS object) are looked up once.

    anyio answers each `extra()` lookup by building every socket attribute afresh, with a
    getpeername() system call; httpcore2 asks for the raw socket before every request on a
    kept-alive connection (to see whether the server closed it) and the fetcher asks for
    the peer address of every response. Those answers never change for one stream."""

    __slots__ = ("_facts", "_inner")

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._facts: dict[str, Any] = {}

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return Connection(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return readable(self.get_extra_info("socket"))
        try:
            return self._facts[info]
        except KeyError:
            fact = self._facts[info] = self._inner.get_extra_info(info)
            return fact


def readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once: data waiting, the peer's close, or no socket."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class PoolTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport with our network backend plugged into httpcore2's pool."""

    def __init__(self, common: dict[str, Any], proxy: str, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        if proxy.startswith("socks5"):
            url = httpx2.URL(proxy)
            self._pool = httpcore2.AsyncSOCKSProxy(
                proxy_url=httpcore2.URL(
                    scheme=b"socks5", host=url.raw_host, port=url.port, target=url.raw_path
                ),
                proxy_auth=(url.username, url.password) if url.username else None,
                ssl_context=ssl_context,
                **common,
            )
        elif proxy:
            url = httpx2.URL(proxy)
            self._pool = httpcore2.AsyncHTTPProxy(
                proxy_url=httpcore2.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                proxy_auth=(url.username, url.password) if url.username else None,
                ssl_context=ssl_context,
                **common,
            )
        else:
            self._pool = httpcore2.AsyncConnectionPool(ssl_context=ssl_context, **common)


class Tracked(httpx2.AsyncByteStream):
    """A response body stream that reports when it is closed."""

    def __init__(self, stream: httpx2.AsyncByteStream, on_close: Callable[[], None]) -> None:
        self._stream = stream
        self._on_close: Callable[[], None] | None = on_close

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # no extra generator layer per chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None


Origin = tuple[bytes, bytes, int | None]


class PerOriginTransport(httpx2.AsyncBaseTransport):
    """Routes each request to a small connection pool of its own origin.

    httpcore2's pool scans every connection it holds (probing idle sockets) whenever a
    request starts or ends, and a pool shared by many hosts evicts one host's keep-alive
    connections to open another's. One pool per origin, sized by the per-host
    concurrency, keeps both costs at the scale of one host. Idle pools beyond
    `max_idle` are closed, least recently used first.
    """

    def __init__(self, make: Callable[[], PoolTransport], max_idle: int) -> None:
        self._make = make
        self._max_idle = max_idle
        self._pools: dict[Origin, PoolTransport] = {}
        self._active: dict[Origin, int] = {}
        self._idle: dict[Origin, None] = {}  # insertion order = least recently used first

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        origin = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        pool = self._pools.get(origin)
        if pool is None:
            await self._evict()
            pool = self._pools.get(origin)  # another request may have made it meanwhile
            if pool is None:
                pool = self._pools[origin] = self._make()
        self._idle.pop(origin, None)
        self._active[origin] = self._active.get(origin, 0) + 1
        try:
            response = await pool.handle_async_request(request)
        except BaseException:
            self._release(origin)
            raise
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = Tracked(response.stream, lambda: self._release(origin))
        return response

    def _release(self, origin: Origin) -> None:
        left = self._active[origin] - 1
        if left:
            self._active[origin] = left
        else:
            del self._active[origin]
            self._idle[origin] = None

    async def _evict(self) -> None:
        while len(self._idle) >= self._max_idle:
            origin = next(iter(self._idle))
            del self._idle[origin]
            await self._pools.pop(origin).aclose()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def proxy_from(settings: FetchSettings) -> str:
    if settings.proxy:
        return settings.proxy
    if settings.trust_env:
        found = urllib.request.getproxies()
        return found.get("https") or found.get("http") or ""
    return ""


def translate(exc: Exception) -> errors.FetchError:
    """Map an httpx2 exception onto the crawler's own tree (the one boundary for them)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx2.ConnectTimeout):
        return errors.FetchTimeout(f"connect timeout: {text}")
    if isinstance(exc, httpx2.TimeoutException):
        return errors.FetchTimeout(text)
    if isinstance(exc, httpx2.ConnectError):
        if isinstance(exc.__context__, ssl.SSLError) or "SSL" in text or "certificate" in text:
            return errors.TLSFailed(text)
        return errors.ConnectFailed(text)
    if isinstance(exc, httpx2.ReadError | httpx2.WriteError | httpx2.CloseError):
        return errors.ConnectionLost(text)
    if isinstance(exc, httpx2.ProtocolError):
        return errors.ProtocolError(text)
    if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
        return errors.InvalidURL(text)
    return errors.ProtocolError(f"{type(exc).__name__}: {text}")
