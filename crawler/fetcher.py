"""Fetcher: one shared httpx2 client; streams a response with caps and maps errors to ours.

This is the only module that imports httpx2/httpcore2. httpx2 is the maintained
continuation of httpx (same API): its connection pool stays fast at hundreds of concurrent
requests where httpx 0.28's slows down sharply (see README).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import socket
import ssl
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio
import httpcore2
import httpx2

from crawler import errors
from crawler.decoding import BodyDecoder
from crawler.guard import AddressGuard
from crawler.models import Response
from crawler.settings import FetchSettings

SPOOL_BYTES = 256 * 1024
_UNSAFE_HEADER = re.compile(rb"[\r\n\x00]")
KEEPALIVE_SECONDS = 30.0
ACCEPT_ENCODING = "gzip, deflate"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves host names itself and connects only to addresses the guard permits."""

    def __init__(self, guard: AddressGuard | None, opened: ContextVar[list[str] | None]) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._guard = guard
        self._opened = opened

    async def _addresses(self, host: str, port: int) -> list[str]:
        if _is_ip(host):
            if self._guard is not None and not self._guard.permits(host):
                raise errors.BlockedAddress(f"{host} is a blocked address")
            return [host]
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise errors.DnsError(f"cannot resolve {host}: {exc}") from None
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if self._guard is None:
            return found
        allowed = [a for a in found if self._guard.permits(a)]
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
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:  # pragma: no cover - never configured
        raise errors.BlockedAddress("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _Transport(httpx2.AsyncHTTPTransport):
    """httpx2's transport with our network backend plugged into httpcore2's pool."""

    def __init__(self, common: dict[str, Any], proxy: str, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        if proxy:
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


class _Tracked(httpx2.AsyncByteStream):
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


class _PerOriginTransport(httpx2.AsyncBaseTransport):
    """Routes each request to a small connection pool of its own origin.

    httpcore2's pool scans every connection it holds (probing idle sockets) whenever a
    request starts or ends, and a pool shared by many hosts evicts one host's keep-alive
    connections to open another's. One pool per origin, sized by the per-host
    concurrency, keeps both costs at the scale of one host. Idle pools beyond
    `max_idle` are closed, least recently used first.
    """

    def __init__(self, make: Callable[[], _Transport], max_idle: int) -> None:
        self._make = make
        self._max_idle = max_idle
        self._pools: dict[Origin, _Transport] = {}
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
        response.stream = _Tracked(response.stream, lambda: self._release(origin))
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


def _proxy_from(settings: FetchSettings) -> str:
    if settings.proxy:
        return settings.proxy
    if settings.trust_env:
        found = urllib.request.getproxies()
        return found.get("https") or found.get("http") or ""
    return ""


def _translate(exc: Exception) -> errors.FetchError:
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


def payload_digest(sha1: Any) -> str:
    return "sha1:" + base64.b32encode(sha1.digest()).decode("ascii")


class Fetcher:
    """Fetches one URL at a time per call; share one instance between all workers."""

    def __init__(
        self, settings: FetchSettings, guard: AddressGuard, per_host_connections: int = 8
    ) -> None:
        self._settings = settings
        self._opened: ContextVar[list[str] | None] = ContextVar("opened", default=None)
        proxy = _proxy_from(settings)
        backend = _GuardedBackend(None if proxy else guard, self._opened)
        ssl_context = ssl.create_default_context(cafile=settings.ca_bundle or None)
        pool_settings: dict[str, Any] = {
            "max_connections": per_host_connections,
            "max_keepalive_connections": per_host_connections,
            "keepalive_expiry": KEEPALIVE_SECONDS,
            "http1": True,
            "http2": settings.http2,
            "network_backend": backend,
        }
        transport = _PerOriginTransport(
            lambda: _Transport(pool_settings, proxy, ssl_context), max_idle=settings.concurrency
        )
        self._client = httpx2.AsyncClient(
            transport=transport,
            timeout=httpx2.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.deadline,
            ),
            follow_redirects=False,
            trust_env=False,
            # A bulk fetcher keeps no cookies: a shared jar would grow with every site
            # that sets one (memory must not depend on the crawl's size) and leak them
            # between unrelated URLs of a host.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "*/*",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self, url: str, keep_decoded: bool = False, cap: int | None = None
    ) -> tuple[Response, str]:
        """GET `url`; returns the response (body spooled, raw) and its payload digest.

        Raises a FetchError; its `fresh_connection` attribute says whether the attempt
        opened a new connection (a failure on a reused one deserves a quick retry).
        """
        opened: list[str] = []
        token = self._opened.set(opened)
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        try:
            with anyio.fail_after(self._settings.deadline):
                return await self._stream(url, body, keep_decoded, cap)
        except TimeoutError:
            body.close()
            raise errors.DeadlineExceeded(
                f"not complete within fetch.deadline={self._settings.deadline}s"
            ) from None
        except httpx2.InvalidURL as exc:  # not an HTTPError: raised while building the request
            body.close()
            raise errors.InvalidURL(str(exc)) from exc
        except httpx2.HTTPError as exc:
            body.close()
            error = _translate(exc)
            error.fresh_connection = bool(opened)  # type: ignore[attr-defined]
            raise error from exc
        except BaseException:
            body.close()
            raise
        finally:
            self._opened.reset(token)

    async def _stream(
        self, url: str, body: Any, keep_decoded: bool, cap: int | None
    ) -> tuple[Response, str]:
        cap = cap or self._settings.max_body_bytes
        async with self._client.stream("GET", url) as resp:
            if _UNSAFE_HEADER.search(b"".join(k + b":" + v for k, v in resp.headers.raw)):
                # HTTP/2 headers are not validated by httpcore2; CR/LF/NUL would tear the
                # WARC record apart (lines injected into its header block).
                raise errors.ProtocolError("response header with CR, LF or NUL")
            stream = resp.extensions.get("network_stream")
            peer = stream.get_extra_info("server_addr") if stream is not None else None
            decoder = BodyDecoder(resp.headers.get("content-encoding"), cap, keep_decoded)
            sha1 = hashlib.sha1()
            wire = 0
            truncated = False
            encoding_error = None
            try:
                async for chunk in resp.aiter_raw():
                    if wire + len(chunk) > cap:
                        chunk = chunk[: cap - wire]
                        truncated = True
                    body.write(chunk)
                    sha1.update(chunk)
                    wire += len(chunk)
                    if not decoder.feed(chunk):
                        truncated = True
                    if truncated:
                        break
                if not truncated:
                    decoder.finish()
            except errors.BadContentEncoding as exc:
                encoding_error = str(exc)
            body.seek(0)
            decoded: bytes | None = None
            if keep_decoded and encoding_error is None and decoder.verifiable:
                if decoder.kept is not None and decoder.compressed:
                    decoded = bytes(decoder.kept)
                else:
                    decoded = body.read()
                    body.seek(0)
            request = resp.request
            response = Response(
                status=resp.status_code,
                reason_phrase=resp.reason_phrase,
                http_version=resp.http_version,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw],
                request_headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                method=request.method,
                target=request.url.raw_path.decode("ascii", "replace"),
                body=body,
                wire_bytes=wire,
                decoded_bytes=decoder.decoded,
                truncated=truncated,
                peer=str(peer[0]) if peer else None,
                encoding_error=encoding_error,
                decoded=decoded,
            )
            return response, payload_digest(sha1)
