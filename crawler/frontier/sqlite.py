"""SQLite frontier (aiosqlite, WAL): the embedded default backend.

One process owns the crawl: its leases last as long as it runs and are never taken back on
expiry (`lease_until` is recorded, not enforced); `release_all` at start takes back those of
a process that died. Lease tokens come from one counter row (`lease_tokens`, migration
0008), so they only grow, across restarts too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from crawler.errors import StorageError
from crawler.frontier import reports, sqlite_fencing, sqlite_insert, sqlite_recrawl
from crawler.frontier.sqlite_claim import RoundRobin, lease_keys
from crawler.frontier.sqlite_errors import storage_error
from crawler.frontier.sqlite_schema import migrate, migrations_dir
from crawler.frontier.values import (
    CommitBatch,
    Committed,
    Counts,
    Entry,
    HostControl,
    HostRow,
    HostState,
    NewURL,
    RobotsRecord,
)
from crawler.recrawl import Schedule

__all__ = ["SQLiteFrontier", "migrations_dir"]

_OUTPUT = (
    "INSERT INTO outputs (path, committed) VALUES (?, ?)"
    " ON CONFLICT (path) DO UPDATE SET committed = excluded.committed"
)


class SQLiteFrontier:
    """The frontier in one SQLite file. Every method is one short transaction."""

    leases_expire = False  # one process owns the crawl; release_all at its start

    def __init__(
        self, db: aiosqlite.Connection, max_per_host: int = 0, path: Path | None = None
    ) -> None:
        self._db = db
        self._path = path  # to ask the OS why a write failed
        self._lock = anyio.Lock()
        self._max_per_host = max_per_host
        self._round_robin = RoundRobin()
        self._report_db: aiosqlite.Connection | None = None  # opened by the first report
        self._report_lock = anyio.Lock()

    @classmethod
    async def open(
        cls, path: Path, *, fsync: bool = True, busy_timeout: float = 30.0, max_per_host: int = 0
    ) -> SQLiteFrontier:
        """Open (and migrate) the database. `max_per_host` > 0: discovered URLs are added
        only while their host has fewer URLs than that (seeds are always added)."""
        try:
            db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise storage_error(exc, "cannot open frontier database", path) from exc
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await db.execute("PRAGMA cache_size = -65536")
            await db.execute("PRAGMA temp_store = MEMORY")
            frontier = cls(db, max_per_host, path)
            await frontier._migrate()
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await db.close()  # else its thread keeps the process alive
            if isinstance(exc, sqlite3.Error):
                raise storage_error(exc, "cannot open frontier database", path) from exc
            raise
        return frontier

    async def _migrate(self) -> None:
        """Apply the migrations not yet recorded, all in one write transaction, so two
        processes opening a new database at once cannot both apply them."""
        async with self._transaction() as db:
            await migrate(db)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise storage_error(exc, "frontier database", self._path) from exc
            try:
                yield self._db
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise storage_error(exc, "frontier database", self._path) from exc
                raise
            try:
                with anyio.CancelScope(shield=True):
                    await self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with anyio.CancelScope(shield=True):
                    await self._rollback()
                raise storage_error(exc, "frontier commit failed", self._path) from exc

    async def _rollback(self) -> None:
        """Roll back if a transaction is still open (SQLite may have ended it itself)."""
        if self._db.in_transaction:
            await self._db.execute("ROLLBACK")

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            async with self._lock, self._db.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise StorageError(f"frontier database: {exc}") from exc

    async def add(self, urls: Sequence[NewURL]) -> int:
        # Key order keeps the B-tree inserts local: much faster for large seed lists.
        async with self._transaction() as db:
            return await sqlite_insert.insert(db, sorted(urls, key=lambda u: u.key))

    async def claim(
        self,
        limit: int,
        now: float,
        lease_until: float,
        per_host: int = 0,
        room: Mapping[str, int] | None = None,
    ) -> list[Entry]:
        """Lease up to `limit` ready URLs, at most `per_host` of one host (0: no cap) or its
        `room` where given, spread over the hosts that have some, round robin from where the
        last claim stopped."""
        async with self._transaction() as db:
            return await self._round_robin.claim(db, limit, now, lease_until, per_host, room)

    async def commit(self, batch: CommitBatch) -> Committed:
        added = 0
        async with self._transaction() as db:
            refused = await sqlite_fencing.complete(db, batch.finished, batch.deferred)
            if batch.discovered:
                added = await sqlite_insert.insert(db, batch.discovered, self._max_per_host)
            if batch.outputs:
                await db.executemany(_OUTPUT, list(batch.outputs.items()))
            if batch.hosts:
                await db.executemany(
                    "INSERT OR REPLACE INTO hosts"
                    " (host, level, blocked_until, failures, down_until, down_reason)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (h.host, h.level, h.blocked_until, h.failures, h.down_until, h.down_reason)
                        for h in batch.hosts
                    ],
                )
        return Committed(added, tuple(sorted(refused)))

    async def release(self, entries: Sequence[Entry], not_before: float = 0.0) -> None:
        if entries:
            async with self._transaction() as db:
                await sqlite_fencing.release(db, entries, not_before)

    async def renew(self, entries: Sequence[Entry], lease_until: float) -> set[int]:
        if not entries:
            return set()
        async with self._transaction() as db:
            return await sqlite_fencing.renew(db, entries, lease_until)

    async def commit_holding(
        self,
        entries: Sequence[Entry],
        lease_until: float,
        write: Callable[[set[int]], Awaitable[CommitBatch]],
    ) -> Committed:
        # One process owns the crawl: nobody else can take its leases meanwhile.
        return await self.commit(await write(await self.renew(entries, lease_until)))

    async def release_all(self) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE urls SET state = 'queued', lease_until = NULL WHERE state = 'leased'"
            )  # rowcount, unlike total_changes, leaves out the tallies' trigger rows
            return max(cursor.rowcount, 0)

    async def next_due(self) -> float | None:
        rows = await self._query("SELECT min(not_before) FROM urls WHERE state = 'queued'")
        return None if rows[0][0] is None else float(rows[0][0])

    async def has_pending(self) -> bool:
        rows = await self._query(
            "SELECT EXISTS (SELECT 1 FROM urls WHERE state = 'queued')"
            " OR EXISTS (SELECT 1 FROM urls WHERE state = 'leased')"
        )
        return bool(rows[0][0])

    async def recrawl_due(self, now: float) -> int:
        made = 0
        while True:
            async with self._transaction() as db:
                batch = await sqlite_recrawl.due(db, now)
            made += batch
            if batch < sqlite_recrawl.BATCH:
                return made

    async def recrawl(self, keys: Sequence[int], now: float) -> int:
        made = 0
        for start in range(0, len(keys), sqlite_recrawl.BATCH):
            async with self._transaction() as db:
                made += await sqlite_recrawl.again(
                    db, keys[start : start + sqlite_recrawl.BATCH], now
                )
        return made

    async def next_recrawl(self) -> float | None:
        rows = await self._query("SELECT min(recrawl_at) FROM urls WHERE recrawl_at IS NOT NULL")
        return None if rows[0][0] is None else float(rows[0][0])

    async def retime(self, schedule: Schedule) -> int | None:
        async with self._transaction() as db:
            return await sqlite_recrawl.retime(db, schedule)

    async def committed_outputs(self) -> dict[str, int]:
        rows = await self._query("SELECT path, committed FROM outputs")
        return {str(path): int(size) for path, size in rows}

    async def counts(self, top_hosts: int = 10) -> Counts:
        if not top_hosts or self._path is None:
            return await reports.counts(self._query, top_hosts)  # tallies: a few rows
        return await reports.counts(self._report, top_hosts)

    async def _report(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read for the per-host lists of a report, which group every URL (seconds at
        millions of URLs): on a connection of its own (WAL readers do not block the writer),
        so claims and commits go on meanwhile, and sorting on disk, not in RAM."""
        assert self._path is not None  # counts() reads on the main connection without one
        async with self._report_lock:
            try:
                if self._report_db is None:
                    db = await aiosqlite.connect(self._path, isolation_level=None, timeout=30)
                    await db.execute("PRAGMA query_only = ON")
                    await db.execute("PRAGMA temp_store = FILE")
                    self._report_db = db
                async with self._report_db.execute(sql, params) as cursor:
                    return list(await cursor.fetchall())
            except sqlite3.Error as exc:
                raise StorageError(f"frontier database: {exc}") from exc

    async def robots(self, host: str) -> RobotsRecord | None:
        rows = await self._query(
            "SELECT host, body, status, expires_at, failing_since FROM robots WHERE host = ?",
            (host,),
        )
        return RobotsRecord(*rows[0]) if rows else None

    async def save_robots(self, record: RobotsRecord) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO robots VALUES (?, ?, ?, ?, ?)",
                (record.host, record.body, record.status, record.expires_at, record.failing_since),
            )

    async def beat(self, at: float) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO meta (name, value) VALUES ('beat', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (repr(at),),
            )

    async def last_beat(self) -> float | None:
        rows = await self._query("SELECT value FROM meta WHERE name = 'beat'")
        return float(rows[0][0]) if rows else None

    async def load_cookies(self, profile: str) -> str | None:
        rows = await self._query("SELECT jar FROM cookies WHERE profile = ?", (profile,))
        return str(rows[0][0]) if rows else None

    async def save_cookies(self, profile: str, jar: str) -> None:
        async with self._transaction() as db:
            await db.execute("INSERT OR REPLACE INTO cookies VALUES (?, ?)", (profile, jar))

    async def hosts(
        self,
        *,
        sort: str = "queued",
        q: str = "",
        limit: int = 50,
        offset: int = 0,
        hosts: Sequence[str] | None = None,
    ) -> list[HostRow]:
        query = self._query if self._path is None else self._report
        return await reports.host_rows(
            query, sort=sort, q=q, limit=limit, offset=offset, hosts=hosts
        )

    async def host_controls(self) -> dict[str, HostControl]:
        rows = await self._query(
            "SELECT host, paused, blocked_until, delay, concurrency FROM host_controls"
        )
        return {str(r[0]): HostControl(str(r[0]), bool(r[1]), *r[2:]) for r in rows}

    async def save_host_control(self, control: HostControl, at: float) -> None:
        async with self._transaction() as db:
            if control.empty:
                await db.execute("DELETE FROM host_controls WHERE host = ?", (control.host,))
                return
            await db.execute(
                "INSERT OR REPLACE INTO host_controls VALUES (?, ?, ?, ?, ?, ?)",
                (
                    control.host, int(control.paused), control.blocked_until, control.delay,
                    control.concurrency, at,
                ),
            )  # fmt: skip

    async def queued_urls(self, after: int, limit: int) -> list[tuple[int, str]]:
        rows = await self._query(
            "SELECT key, url FROM urls WHERE key > ? AND state = 'queued' ORDER BY key LIMIT ?",
            (after, limit),
        )
        return [(int(key), str(url)) for key, url in rows]

    async def lease(self, keys: Sequence[int], lease_until: float) -> list[Entry]:
        if not keys:
            return []
        async with self._transaction() as db:
            return await lease_keys(db, list(keys), lease_until)

    async def excludes(self) -> list[str]:
        rows = await self._query("SELECT pattern FROM excludes ORDER BY added_at, pattern")
        return [str(r[0]) for r in rows]

    async def save_excludes(self, add: Sequence[str], remove: Sequence[str], at: float) -> None:
        async with self._transaction() as db:
            await db.executemany("DELETE FROM excludes WHERE pattern = ?", [(p,) for p in remove])
            await db.executemany(
                "INSERT OR IGNORE INTO excludes VALUES (?, ?)", [(p, at) for p in add]
            )

    async def host_states(self, hosts: Sequence[str]) -> dict[str, HostState]:
        found: dict[str, HostState] = {}
        unique = list(dict.fromkeys(hosts))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for host, level, blocked, failures, down_until, down_reason in await self._query(
                "SELECT host, level, blocked_until, failures, down_until, down_reason"
                f" FROM hosts WHERE host IN ({marks})",
                chunk,
            ):
                found[str(host)] = HostState(
                    str(host), float(level), float(blocked), int(failures), float(down_until),
                    None if down_reason is None else str(down_reason),
                )  # fmt: skip
        return found

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._report_db is not None:
                await self._report_db.close()
            await self._db.close()
