"""The fetcher over real sockets: HTTP/2 with TLS (hypercorn), trust, headers, error mapping;
then its transport seam over a mock transport."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from crawler import errors
from crawler.fetcher import Fetcher
from crawler.fetcher.network import GuardedBackend
from crawler.fetcher.transport import caused_by
from crawler.guard import AddressGuard
from crawler.profiles import load_profiles
from crawler.settings import FetchSettings
from crawler.specs import TransportSpec
from tests import mock_transport as mock
from tests import servers as site
from tests.crawling import crawl, index, warc_records
from tests.h2server import TLSServer
from tests.mock_transport import MockWeb
from tests.servers import SiteFactory

LOOPBACK = AddressGuard(["127.0.0.0/8"])


def test_http2_is_used_and_recorded_as_such(tmp_path: Path, h2_server: TLSServer) -> None:
    urls = [f"{h2_server.base_url}/page{i}" for i in range(6)]
    data = tmp_path / "crawl"
    assert (
        crawl(
            data,
            urls,
            f'fetch.ca_bundle="{h2_server.ca_file}"',
            "politeness.per_host_concurrency=2",
        )
        == 0
    )
    lines = index(data)
    assert {line["http_version"] for line in lines.values()} == {"HTTP/2"}
    assert all(line["state"] == "done" for line in lines.values())
    stats = h2_server.stats()
    assert stats["versions"] == ["2"] * 6
    # With HTTP/2 the per-host limit counts streams on the one connection.
    assert stats["max_in_flight"] == 2
    responses = [r for r in warc_records(data) if r["type"] == "response"]
    assert {r["headers"]["WARC-Protocol"] for r in responses} == {"h2"}
    assert responses[0]["payload"].startswith(b"<html>/page")
    # The request records hold only headers that were sent (h2 has no Connection header,
    # nor keep-alive): each name is one the server received.
    received = {name for names in stats["header_names"] for name in names}
    requests = [r for r in warc_records(data) if r["type"] == "request"]
    assert {r["headers"]["WARC-Protocol"] for r in requests} == {"h2"}
    sent = {name.lower() for r in requests for name in r["http_headers"]}
    assert sent
    assert sent <= received, sent - received


def test_untrusted_certificate_fails_with_reason_tls(tmp_path: Path, h2_server: TLSServer) -> None:
    url = f"{h2_server.base_url}/page"
    data = tmp_path / "crawl"
    assert crawl(data, [url], "retry.max_attempts=1") == 0
    line = index(data)[url]
    assert (line["state"], line["reason"]) == ("failed", "tls")


@pytest.mark.anyio
async def test_request_headers_and_raw_body(make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/gz", site.gzip_body(b"hello " * 1000))
    fetcher = Fetcher(FetchSettings(user_agent="TestBot/1.0 (+http://example.invalid)"), LOOPBACK)
    try:
        response, digest = await fetcher.fetch(s.url("/gz"))
    finally:
        await fetcher.aclose()
    hit = s.hits_for("/gz")[0]
    assert hit.headers["user-agent"] == "TestBot/1.0 (+http://example.invalid)"
    assert hit.headers["accept-encoding"] == "gzip, deflate"
    assert response.header("Content-Encoding") == "gzip"
    assert response.decoded_bytes == 6000
    assert response.wire_bytes < 6000
    assert response.body.read()[:2] == b"\x1f\x8b"  # stored as received, still gzipped
    assert digest.startswith("sha1:")
    assert response.peer == "127.0.0.1"
    response.close()


@pytest.mark.anyio
async def test_cookies_are_not_kept(make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/set", site.ok(b"set", headers={"Set-Cookie": "session=abc; Path=/"}))
    s.route("/next", site.ok(b"next"))
    fetcher = Fetcher(FetchSettings(), LOOPBACK)
    try:
        for path in ("/set", "/next"):
            response, _ = await fetcher.fetch(s.url(path))
            response.close()
    finally:
        await fetcher.aclose()
    assert "cookie" not in s.hits_for("/next")[0].headers


@pytest.mark.anyio
async def test_blocked_and_dns_errors_are_ours() -> None:
    fetcher = Fetcher(FetchSettings(), AddressGuard())
    try:
        with pytest.raises(errors.BlockedAddress):
            await fetcher.fetch("http://127.0.0.1:9/")
        with pytest.raises(errors.BlockedAddress):
            await fetcher.fetch("http://[::ffff:10.0.0.1]:9/")
        with pytest.raises(errors.DnsError):
            await fetcher.fetch("http://does-not-exist.invalid/")
    finally:
        await fetcher.aclose()


@pytest.mark.anyio
async def test_an_allowed_port_is_checked_on_addresses_and_resolved_names(
    make_site: SiteFactory,
) -> None:
    allowed, other = make_site(), make_site()
    allowed.route("/", site.ok(b"allowed"))
    other.route("/", site.ok(b"other"))
    fetcher = Fetcher(FetchSettings(), AddressGuard([f"127.0.0.1/32:{allowed.port}"]))
    try:
        for url in (allowed.url("/"), f"http://localhost:{allowed.port}/"):
            response, _ = await fetcher.fetch(url)
            response.close()
            assert response.status == 200
        for url in (other.url("/"), f"http://localhost:{other.port}/"):
            with pytest.raises(errors.BlockedAddress):
                await fetcher.fetch(url)
    finally:
        await fetcher.aclose()
    assert len(allowed.hits) == 2
    assert other.hits == []


@pytest.mark.anyio
async def test_proxy_environment_is_ignored_unless_trusted(
    make_site: SiteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_site()
    s.route("/direct", site.ok(b"direct"))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    fetcher = Fetcher(FetchSettings(), LOOPBACK)
    try:
        response, _ = await fetcher.fetch(s.url("/direct"))
        response.close()
        assert response.status == 200
    finally:
        await fetcher.aclose()
    trusting = Fetcher(FetchSettings(trust_env=True), LOOPBACK)
    try:
        with pytest.raises(errors.ConnectFailed):
            await trusting.fetch(s.url("/direct"))
    finally:
        await trusting.aclose()


@pytest.mark.anyio
async def test_connection_facts_are_kept_and_readability_is_live() -> None:
    """The stream wrapper keeps the peer address, and still sees the server's close."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        backend = GuardedBackend(LOOPBACK)
        stream = await backend.connect_tcp("127.0.0.1", port)  # the backlog accepts it
        peer, _ = server.accept()
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
        assert stream.get_extra_info("server_addr") is stream.get_extra_info("server_addr")
        assert stream.get_extra_info("is_readable") is False
        peer.close()
        for _ in range(500):  # the close reaches a loopback socket at once; allow 5 s
            if stream.get_extra_info("is_readable"):
                break
            await anyio.sleep(0.01)
        assert stream.get_extra_info("is_readable") is True
        assert await stream.read(10) == b""
        await stream.aclose()


@pytest.fixture
def not_tls() -> Iterator[int]:
    """A port whose server reads the TLS ClientHello and answers it in plain HTTP."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.shutdown(socket.SHUT_WR)
                conn.recv(4096)  # until the client closes: no reset loses the answer

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes a thread still in accept()
        server.close()
        thread.join(timeout=10)


@pytest.mark.anyio
async def test_a_failed_tls_handshake_is_recognised_by_its_ssl_error(not_tls: int) -> None:
    """httpx2 and httpcore2 keep the ssl.SSLError in the chain (nothing reads the text)."""
    fetcher = Fetcher(FetchSettings(), LOOPBACK)
    try:
        with pytest.raises(errors.TLSFailed) as failed:
            await fetcher.fetch(f"https://127.0.0.1:{not_tls}/")
    finally:
        await fetcher.aclose()
    assert caused_by(failed.value, ssl.SSLError)
    assert failed.value.fresh_connection is True


# -- the transport seam, without sockets ---------------------------------------------------


@pytest.mark.anyio
async def test_one_transport_per_distinct_spec_made_on_first_use() -> None:
    """Headers and credentials ride on a request; proxy and TLS settings need a transport
    (and a client) of their own, as does the OAuth2 token endpoint's traffic."""
    web = MockWeb()
    oauth2 = {
        "type": "oauth2_client_credentials",
        "token_url": "http://auth.test/token",
        "client_id": "id",
        "client_secret": "secret",
    }
    profiles = load_profiles(
        [
            {"hosts": ["headers.test"], "headers": {"X-A": "1"}, "user_agent": "Other/1"},
            {"hosts": ["unverified.test"], "verify": False},
            {"hosts": ["also-unverified.test"], "verify": False, "headers": {"X-B": "2"}},
            {"hosts": ["api.test"], "auth": oauth2},
        ]
    )
    fetcher = web.fetcher(profiles=profiles)
    try:
        assert web.specs == [TransportSpec(), TransportSpec()]  # the default's, the token client's
        for host in ("plain.test", "headers.test", "unverified.test", "also-unverified.test"):
            response, _ = await fetcher.fetch(f"http://{host}/")
            response.close()
    finally:
        await fetcher.aclose()
    assert web.specs == [TransportSpec(), TransportSpec(), TransportSpec(verify=False)]
    agents = [r.headers["user-agent"] for r in web.requests]
    assert agents == [FetchSettings().user_agent, "Other/1"] + [FetchSettings().user_agent] * 2
    assert [r.headers.get("x-b") for r in web.requests] == [None, None, None, "2"]


@pytest.mark.anyio
async def test_a_failure_says_whether_it_came_over_a_new_connection() -> None:
    web = MockWeb(keep_alive=True)
    web.route("http://a.test/ok", mock.ok())
    web.route("http://a.test/reset", mock.fail(httpx2.ReadError))
    fetcher = web.fetcher()
    try:
        with pytest.raises(errors.ConnectionLost) as fresh:
            await fetcher.fetch("http://a.test/reset")  # the first request opens one
        response, _ = await fetcher.fetch("http://a.test/ok")  # a new one: the last failed
        response.close()
        with pytest.raises(errors.ConnectionLost) as reused:
            await fetcher.fetch("http://a.test/reset")
    finally:
        await fetcher.aclose()
    assert (fresh.value.fresh_connection, reused.value.fresh_connection) == (True, False)
    assert isinstance(reused.value.__cause__, httpx2.ReadError)
