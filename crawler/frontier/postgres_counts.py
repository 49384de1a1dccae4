"""The counts of the shared frontier (`tallies`, `host_urls`), kept by the transactions that
move URLs instead of by triggers.

Each writing transaction notes the URLs it adds and the state changes it makes (the rows
come back from its statements) and writes the sum at its end: two statements a transaction,
whatever it changed. Statement triggers with transition tables did the same work in
PL/pgSQL, joining the old and new rows of every statement, and cost the frontier two thirds
of its throughput (bench/frontier_nodes.py: 3,100 URLs/s with them, 10,300 without).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from crawler.models import State

__all__ = ["Moves"]

_COLUMNS = {s.value: i for i, s in enumerate(State, start=1)}  # host_urls: after `total`
_REASONED = {State.FAILED.value, State.SKIPPED.value}

# Rows are locked in key order (host; state, reason) so that two transactions writing at
# once cannot deadlock on them. The tallies are sharded by backend so that nodes do not all
# queue on the row of ('done', '').
_TALLIES = (
    "INSERT INTO tallies (shard, state, reason, n)"
    " SELECT pg_backend_pid() % 64, * FROM unnest($1::text[], $2::text[], $3::bigint[])"
    " ORDER BY 2, 3"
    " ON CONFLICT (shard, state, reason) DO UPDATE SET n = tallies.n + excluded.n"
)
_HOSTS = (
    "INSERT INTO host_urls (host, total, queued, leased, done, failed, skipped)"
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],"
    " $5::bigint[], $6::bigint[], $7::bigint[]) ORDER BY 1"
    " ON CONFLICT (host) DO UPDATE SET total = host_urls.total + excluded.total,"
    " queued = host_urls.queued + excluded.queued, leased = host_urls.leased + excluded.leased,"
    " done = host_urls.done + excluded.done, failed = host_urls.failed + excluded.failed,"
    " skipped = host_urls.skipped + excluded.skipped"
)


# Each host gets its row in `hosts` with its first URL: claims lock the rows of the hosts
# they take and pass over those locked (postgres.py, _TAKE), which needs a row to lock.
_NEW_HOSTS = (
    "INSERT INTO hosts (host) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (host) DO NOTHING"
)


class Moves:
    """The count changes of one transaction, written by `write` before it commits."""

    def __init__(self) -> None:
        self._tallies: Counter[tuple[str, str]] = Counter()
        self._hosts: dict[str, list[int]] = {}

    def added(self, host: str) -> None:
        """A new URL, queued."""
        self._tallies["queued", ""] += 1
        row = self._host(host)
        row[0] += 1
        row[_COLUMNS["queued"]] += 1

    def moved(
        self, host: str, state: str, to: str, reason: str | None = None, was: str | None = None
    ) -> None:
        """A URL of `host` from `state` (with reason `was`) to `to` (with `reason`). The
        tallies keep reasons for the final states the reports break down (failed, skipped)
        only: a URL leaving another state is counted without its reason."""
        self._tallies[state, (was or "") if state in _REASONED else ""] -= 1
        self._tallies[to, (reason or "") if to in _REASONED else ""] += 1
        row = self._host(host)
        row[_COLUMNS[state]] -= 1
        row[_COLUMNS[to]] += 1

    def _host(self, host: str) -> list[int]:
        row = self._hosts.get(host)
        if row is None:
            row = self._hosts[host] = [0] * (len(_COLUMNS) + 1)
        return row

    async def write(self, conn: Any) -> None:
        """Add the changes to the counts (in `conn`'s transaction), and forget them."""
        tallies = sorted((key, n) for key, n in self._tallies.items() if n)
        if tallies:
            await conn.execute(
                _TALLIES,
                [state for (state, _), _ in tallies],
                [reason for (_, reason), _ in tallies],
                [n for _, n in tallies],
            )
        hosts = sorted((host, row) for host, row in self._hosts.items() if any(row))
        if hosts:
            columns: list[list[Any]] = [[host for host, _ in hosts]]
            columns += [[row[i] for _, row in hosts] for i in range(len(_COLUMNS) + 1)]
            await conn.execute(_HOSTS, *columns)
            added = [host for host, row in hosts if row[0] > 0]
            if added:
                await conn.execute(_NEW_HOSTS, added)
        self._tallies.clear()
        self._hosts.clear()
