"""The value objects the frontier trades in: what goes into a commit, what comes out of counts.

A pure leaf module (no I/O, no DNS): politeness, the scheduler, the committer, the backends and
the status readers all import from here. `Entry`, `NewURL` and `State` live in
`crawler.models` (the worker shares them) and are re-exported here, so that a backend needs
only this module for its vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crawler.models import Entry, NewURL, State, Visit

__all__ = [
    "VISIT_KINDS",
    "CommitBatch",
    "Committed",
    "Counts",
    "Deferred",
    "Entry",
    "Finished",
    "HostControl",
    "HostCounts",
    "HostRow",
    "HostState",
    "HostWait",
    "NewURL",
    "NodeCounts",
    "RobotsRecord",
    "State",
    "Visit",
]

# What `Counts.visits` counts: responses written, and those of them written as revisits.
VISIT_KINDS = ("visits", "not_modified", "identical")


@dataclass(slots=True, frozen=True)
class HostState:
    """What is saved of a host's pace and health (times are wall-clock)."""

    host: str
    level: float
    blocked_until: float
    failures: int = 0  # network failures in a row, no answer between them
    down_until: float = 0.0  # given up until then: its URLs fail without a request
    down_reason: str | None = None


@dataclass(slots=True, frozen=True)
class HostControl:
    """What the operator set for a host (a politeness key): paused, blocked until a time
    (wall clock), a delay and a concurrency replacing the configured ones (None: not set)."""

    host: str
    paused: bool = False
    blocked_until: float | None = None
    delay: float | None = None
    concurrency: int | None = None

    @property
    def empty(self) -> bool:
        """Nothing set: the host goes as configured (the frontier keeps no row)."""
        return (
            not self.paused
            and self.blocked_until is None
            and self.delay is None
            and (self.concurrency is None)
        )

    def holds(self, now: float) -> bool:
        """No request to the host may start at `now` (wall clock)."""
        return self.paused or (self.blocked_until is not None and self.blocked_until > now)


@dataclass(slots=True, frozen=True)
class Finished:
    """A URL that reached a terminal state, under the lease `token` of its entry."""

    key: int
    state: State
    reason: str | None
    status: int | None
    attempts: int
    finished_at: float
    token: int  # Entry.token: applied only while the URL is still leased with it
    last: Visit | None = None  # kept for the next visit (the entry's own when none happened)
    recrawl_at: float | None = None  # due again then (wall clock; None: not recrawled)
    visited: bool = False  # a response was written (counted in `Counts.visits`)
    revisit: str | None = None  # "not_modified" or "identical": written as a revisit


@dataclass(slots=True, frozen=True)
class Deferred:
    """A URL going back to the queue until `not_before` (wall clock), attempts charged."""

    key: int
    attempts: int
    not_before: float
    reason: str | None
    status: int | None
    token: int  # Entry.token: applied only while the URL is still leased with it


@dataclass(slots=True)
class CommitBatch:
    """Everything one committer batch makes durable, applied in one transaction."""

    finished: list[Finished] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)
    discovered: list[NewURL] = field(default_factory=list)
    outputs: dict[str, int] = field(default_factory=dict)
    hosts: list[HostState] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Committed:
    """What a commit did: how many discovered URLs were new, and the keys of the completions
    (finished or deferred) refused because their lease was lost (released, or taken over)."""

    added: int = 0
    refused: tuple[int, ...] = ()


@dataclass(slots=True)
class HostCounts:
    host: str
    total: int
    states: dict[str, int]


@dataclass(slots=True, frozen=True)
class HostRow:
    """A host as the console's table shows it: URLs by state, saved pace, operator's controls."""

    host: str
    total: int
    states: dict[str, int]
    pace: HostState
    control: HostControl
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # state -> reason -> n


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


@dataclass(slots=True, frozen=True)
class NodeCounts:
    """One node of a crawl shared through PostgreSQL, as the database last heard of it."""

    name: str
    started_at: float  # wall clock of its first heartbeat
    beat_at: float  # its last heartbeat
    leased: int  # URLs it holds now
    done: int  # URLs it has finished (any final state) since it first started


@dataclass(slots=True)
class Counts:
    total: int
    states: dict[str, int]
    reasons: dict[str, int]
    hosts: list[HostCounts]
    waiting: list[HostWait] = field(default_factory=list)  # hosts with most queued URLs
    nodes: list[NodeCounts] = field(default_factory=list)  # a shared crawl's nodes
    # Responses written ("visits": one per fetch that got one, recrawls included), and the
    # revisits among them by kind ("not_modified": a 304, "identical": a payload stored before)
    visits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VISIT_KINDS, 0))


@dataclass(slots=True, frozen=True)
class RobotsRecord:
    """A host's robots.txt as last fetched (body None: allow all)."""

    host: str
    body: str | None
    status: int | None
    expires_at: float
    failing_since: float | None


def entry_of(row: Sequence[Any]) -> Entry:
    """An entry from a claimed row: the columns of `Entry` up to its token, then the six of
    its last visit (`Visit.of`), as both backends return them."""
    entry = Entry(*row[:12])
    entry.last = Visit.of(row[12:])
    return entry
