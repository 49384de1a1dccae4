"""robots.txt end to end: rules, caching, failures and Crawl-delay, as the server sees them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from crawler.fetcher import Fetcher
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.guard import AddressGuard
from crawler.models import Entry
from crawler.robots import Robots
from crawler.settings import FetchSettings, RetrySettings, RobotsSettings
from tests import site
from tests.crawling import crawl, index
from tests.site import SiteFactory

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

    def reserve_start(self, host: str) -> float:
        self.booked.append(host)
        return self.delay


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
