"""PoolTransport: one httpcore2 pool as an httpx2 transport, over httpcore2's mock backend.

The first test is the tripwire for upgrades: our copy of httpx2's private mapping of
httpcore2 errors must cover every error httpcore2 exports and agree with httpx2's own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
import pytest

from crawler import errors
from crawler.fetcher.pool import ERRORS, NEVER_RAISED, PoolTransport, as_httpx, new_pool
from crawler.fetcher.transport import translate

HTTPCORE2_ERRORS = [
    obj
    for name in httpcore2.__all__
    if isinstance(obj := getattr(httpcore2, name), type) and issubclass(obj, Exception)
]


def _httpx2s_own_mapping(exc: Exception) -> type[Exception]:
    # httpx2's private helper, read on purpose: if it moves, this test must be looked at.
    from httpx2._transports.default import map_httpcore_exceptions

    try:
        with map_httpcore_exceptions():
            raise exc
    except Exception as mapped:
        return type(mapped)
    raise AssertionError("not raised")  # pragma: no cover


def test_every_httpcore2_error_is_mapped_as_httpx2_maps_it() -> None:
    assert HTTPCORE2_ERRORS, "httpcore2 exports no errors any more?"
    unknown = set(HTTPCORE2_ERRORS) - {theirs for theirs, _ in ERRORS} - set(NEVER_RAISED)
    assert not unknown, f"httpcore2 has new errors; add them to crawler/fetcher/pool.py: {unknown}"
    for theirs, _ in ERRORS:
        mapped = as_httpx(theirs("boom"))
        assert mapped is not None
        assert type(mapped) is _httpx2s_own_mapping(theirs("boom")), theirs
        assert str(mapped) == "boom"
    assert as_httpx(ValueError("not ours")) is None


def _pool(answer: list[bytes]) -> PoolTransport:
    backend = httpcore2.AsyncMockBackend(answer)
    return PoolTransport(new_pool("", ssl.create_default_context(), {"network_backend": backend}))


@pytest.mark.anyio
async def test_a_response_streams_through_the_pool() -> None:
    answer = [b"HTTP/1.1 200 OK\r\n", b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"]
    transport = _pool([*answer, b"he", b"llo"])
    async with httpx2.AsyncClient(transport=transport) as client:
        response = await client.get("http://a.test/x")
    assert (response.status_code, response.http_version) == (200, "HTTP/1.1")
    assert response.headers["content-type"] == "text/plain"
    assert response.content == b"hello"


@pytest.mark.anyio
async def test_a_body_cut_short_raises_httpx2s_error_chained_to_httpcore2s() -> None:
    transport = _pool([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"abc"])
    async with (
        httpx2.AsyncClient(transport=transport) as client,
        client.stream("GET", "http://a.test/x") as response,
    ):
        with pytest.raises(httpx2.RemoteProtocolError) as raised:
            await response.aread()
    assert isinstance(raised.value.__cause__, httpcore2.RemoteProtocolError)
    assert isinstance(translate(raised.value), errors.ProtocolError)


class _FailingBackend(httpcore2.AsyncNetworkBackend):
    """Fails every connect as httpcore2's AnyIO backend fails a TLS handshake."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as exc:
            raise httpcore2.ConnectError(exc) from exc


@pytest.mark.anyio
async def test_a_connect_failure_keeps_its_cause_for_translate() -> None:
    pool = new_pool("", ssl.create_default_context(), {"network_backend": _FailingBackend()})
    async with httpx2.AsyncClient(transport=PoolTransport(pool)) as client:
        with pytest.raises(httpx2.ConnectError) as raised:
            await client.get("https://a.test/")
    assert isinstance(translate(raised.value), errors.TLSFailed)


@pytest.mark.parametrize(
    ("proxy", "kind"),
    [
        ("", httpcore2.AsyncConnectionPool),
        ("http://user:pw@proxy.test:3128", httpcore2.AsyncHTTPProxy),
        ("socks5://user:pw@proxy.test:1080", httpcore2.AsyncSOCKSProxy),
        ("socks5h://proxy.test:1080", httpcore2.AsyncSOCKSProxy),
    ],
)
def test_a_proxy_url_picks_its_pool(proxy: str, kind: type[httpcore2.AsyncConnectionPool]) -> None:
    assert type(new_pool(proxy, ssl.create_default_context(), {})) is kind


@pytest.mark.anyio
async def test_httpcore2s_pool_still_hides_the_cause_of_its_errors() -> None:
    """When this fails, httpcore2 keeps the chain itself: PoolTransport need not restore it."""
    pool = new_pool("", ssl.create_default_context(), {"network_backend": _FailingBackend()})
    with pytest.raises(httpcore2.ConnectError) as raised:
        await pool.handle_async_request(httpcore2.Request("GET", "https://a.test/"))
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert isinstance(raised.value.__context__, ssl.SSLError)
