"""The SQLite frontier's schema: the numbered SQL migrations and the runner that applies them."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import aiosqlite

from crawler.errors import StorageError
from crawler.frontier import rules


def migrations_dir() -> Path:
    """Where the numbered SQL files are: inside the wheel, or at the top of a checkout."""
    return rules.migrations_dir("sqlite")


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


async def migrate(db: aiosqlite.Connection) -> None:
    """Apply the numbered migrations not yet recorded. The caller runs this in one write
    transaction, so two processes opening a new database at once cannot both apply them."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    async with db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations") as c:
        row = await c.fetchone()
    current = int(row[0]) if row else 0
    for version, name, sql in rules.migrations("sqlite"):
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
