"""SQLite errors as ours: a full or read-only disk is OutOfSpace, anything else StorageError."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

from crawler.errors import FULL_ERRNOS, OutOfSpace, StorageError

# Errors on which the OS may say more than SQLite (and tell a read-only volume apart).
_OS_CODES = (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY)


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


def storage_error(exc: sqlite3.Error, what: str, path: Path | None = None) -> StorageError:
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
