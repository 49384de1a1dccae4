"""Fetcher: one shared httpx2 client; streams a response with caps and maps errors to ours.

This is the only module that imports httpx2/httpcore2. httpx2 is the maintained
continuation of httpx (same API): its connection pool stays fast at hundreds of concurrent
requests where httpx 0.28's slows down sharply (see README).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import tempfile
import urllib.request
from collections.abc import Iterable
from contextvars import ContextVar
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
ACCEPT_ENCODING = "gzip, deflate"


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves host names itself and connects only to addresses the guard permits."""

    def __init__(self, guard: AddressGuard | None, opened: ContextVar[list[str] | None]) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._guard = guard
        self._opened = opened

    async def _addresses(self, host: str, port: int) -> list[str]:
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

    def __init__(self, settings: FetchSettings, backend: _GuardedBackend, proxy: str) -> None:
        super().__init__(http2=settings.http2, trust_env=False)
        common: dict[str, Any] = {
            "ssl_context": ssl.create_default_context(cafile=settings.ca_bundle or None),
            "max_connections": settings.concurrency,
            "max_keepalive_connections": settings.concurrency,
            "keepalive_expiry": 30.0,
            "http1": True,
            "http2": settings.http2,
            "network_backend": backend,
        }
        if proxy:
            url = httpx2.URL(proxy)
            self._pool = httpcore2.AsyncHTTPProxy(
                proxy_url=httpcore2.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                proxy_auth=(url.username, url.password) if url.username else None,
                **common,
            )
        else:
            self._pool = httpcore2.AsyncConnectionPool(**common)


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

    def __init__(self, settings: FetchSettings, guard: AddressGuard) -> None:
        self._settings = settings
        self._opened: ContextVar[list[str] | None] = ContextVar("opened", default=None)
        proxy = _proxy_from(settings)
        backend = _GuardedBackend(None if proxy else guard, self._opened)
        self._client = httpx2.AsyncClient(
            transport=_Transport(settings, backend, proxy),
            timeout=httpx2.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.deadline,
            ),
            follow_redirects=False,
            trust_env=False,
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "*/*",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> tuple[Response, str]:
        """GET `url`; returns the response (body spooled, raw) and its payload digest.

        Raises a FetchError; its `fresh_connection` attribute says whether the attempt
        opened a new connection (a failure on a reused one deserves a quick retry).
        """
        opened: list[str] = []
        token = self._opened.set(opened)
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        try:
            with anyio.fail_after(self._settings.deadline):
                return await self._stream(url, body)
        except TimeoutError:
            body.close()
            raise errors.DeadlineExceeded(
                f"not complete within fetch.deadline={self._settings.deadline}s"
            ) from None
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

    async def _stream(self, url: str, body: Any) -> tuple[Response, str]:
        cap = self._settings.max_body_bytes
        async with self._client.stream("GET", url) as resp:
            stream = resp.extensions.get("network_stream")
            peer = stream.get_extra_info("server_addr") if stream is not None else None
            decoder = BodyDecoder(resp.headers.get("content-encoding"), cap)
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
            )
            return response, payload_digest(sha1)
