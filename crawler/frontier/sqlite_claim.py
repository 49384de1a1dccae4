"""The SQLite claim: a round robin over the hosts with queued URLs, leased under a new token."""

from __future__ import annotations

import json
from collections.abc import Mapping

import aiosqlite

from crawler.frontier import rules
from crawler.frontier.values import Entry, entry_of

# A claim walks the hosts that have queued URLs, from where the last claim stopped (round
# robin, each step one index seek), then takes each host's earliest ready URLs. A host with
# a million URLs, or one that is blocked (skipped here by its saved blocked_until), costs
# one step, never a scan: every other host gets its turn.
_WALK = (
    "WITH RECURSIVE walk(host, n) AS ("
    " SELECT (SELECT host FROM urls WHERE state = 'queued' AND host > ?1 ORDER BY host LIMIT 1), 1"
    " UNION ALL SELECT (SELECT host FROM urls WHERE state = 'queued' AND host > walk.host"
    " ORDER BY host LIMIT 1), n + 1 FROM walk WHERE walk.host IS NOT NULL AND n < ?2)"
    " SELECT host FROM walk WHERE host IS NOT NULL"
)
_PICK = (
    "SELECT j.value, u.key FROM json_each(?1) AS j JOIN urls AS u ON u.key IN ("
    " SELECT key FROM urls WHERE state = 'queued' AND host = j.value AND not_before <= ?2"
    " ORDER BY not_before, key LIMIT ?3)"
    " WHERE NOT EXISTS (SELECT 1 FROM hosts WHERE hosts.host = j.value"
    " AND hosts.blocked_until > ?2 AND hosts.down_until <= ?2)"
    " LIMIT ?4"
)
_NEXT_TOKEN = "UPDATE lease_tokens SET last = last + 1 RETURNING last"
_LEASE = (
    "UPDATE urls SET state = 'leased', lease_until = ?1, lease_token = ?3"
    " WHERE key IN (SELECT value FROM json_each(?2)) AND state = 'queued'"
    " RETURNING key, url, host, attempts, depth, redirects, chain, discovered_from, status,"
    " origin, kind, lease_token, etag, last_modified, digest, ref_uri, ref_date,"
    " recrawl_interval"
)


class RoundRobin:
    """The claims of one frontier, each going on from the host where the last one stopped."""

    def __init__(self) -> None:
        self._cursor = ""  # the host where the last claim stopped its walk

    async def claim(
        self,
        db: aiosqlite.Connection,
        limit: int,
        now: float,
        lease_until: float,
        per_host: int,
        room: Mapping[str, int] | None,
    ) -> list[Entry]:
        """`SQLiteFrontier.claim`, inside its transaction `db`."""
        per_host = per_host or limit
        room = room or {}
        # Hosts without room are walked past: walk that many more to fill the batch.
        no_room = sum(1 for free in room.values() if free <= 0)
        walked = await self._walk(db, limit + no_room)
        if not walked:
            return []
        self._cursor = walked[-1]
        hosts = [host for host in walked if room.get(host, per_host) > 0]
        if not hosts:
            return []

        async def pick(chosen: list[str], each: int, most: int) -> list[tuple[str, int]]:
            return await _pick(db, chosen, now, each, most)

        keys, filled_at = await rules.choose(pick, hosts, per_host, room, limit)
        if filled_at is not None:
            self._cursor = filled_at
        if not keys:
            return []
        return await lease_keys(db, keys, lease_until)

    async def _walk(self, db: aiosqlite.Connection, limit: int) -> list[str]:
        """Up to `limit` hosts with queued URLs, after the cursor and then from the start."""
        async with db.execute(_WALK, (self._cursor, limit)) as cursor:
            hosts = [str(row[0]) for row in await cursor.fetchall()]
        if len(hosts) < limit and self._cursor:
            async with db.execute(_WALK, ("", limit - len(hosts))) as cursor:
                seen = set(hosts)
                hosts += [str(r[0]) for r in await cursor.fetchall() if str(r[0]) not in seen]
        return hosts


async def _pick(
    db: aiosqlite.Connection, hosts: list[str], now: float, each: int, limit: int
) -> list[tuple[str, int]]:
    async with db.execute(_PICK, (json.dumps(hosts), now, each, limit)) as cursor:
        return [(str(host), int(key)) for host, key in await cursor.fetchall()]


async def lease_keys(db: aiosqlite.Connection, keys: list[int], lease_until: float) -> list[Entry]:
    """Lease these URLs (those still queued) under the next token of the counter row."""
    async with db.execute(_NEXT_TOKEN) as cursor:
        token = await cursor.fetchone()
    assert token is not None, "migration 0008 makes the lease_tokens row"
    async with db.execute(_LEASE, (lease_until, json.dumps(keys), token[0])) as cursor:
        rows = await cursor.fetchall()
    return [entry_of(row) for row in rows]
