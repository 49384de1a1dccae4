"""Worker: fetches one URL at a time and hands the judged Outcome to the committer."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler import links, sitemaps
from crawler.errors import ConnectionLost, FetchError, FetchTimeout, ProtocolError
from crawler.fetcher import Fetcher
from crawler.judge import Judge
from crawler.models import Entry, NewURL, Outcome, Response
from crawler.politeness import HOST_FAILURES
from crawler.retry import parse_retry_after, retry_in_place
from crawler.robots import Robots, RobotsDecision
from crawler.urls import encoded

EXCLUDED = "excluded"  # skipped: an exclude pattern the operator added matches it
ROBOTS_FETCHED = "robots_fetched"  # its request slot went to the host's robots.txt
MAX_IN_PLACE_WAIT = 5.0  # an in-place retry never waits longer than this for politeness

log = structlog.get_logger("crawler.worker")


class Pacing(Protocol):
    """What a worker asks of (and tells) the scheduler about its entry's host."""

    @property
    def stopping(self) -> bool: ...
    def done(self, entry: Entry) -> None: ...
    def started(self, host: str) -> None: ...
    def reserve_start(self, host: str) -> float: ...
    def seconds_until_start(self, host: str) -> float: ...
    def delay_of(self, host: str) -> float: ...
    def set_delay(self, host: str, delay: float) -> None: ...
    def feedback(
        self, host: str, status: int, retry_after: float | None, elapsed: float
    ) -> None: ...
    def failed(self, host: str, reason: str) -> None: ...
    def given_up(self, host: str) -> str | None: ...
    def again(self, entry: Entry) -> bool: ...


class Worker:
    """One of `fetch.concurrency` tasks: robots.txt, the fetch, the verdict, the log line."""

    def __init__(
        self,
        fetcher: Fetcher,
        pacing: Pacing,
        judge: Judge,
        *,
        robots: Robots | None = None,
        max_crawl_delay: float = 30.0,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._scheduler = pacing
        self._judge = judge
        self._crawl = judge.crawl
        self._robots = robots
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
                if outcome.archived:  # the robots.txt fetched in its slot: to the WARC
                    for archived in outcome.archived:
                        await results.send(archived)
                    outcome = replace(outcome, archived=())
                if self._first_in_line(entry, outcome):
                    continue  # the scheduler hands it out again, after its host's delay
                await results.send(outcome)
                self._scheduler.done(entry)

    def _first_in_line(self, entry: Entry, outcome: Outcome) -> bool:
        """Its robots.txt has just been fetched (with no sitemaps to add): the entry goes
        back to the head of its host's queue instead of to the frontier."""
        return (
            outcome.reason == ROBOTS_FETCHED
            and not outcome.final
            and not outcome.new_urls
            and self._scheduler.again(entry)
        )

    async def attempt(self, entry: Entry) -> Outcome:
        """Check robots.txt, fetch `entry` (at most one quick retry in place), judge it."""
        fetched_at = self._wall()
        started = self._clock()
        held = await self._held(entry)
        if held is not None:
            return self._finish(held, fetched_at)
        outcome, payload_digest = await self._fetch_and_judge(entry, started)
        elapsed_ms = int((self._clock() - started) * 1000)
        return self._finish(outcome, fetched_at, elapsed_ms, payload_digest)

    async def _held(self, entry: Entry) -> Outcome | None:
        """The outcome instead of a fetch (host given up, robots.txt says no or wait), if any."""
        gone = self._scheduler.given_up(entry.host)
        if gone is not None:
            return self._host_given_up(entry, gone)
        if self._judge.excludes and self._judge.excluded(entry.url):
            return Outcome.skipped(entry, attempts=entry.attempts, reason=EXCLUDED)
        if self._robots is not None:
            return await self._obey_robots(entry)
        return None

    async def _fetch_and_judge(self, entry: Entry, started: float) -> tuple[Outcome, str | None]:
        """The judged outcome and, for a response judged without error, its payload digest."""
        tries = 0

        async def once() -> tuple[Response, str]:
            nonlocal tries
            tries += 1
            return await self._request(entry)

        def stale_connection(exc: BaseException) -> bool:
            return (
                isinstance(exc, ConnectionLost | ProtocolError | FetchTimeout)
                and getattr(exc, "fresh_connection", True) is False
                and entry.attempts + tries < self._judge.policy.max_attempts
                and self._scheduler.seconds_until_start(entry.host) <= MAX_IN_PLACE_WAIT
            )

        try:
            response, digest = await retry_in_place(
                once, stale_connection, lambda: self._scheduler.reserve_start(entry.host)
            )
        except FetchError as exc:
            if exc.reason in HOST_FAILURES:
                self._scheduler.failed(entry.host, exc.reason)
            return self._judge.error(entry, exc, entry.attempts + tries), None
        except Exception as exc:  # a bug must cost one URL, never the crawl
            return self._crashed(entry, exc, entry.attempts + max(tries, 1)), None
        retry_after = parse_retry_after(response.header("retry-after"), self._wall())
        elapsed = self._clock() - started
        self._scheduler.feedback(entry.host, response.status, retry_after, elapsed)
        try:
            return self._judge.response(entry, response, entry.attempts + tries), digest
        except Exception as exc:
            response.close()
            return self._crashed(entry, exc, entry.attempts + tries), None

    async def _request(self, entry: Entry) -> tuple[Response, str]:
        """One request: a sitemap is kept whole (up to its cap); a page's body is kept for
        its links only while the crawl may go deeper."""
        # Booked at the hand-off, and again when the request is written: a new connection's
        # setup must not shorten the delay the server sees from the previous request.
        sent = functools.partial(self._scheduler.started, entry.host)
        sent()
        # A URL visited before: conditional on what that visit got (a 304 if unchanged).
        conditions = entry.last.conditions() if entry.last is not None else ()
        if entry.kind == "sitemap":
            cap = sitemaps.MAX_BYTES  # parsed from memory, whole
            return await self._fetcher.fetch(
                entry.url, keep=cap, cap=cap, on_send=sent, headers=conditions
            )
        keep = links.MAX_BYTES if entry.depth < self._crawl.max_depth else 0
        return await self._fetcher.fetch(entry.url, keep, on_send=sent, headers=conditions)

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
        """None: go ahead. Else the outcome instead of a fetch (no attempt is charged), with
        the robots.txt responses this check fetched, to be archived."""
        assert self._robots is not None
        decision = await self._robots.check(entry)
        outcome = self._robots_outcome(entry, decision)
        if decision.archived:
            if outcome is None:  # a check that fetches spends the slot: not reached
                for archived in decision.archived:
                    if archived.response is not None:
                        archived.response.close()
            else:
                outcome = replace(outcome, archived=decision.archived)
        return outcome

    def _robots_outcome(self, entry: Entry, decision: RobotsDecision) -> Outcome | None:
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
            urls = [encoded(url) for url in named]  # as a link's: `café` as `caf%C3%A9`
            new_urls = self._judge.follow(entry, urls, 0, "sitemap", scoped=False).new_urls
        return Outcome.deferred(
            entry,
            attempts=entry.attempts,
            reason=ROBOTS_FETCHED,
            not_before=not_before,
            new_urls=new_urls,
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
