"""Frontier: the durable queue of URLs with their states; one interface, several backends.

The Protocol is here; the value objects it trades in are in `crawler.frontier.values`
(re-exported here), a leaf module that politeness, the writer and the status readers import
without the storage package's backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from crawler.frontier.values import (
    CommitBatch,
    Counts,
    Deferred,
    Entry,
    Finished,
    HostCounts,
    HostState,
    HostWait,
    NewURL,
    RobotsRecord,
    State,
)

__all__ = [
    "CommitBatch",
    "Counts",
    "Deferred",
    "Entry",
    "Finished",
    "Frontier",
    "HostCounts",
    "HostState",
    "HostWait",
    "NewURL",
    "RobotsRecord",
    "State",
]


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
