"""Recrawl in the SQLite frontier: finished URLs made due again (by their `recrawl_at`, or
listed by the operator), and the schedule re-timed when the settings change.

A URL made due goes back to 'queued' with its attempts at 0 and no reason; what its last
visit left (validators, digest, record) stays for the conditional request. The tallies and
per-host counts follow by the triggers of migrations 0009 and 0010.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import aiosqlite

from crawler.frontier.rules import ELIGIBLE
from crawler.recrawl import Schedule

BATCH = 10_000  # URLs made due per transaction

_DUE = (
    "UPDATE urls SET state = 'queued', not_before = recrawl_at, attempts = 0, reason = NULL,"
    " recrawl_at = NULL WHERE key IN (SELECT key FROM urls WHERE recrawl_at <= ?"
    " ORDER BY recrawl_at LIMIT ?)"
)
# Listed URLs: a finished one is queued again; a queued one waits no longer; a leased one
# is being fetched already.
_AGAIN = (
    "UPDATE urls SET state = 'queued', not_before = ?2, attempts = 0, reason = NULL,"
    " recrawl_at = NULL WHERE key IN (SELECT value FROM json_each(?1))"
    " AND state IN ('done', 'failed', 'skipped')"
)
_SOONER = (
    "UPDATE urls SET not_before = ?2 WHERE key IN (SELECT value FROM json_each(?1))"
    " AND state = 'queued' AND not_before > ?2"
)


async def due(db: aiosqlite.Connection, now: float) -> int:
    """Queue up to BATCH finished URLs whose recrawl time has come; how many."""
    cursor = await db.execute(_DUE, (now, BATCH))
    return max(cursor.rowcount, 0)


async def again(db: aiosqlite.Connection, keys: Sequence[int], now: float) -> int:
    """Make these URLs due at `now`; how many were finished (and are queued again)."""
    listed = json.dumps(list(keys))
    cursor = await db.execute(_AGAIN, (listed, now))
    queued = max(cursor.rowcount, 0)
    await db.execute(_SOONER, (listed, now))
    return queued


async def retime(db: aiosqlite.Connection, schedule: Schedule) -> int | None:
    """Time every finished URL by `schedule` if it is not the one they were timed by (kept
    in `meta`); how many were re-timed, None if the schedule is unchanged."""
    signature = schedule.signature()
    async with db.execute("SELECT value FROM meta WHERE name = 'recrawl'") as cursor:
        row = await cursor.fetchone()
    if (row[0] if row else "off") == signature:
        return None
    if not schedule.on:
        cursor = await db.execute("UPDATE urls SET recrawl_at = NULL WHERE recrawl_at IS NOT NULL")
    elif schedule.adaptive:
        cursor = await db.execute(
            "UPDATE urls SET recrawl_at = finished_at"
            " + min(max(coalesce(recrawl_interval, ?1), ?2), ?3)"
            f" WHERE {ELIGIBLE}",
            (schedule.after, schedule.low, schedule.high),
        )
    else:
        cursor = await db.execute(
            f"UPDATE urls SET recrawl_at = finished_at + ? WHERE {ELIGIBLE}", (schedule.after,)
        )
    await db.execute(
        "INSERT INTO meta (name, value) VALUES ('recrawl', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (signature,),
    )
    return max(cursor.rowcount, 0)
