"""robots.txt (protego, RFC 9309): fetched once per host, cached in the frontier database.

2xx: the rules (first 500 KiB); redirects followed up to 5 hops, each keeping the host's
delay; 4xx: allow all; 5xx: disallow all for now, the host's URLs wait and robots.txt is
fetched again with back-off, until the next try would pass the wait bound (the smaller of
`robots.max_wait` and `retry.max_wait`) and they fail `robots_unavailable`. No answer at
all (dns, connect, timeout, ...): the URL waits and the failure counts towards its host
being down (the scheduler's host health), and the URLs that waited for that same fetch
share its failure. A robots.txt URL that cannot be fetched at all fails its URL at once.

Each answered robots.txt request (redirect hops included) is archived: the decision of the
check that fetched it carries it (`archived`, outcomes of kind "robots") for the WARC and
the index, and a `robots_fetched` log line says what came back.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import anyio
import structlog
from protego import Protego

from crawler.errors import FetchError, FinalFetchError
from crawler.fetcher import Fetcher
from crawler.frontier import Frontier, RobotsRecord
from crawler.models import Entry, Outcome, Response
from crawler.settings import RobotsSettings
from crawler.urls import host_of

KIND = "robots"  # the kind of the entries of archived robots.txt responses (ARCHIVE_ONLY)
MAX_BYTES = 500 * 1024
MAX_HOPS = 5
CACHED_HOSTS = 10_000

log = structlog.get_logger("crawler.robots")


@dataclass(slots=True, frozen=True)
class RobotsDecision:
    """`allowed` None: wait until `not_before`; `fail` set: the URL fails with that reason."""

    allowed: bool | None
    not_before: float = 0.0
    fail: str | None = None
    error: FetchError | None = None  # robots.txt got no answer: the host failed
    fetched: bool = False  # robots.txt was fetched during this check (the slot is spent)
    crawl_delay: float | None = None
    sitemaps: tuple[str, ...] = ()  # from a robots.txt fetched by this very check
    archived: tuple[Outcome, ...] = ()  # the robots.txt responses this check fetched


class Pacing(Protocol):
    """Books a host's next request start (a redirect hop of robots.txt is one), and the
    start of a request when it is written."""

    def reserve_start(self, host: str) -> float: ...
    def started(self, host: str) -> None: ...


def _archived(
    page: Entry, url: str, response: Response, digest: str, at: float, elapsed_ms: int
) -> Outcome:
    """A robots.txt response as a final outcome to write (WARC records, an index line of
    kind "robots"), for an entry no frontier holds (key 0, no lease)."""
    entry = Entry(
        key=0, url=url, host=host_of(url), depth=page.depth, discovered_from=page.url, kind=KIND
    )
    outcome = Outcome.done(entry, attempts=1, response=response, status=response.status)
    return replace(outcome, fetched_at=at, elapsed_ms=elapsed_ms, payload_digest=digest)


def product_token(user_agent: str) -> str:
    """`crawler/0.1 (+https://...)` -> `crawler` (RFC 9309 matches on the product token)."""
    return user_agent.split("/", 1)[0].split()[0] if user_agent.strip() else "*"


class _Fetch:
    """One robots.txt fetch in progress: its waiters wait for `done`, then read `error`."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: FetchError | None = None


class Robots:
    def __init__(
        self,
        fetcher: Fetcher,
        frontier: Frontier,
        settings: RobotsSettings,
        user_agent: str,
        *,
        wall: Callable[[], float] = time.time,
        pacing: Pacing | None = None,
        max_wait: float | None = None,
        archive: bool = False,
    ) -> None:
        """`archive`: keep each robots.txt response for the caller to write (the decision's
        `archived`; it closes them); else they are closed once read."""
        self._archive = archive
        self._pacing = pacing
        # How long after its first failure a failing robots.txt may still be waited for.
        self._max_wait = min(settings.max_wait, max_wait or settings.max_wait)
        self._fetcher = fetcher
        self._frontier = frontier
        self._settings = settings
        self._token = product_token(user_agent)
        self._wall = wall
        self._cache: OrderedDict[str, tuple[RobotsRecord, Protego | None]] = OrderedDict()
        self._fetching: dict[str, _Fetch] = {}  # by host, while its robots.txt is fetched

    async def check(self, entry: Entry) -> RobotsDecision:
        archived: list[Outcome] = []
        decision = await self._check(entry, archived)
        return replace(decision, archived=tuple(archived)) if archived else decision

    async def _check(self, entry: Entry, archived: list[Outcome]) -> RobotsDecision:
        fetched = False
        while True:
            record, rules = await self._lookup(entry.host)
            now = self._wall()
            known = self._stored_decision(entry.url, record, rules, now, fetched)
            if known is not None:
                return known
            waiting = self._fetching.get(entry.host)
            if waiting is not None:
                # Its slot was taken before robots.txt (and its Crawl-delay) was known: it
                # waits its turn like the URL whose slot fetched robots.txt.
                await waiting.done.wait()
                fetched = True
                error = waiting.error
                if error is not None:  # that fetch got no answer: so does this URL
                    return RobotsDecision(allowed=None, error=error)
                continue
            if fetched:  # fetched just now and still unusable: wait like the others
                not_before = record.expires_at if record is not None else now
                return RobotsDecision(
                    allowed=None, not_before=max(not_before, now + self._settings.retry_base)
                )
            sitemaps = await self._fetch_for_waiters(entry, record, archived)
            if isinstance(sitemaps, RobotsDecision):  # no answer, or never fetchable
                return sitemaps
            fetched = True
            record, rules = await self._lookup(entry.host)
            if record is not None and record.failing_since is None:
                return self._decide(entry.url, rules, True, sitemaps)

    def _stored_decision(
        self,
        url: str,
        record: RobotsRecord | None,
        rules: Protego | None,
        now: float,
        fetched: bool,
    ) -> RobotsDecision | None:
        """What the stored robots.txt decides, or None when it is missing or due again."""
        if record is not None and record.failing_since is None and record.expires_at > now:
            return self._decide(url, rules, fetched)
        if record is not None and record.failing_since is not None:
            if record.expires_at > record.failing_since + self._max_wait:
                return RobotsDecision(allowed=None, fail="robots_unavailable")
            if record.expires_at > now:  # failing: wait for the next try
                return RobotsDecision(allowed=None, not_before=record.expires_at)
        return None

    async def _fetch_for_waiters(
        self, entry: Entry, record: RobotsRecord | None, archived: list[Outcome]
    ) -> tuple[str, ...] | RobotsDecision:
        """Fetch the host's robots.txt while its other checks wait; returns the sitemaps
        it names, or the decision for a fetch that got no answer (shared with the waiters)."""
        fetch = self._fetching[entry.host] = _Fetch()
        try:
            return await self._fetch(entry, record, archived)
        except FinalFetchError as exc:  # e.g. blocked_address, invalid_url: never fetchable
            return RobotsDecision(allowed=None, fail=exc.reason, error=exc)
        except FetchError as exc:
            fetch.error = exc  # for its waiters; gone with the fetch (no map of every host)
            log.info("robots_unanswered", host=entry.host, reason=exc.reason)
            return RobotsDecision(allowed=None, error=exc)
        finally:
            del self._fetching[entry.host]
            fetch.done.set()

    def _decide(
        self, url: str, rules: Protego | None, fetched: bool, sitemaps: tuple[str, ...] = ()
    ) -> RobotsDecision:
        if rules is None:
            return RobotsDecision(allowed=True, fetched=fetched, sitemaps=sitemaps)
        delay = rules.crawl_delay(self._token)
        return RobotsDecision(
            allowed=bool(rules.can_fetch(url, self._token)),
            fetched=fetched,
            crawl_delay=float(delay) if delay is not None else None,
            sitemaps=sitemaps,
        )

    async def _lookup(self, host: str) -> tuple[RobotsRecord | None, Protego | None]:
        cached = self._cache.get(host)
        if cached is not None:
            self._cache.move_to_end(host)
            return cached
        record = await self._frontier.robots(host)
        if record is None:
            return None, None
        return self._remember(record)

    def _remember(self, record: RobotsRecord) -> tuple[RobotsRecord, Protego | None]:
        rules = Protego.parse(record.body) if record.body else None
        self._cache[record.host] = (record, rules)
        self._cache.move_to_end(record.host)
        while len(self._cache) > CACHED_HOSTS:
            self._cache.popitem(last=False)
        return record, rules

    async def _fetch(
        self, entry: Entry, previous: RobotsRecord | None, archived: list[Outcome]
    ) -> tuple[str, ...]:
        """Fetch and store the host's robots.txt; returns the sitemaps it names, and adds
        each response to `archived`. Raises the FetchError of a fetch that got no answer
        (nothing is stored then; the hops answered before it are still archived)."""
        parts = urlsplit(entry.url)
        url = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/robots.txt"
        now = self._wall()
        status: int | None = None
        body: str | None = None
        pacing = self._pacing
        for hop in range(MAX_HOPS + 1):
            if hop and pacing is not None:  # each hop is a request like any other
                await anyio.sleep(pacing.reserve_start(host_of(url)))
            sent = None if pacing is None else functools.partial(pacing.started, host_of(url))
            started, clock = self._wall(), time.monotonic()
            response, digest = await self._fetcher.fetch(
                url, keep=MAX_BYTES, credentials=False, on_send=sent
            )
            status = response.status
            location = response.header("location")
            data = response.decoded or b""
            response.decoded = None
            elapsed_ms = int((time.monotonic() - clock) * 1000)
            if self._archive:
                archived.append(_archived(entry, url, response, digest, started, elapsed_ms))
            else:
                response.close()
            log.info("robots_fetched", url=url, host=entry.host, status=status, bytes=len(data))
            if 300 <= status < 400 and location:
                url = urljoin(url, location)
                continue
            if 200 <= status < 300:
                body = data[:MAX_BYTES].decode("utf-8", errors="replace")
            break
        if status is not None and status >= 500:
            since = previous.failing_since if previous and previous.failing_since else now
            retry = min(self._settings.ttl, max(self._settings.retry_base, now - since))
            record = RobotsRecord(entry.host, None, status, now + retry, since)
        else:
            record = RobotsRecord(entry.host, body, status, now + self._settings.ttl, None)
        await self._frontier.save_robots(record)
        _, rules = self._remember(record)
        if record.failing_since is not None:
            return ()
        listed = tuple(urljoin(url, s) for s in rules.sitemaps) if rules is not None else ()
        return listed or (f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/sitemap.xml",)
