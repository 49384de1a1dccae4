"""Judge: turns what a fetch returned (a response or an error) into an Outcome: retry
verdicts, redirect hops, and the links and sitemap entries to add to the frontier."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import urljoin

from crawler import sitemaps
from crawler.errors import FetchError
from crawler.links import extract, is_html, source
from crawler.models import Entry, NewURL, Outcome, Response
from crawler.retry import RETRYABLE_STATUSES, RetryPolicy
from crawler.scope import Scope
from crawler.seen import Seen
from crawler.settings import CrawlSettings
from crawler.urls import encoded, locate, url_key, without_userinfo

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class Followed(NamedTuple):
    """What became of the URLs a page (or sitemap) names."""

    new_urls: tuple[NewURL, ...]  # to add: fetchable, in scope, not in the frontier yet
    links: int  # fetchable and in scope (new or not)
    out_of_scope: int
    invalid: int  # not fetchable as written (userinfo, a bad host...)


class Judge:
    """The verdicts of a crawl: pure but for the wall clock, and shared by all workers."""

    def __init__(
        self,
        policy: RetryPolicy,
        crawl: CrawlSettings | None = None,
        *,
        max_redirects: int = 10,
        scope: Scope | None = None,
        seen: Seen | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.crawl = crawl or CrawlSettings()
        self._max_redirects = max_redirects
        self._scope = scope or Scope(self.crawl)
        self.seen = seen or Seen(self.crawl.sort_query)
        self._wall = wall
        # The operator's live exclude patterns (`serve`: /excludes), compiled.
        self.excludes: tuple[re.Pattern[str], ...] = ()

    def excluded(self, url: str) -> bool:
        """Whether a live exclude pattern matches `url` (it ends skipped, unfetched)."""
        return any(pattern.search(url) for pattern in self.excludes)

    def error(self, entry: Entry, exc: FetchError, attempts: int) -> Outcome:
        verdict = self.policy.for_error(exc, attempts, self._wall())
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

    def response(self, entry: Entry, response: Response, attempts: int) -> Outcome:
        status = response.status
        if response.encoding_error is not None:
            return self._final(entry, response, attempts, "bad_encoding", response.encoding_error)
        if status in RETRYABLE_STATUSES:
            verdict = self.policy.for_status(
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
        urls = [encoded(url) for url in found.urls]  # as a link's: `café` as `caf%C3%A9`
        followed = self.follow(entry, urls, depth=depth, kind=kind)
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
            links_invalid=followed.invalid,
        )

    def _discover(self, entry: Entry, response: Response, attempts: int) -> Outcome:
        """Follow the links of an HTML page that are in scope (one depth further)."""
        body = response.decoded or b""
        found = extract(
            source(body, response.header("content-type")),
            entry.url,
            max_links=self.crawl.max_links_per_page,
            obey_rel_nofollow=self.crawl.obey_rel_nofollow,
            x_robots_tag=response.header("x-robots-tag"),
        )
        response.decoded = None  # not needed any more: free it before the committer's queue
        followed = self.follow(entry, found.urls, depth=entry.depth + 1)
        return Outcome.done(
            entry,
            attempts=attempts,
            response=response,
            status=response.status,
            new_urls=followed.new_urls,
            links=followed.links,
            links_truncated=found.truncated or len(body) < response.decoded_bytes,
            out_of_scope=followed.out_of_scope,
            links_invalid=followed.invalid + found.invalid,
        )

    def follow(
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
        seen = self.seen
        new_urls: list[NewURL] = []
        followed = 0
        out_of_scope = 0
        invalid = 0
        for url in urls:
            try:
                host, key = seen.host(url)
            except ValueError:  # BadURL included
                invalid += 1
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
        return Followed(tuple(new_urls), followed, out_of_scope, invalid)

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
            target, canonical_url, host = locate(target, self.crawl.sort_query)
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
