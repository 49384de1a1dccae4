"""SQLite frontier (aiosqlite, WAL): the embedded default backend.

One process owns the crawl: its leases last as long as it runs and are never taken back on
expiry (`lease_until` is recorded, not enforced); `release_all` at start takes back those of
a process that died. Lease tokens come from one counter row (`lease_tokens`, migration
0008), so they only grow, across restarts too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from crawler.errors import FULL_ERRNOS, OutOfSpace, StorageError
from crawler.frontier.values import (
    CommitBatch,
    Committed,
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

# Errors on which the OS may say more than SQLite (and tell a read-only volume apart).
_OS_CODES = (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_INSERT = (
    "INSERT OR IGNORE INTO urls"
    " (key, url, host, depth, redirects, chain, discovered_from, origin, kind)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# With max_pages_per_host, this connection counts URLs per host as they are inserted (a
# temporary trigger: no cost to crawls without the cap), and a discovered URL is added only
# while its host has fewer than ?10.
_COUNT_PER_HOST = (
    "CREATE TEMP TABLE host_urls (host TEXT PRIMARY KEY, urls INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO temp.host_urls (host, urls) SELECT host, count(*) FROM main.urls GROUP BY host",
    # INSERT OR IGNORE fires it only for rows really inserted: duplicates do not count.
    "CREATE TEMP TRIGGER urls_per_host AFTER INSERT ON main.urls BEGIN"
    " INSERT INTO host_urls (host, urls) VALUES (NEW.host, 1)"
    " ON CONFLICT (host) DO UPDATE SET urls = urls + 1; END",
)
_INSERT_CAPPED = (
    "INSERT OR IGNORE INTO urls"
    " (key, url, host, depth, redirects, chain, discovered_from, origin, kind)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9"
    " WHERE coalesce((SELECT urls FROM temp.host_urls WHERE host = ?3), 0) < ?10"
)
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
    " origin, kind, lease_token"
)
# Fencing: a completion or a release applies only to a row still leased with its token.
_HELD = (
    "SELECT key, lease_token FROM urls"
    " WHERE key IN (SELECT value FROM json_each(?)) AND state = 'leased'"
)
_FINISH = (
    "UPDATE urls SET state = ?, reason = ?, status = ?, attempts = ?, finished_at = ?,"
    " lease_until = NULL WHERE key = ? AND state = 'leased' AND lease_token = ?"
)
_DEFER = (
    "UPDATE urls SET state = 'queued', attempts = ?, not_before = ?, reason = ?, status = ?,"
    " lease_until = NULL WHERE key = ? AND state = 'leased' AND lease_token = ?"
)
_RELEASE = (
    "UPDATE urls SET state = 'queued', not_before = max(not_before, ?), lease_until = NULL"
    " WHERE key = ? AND state = 'leased' AND lease_token = ?"
)
# The hosts with most queued URLs, with what their host and robots.txt rows say (grouped
# first, so the joins run once per host, not once per URL).
_WAITING = (
    "SELECT q.host, q.n, q.due, coalesce(h.level, 0), coalesce(h.blocked_until, 0),"
    " coalesce(h.failures, 0), coalesce(h.down_until, 0), h.down_reason,"
    " CASE WHEN r.failing_since IS NULL THEN NULL ELSE r.expires_at END"
    " FROM (SELECT host, count(*) AS n, min(not_before) AS due FROM urls"
    " WHERE state = 'queued' GROUP BY host ORDER BY n DESC, host LIMIT ?) AS q"
    " LEFT JOIN hosts AS h ON h.host = q.host LEFT JOIN robots AS r ON r.host = q.host"
    " ORDER BY q.n DESC, q.host"
)
_OUTPUT = (
    "INSERT INTO outputs (path, committed) VALUES (?, ?)"
    " ON CONFLICT (path) DO UPDATE SET committed = excluded.committed"
)


def migrations_dir() -> Path:
    """Where the numbered SQL files are: inside the wheel, or at the top of a checkout."""
    packaged = Path(str(resources.files("crawler"))) / "_migrations" / "sqlite"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations" / "sqlite"


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(migrations_dir().glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    if not found:
        raise StorageError(f"no SQL migrations found in {migrations_dir()}")
    return found


def _row(u: NewURL) -> tuple[object, ...]:
    return (
        u.key,
        u.url,
        u.host,
        u.depth,
        u.redirects,
        u.chain,
        u.discovered_from,
        u.origin,
        u.kind,
    )


def _os_cause(path: Path) -> OSError | None:
    """Why the database file, or a new file beside it (its WAL), cannot be written, if the OS
    says so: SQLite reports a volume remounted read-only as a mere "disk I/O error"."""
    try:
        with contextlib.suppress(FileNotFoundError):
            os.close(os.open(path, os.O_RDWR))
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        return exc
    return None


def _storage_error(exc: sqlite3.Error, what: str, path: Path | None = None) -> StorageError:
    """A disk that is full (or read-only) is worth waiting for; anything else is not."""
    code = getattr(exc, "sqlite_errorcode", None)
    cause = None
    if path is not None and code is not None and code & 0xFF in _OS_CODES:
        cause = _os_cause(path)
    message = f"{what if path is None else f'{what} {path}'}: {exc}"
    if cause is not None:
        message += f" ({cause.strerror})"
    if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY) or (
        cause is not None and cause.errno in FULL_ERRNOS
    ):
        return OutOfSpace(message)
    return StorageError(message)


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (executescript would commit on its own)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


class SQLiteFrontier:
    """The frontier in one SQLite file. Every method is one short transaction."""

    def __init__(
        self, db: aiosqlite.Connection, max_per_host: int = 0, path: Path | None = None
    ) -> None:
        self._db = db
        self._path = path  # to ask the OS why a write failed
        self._lock = anyio.Lock()
        self._max_per_host = max_per_host
        self._cursor = ""  # the host where the last claim stopped its walk

    @classmethod
    async def open(
        cls, path: Path, *, fsync: bool = True, busy_timeout: float = 30.0, max_per_host: int = 0
    ) -> SQLiteFrontier:
        """Open (and migrate) the database. `max_per_host` > 0: discovered URLs are added
        only while their host has fewer URLs than that (seeds are always added)."""
        try:
            db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise _storage_error(exc, "cannot open frontier database", path) from exc
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await db.execute("PRAGMA cache_size = -65536")
            await db.execute("PRAGMA temp_store = MEMORY")
            frontier = cls(db, max_per_host, path)
            await frontier._migrate()
            if max_per_host:
                async with frontier._transaction() as tx:
                    for statement in _COUNT_PER_HOST:
                        await tx.execute(statement)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await db.close()  # else its thread keeps the process alive
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc, "cannot open frontier database", path) from exc
            raise
        return frontier

    async def _migrate(self) -> None:
        """Apply the numbered migrations not yet recorded, all in one write transaction, so
        two processes opening a new database at once cannot both apply them."""
        async with self._transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            async with db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations") as c:
                row = await c.fetchone()
            current = int(row[0]) if row else 0
            for version, name, sql in _migrations():
                if version <= current:
                    continue
                try:
                    for statement in _statements(sql):
                        await db.execute(statement)
                except sqlite3.Error as exc:
                    raise StorageError(f"migration {name} failed: {exc}") from exc
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time())
                )

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _storage_error(exc, "frontier database", self._path) from exc
            try:
                yield self._db
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc, "frontier database", self._path) from exc
                raise
            try:
                with anyio.CancelScope(shield=True):
                    await self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with anyio.CancelScope(shield=True):
                    await self._rollback()
                raise _storage_error(exc, "frontier commit failed", self._path) from exc

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
        rows = [_row(u) for u in sorted(urls, key=lambda u: u.key)]
        async with self._transaction() as db:
            cursor = await db.executemany(_INSERT, rows)  # rowcount leaves out trigger rows
            return max(cursor.rowcount, 0)

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
        per_host = per_host or limit
        room = room or {}
        async with self._transaction() as db:
            # Hosts without room are walked past: walk that many more to fill the batch.
            no_room = sum(1 for free in room.values() if free <= 0)
            walked = await self._walk(db, limit + no_room)
            if not walked:
                return []
            self._cursor = walked[-1]
            hosts = [host for host in walked if room.get(host, per_host) > 0]
            if not hosts:
                return []
            # First a fair share each, then what is left of the batch to those with more.
            share = min(per_host, max(1, -(-limit // len(hosts))))
            picked = await self._pick(db, hosts, now, share, limit)
            counts = Counter(host for host, _ in picked)
            full = [host for host in hosts if counts[host] >= share]
            if len(picked) < limit and share < per_host and full:
                # The first `share` of each of these hosts come again: ask for that many more.
                more = await self._pick(db, full, now, per_host, limit + share * len(full))
                again = set(key for _, key in picked)
                picked += [(host, key) for host, key in more if key not in again]
            keys: list[int] = []
            taken: Counter[str] = Counter()
            for host, key in picked:
                if taken[host] < room.get(host, per_host):
                    taken[host] += 1
                    keys.append(key)
                    if len(keys) >= limit:
                        self._cursor = host
                        break
            if not keys:
                return []
            async with db.execute(_NEXT_TOKEN) as cursor:
                token = await cursor.fetchone()
            assert token is not None, "migration 0008 makes the lease_tokens row"
            async with db.execute(_LEASE, (lease_until, json.dumps(keys), token[0])) as cursor:
                rows = await cursor.fetchall()
        return [Entry(*row) for row in rows]

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
        self, db: aiosqlite.Connection, hosts: list[str], now: float, each: int, limit: int
    ) -> list[tuple[str, int]]:
        async with db.execute(_PICK, (json.dumps(hosts), now, each, limit)) as cursor:
            return [(str(host), int(key)) for host, key in await cursor.fetchall()]

    async def commit(self, batch: CommitBatch) -> Committed:
        added = 0
        async with self._transaction() as db:
            refused = await self._complete(db, batch.finished, batch.deferred)
            if batch.discovered and self._max_per_host:
                cap = self._max_per_host
                rows = [(*_row(u), cap) for u in batch.discovered]
                added = max((await db.executemany(_INSERT_CAPPED, rows)).rowcount, 0)
            elif batch.discovered:
                rows = [_row(u) for u in batch.discovered]
                added = max((await db.executemany(_INSERT, rows)).rowcount, 0)
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

    @staticmethod
    async def _complete(
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
        finishing = [
            (f.state.value, f.reason, f.status, f.attempts, f.finished_at, f.key, f.token)
            for f in finished
            if held.get(f.key) == f.token
        ]
        if finishing:
            await db.executemany(_FINISH, finishing)
        deferring = [
            (d.attempts, d.not_before, d.reason, d.status, d.key, d.token)
            for d in deferred
            if held.get(d.key) == d.token
        ]
        if deferring:
            await db.executemany(_DEFER, deferring)
        return {key for key, token in leases if held.get(key) != token}

    async def release(self, entries: Sequence[Entry], not_before: float = 0.0) -> None:
        if entries:
            async with self._transaction() as db:
                await db.executemany(_RELEASE, [(not_before, e.key, e.token) for e in entries])

    async def release_all(self) -> int:
        async with self._transaction() as db:
            before = db.total_changes
            await db.execute(
                "UPDATE urls SET state = 'queued', lease_until = NULL WHERE state = 'leased'"
            )
            return db.total_changes - before

    async def next_due(self) -> float | None:
        rows = await self._query("SELECT min(not_before) FROM urls WHERE state = 'queued'")
        return None if rows[0][0] is None else float(rows[0][0])

    async def has_pending(self) -> bool:
        rows = await self._query(
            "SELECT EXISTS (SELECT 1 FROM urls WHERE state = 'queued')"
            " OR EXISTS (SELECT 1 FROM urls WHERE state = 'leased')"
        )
        return bool(rows[0][0])

    async def committed_outputs(self) -> dict[str, int]:
        rows = await self._query("SELECT path, committed FROM outputs")
        return {str(path): int(size) for path, size in rows}

    async def counts(self, top_hosts: int = 10) -> Counts:
        states = {s.value: 0 for s in State}
        for state, n in await self._query("SELECT state, count(*) FROM urls GROUP BY state"):
            states[str(state)] = int(n)
        reasons = {
            str(reason): int(n)
            for reason, n in await self._query(
                "SELECT reason, count(*) FROM urls WHERE state IN ('failed', 'skipped')"
                " GROUP BY reason ORDER BY count(*) DESC"
            )
        }
        columns = ", ".join(f"sum(state = '{s.value}')" for s in State)
        hosts = (
            []
            if not top_hosts
            else [
                HostCounts(
                    host=str(row[0]),
                    total=int(row[1]),
                    states={s.value: int(n) for s, n in zip(State, row[2:], strict=True)},
                )
                for row in await self._query(
                    f"SELECT host, count(*), {columns} FROM urls GROUP BY host"
                    " ORDER BY count(*) DESC, host LIMIT ?",
                    (top_hosts,),
                )
            ]
        )
        waiting = (
            []
            if not top_hosts
            else [HostWait(*row) for row in await self._query(_WAITING, (top_hosts,))]
        )
        return Counts(
            total=sum(states.values()),
            states=states,
            reasons=reasons,
            hosts=hosts,
            waiting=waiting,
        )

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

    async def load_cookies(self, profile: str) -> str | None:
        rows = await self._query("SELECT jar FROM cookies WHERE profile = ?", (profile,))
        return str(rows[0][0]) if rows else None

    async def save_cookies(self, profile: str, jar: str) -> None:
        async with self._transaction() as db:
            await db.execute("INSERT OR REPLACE INTO cookies VALUES (?, ?)", (profile, jar))

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
            await self._db.close()
