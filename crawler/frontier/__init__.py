"""Frontier: the durable queue of URLs with their states; one contract, several backends.

The contract every backend keeps (`tests/test_frontier_contract.py` pins it):

- **add** is idempotent: a URL is keyed by the hash of its canonical form, and a key seen
  before (queued, leased or final) is never added again.
- **claim** leases queued URLs whose `not_before` has passed, never one already leased, and
  stamps them with a new **lease token**: an integer, larger than every token handed out
  before, the same for all URLs of one claim (`Entry.token`). Claims spread over hosts
  round robin, take a host's URLs earliest `not_before` first (then by key), honour a
  per-host cap and each host's `room`, and pass over hosts saved as blocked (unless given
  up: their URLs are handed out to fail at once).
- **Fencing**: a completion (`Finished`, `Deferred`) and a release carry the token of their
  entry and apply only to a URL still leased with that same token. Any other completion is
  refused, leaving the row as it is, and `commit` reports its key (`Committed.refused`): a
  holder whose lease was lost never overwrites the new holder's result. The rest of a batch
  (discovered URLs, output lengths, host states) applies all the same.
- **Lease expiry**: `lease_until` is when a lease may be taken from a holder that went
  silent. A backend shared by several nodes (PostgreSQL) must let a claim take back rows
  whose `lease_until` has passed (with a new token). SQLite does not: one process owns the
  crawl, its leases last as long as it runs (none is renewed), and `release_all` at start
  takes back the leases of a process that died.
- **renew** extends the leases of entries still held with their token and says which
  are; where leases expire (`leases_expire`: PostgreSQL), a node renews what it holds
  while it runs.
- **commit_holding** renews the leases of a batch, has the records of those still held
  written, and commits them, holding the leases from the check to the commit (PostgreSQL
  locks their rows: a claim passes them over, however long the write takes, even with the
  node frozen). So a record is written only for a completion the frontier takes.
- **beat** records that this process is alive and may be sending requests (every
  `BEAT_SECONDS`); `last_beat` reads the latest, so a restart keeps politeness towards
  hosts the previous process may have just hit, and a fresh crawl starts at once.
- **commit** is atomic: terminal states, deferrals (attempts charged, `not_before` set),
  discovered URLs, output lengths and host states, all or nothing. A finished URL keeps
  what its visit left for the next one (`Finished.last`: validators, digest, record) and
  when it is due again (`Finished.recrawl_at`); `Counts.visits` counts what it says.
- **Recrawl**: `recrawl_due` queues again the finished URLs whose `recrawl_at` has come
  (attempts 0, no reason, `not_before` their `recrawl_at`), `recrawl` those listed (the
  operator's), `retime` times every finished URL anew when the schedule changed. A URL
  queued again keeps its last visit (`Entry.last`) for its conditional request.

Value objects are in `crawler.frontier.values` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from crawler.frontier.values import (
    CommitBatch,
    Committed,
    Counts,
    Deferred,
    Entry,
    Finished,
    HostControl,
    HostCounts,
    HostRow,
    HostState,
    HostWait,
    NewURL,
    RobotsRecord,
    State,
    Visit,
)
from crawler.recrawl import Schedule

__all__ = [
    "CommitBatch",
    "Committed",
    "Counts",
    "Deferred",
    "Entry",
    "Finished",
    "Frontier",
    "HostControl",
    "HostCounts",
    "HostRow",
    "HostState",
    "HostWait",
    "NewURL",
    "RobotsRecord",
    "State",
    "Visit",
]


class Frontier(Protocol):
    """The verbs every backend offers (SQLite now, PostgreSQL when one node is not enough)."""

    leases_expire: bool  # whether a lease past its lease_until may be taken by a claim

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
        none starves another; hosts saved as blocked (and not given up) are passed over.
        The entries carry the claim's new lease token."""
        ...

    async def commit(self, batch: CommitBatch) -> Committed:
        """Apply a committer batch atomically: terminal states, deferrals, new URLs, offsets,
        host states. A completion whose entry is no longer leased with its token is refused
        (reported, nothing of it applied)."""
        ...

    async def commit_holding(
        self,
        entries: Sequence[Entry],
        lease_until: float,
        write: Callable[[set[int]], Awaitable[CommitBatch]],
    ) -> Committed:
        """Renew to `lease_until` the leases of `entries` still held, call `write` once with
        their keys (it writes their records and returns the batch to commit), and commit
        that batch, no claim taking those leases in between."""
        ...

    async def release(self, entries: Sequence[Entry], not_before: float = 0.0) -> None:
        """Give leased URLs back without charging an attempt, not before `not_before` (a
        later `not_before` already set is kept); entries no longer leased with their token
        are left alone."""
        ...

    async def renew(self, entries: Sequence[Entry], lease_until: float) -> set[int]:
        """Extend to `lease_until` the leases of these entries still held with their
        token; returns their keys."""
        ...

    async def release_all(self) -> int:
        """Release every lease (a single-node start: nobody else can hold one)."""
        ...

    async def next_due(self) -> float | None:
        """The earliest `not_before` among queued URLs, or None if none is queued."""
        ...

    async def recrawl_due(self, now: float) -> int:
        """Queue again every finished URL whose `recrawl_at` is at or before `now` (in
        batches); returns how many."""
        ...

    async def recrawl(self, keys: Sequence[int], now: float) -> int:
        """Make the URLs of `keys` due at `now`: finished ones are queued again, queued ones
        wait no longer; returns how many finished ones were queued."""
        ...

    async def next_recrawl(self) -> float | None:
        """The earliest `recrawl_at` of a finished URL, or None if none is scheduled."""
        ...

    async def retime(self, schedule: Schedule) -> int | None:
        """If `schedule` is not the one the finished URLs were timed by, time them all by it
        (`recrawl_at` from their last fetch); returns how many, or None if unchanged."""
        ...

    async def has_pending(self) -> bool:
        """Whether any URL is queued or leased."""
        ...

    async def beat(self, at: float) -> None:
        """Record that a crawl process was alive at wall-clock `at`."""
        ...

    async def last_beat(self) -> float | None:
        """The latest `beat` recorded, or None if no crawl process ever ran on it."""
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

    async def counts(self, top_hosts: int = 10) -> Counts:
        """URLs by state and final reason, the `top_hosts` hosts with most URLs, and the
        hosts with most queued URLs with what holds them back (`waiting`)."""
        ...

    async def robots(self, host: str) -> RobotsRecord | None:
        """The stored robots.txt of `host`, if any."""
        ...

    async def save_robots(self, record: RobotsRecord) -> None:
        """Replace the stored robots.txt of its host."""
        ...

    async def hosts(
        self,
        *,
        sort: str = "queued",
        q: str = "",
        limit: int = 50,
        offset: int = 0,
        hosts: Sequence[str] | None = None,
    ) -> list[HostRow]:
        """A page of the host table (`reports.SORTS`: queued, done, errors, total; most
        first), of the hosts whose name holds `q`, or exactly `hosts`."""
        ...

    async def host_controls(self) -> dict[str, HostControl]:
        """What the operator set for hosts (by politeness key), those with anything set."""
        ...

    async def save_host_control(self, control: HostControl, at: float) -> None:
        """Replace a host's controls (an empty one removes them)."""
        ...

    async def queued_urls(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(key, URL) of up to `limit` queued URLs with a key above `after`, in key order."""
        ...

    async def lease(self, keys: Sequence[int], lease_until: float) -> list[Entry]:
        """Lease the URLs of `keys` still queued, under a new token; their entries."""
        ...

    async def excludes(self) -> list[str]:
        """The live exclude patterns, oldest first."""
        ...

    async def save_excludes(self, add: Sequence[str], remove: Sequence[str], at: float) -> None:
        """Add and remove live exclude patterns."""
        ...

    async def host_states(self, hosts: Sequence[str]) -> dict[str, HostState]:
        """Saved adaptive politeness of these hosts (those that have any)."""
        ...

    async def aclose(self) -> None: ...
