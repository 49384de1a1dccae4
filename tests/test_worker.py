"""Worker: judging attempts, and the one quick retry in place on a reused connection; over
loopback servers, then over a mock transport (redirects, retries, caps, encodings)."""

from __future__ import annotations

import gzip
import ssl
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx2
import pytest

from crawler.fetcher import Fetcher
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.guard import AddressGuard
from crawler.judge import Judge
from crawler.models import Entry, NewURL, Outcome, State
from crawler.retry import RetryPolicy
from crawler.scheduler import Scheduler
from crawler.settings import (
    CrawlSettings,
    FetchSettings,
    FrontierSettings,
    PolitenessSettings,
    RetrySettings,
)
from crawler.urls import host_of, locate, url_key
from crawler.worker import Worker
from tests import mock_transport as mock
from tests import servers as site
from tests.mock_transport import MockWeb
from tests.servers import Conn, Hit, SiteFactory


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    frontier = await SQLiteFrontier.open(tmp_path / "crawl.db", fsync=False)
    scheduler = Scheduler(frontier, PolitenessSettings(delay=0), FrontierSettings())
    fetcher = Fetcher(FetchSettings(read_timeout=2), AddressGuard(["127.0.0.0/8"]))
    policy = RetryPolicy(RetrySettings(max_attempts=3, backoff_base=30, backoff_max=60))
    try:
        yield Worker(fetcher, scheduler, Judge(policy, max_redirects=10))
    finally:
        await fetcher.aclose()
        await frontier.aclose()


def _entry(url: str, key: int, attempts: int = 0) -> Entry:
    return Entry(key=key, url=url, host=host_of(url), attempts=attempts)


def _reset(conn: Conn, hit: Hit) -> None:
    conn.reset()


@pytest.mark.anyio
async def test_reset_on_a_reused_connection_is_retried_in_place(
    worker: Worker, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/warm", site.ok(b"first"))
    s.route("/stale", site.sequence(_reset, site.ok(b"second")))
    first = await worker.attempt(_entry(s.url("/warm"), 1))
    assert first.state is State.DONE
    outcome = await worker.attempt(_entry(s.url("/stale"), 2))
    assert outcome.final
    assert (outcome.state, outcome.status, outcome.attempts) == (State.DONE, 200, 2)
    hits = s.hits_for("/stale")
    assert hits[0].connection == s.hits_for("/warm")[0].connection  # it was a reused one
    assert hits[1].connection != hits[0].connection
    assert outcome.response is not None
    outcome.response.close()
    if first.response is not None:
        first.response.close()


@pytest.mark.anyio
async def test_reset_on_a_fresh_connection_is_deferred(
    worker: Worker, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/reset", _reset)
    outcome = await worker.attempt(_entry(s.url("/reset"), 3))
    assert outcome.state is State.QUEUED
    assert outcome.attempts == 1
    assert outcome.reason in ("connection_reset", "protocol_error")
    assert len(s.hits_for("/reset")) == 1


@pytest.mark.anyio
async def test_last_attempt_failure_is_final_with_last_status(
    worker: Worker, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/reset", _reset)
    entry = _entry(s.url("/reset"), 4, attempts=2)
    entry.status = 503
    outcome = await worker.attempt(entry)
    assert (outcome.final, outcome.state, outcome.attempts) == (True, State.FAILED, 3)
    assert outcome.status == 503
    assert outcome.message


@pytest.mark.anyio
async def test_redirect_to_an_unfetchable_url_is_explained(
    worker: Worker, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/ftp", site.redirect("ftp://example.com/file"))
    outcome = await worker.attempt(_entry(s.url("/ftp"), 5))
    assert (outcome.state, outcome.reason, outcome.status) == (State.DONE, None, 301)
    assert outcome.redirect_to == "ftp://example.com/file"
    assert outcome.message is not None
    assert "not followed" in outcome.message
    assert outcome.new_urls == ()
    assert outcome.response is not None
    outcome.response.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("location", "followed"),
    [
        ("http://user:pw@127.0.0.1:{port}/x#f", "http://127.0.0.1:{port}/x#f"),
        ("//user:pw@0x7f.1:{port}/x", "http://127.0.0.1:{port}/x"),
        ("http://0177.0.0.1:{port}/x", "http://127.0.0.1:{port}/x"),
        ("http://u@2130706433:{port}", "http://127.0.0.1:{port}"),
    ],
)
async def test_redirect_targets_lose_userinfo_and_get_dotted_quads(
    worker: Worker, make_site: SiteFactory, location: str, followed: str
) -> None:
    s = make_site()
    s.route("/r", site.redirect(location.format(port=s.port)))
    outcome = await worker.attempt(_entry(s.url("/r"), 6))
    assert outcome.redirect_to == followed.format(port=s.port)
    [hop] = outcome.new_urls
    assert hop.url == followed.format(port=s.port)
    assert hop.host == f"127.0.0.1:{s.port}"
    assert outcome.response is not None
    outcome.response.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "location", ["http://user:pw@[::1/x", "http://user:pw@1.2.3.999/", "ftp://user:pw@h/"]
)
async def test_a_redirect_not_followed_is_recorded_without_userinfo(
    worker: Worker, make_site: SiteFactory, location: str
) -> None:
    s = make_site()
    s.route("/r", site.redirect(location))
    outcome = await worker.attempt(_entry(s.url("/r"), 7))
    assert outcome.new_urls == ()
    assert outcome.redirect_to is not None
    assert "user" not in outcome.redirect_to
    assert "pw" not in (outcome.message or "")
    assert outcome.response is not None
    outcome.response.close()


# -- verdicts over a mock transport (no sockets), on a fake wall clock -------------------------

WALL = 1_000_000_000.0  # 2001-09-09T01:46:40Z
A = "http://a.test"


@dataclass
class Mocked:
    worker: Worker
    web: MockWeb


class MakeMocked(Protocol):
    def __call__(
        self,
        settings: FetchSettings | None = None,
        crawl: CrawlSettings | None = None,
        *,
        keep_alive: bool = False,
    ) -> Mocked: ...


@pytest.fixture
async def make_mocked(frontier: SQLiteFrontier) -> AsyncIterator[MakeMocked]:
    """A worker (max_redirects=3, max_attempts=3, back-off 30 s with no jitter) whose
    fetcher's transport is a MockWeb, on the fixed wall clock WALL."""
    fetchers: list[Fetcher] = []

    def make(
        settings: FetchSettings | None = None,
        crawl: CrawlSettings | None = None,
        *,
        keep_alive: bool = False,
    ) -> Mocked:
        web = MockWeb(keep_alive=keep_alive)
        fetchers.append(web.fetcher(settings))
        scheduler = Scheduler(
            frontier, PolitenessSettings(delay=0), FrontierSettings(), wall=lambda: WALL
        )
        policy = RetryPolicy(
            RetrySettings(max_attempts=3, backoff_base=30, backoff_max=60), rng=lambda: 0.0
        )
        judge = Judge(policy, crawl, max_redirects=3, wall=lambda: WALL)
        worker = Worker(fetchers[-1], scheduler, judge, wall=lambda: WALL)
        return Mocked(worker, web)

    try:
        yield make
    finally:
        for fetcher in fetchers:
            await fetcher.aclose()


@pytest.fixture
def mocked(make_mocked: MakeMocked) -> Mocked:
    return make_mocked()


def _at(url: str, **fields: Any) -> Entry:
    """An entry keyed like the frontier keys it (so redirect loops can be recognised)."""
    fetched, canonical_url, host = locate(url)
    return Entry(key=url_key(canonical_url), url=fetched, host=host, **fields)


def _hop(new: NewURL) -> Entry:
    """The entry a redirect's new URL becomes once claimed."""
    return Entry(
        key=new.key,
        url=new.url,
        host=new.host,
        depth=new.depth,
        redirects=new.redirects,
        chain=new.chain,
        discovered_from=new.discovered_from,
        origin=new.origin,
    )


def _closed(outcome: Outcome) -> Outcome:
    if outcome.response is not None:
        outcome.response.close()
    return outcome


@pytest.mark.anyio
async def test_a_redirect_chain_is_followed_hop_by_hop_until_it_loops(mocked: Mocked) -> None:
    mocked.web.route(f"{A}/a", mock.redirect("/b", code=301))
    mocked.web.route(f"{A}/b", mock.redirect(f"{A}/c", code=302))
    mocked.web.route(f"{A}/c", mock.redirect("a", code=307))
    first = _at(f"{A}/a")
    one = _closed(await mocked.worker.attempt(first))
    assert (one.state, one.reason, one.status, one.redirect_to) == (
        State.DONE,
        None,
        301,
        f"{A}/b",
    )
    [b] = one.new_urls
    assert (b.url, b.redirects, b.chain, b.discovered_from) == (
        f"{A}/b",
        1,
        str(first.key),
        first.url,
    )
    two = _closed(await mocked.worker.attempt(_hop(b)))
    [c] = two.new_urls
    assert (two.status, c.url, c.redirects, c.chain) == (302, f"{A}/c", 2, f"{first.key} {b.key}")
    three = _closed(await mocked.worker.attempt(_hop(c)))
    assert (three.state, three.reason, three.status, three.redirect_to) == (
        State.FAILED,
        "redirect_loop",
        307,
        f"{A}/a",
    )
    assert three.new_urls == ()


@pytest.mark.anyio
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_every_redirect_status_names_its_next_hop(mocked: Mocked, code: int) -> None:
    mocked.web.route(f"{A}/from", mock.redirect("/to?x=1", code=code))
    outcome = _closed(await mocked.worker.attempt(_at(f"{A}/from")))
    assert (outcome.state, outcome.status, outcome.redirect_to) == (State.DONE, code, f"{A}/to?x=1")
    assert [new.url for new in outcome.new_urls] == [f"{A}/to?x=1"]


@pytest.mark.anyio
async def test_too_many_redirects_fail_and_a_3xx_without_location_is_done(
    mocked: Mocked,
) -> None:
    mocked.web.route(f"{A}/far", mock.redirect("/further"))
    mocked.web.route(f"{A}/nowhere", mock.status(302))
    far = _closed(await mocked.worker.attempt(_at(f"{A}/far", redirects=3)))  # max_redirects=3
    assert (far.state, far.reason, far.status, far.redirect_to) == (
        State.FAILED,
        "too_many_redirects",
        301,
        f"{A}/further",
    )
    assert far.new_urls == ()
    nowhere = _closed(await mocked.worker.attempt(_at(f"{A}/nowhere")))
    assert (nowhere.state, nowhere.status, nowhere.redirect_to, nowhere.new_urls) == (
        State.DONE,
        302,
        None,
        (),
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "retry_after", "wait"),
    [
        (429, "120", 120.0),  # delta-seconds
        (503, "Sun, 09 Sep 2001 01:48:10 GMT", 90.0),  # an HTTP-date, 90 s after WALL
        (503, "soon", 15.0),  # unreadable: the back-off (30 s base, jitter 0 -> half)
        (500, "5", 15.0),  # Retry-After counts on 429 and 503 only
        (502, None, 15.0),
        (504, None, 15.0),
        (408, None, 15.0),
    ],
)
async def test_a_retryable_status_is_deferred_until_retry_after_or_back_off(
    mocked: Mocked, code: int, retry_after: str | None, wait: float
) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    mocked.web.route(f"{A}/busy", mock.status(code, headers))
    outcome = await mocked.worker.attempt(_at(f"{A}/busy"))
    assert (outcome.state, outcome.reason, outcome.status) == (State.QUEUED, f"http_{code}", code)
    assert outcome.not_before == WALL + wait
    assert outcome.response is None  # nothing is written for a deferral


@pytest.mark.anyio
async def test_a_retry_after_past_the_wait_bound_or_the_last_attempt_fails(
    mocked: Mocked,
) -> None:
    mocked.web.route(f"{A}/later", mock.status(429, {"Retry-After": "301"}))  # max_wait 300
    mocked.web.route(f"{A}/busy", mock.status(503, {"Retry-After": "1"}))
    later = _closed(await mocked.worker.attempt(_at(f"{A}/later")))
    assert (later.state, later.reason, later.status) == (State.FAILED, "http_429", 429)
    last = _closed(await mocked.worker.attempt(_at(f"{A}/busy", attempts=2)))  # of 3
    assert (last.state, last.reason, last.status) == (State.FAILED, "http_503", 503)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "cause", "reason"),
    [
        (httpx2.ConnectError, None, "connect"),
        (httpx2.ConnectError, ssl.SSLCertVerificationError("certificate verify failed"), "tls"),
        (httpx2.ConnectTimeout, None, "timeout"),
        (httpx2.ReadTimeout, None, "timeout"),
        (httpx2.ReadError, None, "connection_reset"),
        (httpx2.RemoteProtocolError, None, "protocol_error"),
    ],
)
async def test_a_request_without_an_answer_is_deferred_with_its_reason(
    mocked: Mocked, error: type[httpx2.TransportError], cause: Exception | None, reason: str
) -> None:
    mocked.web.route(f"{A}/x", mock.fail(error, cause))
    outcome = await mocked.worker.attempt(_at(f"{A}/x"))
    assert (outcome.state, outcome.reason, outcome.status) == (State.QUEUED, reason, None)
    assert outcome.not_before == WALL + 15.0
    assert len(mocked.web.requests) == 1  # on a new connection: no retry in place


@pytest.mark.anyio
async def test_a_failure_on_a_kept_alive_connection_is_retried_in_place(
    make_mocked: MakeMocked,
) -> None:
    mocked = make_mocked(keep_alive=True)
    mocked.web.route(f"{A}/warm", mock.ok())
    mocked.web.route(f"{A}/stale", mock.sequence(mock.fail(httpx2.ReadError), mock.ok()))
    _closed(await mocked.worker.attempt(_at(f"{A}/warm")))
    outcome = _closed(await mocked.worker.attempt(_at(f"{A}/stale")))
    assert (outcome.state, outcome.status, outcome.attempts) == (State.DONE, 200, 2)
    assert len(mocked.web.hits(f"{A}/stale")) == 2


@pytest.mark.anyio
async def test_a_body_past_the_cap_is_truncated_and_an_endless_one_stops_there(
    make_mocked: MakeMocked,
) -> None:
    mocked = make_mocked(FetchSettings(max_body_bytes=50_000, deadline=10))
    mocked.web.route(f"{A}/big", mock.ok(b"x" * 60_000))
    mocked.web.route(f"{A}/endless", mock.endless())
    mocked.web.route(f"{A}/fits", mock.ok(b"x" * 50_000))
    for path, truncated in (("/big", True), ("/endless", True), ("/fits", False)):
        outcome = await mocked.worker.attempt(_at(f"{A}{path}"))
        response = outcome.response
        assert response is not None
        assert (outcome.state, outcome.status) == (State.DONE, 200)
        assert (response.truncated, response.wire_bytes) == (truncated, 50_000), path
        assert len(response.body.read()) == 50_000
        response.close()


@pytest.mark.anyio
async def test_a_decompression_bomb_stops_at_the_cap(make_mocked: MakeMocked) -> None:
    mocked = make_mocked(FetchSettings(max_body_bytes=100_000))
    bomb = gzip.compress(b"\0" * 10_000_000)
    mocked.web.route(f"{A}/bomb", mock.chunked(bomb, 1000, {"Content-Encoding": "gzip"}))
    outcome = await mocked.worker.attempt(_at(f"{A}/bomb"))
    response = outcome.response
    assert response is not None
    assert (outcome.state, response.truncated, response.decoded_bytes) == (
        State.DONE,
        True,
        100_000,
    )
    assert response.wire_bytes < len(bomb)  # reading stopped when the decoded cap was hit
    response.close()


def _deflate(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(wbits=wbits)
    return packer.compress(data) + packer.flush()


PAGE = b'<html><a href="/linked">x</a></html>'


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("coding", "body"),
    [
        (None, PAGE),
        ("identity", PAGE),
        ("gzip", gzip.compress(PAGE, mtime=0)),
        ("x-gzip", gzip.compress(PAGE, mtime=0)),
        ("deflate", _deflate(PAGE, zlib.MAX_WBITS)),  # zlib-wrapped, as RFC 9110 says
        ("deflate", _deflate(PAGE, -zlib.MAX_WBITS)),  # raw, as some servers send it
        ("GZIP", gzip.compress(PAGE, mtime=0)),
    ],
)
async def test_content_encodings_are_decoded_for_links_and_stored_as_received(
    make_mocked: MakeMocked, coding: str | None, body: bytes
) -> None:
    mocked = make_mocked(crawl=CrawlSettings(max_depth=1))
    headers = {} if coding is None else {"Content-Encoding": coding}
    mocked.web.route(f"{A}/page", mock.ok(body, headers=headers))
    outcome = await mocked.worker.attempt(_at(f"{A}/page"))
    assert (outcome.state, outcome.reason) == (State.DONE, None)
    assert [new.url for new in outcome.new_urls] == [f"{A}/linked"]
    response = outcome.response
    assert response is not None
    assert response.body.read() == body
    assert response.decoded_bytes == len(PAGE)
    response.close()


@pytest.mark.anyio
async def test_an_unknown_encoding_is_stored_but_not_parsed(make_mocked: MakeMocked) -> None:
    mocked = make_mocked(crawl=CrawlSettings(max_depth=1))
    mocked.web.route(f"{A}/br", mock.ok(b"\x1b\x00opaque", headers={"Content-Encoding": "br"}))
    outcome = _closed(await mocked.worker.attempt(_at(f"{A}/br")))
    assert (outcome.state, outcome.reason, outcome.status, outcome.new_urls) == (
        State.DONE,
        None,
        200,
        (),
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("coding", "body", "says"),
    [
        ("gzip", PAGE, "corrupt gzip"),
        ("gzip", gzip.compress(PAGE, mtime=0)[:-12], "truncated gzip"),
        ("deflate", b"\x78\x9c" + b"\xff" * 20, "corrupt deflate"),
    ],
)
async def test_a_bad_encoding_fails_the_url_with_the_response_kept(
    mocked: Mocked, coding: str, body: bytes, says: str
) -> None:
    mocked.web.route(f"{A}/bad", mock.ok(body, headers={"Content-Encoding": coding}))
    outcome = await mocked.worker.attempt(_at(f"{A}/bad"))
    assert (outcome.state, outcome.reason, outcome.status) == (State.FAILED, "bad_encoding", 200)
    assert says in (outcome.message or "")
    response = outcome.response
    assert response is not None
    assert response.body.read() == body  # the bytes as received still go to the WARC
    response.close()
