"""Tests of tests/servers/: the loopback servers really do what the crawler's tests rely on."""

from __future__ import annotations

import gzip
import http.client
import socket
import time
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest

from tests.servers import (
    Site,
    SiteFactory,
    chunked,
    corrupt_gzip,
    endless,
    gzip_body,
    gzip_bomb,
    lying_length,
    ok,
    redirect,
    reset_mid_body,
    retry_after,
    sequence,
    slow,
    stall_headers,
    status,
    trickle,
    truncated_gzip,
)
from tests.waiting import eventually


def _connect(site: Site) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(site.host, site.port, timeout=5)


def _get(
    conn: http.client.HTTPConnection, path: str, headers: Mapping[str, str] | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("GET", path, headers=dict(headers or {}))
    response = conn.getresponse()
    return response, response.read()


def _fetch(site: Site, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    with closing(_connect(site)) as conn:
        return _get(conn, path)


def test_keep_alive_reuses_the_connection_until_close_is_asked(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/a", ok(b"A"))
    with closing(_connect(site)) as conn:
        assert _get(conn, "/a")[1] == b"A"
        conn.request("POST", "/a", body=b"x" * 100_000)  # the body is read and dropped
        assert conn.getresponse().read() == b"A"
        response, _ = _get(conn, "/a", {"Connection": "close"})
        assert response.getheader("Connection") == "close"
        assert _get(conn, "/a")[1] == b"A"  # http.client reconnects
    assert [hit.connection for hit in site.hits] == [1, 1, 1, 2]
    assert [hit.method for hit in site.hits] == ["GET", "POST", "GET", "GET"]
    assert site.connections == 2


def test_hits_are_recorded_with_timestamps(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/q?x=1", ok(b"hello", headers={"X-Served": "yes"}))
    before = time.monotonic()
    with closing(_connect(site)) as conn:
        response, body = _get(conn, "/q?x=1", {"X-Test": "Value"})
        assert (response.status, body, response.getheader("X-Served")) == (200, b"hello", "yes")
        response, body = _get(conn, "/missing")
        assert (response.status, body) == (404, b"not found")
    after = time.monotonic()
    first, second = site.hits
    assert (first.method, first.path, first.headers["x-test"]) == ("GET", "/q?x=1", "Value")
    assert first.finished is not None
    assert second.finished is not None
    assert before <= first.started <= first.finished <= second.started <= second.finished <= after
    assert site.hits_for("/missing") == [second]
    assert site.max_in_flight == 1


def test_max_in_flight_counts_concurrent_requests(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/slow", slow(0.3))
    with ThreadPoolExecutor(4) as pool:
        bodies = [body for _, body in pool.map(lambda _: _fetch(site, "/slow"), range(4))]
    assert bodies == [b"ok"] * 4
    assert site.max_in_flight == 4
    assert site.connections == 4
    hits = site.hits
    assert max(hit.started for hit in hits) < min(hit.finished or 0 for hit in hits)


def test_sequence_moves_on_per_hit_and_repeats_the_last(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/flaky", sequence(retry_after(429, "2"), status(503), ok(b"fine")))
    with closing(_connect(site)) as conn:
        first, _ = _get(conn, "/flaky")
        assert (first.status, first.getheader("Retry-After")) == (429, "2")
        statuses = [_get(conn, "/flaky")[0].status for _ in range(3)]
    assert statuses == [503, 200, 200]


def test_redirect_sends_location(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/old", redirect("/new", 302))
    response, body = _fetch(site, "/old")
    assert (response.status, response.getheader("Location"), body) == (302, "/new", b"")


def test_gzip_bodies_good_truncated_and_corrupt(make_site: SiteFactory) -> None:
    site = make_site()
    data = bytes(range(256)) * 64
    site.route("/good", gzip_body(data))
    site.route("/truncated", truncated_gzip(data))
    site.route("/corrupt", corrupt_gzip())
    response, body = _fetch(site, "/good")
    assert response.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == data
    with pytest.raises(EOFError):
        gzip.decompress(_fetch(site, "/truncated")[1])
    with pytest.raises(zlib.error):
        gzip.decompress(_fetch(site, "/corrupt")[1])


def test_gzip_bomb_is_small_on_the_wire(make_site: SiteFactory) -> None:
    site = make_site()
    inflated = (32 << 20) + 12345
    site.route("/bomb", gzip_bomb(inflated))
    response, body = _fetch(site, "/bomb")
    assert response.getheader("Content-Encoding") == "gzip"
    assert int(response.getheader("Content-Length") or 0) == len(body) < inflated // 500
    assert gzip.decompress(body) == bytes(inflated)  # checks the CRC and size too


def test_chunked_and_trickle_bodies(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/chunked", chunked([b"abc", b"", b"defg"]))
    site.route("/trickle", trickle(20, 100))
    response, body = _fetch(site, "/chunked")
    assert (response.getheader("Transfer-Encoding"), body) == ("chunked", b"abcdefg")
    started = time.monotonic()
    assert _fetch(site, "/trickle")[1] == b"x" * 20
    assert time.monotonic() - started >= 0.15  # 20 one-byte writes, 10 ms apart


def test_reset_mid_body_is_a_connection_error(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/reset", reset_mid_body(declared=1000, sent=100))
    with closing(_connect(site)) as conn:
        conn.request("GET", "/reset")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(ConnectionResetError):
            response.read()


def test_lying_length_ends_cleanly_but_short(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/short", lying_length(declared=1000, sent=100))
    with closing(_connect(site)) as conn:
        conn.request("GET", "/short")
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as caught:
            response.read()
    assert len(caught.value.partial) == 100


def test_endless_stops_when_the_client_goes_away(make_site: SiteFactory) -> None:
    site = make_site()
    site.route("/endless", endless(1024))
    with closing(_connect(site)) as conn:
        conn.request("GET", "/endless")
        assert len(conn.getresponse().read(10_000)) == 10_000
    eventually(
        lambda: site.hits[0].finished,
        2.0,
        "the handler ended after the client went away",
        until=lambda finished: finished is not None,
        interval=0.005,
    )


def test_stop_wakes_stalled_handlers_promptly() -> None:
    site = Site().start()
    site.route("/stall", stall_headers(30))
    with socket.create_connection((site.host, site.port), timeout=5) as client:
        client.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        eventually(
            lambda: len(site.hits), 2.0, "the stalled request arrived", until=lambda n: n == 1
        )
        started = time.monotonic()
        site.stop()
        assert time.monotonic() - started < 1.0
        assert client.recv(100) == b""  # nothing was sent, then the connection closed
    assert site.hits[0].finished is not None


def test_binds_to_another_loopback_address(make_site: SiteFactory) -> None:
    site = make_site("127.0.0.2")
    site.route("*", ok(b"other host"))
    assert site.base_url == f"http://127.0.0.2:{site.port}"
    assert site.url("/x") == site.base_url + "/x"
    assert _fetch(site, "/anything")[1] == b"other host"
    assert [hit.path for hit in site.hits] == ["/anything"]


def test_refuses_a_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Site("192.0.2.1")
