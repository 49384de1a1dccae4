"""The PostgreSQL frontier's schema: `migrations/postgres/NNNN_*.sql`, applied once.

Several nodes may start together on an empty database: each takes the same transaction-level
advisory lock before looking at `schema_migrations`, so the first applies the migrations and
the others find them applied. A database migrated by a newer crawler is refused (its schema
may mean things this code does not know)."""

from __future__ import annotations

import re
import time
from importlib import resources
from pathlib import Path

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from crawler.errors import StorageError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK = 0x63726177_6C6572  # "crawler": the advisory lock key of schema changes


def migrations_dir() -> Path:
    """Where the numbered SQL files are: inside the wheel, or at the top of a checkout."""
    packaged = Path(str(resources.files("crawler"))) / "_migrations" / "postgres"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations" / "postgres"


def migrations() -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(migrations_dir().glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    if not found:
        raise StorageError(f"no SQL migrations found in {migrations_dir()}")
    return found


async def migrate(conn: PoolConnectionProxy[Record]) -> None:
    """Apply the migrations not yet applied, inside the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )
    current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
    known = migrations()
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
