"""Socket-free HTTP for unit tests: handler functions behind `httpx2.MockTransport`.

    web = MockWeb()
    web.route("http://a.test/robots.txt", ok(b"User-agent: *\\nDisallow: /x\\n"))
    fetcher = web.fetcher()  # a real Fetcher; every transport it makes is this web
    ...
    assert [r.url.path for r in web.requests] == ["/robots.txt"]

A handler takes the `httpx2.Request` and returns an `httpx2.Response` (or awaits one), or
raises an httpx2 error as a transport would (`fail`). Unrouted URLs answer 404. Names of the
helpers follow tests/servers/handlers.py, for the loopback server they stand in for.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2

from crawler.fetcher import Fetcher
from crawler.fetcher.network import note_connection
from crawler.guard import AddressGuard
from crawler.settings import FetchSettings
from crawler.specs import TransportSpec

Handler = Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]


class MockWeb:
    """Routes each request by its URL without the query (`scheme://host[:port]/path`).

    `requests` records every request in order (copies, as sent); `specs` every transport
    spec the fetcher asked for a transport. With `keep_alive` a connection per origin is
    "opened" by its first request and reused until a request on it fails; without, every
    request opens one (so a failure never counts as one on a kept-alive connection).
    """

    def __init__(self, *, keep_alive: bool = False) -> None:
        self.keep_alive = keep_alive
        self.requests: list[httpx2.Request] = []
        self.specs: list[TransportSpec] = []
        self._routes: dict[str, Handler] = {}
        self._connected: set[tuple[str, str, int | None]] = set()

    def route(self, url: str, handler: Handler) -> None:
        self._routes[_key(httpx2.URL(url))] = handler

    def hits(self, url: str) -> list[httpx2.Request]:
        """The requests for `url` (its query ignored), in order."""
        key = _key(httpx2.URL(url))
        return [r for r in self.requests if _key(r.url) == key]

    def transport(self, spec: TransportSpec) -> httpx2.AsyncBaseTransport:
        """A TransportFactory: every spec gets a transport onto this web."""
        self.specs.append(spec)
        return httpx2.MockTransport(self._handle)

    def fetcher(self, settings: FetchSettings | None = None, **kwargs: Any) -> Fetcher:
        """A Fetcher with this web as its transport (no guard, resolver or socket)."""
        return Fetcher(
            settings or FetchSettings(), AddressGuard(), transport=self.transport, **kwargs
        )

    async def _handle(self, request: httpx2.Request) -> httpx2.Response:
        # As sent: an auth flow changes the headers of a request it sends again.
        self.requests.append(
            httpx2.Request(
                request.method, request.url, headers=request.headers, content=request.content
            )
        )
        origin = (request.url.scheme, request.url.host, request.url.port)
        if not self.keep_alive or origin not in self._connected:
            note_connection(request.url.host)
            self._connected.add(origin)
        handler = self._routes.get(_key(request.url), status(404))
        try:
            answer = handler(request)
            if inspect.isawaitable(answer):
                answer = await answer
        except httpx2.TransportError:
            self._connected.discard(origin)  # a connection that failed is not reused
            raise
        if answer.is_stream_consumed:  # made with content=, json=...: httpx2 has read it
            return response(answer.status_code, dict(answer.headers), answer.content)
        return answer


def _key(url: httpx2.URL) -> str:
    return str(url.copy_with(query=None, fragment=None))


def ok(
    body: bytes = b"<html>ok</html>",
    content_type: str = "text/html",
    headers: dict[str, str] | None = None,
    code: int = 200,
) -> Handler:
    return status(code, {"Content-Type": content_type, **(headers or {})}, body)


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Handler:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return response(code, headers, body)

    return handle


def response(
    code: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> httpx2.Response:
    """A response as a transport gives it: its body still to be read, as sent."""
    sent = {"Content-Length": str(len(body)), **(headers or {})}
    return httpx2.Response(code, headers=sent, stream=httpx2.ByteStream(body))


def redirect(location: str, code: int = 301) -> Handler:
    return status(code, {"Location": location})


def sequence(*handlers: Handler) -> Handler:
    """The first request gets the first handler's answer, and so on; the last repeats."""
    calls = itertools.count()

    def handle(request: httpx2.Request) -> httpx2.Response | Awaitable[httpx2.Response]:
        return handlers[min(next(calls), len(handlers) - 1)](request)

    return handle


def fail(error: type[httpx2.TransportError], cause: BaseException | None = None) -> Handler:
    """Raise `error` (from `cause`), as a transport does when a request gets no answer."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        raise error(f"mock {error.__name__}") from cause

    return handle


class Chunks(httpx2.AsyncByteStream):
    """A body arriving in `chunks`; then `chunk` forever, if given."""

    def __init__(self, chunks: list[bytes], forever: bytes = b"") -> None:
        self._chunks = chunks
        self._forever = forever

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        while self._forever:
            yield self._forever


def chunked(body: bytes, size: int, headers: dict[str, str] | None = None) -> Handler:
    """A 200 whose body arrives in chunks of `size` bytes (a reader may stop early)."""
    chunks = [body[i : i + size] for i in range(0, len(body), size)]

    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=headers, stream=Chunks(chunks))

    return handle


def endless(chunk: bytes = b"x" * 16384, headers: dict[str, str] | None = None) -> Handler:
    """A 200 whose body never ends (only a cap or a deadline stops reading it)."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=headers, stream=Chunks([], forever=chunk))

    return handle
