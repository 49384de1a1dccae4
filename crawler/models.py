"""Value objects that travel along the data path: frontier entries, responses, outcomes."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

SPOOL_BYTES = 256 * 1024  # a body past this size is held in a temporary file, not in memory
ARCHIVE_ONLY = frozenset({"robots"})  # kinds of entry archived but never in the frontier


class State(enum.StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(slots=True, frozen=True)
class NewURL:
    """A URL about to enter the frontier (from a seed file or a redirect)."""

    key: int
    url: str
    host: str
    depth: int = 0
    redirects: int = 0
    chain: str = ""
    discovered_from: str | None = None
    origin: str | None = None  # host of the seed it descends from (None: its own)
    kind: str | None = None  # None: a page; "sitemap": a sitemap to read for URLs


@dataclass(slots=True, frozen=True)
class Visit:
    """What the frontier keeps of a URL's last visit for the next one (recrawl): the
    validators a conditional request sends, and where its payload is stored."""

    etag: str | None = None
    last_modified: str | None = None
    digest: str | None = None  # payload digest of the last response
    ref_uri: str | None = None  # the record holding that payload: its URI (None: this URL)
    ref_date: str | None = None  # and its WARC-Date (None: not stored)
    interval: float | None = None  # adaptive recrawl: seconds from this visit to the next

    @classmethod
    def of(cls, row: Sequence[Any]) -> Visit | None:
        """From the six columns of a frontier row (None when nothing was kept)."""
        if all(value is None for value in row):
            return None
        etag, modified, digest, ref_uri, ref_date, interval = row
        return cls(etag, modified, digest, ref_uri, ref_date, interval)

    def conditions(self) -> list[tuple[str, str]]:
        """The headers that make a request conditional on this visit (RFC 9110, 13.1)."""
        headers = []
        if self.etag:
            headers.append(("If-None-Match", self.etag))
        if self.last_modified:
            headers.append(("If-Modified-Since", self.last_modified))
        return headers


@dataclass(slots=True)
class Entry:
    """A URL leased from the frontier to be fetched."""

    key: int
    url: str
    host: str
    attempts: int = 0
    depth: int = 0
    redirects: int = 0
    chain: str = ""
    discovered_from: str | None = None
    status: int | None = None  # the last HTTP status seen in an earlier attempt
    origin: str | None = None  # host of the seed it descends from (None: its own)
    kind: str | None = None
    token: int = 0  # lease token of the claim that handed it out (0: none, completes nothing)
    last: Visit | None = None  # what its last visit left (recrawl), None before the first

    def chain_keys(self) -> list[int]:
        """Keys of the URLs of this entry's redirect chain, itself included."""
        return [int(k) for k in self.chain.split()] + [self.key]


@dataclass(slots=True)
class Response:
    """One HTTP response as received: the raw body (content-encoded) is spooled to `body`."""

    status: int
    reason_phrase: str
    http_version: str
    headers: list[tuple[str, str]]
    request_headers: list[tuple[str, str]]
    method: str
    target: str
    body: IO[bytes]
    wire_bytes: int
    decoded_bytes: int
    truncated: bool
    peer: str | None = None
    encoding_error: str | None = None
    decoded: bytes | None = None  # the decoded body (capped), when it was asked for

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def close(self) -> None:
        self.body.close()


@dataclass(slots=True, frozen=True, kw_only=True)
class Outcome:
    """What became of one attempt at one entry; the committer persists it.

    Final (`done`, `failed`, `skipped`): written to WARC + JSONL, then committed. Deferred
    (`state` queued): back to the frontier with `not_before`; nothing is written.

    Immutable: built once by a named constructor, changed only by `dataclasses.replace`.
    `response` holds an open body; it belongs to the committer, which closes it once the batch
    is written (a copy made by `replace` shares it, and a deferral never carries one).
    """

    entry: Entry
    state: State
    attempts: int
    reason: str | None = None
    not_before: float = 0.0
    response: Response | None = None
    fetched_at: float = 0.0
    elapsed_ms: int = 0
    status: int | None = None
    payload_digest: str | None = None
    redirect_to: str | None = None
    new_urls: tuple[NewURL, ...] = ()
    message: str | None = None
    links: int | None = None  # in-scope links found (None: the page was not parsed)
    links_truncated: bool = False
    out_of_scope: int = 0
    links_invalid: int = 0  # links (or sitemap URLs) naming no fetchable URL
    host_down: bool = False  # failed without a request: its host was given up as down
    # Records to write that are not of this outcome's URL: the robots.txt fetched in its
    # request slot. The worker sends them to the committer as outcomes of their own.
    archived: tuple[Outcome, ...] = ()

    @property
    def archive_only(self) -> bool:
        """Written to the WARC and the index, and that is all: no URL of the frontier (a
        robots.txt response)."""
        return self.entry.kind in ARCHIVE_ONLY

    @property
    def final(self) -> bool:
        """Done, failed or skipped (else deferred: its state is still queued)."""
        return self.state is not State.QUEUED

    @classmethod
    def done(
        cls,
        entry: Entry,
        *,
        attempts: int,
        response: Response,
        status: int,
        redirect_to: str | None = None,
        message: str | None = None,
        new_urls: tuple[NewURL, ...] = (),
        links: int | None = None,
        links_truncated: bool = False,
        out_of_scope: int = 0,
        links_invalid: int = 0,
    ) -> Outcome:
        """A response, whatever its status: the URL is fetched."""
        return cls(
            entry=entry,
            state=State.DONE,
            attempts=attempts,
            response=response,
            status=status,
            redirect_to=redirect_to,
            message=message,
            new_urls=new_urls,
            links=links,
            links_truncated=links_truncated,
            out_of_scope=out_of_scope,
            links_invalid=links_invalid,
        )

    @classmethod
    def failed(
        cls,
        entry: Entry,
        *,
        attempts: int,
        reason: str,
        message: str | None = None,
        status: int | None = None,
        response: Response | None = None,
        redirect_to: str | None = None,
    ) -> Outcome:
        """Final without success: `reason` says why (a response may still be written)."""
        return cls(
            entry=entry,
            state=State.FAILED,
            attempts=attempts,
            reason=reason,
            message=message,
            status=status,
            response=response,
            redirect_to=redirect_to,
        )

    @classmethod
    def skipped(cls, entry: Entry, *, attempts: int, reason: str) -> Outcome:
        """Final without a request: the crawl may not fetch it (e.g. robots.txt)."""
        return cls(entry=entry, state=State.SKIPPED, attempts=attempts, reason=reason)

    @classmethod
    def given_up(cls, entry: Entry, *, reason: str, host_down: bool) -> Outcome:
        """Failed without a request: its host is down, or blocked for longer than anyone
        waits; it keeps the status of its last attempt."""
        return cls(
            entry=entry,
            state=State.FAILED,
            attempts=entry.attempts,
            reason=reason,
            status=entry.status,
            message="host down" if host_down else "host blocked too long",
            host_down=host_down,
        )

    @classmethod
    def deferred(
        cls,
        entry: Entry,
        *,
        attempts: int,
        reason: str,
        not_before: float,
        status: int | None = None,
        new_urls: tuple[NewURL, ...] = (),
    ) -> Outcome:
        """Back to the frontier until `not_before` (wall-clock), with no response (the
        worker closed it); `new_urls` still enter the frontier."""
        return cls(
            entry=entry,
            state=State.QUEUED,
            attempts=attempts,
            reason=reason,
            not_before=not_before,
            status=status,
            new_urls=new_urls,
        )

    def unwritten(self, message: str) -> Outcome:
        """This final outcome, failed as `warc_error`: its record could not be written."""
        return replace(self, state=State.FAILED, reason="warc_error", message=message)
