"""Value objects that travel along the data path: frontier entries, responses, outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import IO

SPOOL_BYTES = 256 * 1024  # a body past this size is held in a temporary file, not in memory


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


class OutcomeKind(enum.Enum):
    TERMINAL = "terminal"  # done/failed/skipped: written to WARC + JSONL, then committed
    DEFER = "defer"  # back to the frontier with not_before; nothing written


@dataclass(slots=True)
class Outcome:
    """What became of one attempt at one entry; the writer persists it."""

    entry: Entry
    kind: OutcomeKind
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
    new_urls: list[NewURL] = field(default_factory=list)
    message: str | None = None
    links: int | None = None  # in-scope links found (None: the page was not parsed)
    links_truncated: bool = False
    out_of_scope: int = 0
    host_down: bool = False  # failed without a request: its host was given up as down
