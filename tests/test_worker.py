"""Worker: judging attempts, and the one quick retry in place on a reused connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crawler.fetcher import Fetcher
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.guard import AddressGuard
from crawler.models import Entry, State
from crawler.retry import RetryPolicy
from crawler.scheduler import Scheduler
from crawler.settings import FetchSettings, FrontierSettings, PolitenessSettings, RetrySettings
from crawler.urls import host_of
from crawler.worker import Worker
from tests import site
from tests.site import Conn, Hit, SiteFactory


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    frontier = await SQLiteFrontier.open(tmp_path / "crawl.db", fsync=False)
    scheduler = Scheduler(frontier, PolitenessSettings(delay=0), FrontierSettings())
    fetcher = Fetcher(FetchSettings(read_timeout=2), AddressGuard(["127.0.0.0/8"]))
    policy = RetryPolicy(RetrySettings(max_attempts=3, backoff_base=30, backoff_max=60))
    try:
        yield Worker(fetcher, policy, scheduler, max_redirects=10)
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
