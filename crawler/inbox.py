"""Inbox: seed files dropped into a directory are added to the frontier, then moved aside.

Dropping a file: write it as `name.part` (or as a name starting with `.`) and rename it to
`name` once complete; such names are never read. A file copied in place without a rename is
safe too, only slower: it is read once its size and mtime were the same at two consecutive
scans and it is at least `settle_seconds` old. Only regular files are read (no symlinks,
directories or pipes). The format is that of a seed file: one URL a line, blank lines and
`#` comments skipped, gzip-compressed if the name ends in `.gz`.

Once its URLs are committed, a file moves to `done/` if every line was valid, else to
`rejected/` with `<name>.errors.txt` beside it, one line per bad line (`line N: reason`);
the valid lines of a rejected file are still added. A name already taken there gets a
timestamp before its extension. A crash before the move means the file is read again at the
next scan: adds are idempotent by URL key, so no URL is added twice or lost.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import IO

import anyio
import structlog

from crawler.errors import OutOfSpace
from crawler.frontier import Frontier
from crawler.seeds import BadLine, SeedReport, read_seeds

log = structlog.get_logger("crawler.inbox")

DONE = "done"
REJECTED = "rejected"
PART_SUFFIX = ".part"
ERRORS_SUFFIX = ".errors.txt"

_Signature = tuple[int, int]  # (size, mtime_ns)


@dataclass(slots=True)
class Ingested:
    """What one file gave: lines read, URLs new to the frontier, bad lines, where it went."""

    name: str
    read: int
    added: int
    invalid: int
    moved_to: Path


class _Errors:
    """The bad lines of one file, written as they come (a file may hold millions) to a
    hidden file in rejected/, which becomes `<name>.errors.txt` when the file moves there."""

    def __init__(self, folder: Path, name: str) -> None:
        self.part = folder / f".{name}{ERRORS_SUFFIX}{PART_SUFFIX}"
        self._file: IO[str] | None = None

    def add(self, bad: BadLine) -> None:
        if self._file is None:
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.part.open("w", encoding="utf-8")
        where = f"line {bad.line}" if bad.line else "file"
        self._file.write(f"{where}: {bad.reason}".replace("\n", " ") + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)


def _split(name: str) -> tuple[str, str]:
    """`name` as (stem, extension), a `.gz` staying last: "x.txt.gz" -> ("x", ".txt.gz")."""
    base, gz = (name[:-3], ".gz") if name.endswith(".gz") else (name, "")
    dot = base.rfind(".")
    if dot <= 0:
        return base, gz
    return base[:dot], base[dot:] + gz


def _free_name(folder: Path, name: str, when: float) -> Path:
    """`folder/name`, or with a timestamp (and a serial) before its extension if taken."""

    def free(path: Path) -> bool:
        errors = path.with_name(path.name + ERRORS_SUFFIX)
        return not os.path.lexists(path) and not os.path.lexists(errors)

    target = folder / name
    if free(target):
        return target
    stem, extension = _split(name)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    for serial in count(1):
        suffix = stamp if serial == 1 else f"{stamp}-{serial}"
        target = folder / f"{stem}.{suffix}{extension}"
        if free(target):
            return target
    raise AssertionError("unreachable")


def _candidate(name: str) -> bool:
    hidden = name.startswith(".") or name.endswith(PART_SUFFIX)
    return not hidden and name not in (DONE, REJECTED)


class Inbox:
    """Adds the seed files dropped into `directory` to the frontier (see the module doc)."""

    def __init__(
        self,
        directory: Path,
        frontier: Frontier,
        *,
        sort_query: bool = False,
        settle_seconds: float = 2.0,
        wall: Callable[[], float] = time.time,
        batch_size: int = 10_000,
    ) -> None:
        self._dir = directory
        self._frontier = frontier
        self._sort_query = sort_query
        self._settle = settle_seconds
        self._wall = wall
        self._batch_size = batch_size
        self._seen: dict[str, _Signature] = {}  # what the previous scan saw
        self._lock = anyio.Lock()

    async def run(
        self, interval: float = 1.0, *, on_ingested: Callable[[Ingested], None] | None = None
    ) -> None:
        """Scan every `interval` seconds until cancelled; `on_ingested` is told of each file
        read. A bad file is moved aside or logged, never raised; a StorageError of the
        frontier is (the service cannot go on)."""
        while True:
            for ingested in await self.scan():
                if on_ingested is not None:
                    on_ingested(ingested)
            await anyio.sleep(interval)

    async def scan(self) -> list[Ingested]:
        """One pass: ingest every file that is ready, oldest first."""
        async with self._lock:
            try:
                ready = await anyio.to_thread.run_sync(self._ready)
            except OSError as exc:
                log.error("inbox_error", directory=str(self._dir), error=str(exc))
                return []
            ingested: list[Ingested] = []
            for path in ready:
                try:
                    ingested.append(await self._ingest(path))
                except OutOfSpace as exc:  # the file stays: the next scan tries again
                    log.warning("inbox_paused", name=path.name, error=str(exc))
                    break
                except OSError as exc:  # the file stays: the next scan tries again
                    log.error("inbox_error", name=path.name, error=str(exc))
            return ingested

    def _ready(self) -> list[Path]:
        """Files whose (size, mtime) did not change since the last scan and are old enough."""
        self._dir.mkdir(parents=True, exist_ok=True)
        now = self._wall()
        seen: dict[str, _Signature] = {}
        ready: list[tuple[int, str]] = []
        with os.scandir(self._dir) as entries:
            for entry in entries:
                if not _candidate(entry.name):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                signature = (info.st_size, info.st_mtime_ns)
                seen[entry.name] = signature
                settled = now - info.st_mtime_ns / 1e9 >= self._settle
                if settled and self._seen.get(entry.name) == signature:
                    ready.append((info.st_mtime_ns, entry.name))
        self._seen = seen
        return [self._dir / name for _, name in sorted(ready)]

    async def _ingest(self, path: Path) -> Ingested:
        """Add the URLs of `path` batch by batch (each add commits), then move the file."""
        errors = _Errors(self._dir / REJECTED, path.name)
        report = SeedReport(on_bad=errors.add)
        batches = read_seeds([str(path)], report, self._batch_size, self._sort_query)
        try:
            while (batch := await anyio.to_thread.run_sync(next, batches, None)) is not None:
                report.added += await self._frontier.add(batch)
        except BaseException:
            batches.close()
            errors.discard()
            raise
        errors.close()
        moved_to = await anyio.to_thread.run_sync(self._move, path, errors, report.invalid > 0)
        self._seen.pop(path.name, None)
        event = {"name": path.name, "read": report.read, "added": report.added}
        event |= {"invalid": report.invalid, "moved_to": str(moved_to)}
        if report.invalid:
            log.warning("inbox_ingested", errors=f"{moved_to}{ERRORS_SUFFIX}", **event)
        else:
            log.info("inbox_ingested", **event)
        return Ingested(path.name, report.read, report.added, report.invalid, moved_to)

    def _move(self, path: Path, errors: _Errors, rejected: bool) -> Path:
        folder = self._dir / (REJECTED if rejected else DONE)
        try:
            folder.mkdir(exist_ok=True)
            target = _free_name(folder, path.name, self._wall())
            path.rename(target)
        except OSError:
            errors.discard()
            raise
        if rejected:
            errors.part.replace(target.with_name(target.name + ERRORS_SUFFIX))
        return target
