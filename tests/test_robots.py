"""robots.txt end to end: rules, caching, failures and Crawl-delay, as the server sees them;
then the Robots class on a fake wall clock, over loopback and over a mock transport."""

from __future__ import annotations

import gc
import itertools
from pathlib import Path

import anyio
import httpx2
import pytest

from crawler.errors import FetchError
from crawler.fetcher import Fetcher
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.guard import AddressGuard
from crawler.models import Entry
from crawler.profiles import load_profiles
from crawler.robots import Robots, RobotsDecision
from crawler.settings import FetchSettings, RetrySettings, RobotsSettings
from tests import mock_transport as mock
from tests import servers as site
from tests.crawling import crawl, index
from tests.mock_transport import MockWeb
from tests.servers import SiteFactory

OBEY = "robots.obey=true"


def _pages(s: site.Site, *paths: str) -> list[str]:
    for path in paths:
        s.route(path, site.ok(b"<html>%s</html>" % path.encode()))
    return [s.url(p) for p in paths]


def test_disallowed_urls_are_skipped_and_robots_is_fetched_once(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    rules = b"User-agent: *\nDisallow: /private\nAllow: /private/open\n"
    s.route("/robots.txt", site.ok(rules, content_type="text/plain"))
    urls = _pages(s, "/a", "/b", "/private/x", "/private/open")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY) == 0
    lines = index(data)
    assert (lines[s.url("/private/x")]["state"], lines[s.url("/private/x")]["reason"]) == (
        "skipped",
        "robots",
    )
    assert {lines[s.url(p)]["state"] for p in ("/a", "/b", "/private/open")} == {"done"}
    assert s.hits_for("/private/x") == []
    assert len(s.hits_for("/robots.txt")) == 1
    first = min(hit.started for hit in s.hits)
    assert s.hits_for("/robots.txt")[0].started == first  # before any other request
    # A second run of the same crawl uses the stored robots.txt.
    more = _pages(s, "/c")
    assert crawl(data, more, OBEY) == 0
    assert len(s.hits_for("/robots.txt")) == 1


def test_a_group_for_our_product_token(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route(
        "/robots.txt", site.ok(b"User-agent: crawler\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    )
    urls = _pages(s, "/a")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY) == 0
    assert index(data)[s.url("/a")]["reason"] == "robots"


def test_missing_robots_allows_all(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()  # /robots.txt answers 404
    urls = _pages(s, "/a", "/b")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY) == 0
    assert {line["state"] for line in index(data).values()} == {"done"}


def test_robots_redirect_is_followed(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/robots.txt", site.redirect("/real-robots.txt"))
    s.route("/real-robots.txt", site.ok(b"User-agent: *\nDisallow: /no\n"))
    urls = _pages(s, "/no", "/yes")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY) == 0
    lines = index(data)
    assert lines[s.url("/no")]["state"] == "skipped"
    assert lines[s.url("/yes")]["state"] == "done"


@pytest.mark.timing
def test_robots_5xx_makes_urls_wait_then_proceed(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/robots.txt", site.sequence(site.status(503), site.ok(b"User-agent: *\nAllow: /\n")))
    urls = _pages(s, "/a")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY, "robots.retry_base=0.3") == 0
    robots = s.hits_for("/robots.txt")
    assert len(robots) == 2
    assert robots[1].started - robots[0].started >= 0.3 - 0.005
    assert s.hits_for("/a")[0].started > robots[1].started  # nothing fetched meanwhile
    line = index(data)[s.url("/a")]
    assert (line["state"], line["attempts"]) == ("done", 1)  # waiting charged no attempt


def test_robots_unavailable_for_too_long_fails_the_urls(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/robots.txt", site.status(500))
    urls = _pages(s, "/a")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY, "robots.retry_base=0.2", "robots.max_wait=0.5") == 0
    line = index(data)[s.url("/a")]
    assert (line["state"], line["reason"]) == ("failed", "robots_unavailable")
    assert s.hits_for("/a") == []


def test_robots_on_a_blocked_address_fails_at_once(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    urls = _pages(s, "/a")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY, "network.allowed_networks=[]") == 0
    line = index(data)[s.url("/a")]
    assert (line["state"], line["reason"]) == ("failed", "blocked_address")
    assert s.hits == []


@pytest.mark.timing
def test_crawl_delay_is_honoured_from_the_robots_request_on(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/robots.txt", site.ok(b"User-agent: *\nCrawl-delay: 0.5\n"))
    urls = _pages(s, "/a", "/b", "/c")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY, "politeness.per_host_concurrency=2") == 0
    starts = sorted(hit.started for hit in s.hits)
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.5 - 0.005, gaps


@pytest.mark.timing
def test_crawl_delay_is_capped(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/robots.txt", site.ok(b"User-agent: *\nCrawl-delay: 3600\n"))
    urls = _pages(s, "/a", "/b")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY, "politeness.max_crawl_delay=0.3") == 0
    starts = sorted(hit.started for hit in s.hits)
    assert starts[-1] - starts[0] < 5
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.3 - 0.005


def test_wildcards_and_end_anchor(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/robots.txt", site.ok(b"User-agent: *\nDisallow: /*.pdf$\nDisallow: /tmp*/x\n"))
    urls = _pages(s, "/doc.pdf", "/doc.pdf?download=1", "/tmp1/x", "/tmp1/y")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY) == 0
    states = {u: line["state"] for u, line in index(data).items()}
    assert states == {
        s.url("/doc.pdf"): "skipped",
        s.url("/doc.pdf?download=1"): "done",
        s.url("/tmp1/x"): "skipped",
        s.url("/tmp1/y"): "done",
    }


def test_a_stalled_robots_txt_makes_urls_wait(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/robots.txt", site.sequence(site.stall_headers(30), site.ok(b"User-agent: *\n")))
    urls = _pages(s, "/a")
    data = tmp_path / "crawl"
    assert crawl(data, urls, OBEY, "fetch.read_timeout=0.3", "robots.retry_base=0.2") == 0
    assert len(s.hits_for("/robots.txt")) == 2
    line = index(data)[s.url("/a")]
    assert (line["state"], line["attempts"]) == ("done", 1)


# -- the Robots class itself, with a clock of its own ----------------------------------------


class _Pacing:
    """Books starts like the scheduler: `delay` seconds apart per host, from now."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.booked: list[str] = []
        self.sent: list[str] = []  # requests written: each hop's, the first one's too

    def reserve_start(self, host: str) -> float:
        self.booked.append(host)
        return self.delay

    def started(self, host: str) -> None:
        self.sent.append(host)


async def _robots(
    frontier: SQLiteFrontier,
    wall: list[float],
    pacing: _Pacing | None = None,
    allowed: tuple[str, ...] = ("127.0.0.0/8",),
) -> tuple[Robots, Fetcher]:
    fetcher = Fetcher(FetchSettings(read_timeout=2), AddressGuard(allowed))
    settings = RobotsSettings()
    robots = Robots(
        fetcher,
        frontier,
        settings,
        "crawler/1.0",
        wall=lambda: wall[0],
        pacing=pacing,
        max_wait=RetrySettings().max_wait,
    )
    return robots, fetcher


@pytest.mark.anyio
async def test_a_robots_txt_answering_503_is_given_up_within_max_wait_with_defaults(
    frontier: SQLiteFrontier, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/robots.txt", site.status(503))
    wall = [1_000_000.0]
    robots, fetcher = await _robots(frontier, wall)
    entry = Entry(key=1, url=s.url("/page"), host=f"127.0.0.1:{s.port}")
    try:
        decision = await robots.check(entry)
        while decision.fail is None:
            assert decision.allowed is None  # disallowed while failing: the URL waits
            assert decision.not_before > wall[0]
            wall[0] = decision.not_before
            decision = await robots.check(entry)
    finally:
        await fetcher.aclose()
    assert decision.fail == "robots_unavailable"
    # Asked again with a back-off from robots.retry_base (60 s), never waiting past
    # retry.max_wait (300 s) from the first failure.
    assert wall[0] - 1_000_000.0 <= RetrySettings().max_wait
    assert 3 <= len(s.hits_for("/robots.txt")) <= 5


@pytest.mark.timing
@pytest.mark.anyio
async def test_robots_redirect_hops_keep_the_hosts_delay(
    frontier: SQLiteFrontier, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/robots.txt", site.redirect("/r1"))
    s.route("/r1", site.redirect("/r2"))
    s.route("/r2", site.ok(b"User-agent: *\nDisallow: /no\n", content_type="text/plain"))
    pacing = _Pacing(delay=0.2)
    robots, fetcher = await _robots(frontier, [1_000_000.0], pacing)
    host = f"127.0.0.1:{s.port}"
    try:
        decision = await robots.check(Entry(key=1, url=s.url("/no"), host=host))
    finally:
        await fetcher.aclose()
    assert decision.allowed is False
    assert pacing.booked == [host, host]  # one booked start per hop after the first
    assert pacing.sent == [host, host, host]  # and each request booked again when written
    starts = [hit.started for hit in s.hits]
    assert len(starts) == 3
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.2 - 0.005


@pytest.mark.anyio
async def test_a_robots_txt_that_cannot_be_fetched_at_all_fails_at_once(
    frontier: SQLiteFrontier,
) -> None:
    robots, fetcher = await _robots(frontier, [1_000_000.0], allowed=())  # loopback refused
    try:
        decision = await robots.check(Entry(key=1, url="http://127.0.0.1:9/x", host="127.0.0.1:9"))
    finally:
        await fetcher.aclose()
    assert decision.fail == "blocked_address"
    assert decision.error is not None


# -- RFC 9309 status semantics through the real Robots class, without sockets ----------------

T0 = 1_000_000.0
HOST = "a.test"


def _at(path: str) -> Entry:
    return Entry(key=1, url=f"http://{HOST}{path}", host=HOST)


def _mock_robots(
    frontier: SQLiteFrontier, web: MockWeb, wall: list[float], pacing: _Pacing | None = None
) -> tuple[Robots, Fetcher]:
    fetcher = web.fetcher()
    robots = Robots(
        fetcher,
        frontier,
        RobotsSettings(),
        "crawler/1.0",
        wall=lambda: wall[0],
        pacing=pacing,
        max_wait=RetrySettings().max_wait,
    )
    return robots, fetcher


@pytest.mark.anyio
async def test_2xx_rules_decide_and_are_fetched_once_per_ttl(frontier: SQLiteFrontier) -> None:
    web = MockWeb()
    rules = b"User-agent: *\nDisallow: /private\nCrawl-delay: 2\nSitemap: /map.xml\n"
    web.route(f"http://{HOST}/robots.txt", mock.ok(rules, content_type="text/plain"))
    wall = [T0]
    robots, fetcher = _mock_robots(frontier, web, wall)
    try:
        first = await robots.check(_at("/private/x"))
        second = await robots.check(_at("/public"))
        wall[0] = T0 + RobotsSettings().ttl + 1  # expired: asked again
        third = await robots.check(_at("/public"))
    finally:
        await fetcher.aclose()
    assert (first.allowed, first.fetched, first.crawl_delay) == (False, True, 2.0)
    assert first.sitemaps == (f"http://{HOST}/map.xml",)
    assert (second.allowed, second.fetched, second.sitemaps) == (True, False, ())
    assert (third.allowed, third.fetched) == (True, True)
    assert len(web.hits(f"http://{HOST}/robots.txt")) == 2
    stored = await frontier.robots(HOST)
    assert stored is not None
    assert (stored.status, stored.failing_since) == (200, None)


@pytest.mark.anyio
async def test_robots_txt_is_asked_for_without_credentials(frontier: SQLiteFrontier) -> None:
    web = MockWeb()
    web.route(f"http://{HOST}/robots.txt", mock.ok(b"User-agent: *\nAllow: /\n"))
    profiles = load_profiles(
        [{"hosts": [HOST], "headers": {"X-Key": "k"}, "auth": {"type": "bearer", "token": "t"}}]
    )
    fetcher = web.fetcher(profiles=profiles)
    robots = Robots(fetcher, frontier, RobotsSettings(), "crawler/1.0", wall=lambda: T0)
    try:
        decision = await robots.check(_at("/a"))
    finally:
        await fetcher.aclose()
    assert decision.allowed is True
    [request] = web.requests
    assert "authorization" not in request.headers
    assert "x-key" not in request.headers


@pytest.mark.anyio
async def test_redirects_are_followed_for_five_hops_each_paced(frontier: SQLiteFrontier) -> None:
    web = MockWeb()
    web.route(f"http://{HOST}/robots.txt", mock.redirect("/r1"))
    for hop in range(1, 4):
        web.route(f"http://{HOST}/r{hop}", mock.redirect(f"/r{hop + 1}", code=302))
    web.route(f"http://{HOST}/r4", mock.redirect("http://b.test/robots.txt", code=308))
    web.route("http://b.test/robots.txt", mock.ok(b"User-agent: *\nDisallow: /no\n"))
    pacing = _Pacing(delay=0)
    robots, fetcher = _mock_robots(frontier, web, [T0], pacing)
    try:
        decision = await robots.check(_at("/no"))
    finally:
        await fetcher.aclose()
    assert decision.allowed is False  # the rules at the end of the chain, on another host
    assert len(web.requests) == 6  # the first request and five redirects
    assert pacing.booked == [HOST] * 4 + ["b.test"]  # each hop booked on its own host


@pytest.mark.anyio
async def test_a_sixth_redirect_is_not_followed_and_allows_all(frontier: SQLiteFrontier) -> None:
    web = MockWeb()
    web.route(f"http://{HOST}/robots.txt", mock.redirect("/r1"))
    for hop in range(1, 7):
        web.route(f"http://{HOST}/r{hop}", mock.redirect(f"/r{hop + 1}"))
    web.route(f"http://{HOST}/r7", mock.ok(b"User-agent: *\nDisallow: /\n"))
    robots, fetcher = _mock_robots(frontier, web, [T0])
    try:
        decision = await robots.check(_at("/a"))
    finally:
        await fetcher.aclose()
    assert decision.allowed is True  # RFC 9309 2.3.1.2: unreached, so "unavailable"
    assert [r.url.path for r in web.requests] == ["/robots.txt", "/r1", "/r2", "/r3", "/r4", "/r5"]


@pytest.mark.anyio
@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 429])
async def test_4xx_allows_all_until_the_ttl(frontier: SQLiteFrontier, code: int) -> None:
    # RFC 9309 2.3.1.3 counts every 4xx as "unavailable", 429 included (Google's crawler
    # treats 429 like a 5xx instead; this pins what robots.py does today).
    web = MockWeb()
    web.route(f"http://{HOST}/robots.txt", mock.status(code))
    robots, fetcher = _mock_robots(frontier, web, [T0])
    try:
        first = await robots.check(_at("/a"))
        second = await robots.check(_at("/b"))
    finally:
        await fetcher.aclose()
    assert (first.allowed, first.fetched, second.allowed, second.fetched) == (
        True,
        True,
        True,
        False,
    )
    assert len(web.requests) == 1
    stored = await frontier.robots(HOST)
    assert stored is not None
    assert (stored.status, stored.body, stored.expires_at) == (
        code,
        None,
        T0 + RobotsSettings().ttl,
    )


@pytest.mark.anyio
async def test_5xx_disallows_and_is_asked_again_with_back_off(frontier: SQLiteFrontier) -> None:
    web = MockWeb()
    web.route(
        f"http://{HOST}/robots.txt",
        mock.sequence(
            mock.status(503), mock.status(500), mock.status(502), mock.ok(b"User-agent: *\n")
        ),
    )
    wall = [T0]
    robots, fetcher = _mock_robots(frontier, web, wall)
    waits = []
    try:
        decision = await robots.check(_at("/a"))
        while decision.allowed is None:
            assert decision.fail is None
            assert decision.error is None
            early = await robots.check(_at("/b"))  # before the next try: no request
            assert (early.allowed, early.not_before) == (None, decision.not_before)
            waits.append(decision.not_before - wall[0])
            wall[0] = decision.not_before
            decision = await robots.check(_at("/a"))
    finally:
        await fetcher.aclose()
    assert waits == [60.0, 60.0, 120.0]  # robots.retry_base, then the time failing so far
    assert decision.allowed is True
    assert len(web.requests) == 4


@pytest.mark.anyio
async def test_5xx_past_the_wait_bound_fails_robots_unavailable(
    frontier: SQLiteFrontier,
) -> None:
    web = MockWeb()
    web.route(f"http://{HOST}/robots.txt", mock.status(503))
    wall = [T0]
    robots, fetcher = _mock_robots(frontier, web, wall)
    try:
        decision = await robots.check(_at("/a"))
        while decision.fail is None:
            wall[0] = decision.not_before
            decision = await robots.check(_at("/a"))
        later = await robots.check(_at("/b"))
    finally:
        await fetcher.aclose()
    # Asked at +0, +60, +120 and +240 s; the next try (+480 s) would pass retry.max_wait.
    assert wall[0] == T0 + 240
    assert (decision.fail, later.fail) == ("robots_unavailable", "robots_unavailable")
    assert len(web.requests) == 4  # failing URLs cost no request


@pytest.mark.anyio
async def test_no_answer_stores_nothing_and_its_waiters_share_the_failure(
    frontier: SQLiteFrontier,
) -> None:
    web = MockWeb()
    started, release = anyio.Event(), anyio.Event()

    async def refused(request: httpx2.Request) -> httpx2.Response:
        started.set()
        await release.wait()
        raise httpx2.ConnectError("connection refused")

    web.route(f"http://{HOST}/robots.txt", mock.sequence(mock.status(503), refused))
    wall = [T0]
    robots, fetcher = _mock_robots(frontier, web, wall)
    decisions: dict[str, RobotsDecision] = {}

    async def check(path: str) -> None:
        decisions[path] = await robots.check(_at(path))

    try:
        wall[0] = (await robots.check(_at("/first"))).not_before  # a failing record, expired
        async with anyio.create_task_group() as tg:
            tg.start_soon(check, "/a")
            await started.wait()
            tg.start_soon(check, "/b")
            await anyio.wait_all_tasks_blocked()
            release.set()
    finally:
        await fetcher.aclose()
    assert len(web.requests) == 2  # /b waited for /a's fetch instead of asking again
    for decision in decisions.values():
        assert decision.allowed is None
        assert decision.error is not None
        assert decision.error.reason == "connect"
    stored = await frontier.robots(HOST)
    assert stored is not None
    assert (stored.status, stored.expires_at) == (503, T0 + 60)  # the refusal stored nothing


@pytest.mark.anyio
async def test_robots_txt_that_get_no_answer_leave_nothing_behind_per_host(
    frontier: SQLiteFrontier,
) -> None:
    """A crawl over many dead hosts: each robots.txt fetch that gets no answer is shared
    with its waiters, then forgotten. Memory is set by configuration, not by the number of
    hosts ever seen (DESIGN.md invariant 4): no failure per host is kept afterwards."""
    web = MockWeb()
    hosts = [f"dead{i}.example" for i in range(2000)]
    for host in hosts:
        web.route(f"http://{host}/robots.txt", mock.fail(httpx2.ConnectError))
    robots, fetcher = _mock_robots(frontier, web, [T0])
    try:
        for i, host in enumerate(hosts):
            decision = await robots.check(Entry(key=i, url=f"http://{host}/", host=host))
            assert decision.error is not None
            assert decision.error.reason == "connect"
        del decision
        gc.collect()
        kept = [o for o in gc.get_objects() if isinstance(o, FetchError)]
        assert len(kept) < 10, f"{len(kept)} fetch errors still held after 2,000 dead hosts"
    finally:
        await fetcher.aclose()
