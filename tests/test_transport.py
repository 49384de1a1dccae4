"""The fetcher's transport layer without sockets: httpx2 errors translated into ours (TLS
recognised by the error chain, never by message text), and one pool per origin."""

from __future__ import annotations

import ssl

import httpx2
import pytest

from crawler import errors
from crawler.fetcher.transport import PerOriginTransport, caused_by, translate


@pytest.mark.parametrize(
    ("error", "ours"),
    [
        (httpx2.ConnectTimeout, errors.FetchTimeout),
        (httpx2.ReadTimeout, errors.FetchTimeout),
        (httpx2.WriteTimeout, errors.FetchTimeout),
        (httpx2.PoolTimeout, errors.FetchTimeout),
        (httpx2.ConnectError, errors.ConnectFailed),
        (httpx2.ReadError, errors.ConnectionLost),
        (httpx2.WriteError, errors.ConnectionLost),
        (httpx2.CloseError, errors.ConnectionLost),
        (httpx2.RemoteProtocolError, errors.ProtocolError),
        (httpx2.LocalProtocolError, errors.ProtocolError),
        (httpx2.UnsupportedProtocol, errors.InvalidURL),
        (httpx2.ProxyError, errors.ProtocolError),
        (httpx2.DecodingError, errors.ProtocolError),
        (httpx2.TooManyRedirects, errors.ProtocolError),
    ],
)
def test_each_httpx2_error_has_one_of_ours(
    error: type[httpx2.HTTPError], ours: type[errors.FetchError]
) -> None:
    assert type(translate(error("boom"))) is ours


def _raised(error: Exception, cause: BaseException | None, how: str) -> Exception:
    """`error` as raised while handling `cause`: "from" it, implicitly, or "from None"."""
    try:
        try:
            raise cause if cause is not None else ValueError("no cause")
        except BaseException as exc:
            if how == "from":
                raise error from exc
            if how == "from None":
                raise error from None
            raise error  # noqa: B904 - the implicit chain (__context__) is the point
    except Exception as raised:
        return raised
    raise AssertionError("not raised")  # pragma: no cover


@pytest.mark.parametrize(
    ("cause", "how", "reason"),
    [
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "from", "tls"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "from", "tls"),
        (ssl.SSLError(1, "alert"), "implicitly", "tls"),
        (ssl.SSLEOFError(8, "EOF in violation of protocol"), "from None", "connect"),
        (ConnectionRefusedError(111, "Connection refused"), "from", "connect"),
    ],
)
def test_tls_is_recognised_by_the_error_chain(cause: BaseException, how: str, reason: str) -> None:
    inner = _raised(ConnectionError("httpcore2's error"), cause, how)
    outer = _raised(httpx2.ConnectError(str(inner)), inner, "from")
    assert translate(outer).reason == reason


def test_message_text_alone_never_makes_a_tls_error() -> None:
    text = "[SSL] certificate of the host could not be read"
    assert translate(httpx2.ConnectError(text)).reason == "connect"


def test_caused_by_survives_a_cyclic_chain() -> None:
    a, b = ValueError("a"), KeyError("b")
    a.__cause__, b.__cause__ = b, a
    assert caused_by(a, KeyError)
    assert not caused_by(a, ssl.SSLError)


class _Pool(httpx2.AsyncBaseTransport):
    def __init__(self, made: list[_Pool]) -> None:
        made.append(self)
        self.closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=httpx2.ByteStream(b"ok"))

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_each_origin_gets_a_pool_and_idle_ones_are_closed_past_the_limit() -> None:
    made: list[_Pool] = []
    transport = PerOriginTransport(lambda origin: _Pool(made), max_idle=2)
    async with httpx2.AsyncClient(transport=transport) as client:
        for url in ("http://a.test/1", "http://a.test/2", "https://a.test/", "http://b.test/"):
            await client.get(url)
        # Two idle pools when b.test needs one: http://a.test, used least recently, goes.
        assert [pool.closed for pool in made] == [True, False, False]
        async with client.stream("GET", "http://c.test/") as response:
            await client.get("http://d.test/")  # c.test's pool is active, not idle: kept
            await response.aread()
        assert [pool.closed for pool in made] == [True, True, False, False, False]
    assert all(pool.closed for pool in made)
