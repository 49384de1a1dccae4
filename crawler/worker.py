"""Worker: fetches one URL at a time and turns what happened into an Outcome for the writer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NamedTuple
from urllib.parse import urljoin

import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler import links, sitemaps
from crawler.errors import ConnectionLost, FetchError, FetchTimeout, ProtocolError
from crawler.fetcher import Fetcher
from crawler.links import extract, is_html, source
from crawler.models import Entry, NewURL, Outcome, Response
from crawler.politeness import HOST_FAILURES
from crawler.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after, retry_in_place
from crawler.robots import Robots
from crawler.scheduler import Scheduler
from crawler.scope import Scope
from crawler.seen import Seen
from crawler.settings import CrawlSettings
from crawler.urls import locate, url_key, without_userinfo

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_IN_PLACE_WAIT = 5.0  # an in-place retry never waits longer than this for politeness

log = structlog.get_logger("crawler.worker")


class Followed(NamedTuple):
    """What became of the URLs a page (or sitemap) names."""

    new_urls: tuple[NewURL, ...]  # to add: fetchable, in scope, not in the frontier yet
    links: int  # fetchable and in scope (new or not)
    out_of_scope: int


class Worker:
    def __init__(
        self,
        fetcher: Fetcher,
        policy: RetryPolicy,
        scheduler: Scheduler,
        max_redirects: int,
        crawl: CrawlSettings | None = None,
        scope: Scope | None = None,
        robots: Robots | None = None,
        max_crawl_delay: float = 30.0,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        seen: Seen | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._policy = policy
        self._scheduler = scheduler
        self._max_redirects = max_redirects
        self._crawl = crawl or CrawlSettings()
        self._scope = scope or Scope(self._crawl)
        self._robots = robots
        self._seen = seen or Seen(self._crawl.sort_query)
        self._max_crawl_delay = max_crawl_delay
        self._wall = wall
        self._clock = clock

    async def run(
        self, work: MemoryObjectReceiveStream[Entry], results: MemoryObjectSendStream[Outcome]
    ) -> None:
        async with work, results:
            async for entry in work:
                if self._scheduler.stopping:
                    return  # shutting down: the entry is released with the leftovers
                outcome = await self.attempt(entry)
                await results.send(outcome)
                self._scheduler.done(entry)

    async def attempt(self, entry: Entry) -> Outcome:
        """Check robots.txt, fetch `entry` (at most one quick retry in place), judge it."""
        fetched_at = self._wall()
        started = self._clock()
        gone = self._scheduler.given_up(entry.host)
        held = None if gone is None else self._host_given_up(entry, gone)
        if held is None and self._robots is not None:
            held = await self._obey_robots(entry)
        if held is not None:
            return self._finish(held, fetched_at)
        tries = 0

        async def once() -> tuple[Response, str]:
            nonlocal tries
            tries += 1
            self._scheduler.started(entry.host)
            if entry.kind == "sitemap":
                cap = sitemaps.MAX_BYTES  # parsed from memory, whole
                return await self._fetcher.fetch(entry.url, keep=cap, cap=cap)
            keep = links.MAX_BYTES if entry.depth < self._crawl.max_depth else 0
            return await self._fetcher.fetch(entry.url, keep)

        def stale_connection(exc: BaseException) -> bool:
            return (
                isinstance(exc, ConnectionLost | ProtocolError | FetchTimeout)
                and getattr(exc, "fresh_connection", True) is False
                and entry.attempts + tries < self._policy.max_attempts
                and self._scheduler.seconds_until_start(entry.host) <= MAX_IN_PLACE_WAIT
            )

        payload_digest: str | None = None
        try:
            response, digest = await retry_in_place(
                once, stale_connection, lambda: self._scheduler.reserve_start(entry.host)
            )
        except FetchError as exc:
            if exc.reason in HOST_FAILURES:
                self._scheduler.failed(entry.host, exc.reason)
            outcome = self._judge_error(entry, exc, entry.attempts + tries)
        except Exception as exc:  # a bug must cost one URL, never the crawl
            outcome = self._crashed(entry, exc, entry.attempts + max(tries, 1))
        else:
            retry_after = parse_retry_after(response.header("retry-after"), self._wall())
            self._scheduler.feedback(
                entry.host, response.status, retry_after, self._clock() - started
            )
            try:
                outcome = self._judge_response(entry, response, entry.attempts + tries)
                payload_digest = digest
            except Exception as exc:
                response.close()
                outcome = self._crashed(entry, exc, entry.attempts + tries)
        elapsed_ms = int((self._clock() - started) * 1000)
        return self._finish(outcome, fetched_at, elapsed_ms, payload_digest)

    def _finish(
        self,
        outcome: Outcome,
        fetched_at: float,
        elapsed_ms: int = 0,
        payload_digest: str | None = None,
    ) -> Outcome:
        """The judged outcome with the attempt's timing (and digest), logged."""
        outcome = replace(
            outcome, fetched_at=fetched_at, elapsed_ms=elapsed_ms, payload_digest=payload_digest
        )
        self._log(outcome)
        return outcome

    def _crashed(self, entry: Entry, exc: Exception, attempts: int) -> Outcome:
        log.exception("fetch_crashed", url=entry.url)
        message = f"{type(exc).__name__}: {exc}"
        return Outcome.failed(entry, attempts=attempts, reason="internal_error", message=message)

    def _host_given_up(self, entry: Entry, reason: str) -> Outcome:
        """Its host is down (or blocked past retry.max_wait): fail without a request."""
        return Outcome.given_up(entry, reason=reason, host_down=reason in HOST_FAILURES)

    async def _obey_robots(self, entry: Entry) -> Outcome | None:
        """None: go ahead. Else the outcome instead of a fetch (no attempt is charged)."""
        assert self._robots is not None
        decision = await self._robots.check(entry)
        if decision.crawl_delay is not None:
            delay = min(decision.crawl_delay, self._max_crawl_delay)
            self._scheduler.set_delay(entry.host, delay)
        attempts = entry.attempts
        error = decision.error
        if error is not None and error.reason in HOST_FAILURES:
            self._scheduler.failed(entry.host, error.reason)
            gone = self._scheduler.given_up(entry.host)
            if gone is not None:
                return self._host_given_up(entry, gone)
        if decision.fail is not None:
            message = None if error is None else str(error)
            return Outcome.failed(entry, attempts=attempts, reason=decision.fail, message=message)
        if error is not None:  # robots.txt got no answer: wait for the host's next probe
            not_before = self._wall() + self._scheduler.seconds_until_start(entry.host)
            return Outcome.deferred(
                entry, attempts=attempts, reason=error.reason, not_before=not_before
            )
        if decision.allowed is False:
            return Outcome.skipped(entry, attempts=attempts, reason="robots")
        if decision.allowed is None:
            return Outcome.deferred(
                entry, attempts=attempts, reason="robots_wait", not_before=decision.not_before
            )
        if decision.fetched:
            return self._robots_fetched(entry, decision.sitemaps)
        return None

    def _robots_fetched(self, entry: Entry, named: tuple[str, ...]) -> Outcome:
        """robots.txt used this request slot: the URL waits its turn. The sitemaps the host
        names itself are read whatever the scope."""
        not_before = self._wall() + self._scheduler.delay_of(entry.host)
        new_urls: tuple[NewURL, ...] = ()
        if self._crawl.sitemaps and named:
            new_urls = self._follow(entry, named, 0, "sitemap", scoped=False).new_urls
        return Outcome.deferred(
            entry,
            attempts=entry.attempts,
            reason="robots_fetched",
            not_before=not_before,
            new_urls=new_urls,
        )

    def _judge_error(self, entry: Entry, exc: FetchError, attempts: int) -> Outcome:
        verdict = self._policy.for_error(exc, attempts, self._wall())
        if verdict.retry:
            return Outcome.deferred(
                entry,
                attempts=attempts,
                reason=exc.reason,
                not_before=verdict.not_before,
                status=entry.status,
            )
        return Outcome.failed(
            entry, attempts=attempts, reason=exc.reason, status=entry.status, message=str(exc)
        )

    def _judge_response(self, entry: Entry, response: Response, attempts: int) -> Outcome:
        status = response.status
        if response.encoding_error is not None:
            return self._final(entry, response, attempts, "bad_encoding", response.encoding_error)
        if status in RETRYABLE_STATUSES:
            verdict = self._policy.for_status(
                status, response.header("retry-after"), attempts, self._wall()
            )
            if verdict.retry:
                response.close()
                return Outcome.deferred(
                    entry,
                    attempts=attempts,
                    reason=f"http_{status}",
                    not_before=verdict.not_before,
                    status=status,
                )
            return self._final(entry, response, attempts, f"http_{status}", None)
        location = response.header("location")
        if status in REDIRECT_STATUSES and location:
            return self._redirect(entry, response, attempts, location)
        if 200 <= status < 300 and response.decoded is not None:
            if entry.kind == "sitemap":
                return self._read_sitemap(entry, response, attempts)
            if is_html(response.header("content-type"), response.decoded):
                return self._discover(entry, response, attempts)
        return Outcome.done(entry, attempts=attempts, response=response, status=status)

    def _read_sitemap(self, entry: Entry, response: Response, attempts: int) -> Outcome:
        """A sitemap's URLs enter at depth 1 (an index's sitemaps stay sitemaps)."""
        found = sitemaps.parse(response.decoded or b"")
        response.decoded = None
        kind = "sitemap" if found.index else None
        depth = entry.depth if found.index else entry.depth + 1
        followed = self._follow(entry, found.urls, depth=depth, kind=kind)
        return Outcome.done(
            entry,
            attempts=attempts,
            response=response,
            status=response.status,
            message=None if found.error is None else f"sitemap not fully read: {found.error}",
            new_urls=followed.new_urls,
            links=followed.links,
            links_truncated=found.truncated,
            out_of_scope=followed.out_of_scope,
        )

    def _discover(self, entry: Entry, response: Response, attempts: int) -> Outcome:
        """Follow the links of an HTML page that are in scope (one depth further)."""
        body = response.decoded or b""
        found = extract(
            source(body, response.header("content-type")),
            entry.url,
            max_links=self._crawl.max_links_per_page,
            obey_rel_nofollow=self._crawl.obey_rel_nofollow,
            x_robots_tag=response.header("x-robots-tag"),
        )
        response.decoded = None  # not needed any more: free it before the writer's queue
        followed = self._follow(entry, found.urls, depth=entry.depth + 1)
        return Outcome.done(
            entry,
            attempts=attempts,
            response=response,
            status=response.status,
            new_urls=followed.new_urls,
            links=followed.links,
            links_truncated=found.truncated or len(body) < response.decoded_bytes,
            out_of_scope=followed.out_of_scope,
        )

    def _follow(
        self,
        entry: Entry,
        urls: Sequence[str],
        depth: int,
        kind: str | None = None,
        scoped: bool = True,
    ) -> Followed:
        """Which of `urls` are fetchable and in scope, and which of those the frontier lacks."""
        origin = entry.origin or entry.host
        allows = self._scope.allows
        seen = self._seen
        new_urls: list[NewURL] = []
        followed = 0
        out_of_scope = 0
        for url in urls:
            try:
                host, key = seen.host(url)
            except ValueError:  # BadURL included
                continue
            if scoped and not allows(url, host, origin):
                out_of_scope += 1
                continue  # dropped before it costs a key
            followed += 1
            if key is None:
                key = seen.key(url)
            if seen.stored(key):
                continue  # already in the frontier (or on its way there)
            new_urls.append(
                NewURL(
                    key=key,
                    url=url,
                    host=host,
                    depth=depth,
                    discovered_from=entry.url,
                    origin=origin,
                    kind=kind,
                )
            )
        return Followed(tuple(new_urls), followed, out_of_scope)

    def _final(
        self,
        entry: Entry,
        response: Response,
        attempts: int,
        reason: str,
        message: str | None,
        redirect_to: str | None = None,
    ) -> Outcome:
        return Outcome.failed(
            entry,
            attempts=attempts,
            reason=reason,
            message=message,
            status=response.status,
            response=response,
            redirect_to=redirect_to,
        )

    def _redirect(self, entry: Entry, response: Response, attempts: int, location: str) -> Outcome:
        """A 3xx is a result; its target enters the frontier as the next hop of the chain."""
        target = location.strip()
        # Headers arrive as latin-1; a Location in UTF-8 bytes is what browsers assume.
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            target = target.encode("latin-1").decode("utf-8")
        target = without_userinfo(target)  # never sent or recorded, even when not followed
        try:
            target = without_userinfo(urljoin(entry.url, target))
            target, canonical_url, host = locate(target, self._crawl.sort_query)
            key = url_key(canonical_url)
        except ValueError as exc:  # BadURL included
            return self._not_followed(entry, response, attempts, target, str(exc))
        # A seed's redirect chain may go anywhere (it names a new seed host); deeper pages'
        # redirects stay in the crawl's scope like their links.
        origin = host if entry.depth == 0 else (entry.origin or entry.host)
        if key in entry.chain_keys():
            return self._final(entry, response, attempts, "redirect_loop", target, target)
        if entry.redirects >= self._max_redirects:
            return self._final(entry, response, attempts, "too_many_redirects", target, target)
        if not self._scope.allows(target, host, origin):
            return self._not_followed(entry, response, attempts, target, "out of scope", 1)
        hop = NewURL(
            key=key,
            url=target,
            host=host,
            depth=entry.depth,
            redirects=entry.redirects + 1,
            chain=f"{entry.chain} {entry.key}".strip(),
            discovered_from=entry.url,
            origin=origin,
        )
        return Outcome.done(
            entry,
            attempts=attempts,
            response=response,
            status=response.status,
            redirect_to=target,
            new_urls=(hop,),
        )

    def _not_followed(
        self,
        entry: Entry,
        response: Response,
        attempts: int,
        target: str,
        why: str,
        out_of_scope: int = 0,
    ) -> Outcome:
        """Still a result (done with its 3xx status); the target is just not followed."""
        return Outcome.done(
            entry,
            attempts=attempts,
            response=response,
            status=response.status,
            message=f"redirect not followed: {why}",
            redirect_to=target,
            out_of_scope=out_of_scope,
        )

    def _log(self, outcome: Outcome) -> None:
        response = outcome.response
        log.info(
            "fetch",
            url=outcome.entry.url,
            host=outcome.entry.host,
            status=outcome.status,
            bytes=response.wire_bytes if response else 0,
            elapsed_ms=outcome.elapsed_ms,
            attempt=outcome.attempts,
            outcome=outcome.state.value if outcome.final else "retry",
            reason=outcome.reason,
        )
