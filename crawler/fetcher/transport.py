"""Transport of the fetcher: the factory seam, one small pool per origin, proxies and TLS
material, and the mapping of httpx2 errors onto the crawler's own.

A `TransportFactory` makes the httpx2 transport of one transport spec; the Fetcher takes
one (tests pass an `httpx2.MockTransport`) and uses `GuardedPools` when given none.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx2

from crawler import errors
from crawler.dns import Resolver
from crawler.fetcher.http11_pool import Http11Pool, connector
from crawler.fetcher.network import GuardedBackend
from crawler.fetcher.pool import PoolTransport, new_pool
from crawler.guard import AddressGuard
from crawler.settings import FetchSettings
from crawler.specs import TransportSpec

KEEPALIVE_SECONDS = 30.0
ACCEPT_ENCODING = "gzip, deflate"


class TransportFactory(Protocol):
    """Makes the httpx2 transport for one transport spec (proxy and TLS material).

    The Fetcher calls it once per distinct spec it needs (once more per spec for OAuth2
    token requests, which must not share pools with the requests they authenticate) and
    closes what it made. A transport raises httpx2's errors, and calls
    `network.note_connection` whenever a request opens a connection: the failure of a
    request that opened none is taken for one on a kept-alive connection, which the
    worker retries once in place.
    """

    def __call__(self, spec: TransportSpec) -> httpx2.AsyncBaseTransport: ...


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

    def __init__(self, make: Callable[[Origin], httpx2.AsyncBaseTransport], max_idle: int) -> None:
        self._make = make
        self._max_idle = max_idle
        self._pools: dict[Origin, httpx2.AsyncBaseTransport] = {}
        self._active: dict[Origin, int] = {}
        self._idle: dict[Origin, None] = {}  # insertion order = least recently used first

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        origin = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        pool = self._pools.get(origin)
        if pool is None:
            await self._evict()
            pool = self._pools.get(origin)  # another request may have made it meanwhile
            if pool is None:
                pool = self._pools[origin] = self._make(origin)
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


class GuardedPools:
    """The default TransportFactory: for each spec, one small pool per origin, connecting
    only where the guard permits (behind a proxy the proxy connects: no guard then).
    Plain-HTTP origins reached directly get http11.py's pools, the others httpcore2's."""

    def __init__(
        self, settings: FetchSettings, guard: AddressGuard, *, resolver: Resolver, per_host: int
    ) -> None:
        self._settings = settings
        self._guard = guard
        self._resolver = resolver
        self._per_host = per_host

    def __call__(self, spec: TransportSpec) -> httpx2.AsyncBaseTransport:
        backend = GuardedBackend(None if spec.proxy else self._guard, self._resolver)
        pool_settings: dict[str, Any] = {
            "max_connections": self._per_host,
            "max_keepalive_connections": self._per_host,
            "keepalive_expiry": KEEPALIVE_SECONDS,
            "http1": True,
            "http2": self._settings.http2,
            "network_backend": backend,
        }
        proxy, ssl_context = spec.proxy, ssl_context_for(spec)
        connect = connector(backend.addresses)

        def make(origin: Origin) -> httpx2.AsyncBaseTransport:
            if origin[0] == b"http" and not proxy:
                return Http11Pool(connect, self._per_host, KEEPALIVE_SECONDS)
            return PoolTransport(new_pool(proxy, ssl_context, pool_settings))

        return PerOriginTransport(make, max_idle=self._settings.concurrency)


def ssl_context_for(spec: TransportSpec) -> ssl.SSLContext:
    if spec.verify:
        context = ssl.create_default_context(cafile=spec.ca_bundle or None)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if spec.client_cert:
        context.load_cert_chain(
            spec.client_cert, spec.client_key or None, password=spec.key_password or None
        )
    return context


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
        if caused_by(exc, ssl.SSLError):
            return errors.TLSFailed(text)
        return errors.ConnectFailed(text)
    if isinstance(exc, httpx2.ReadError | httpx2.WriteError | httpx2.CloseError):
        return errors.ConnectionLost(text)
    if isinstance(exc, httpx2.ProtocolError):
        return errors.ProtocolError(text)
    if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
        return errors.InvalidURL(text)
    return errors.ProtocolError(f"{type(exc).__name__}: {text}")


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `exc` or an error in its chain is a `kind`; the chain as a traceback shows
    it (each `__cause__`, else each `__context__` not hidden by `raise ... from None`)."""
    link: BaseException | None = exc
    for _ in range(32):  # a chain is short; this only bounds a pathological one
        if link is None:
            return False
        if isinstance(link, kind):
            return True
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
    return False
