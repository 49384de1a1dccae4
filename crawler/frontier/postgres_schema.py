"""The PostgreSQL frontier's schema: `migrations/postgres/NNNN_*.sql`, applied once.

Several nodes may start together on an empty database: each takes the same transaction-level
advisory lock before looking at `schema_migrations`, so the first applies the migrations and
the others find them applied. A database migrated by a newer crawler is refused (its schema
may mean things this code does not know)."""

from __future__ import annotations

import time

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from crawler.errors import StorageError
from crawler.frontier import rules

_LOCK = 0x63726177_6C6572  # "crawler": the advisory lock key of schema changes


async def migrate(conn: PoolConnectionProxy[Record]) -> None:
    """Apply the migrations not yet applied, inside the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )
    current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
    known = rules.migrations("postgres")
    if current > known[-1][0]:
        raise StorageError(
            f"the frontier database is at schema version {current}, newer than this crawler"
            f" knows ({known[-1][0]}): upgrade the crawler"
        )
    for version, name, sql in known:
        if version <= current:
            continue
        try:
            await conn.execute(sql)
        except asyncpg.PostgresError as exc:
            raise StorageError(f"migration {name} failed: {exc}") from exc
        await conn.execute(
            "INSERT INTO schema_migrations VALUES ($1, $2, $3)", version, name, time.time()
        )
