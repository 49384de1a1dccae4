"""The digest memory behind revisit records (`output.dedup = "digest"`): for each payload
digest stored in full, the URI and WARC-Date of its record, in `<data-dir>/dedup.db`
(SQLite: on disk, a bounded cache in RAM, whatever the crawl's size).

A response whose payload digest is known is written as a `revisit` record that refers to
the first one (WARC 1.1 identical-payload-digest). Digests of an earlier crawl come from
its CDXJ (`output.dedup_index`), loaded once per file version. The memory may hold digests
of records a crash then cut from the WARC (it is not part of the commit): `forget_after`
drops them at start, before any revisit could refer to them.

It is an economy, never a reason to stop: when its file cannot be written (a full or
read-only volume) it logs that once and knows nothing more for the rest of the run, so
every payload is then stored in full.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("crawler.output")

__all__ = ["Digests"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    digest    TEXT PRIMARY KEY,
    url       TEXT NOT NULL,
    date      TEXT NOT NULL,  -- the WARC-Date of the record stored in full
    warc_file TEXT,           -- NULL: a record of an earlier crawl (output.dedup_index)
    offset    INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS digests_at ON digests (warc_file, offset)
    WHERE warc_file IS NOT NULL;
CREATE TABLE IF NOT EXISTS loaded (
    path    TEXT PRIMARY KEY,
    version TEXT NOT NULL     -- size and modification time of the CDXJ when loaded
);
"""


class Digests:
    """Payload digests of the records stored in full (blocking; the output process's)."""

    def __init__(self, path: Path) -> None:
        self._db: sqlite3.Connection | None = None
        self._guard(lambda: self._open(path), None)

    def _open(self, path: Path) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        # Rows lost to a power cut cost some deduplication, nothing else: no fsync.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -8000")  # 8 MB
        db.executescript(_SCHEMA)
        db.execute("BEGIN")
        self._db = db

    def _guard(self, work: Callable[[], T], failed: T) -> T:
        """`work`, or `failed` if it fails: the memory is out of use from then on."""
        try:
            return work()
        except (sqlite3.Error, OSError) as exc:
            log.warning("dedup_unavailable", error=str(exc), note="payloads stored in full")
            self._drop()
            return failed

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def first(self, digest: str) -> tuple[str, str] | None:
        """(URI, WARC-Date) of the record that holds this payload in full, if any."""
        db = self._db
        if db is None:
            return None

        def look() -> tuple[str, str] | None:
            found = db.execute(
                "SELECT url, date FROM digests WHERE digest = ?", (digest,)
            ).fetchone()
            return None if found is None else (str(found[0]), str(found[1]))

        return self._guard(look, None)

    def add(self, digest: str, url: str, date: str, warc_file: str, offset: int) -> None:
        db = self._db
        if db is not None:
            self._guard(
                lambda: db.execute(
                    "INSERT OR IGNORE INTO digests VALUES (?, ?, ?, ?, ?)",
                    (digest, url, date, warc_file, offset),
                ),
                None,
            )

    def commit(self) -> None:
        db = self._db
        if db is not None:

            def commit() -> None:
                db.execute("COMMIT")
                db.execute("BEGIN")

            self._guard(commit, None)

    def forget_after(self, committed: Mapping[str, int]) -> None:
        """Drop the digests of records past their file's committed length (`committed`:
        WARC file name -> length), or in files that are gone. If that fails, the memory is
        out of use: it may not refer to what is gone."""
        db = self._db
        if db is None:
            return

        def forget() -> None:
            rows = db.execute(
                "SELECT DISTINCT warc_file FROM digests WHERE warc_file IS NOT NULL"
            ).fetchall()
            for (name,) in rows:
                length = committed.get(str(name))
                if length is None:
                    db.execute("DELETE FROM digests WHERE warc_file = ?", (name,))
                else:
                    db.execute(
                        "DELETE FROM digests WHERE warc_file = ? AND offset >= ?", (name, length)
                    )
            db.execute("COMMIT")
            db.execute("BEGIN")

        self._guard(forget, None)

    def load_cdxj(self, path: Path) -> int:
        """Add the digests of a CDXJ file (an earlier crawl's), unless this version of it
        was loaded before; how many lines were read."""
        db = self._db
        if db is None:
            return 0

        def load() -> int:
            stat = path.stat()
            version = f"{stat.st_size}:{stat.st_mtime_ns}"
            known = db.execute("SELECT version FROM loaded WHERE path = ?", (str(path),))
            if (row := known.fetchone()) is not None and row[0] == version:
                return 0
            count = 0
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    _key, stamp, fields = line.split(" ", 2)
                    record = json.loads(fields)
                    digest = record.get("digest")
                    if not digest or record.get("mime") == "warc/revisit":
                        continue
                    date = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
                    db.execute(
                        "INSERT OR IGNORE INTO digests VALUES (?, ?, ?, NULL, NULL)",
                        (digest, record["url"], date.strftime("%Y-%m-%dT%H:%M:%SZ")),
                    )
                    count += 1
            db.execute("INSERT OR REPLACE INTO loaded VALUES (?, ?)", (str(path), version))
            db.execute("COMMIT")
            db.execute("BEGIN")
            return count

        return self._guard(load, 0)

    def close(self) -> None:
        db = self._db
        if db is not None:
            self._guard(lambda: db.execute("COMMIT"), None)
        self._drop()
