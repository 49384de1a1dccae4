"""Fenced SQLite writes: a completion or a release applies only to a URL leased with its token."""

from __future__ import annotations

import json
from collections.abc import Sequence

import aiosqlite

from crawler.frontier.rules import visit_counts
from crawler.frontier.values import Deferred, Entry, Finished, Visit

# Fencing: a completion or a release applies only to a row still leased with its token.
_HELD = (
    "SELECT key, lease_token FROM urls"
    " WHERE key IN (SELECT value FROM json_each(?)) AND state = 'leased'"
)
_FINISH = (
    "UPDATE urls SET state = ?, reason = ?, status = ?, attempts = ?, finished_at = ?,"
    " etag = ?, last_modified = ?, digest = ?, ref_uri = ?, ref_date = ?,"
    " recrawl_interval = ?, recrawl_at = ?,"
    " lease_until = NULL WHERE key = ? AND state = 'leased' AND lease_token = ?"
)
_VISITS = (
    "INSERT INTO visits (kind, n) VALUES (?, ?) ON CONFLICT (kind) DO UPDATE SET n = n + excluded.n"
)
_NO_VISIT = Visit()
_DEFER = (
    "UPDATE urls SET state = 'queued', attempts = ?, not_before = ?, reason = ?, status = ?,"
    " lease_until = NULL WHERE key = ? AND state = 'leased' AND lease_token = ?"
)
_RELEASE = (
    "UPDATE urls SET state = 'queued', not_before = max(not_before, ?), lease_until = NULL"
    " WHERE key = ? AND state = 'leased' AND lease_token = ?"
)


async def complete(
    db: aiosqlite.Connection, finished: Sequence[Finished], deferred: Sequence[Deferred]
) -> set[int]:
    """Apply the completions whose URL is still leased with their token; returns the
    keys of the others (refused: their lease was lost)."""
    leases = [(f.key, f.token) for f in finished] + [(d.key, d.token) for d in deferred]
    if not leases:
        return set()
    keys = json.dumps([key for key, _ in leases])
    async with db.execute(_HELD, (keys,)) as cursor:
        held = {int(key): token for key, token in await cursor.fetchall()}
    applied = [f for f in finished if held.get(f.key) == f.token]
    if applied:
        await db.executemany(_FINISH, [_finish_row(f) for f in applied])
        visits = visit_counts(applied)
        if visits:
            await db.executemany(_VISITS, list(visits.items()))
    deferring = [
        (d.attempts, d.not_before, d.reason, d.status, d.key, d.token)
        for d in deferred
        if held.get(d.key) == d.token
    ]
    if deferring:
        await db.executemany(_DEFER, deferring)
    return {key for key, token in leases if held.get(key) != token}


def _finish_row(f: Finished) -> tuple[object, ...]:
    last = f.last or _NO_VISIT
    return (
        f.state.value, f.reason, f.status, f.attempts, f.finished_at,
        last.etag, last.last_modified, last.digest, last.ref_uri, last.ref_date,
        last.interval, f.recrawl_at, f.key, f.token,
    )  # fmt: skip


async def release(db: aiosqlite.Connection, entries: Sequence[Entry], not_before: float) -> None:
    """Queue these URLs again, those still leased with their token, not before `not_before`
    (a later `not_before` already set is kept)."""
    await db.executemany(_RELEASE, [(not_before, e.key, e.token) for e in entries])


async def renew(db: aiosqlite.Connection, entries: Sequence[Entry], lease_until: float) -> set[int]:
    """Extend the leases of these entries still held with their token; their keys."""
    rows = json.dumps([[e.key, e.token] for e in entries])
    async with db.execute(
        "UPDATE urls SET lease_until = ?1 WHERE state = 'leased' AND (key, lease_token) IN"
        " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))"
        " RETURNING key",
        (lease_until, rows),
    ) as cursor:
        return {int(key) for (key,) in await cursor.fetchall()}
