"""Frontier: the durable queue of URLs with their states; one interface, several backends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from crawler.models import Entry, NewURL, State
from crawler.politeness import HostState


@dataclass(slots=True, frozen=True)
class Finished:
    """A URL that reached a terminal state."""

    key: int
    state: State
    reason: str | None
    status: int | None
    attempts: int
    finished_at: float


@dataclass(slots=True, frozen=True)
class Deferred:
    """A URL going back to the queue until `not_before` (wall clock), attempts charged."""

    key: int
    attempts: int
    not_before: float
    reason: str | None
    status: int | None


@dataclass(slots=True)
class CommitBatch:
    """Everything one writer flush makes durable, applied in one transaction."""

    finished: list[Finished] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)
    discovered: list[NewURL] = field(default_factory=list)
    outputs: dict[str, int] = field(default_factory=dict)
    hosts: list[HostState] = field(default_factory=list)


@dataclass(slots=True)
class HostCounts:
    host: str
    total: int
    states: dict[str, int]


@dataclass(slots=True, frozen=True)
class HostWait:
    """What the database says of a host with queued URLs: enough to tell why they wait."""

    host: str
    queued: int
    next_due: float  # the earliest not_before of its queued URLs (wall clock)
    level: float  # adaptive back-off level
    blocked_until: float  # Retry-After, or the next probe after failures
    failures: int  # network failures in a row
    down_until: float  # given up until then (down, or blocked past retry.max_wait)
    down_reason: str | None
    robots_retry_at: float | None  # robots.txt failing: fetched again then


@dataclass(slots=True)
class Counts:
    total: int
    states: dict[str, int]
    reasons: dict[str, int]
    hosts: list[HostCounts]
    waiting: list[HostWait] = field(default_factory=list)  # hosts with most queued URLs


@dataclass(slots=True, frozen=True)
class RobotsRecord:
    """A host's robots.txt as last fetched (body None: allow all)."""

    host: str
    body: str | None
    status: int | None
    expires_at: float
    failing_since: float | None


class Frontier(Protocol):
    """The verbs every backend offers (SQLite now, PostgreSQL when one node is not enough)."""

    async def add(self, urls: Sequence[NewURL]) -> int:
        """Insert URLs not seen before (by key); returns how many were new."""
        ...

    async def claim(
        self,
        limit: int,
        now: float,
        lease_until: float,
        per_host: int = 0,
        room: Mapping[str, int] | None = None,
    ) -> list[Entry]:
        """Lease up to `limit` queued URLs whose `not_before` has passed, at most `per_host`
        of one host (0: no cap) or as many as its `room` says, spread over hosts so that
        none starves another; hosts saved as blocked (and not given up) are passed over."""
        ...

    async def commit(self, batch: CommitBatch) -> int:
        """Apply a writer flush atomically: terminal states, deferrals, new URLs, offsets.
        Returns how many of the discovered URLs were new."""
        ...

    async def release(self, keys: Sequence[int], not_before: float = 0.0) -> None:
        """Give leased URLs back without charging an attempt."""
        ...

    async def release_all(self) -> int:
        """Release every lease (a single-node start: nobody else can hold one)."""
        ...

    async def next_due(self) -> float | None:
        """The earliest `not_before` among queued URLs, or None if none is queued."""
        ...

    async def has_pending(self) -> bool:
        """Whether any URL is queued or leased."""
        ...

    async def load_cookies(self, profile: str) -> str | None:
        """The saved cookie jar (JSON) of a fetch profile, if any."""
        ...

    async def save_cookies(self, profile: str, jar: str) -> None:
        """Replace the saved cookie jar of a fetch profile."""
        ...

    async def committed_outputs(self) -> dict[str, int]:
        """Output file (relative path) -> length known to be committed."""
        ...

    async def counts(self, top_hosts: int = 10) -> Counts: ...

    async def robots(self, host: str) -> RobotsRecord | None:
        """The stored robots.txt of `host`, if any."""
        ...

    async def save_robots(self, record: RobotsRecord) -> None: ...

    async def host_states(self, hosts: Sequence[str]) -> dict[str, HostState]:
        """Saved adaptive politeness of these hosts (those that have any)."""
        ...

    async def aclose(self) -> None: ...
