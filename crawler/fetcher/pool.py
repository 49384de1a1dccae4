"""One httpcore2 connection pool (direct, HTTP proxy or SOCKS5 proxy) as an httpx2 transport.

httpx2's own `AsyncHTTPTransport` builds its pool itself and takes no network backend, so
`PoolTransport` is httpx2's public transport contract (`AsyncBaseTransport`) around a pool
built with httpcore2's public constructors: requests in, responses out, httpcore2's errors
raised as httpx2's. Two workarounds live here and nowhere else, each with a test in
tests/test_pool.py that fails if an upgrade changes what it works around: the mapping of
httpcore2's errors onto httpx2's, which httpx2 keeps private (`map_httpcore_exceptions`),
is copied; and the cause of an error that httpcore2's pool hides is shown again.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import httpcore2
import httpx2

# The most specific class first: the first isinstance() match wins.
ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
)
NEVER_RAISED = (httpcore2.ConnectionNotAvailable,)  # the pool retries it internally


def as_httpx(exc: Exception) -> httpx2.TransportError | None:
    """The httpx2 error for an httpcore2 one (None for any other error)."""
    for theirs, ours in ERRORS:
        if isinstance(exc, theirs):
            return ours(str(exc))
    return None


def new_pool(
    proxy: str, ssl_context: ssl.SSLContext, settings: dict[str, Any]
) -> httpcore2.AsyncConnectionPool:
    """A pool connecting directly, or through an http(s):// or socks5:// `proxy`."""
    if not proxy:
        return httpcore2.AsyncConnectionPool(ssl_context=ssl_context, **settings)
    url = httpx2.URL(proxy)
    proxy_url = httpcore2.URL(
        scheme=b"socks5" if url.scheme.startswith("socks5") else url.raw_scheme,
        host=url.raw_host,
        port=url.port,
        target=url.raw_path,
    )
    auth = (url.username, url.password) if url.username else None
    if url.scheme.startswith("socks5"):
        return httpcore2.AsyncSOCKSProxy(
            proxy_url=proxy_url, proxy_auth=auth, ssl_context=ssl_context, **settings
        )
    return httpcore2.AsyncHTTPProxy(
        proxy_url=proxy_url, proxy_auth=auth, ssl_context=ssl_context, **settings
    )


class PoolTransport(httpx2.AsyncBaseTransport):
    """Sends each request through one httpcore2 pool (see `new_pool`)."""

    def __init__(self, pool: httpcore2.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        sent = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            answer = await self._pool.handle_async_request(sent)
        except Exception as exc:
            mapped = as_httpx(exc)
            if mapped is None:
                raise
            # httpcore2's pool re-raises a request's error `from None`, which hides the
            # error it was raised from (the ssl.SSLError of a failed TLS handshake, say):
            # shown again, the chain says what happened (tests/test_pool.py checks both).
            if exc.__cause__ is None:
                exc.__suppress_context__ = False
            raise mapped from exc
        assert isinstance(answer.stream, AsyncIterable)
        return httpx2.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=BodyStream(answer.stream),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class BodyStream(httpx2.AsyncByteStream):
    """A response body from the pool; its read errors raised as httpx2's."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            mapped = as_httpx(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()
