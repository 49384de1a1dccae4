"""Output files: WARC records plus a JSONL index line per final URL, rotated together.

Crash safety: the committer records the committed length of every output file in the
frontier, in the same transaction as the URL states; `recover` truncates anything past it
on start-up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import structlog

from crawler.errors import StorageError
from crawler.models import Outcome, Response, Visit
from crawler.output.cdxj import cdxj_line, cdxj_lines, write_cdxj, write_sorted
from crawler.output.dedup import Digests
from crawler.output.jsonl import IndexFile, rfc3339
from crawler.output.warc import NOT_MODIFIED, WarcFile, payload_head, warc_date
from crawler.settings import Settings
from crawler.urls import without_userinfo

__all__ = [  # what the rest of the crawler uses (export.py: the two helpers of a WACZ)
    "Outputs",
    "Sink",
    "Stored",
    "WriteResult",
    "cdxj_lines",
    "index_line",
    "payload_head",
]

_SERIAL = re.compile(r"-(\d{5,})\.(?:warc\.gz|jsonl)$")

log = structlog.get_logger("crawler.output")


@dataclass(slots=True, frozen=True)
class Stored:
    """How a response was written: in full, or as a revisit of the record that holds its
    payload (`ref_uri`, None: its own URL; `ref_date`, that record's WARC-Date)."""

    revisit: str | None  # None: in full; "identical" or "not_modified": a revisit record
    digest: str  # the payload digest the record carries
    ref_uri: str | None
    ref_date: str


@dataclass(slots=True)
class WriteResult:
    """What a write made durable: path -> new length, outcomes that failed to write (by
    position in the batch -> message: the caller makes them `Outcome.unwritten`), and how
    each response was written (by position)."""

    touched: dict[str, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    stored: dict[int, Stored] = field(default_factory=dict)


class Sink(Protocol):
    """Where results go: `Outputs` in this process, or `process.OutputProcess` in a child."""

    def recover(self, committed: dict[str, int]) -> None: ...

    def write(self, outcomes: Sequence[Outcome]) -> WriteResult: ...

    def close(self) -> None: ...


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # say why: "File exists" reads as if all were well
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None


def _serial(path: Path) -> int:
    match = _SERIAL.search(path.name)
    return int(match.group(1)) if match else -1


def index_line(
    outcome: Outcome,
    warc_file: str | None,
    warc_offset: int | None,
    warc_length: int | None = None,
    revisit: str | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    response = outcome.response
    entry = outcome.entry
    return {
        "url": without_userinfo(entry.url),  # a URL queued by an older version may hold it
        "state": outcome.state.value,
        "reason": outcome.reason,
        "status": response.status if response else outcome.status,
        "content_type": response.header("content-type") if response else None,
        "length": response.wire_bytes if response else None,
        "decoded_length": response.decoded_bytes if response else None,
        "truncated": response.truncated if response else False,
        "payload_digest": digest or outcome.payload_digest,  # a 304's: of the stored payload
        "fetched_at": rfc3339(outcome.fetched_at) if outcome.fetched_at else None,
        "elapsed_ms": outcome.elapsed_ms,
        "attempts": outcome.attempts,
        "depth": entry.depth,
        "discovered_from": entry.discovered_from,
        "kind": entry.kind,  # null: a page; "sitemap"; "robots": a robots.txt response
        "redirect_to": outcome.redirect_to,
        "http_version": response.http_version if response else None,
        "ip": response.peer if response else None,
        "warc_file": warc_file,
        "warc_offset": warc_offset,
        "warc_length": warc_length,
        "revisit": revisit,  # a revisit record: "identical" (payload), "not_modified" (304)
        "message": outcome.message,
        "links": outcome.links,
        "links_truncated": outcome.links_truncated,
        "out_of_scope": outcome.out_of_scope,
        "links_invalid": outcome.links_invalid,
        "host_down": outcome.host_down,
    }


def warcinfo(data_dir: Path, settings: Settings) -> dict[str, str]:
    """The fields of the crawl's warcinfo records (WarcFile adds software, format, host)."""
    output = settings.output
    fields = {
        "isPartOf": output.collection or data_dir.resolve().name,
        "http-header-user-agent": settings.fetch.user_agent,
        "robots": "obey" if settings.robots.obey else "ignore",
    }
    if output.operator:
        fields["operator"] = output.operator
    return fields


class Outputs:
    """The current WARC + index file pair under the data directory (blocking I/O)."""

    def __init__(self, data_dir: Path, settings: Settings) -> None:
        self._root = data_dir
        self._warc_dir = data_dir / "warc"
        self._index_dir = data_dir / "index"
        self._settings = settings
        self._warcinfo = warcinfo(data_dir, settings)
        self._digests: Digests | None = None
        if settings.output.dedup == "digest":
            self._digests = Digests(data_dir / "dedup.db")
            if settings.output.dedup_index:
                read = self._digests.load_cdxj(Path(settings.output.dedup_index))
                if read:
                    log.info("dedup_index_loaded", path=settings.output.dedup_index, lines=read)
        self._warc: WarcFile | None = None
        self._index: IndexFile | None = None
        self._unsorted: TextIO | None = None  # CDXJ lines of the open file, as written
        self._serial = 0

    def rel(self, path: Path) -> str:
        return path.relative_to(self._root).as_posix()

    def recover(self, committed: dict[str, int]) -> None:
        """Truncate every output file to its committed length; drop uncommitted files.

        Also after a failed write (disk full): what the open files hold beyond their
        committed length is thrown away with them."""
        for current in (self._warc, self._index, self._unsorted):
            if current is not None:
                with contextlib.suppress(OSError):  # its unflushed tail is not wanted
                    current.close()
        self._warc = self._index = self._unsorted = None
        for directory in (self._warc_dir, self._index_dir):
            _make_dir(directory)
        files = sorted(
            [*self._warc_dir.glob("*.warc.gz"), *self._index_dir.glob("*.jsonl")], key=_serial
        )
        # Serials continue past every file ever committed, even one moved away since.
        self._serial = max([0, *(_serial(Path(rel)) for rel in committed)])
        present = {self.rel(path) for path in files}
        for rel in sorted(set(committed) - present):
            log.warning("output_missing", file=rel, note="moved away? new output goes elsewhere")
        for path in files:
            self._serial = max(self._serial, _serial(path))
            length = committed.get(self.rel(path))
            size = path.stat().st_size
            if length is None or size > length:
                # its CDXJ (if its WARC was closed) holds what is cut: made anew below
                stem = path.name.removesuffix(".warc.gz").removesuffix(".jsonl")
                self._cdxj(f"{stem}.warc.gz").unlink(missing_ok=True)
            if length is None:
                log.warning("output_dropped", file=self.rel(path), bytes=size)
                path.unlink()
            elif size > length:
                log.warning("output_truncated", file=self.rel(path), bytes=size - length)
                with open(path, "r+b") as handle:
                    handle.truncate(length)
            elif size < length:
                raise StorageError(
                    f"{path} is shorter ({size} bytes) than its committed length ({length})"
                )
        closed = [p for p in files if p.exists() and p.suffix == ".gz"]
        if self._digests is not None:  # none of a record cut away may be referred to
            self._digests.forget_after(
                {Path(rel).name: n for rel, n in committed.items() if rel.startswith("warc/")}
            )
        for stale in [*self._index_dir.glob("*.cdxj.partial"), *self._index_dir.glob("*.unsorted")]:
            stale.unlink()  # a crash while writing it; lines of a file no longer open
        for cdxj in self._index_dir.glob("*.cdxj"):  # of a WARC no longer there
            if not (self._warc_dir / (cdxj.name.removesuffix(".cdxj") + ".warc.gz")).exists():
                cdxj.unlink()
        # Every file there is closed: new records go to a new one (a file is never appended
        # to once closed: copied elsewhere, or indexed, it stays as it was). Its CDXJ is made
        # if it lacks one (the file open at a crash, or one rotated then).
        for warc in closed:
            if not self._cdxj(warc.name).exists():
                self._write_cdxj(warc.name)

    def _open(self, stem: str) -> None:
        self._warc = WarcFile(
            self._warc_dir / f"{stem}.warc.gz", self._warcinfo, self._settings.output.gzip_level
        )
        self._index = IndexFile(self._index_dir / f"{stem}.jsonl")
        self._unsorted = open(  # noqa: SIM115 - closed by _close_current
            self._index_dir / f"{stem}.cdxj.unsorted", "w", encoding="utf-8", newline="\n"
        )

    def _rotate(self, touched: dict[str, int]) -> None:
        self._close_current(touched)
        self._serial += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self._open(f"{self._settings.output.prefix}-{stamp}-{self._serial:05d}")
        if self._settings.storage.fsync:  # the new names must survive a power cut too
            for directory in (self._warc_dir, self._index_dir):
                fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def _close_current(self, touched: dict[str, int]) -> None:
        if self._warc is not None and self._index is not None:
            fsync = self._settings.storage.fsync
            for handle in (self._warc, self._index):
                handle.flush(fsync)
                touched[self.rel(handle.path)] = handle.size
                handle.close()
            self._sort_cdxj(self._warc.path.name)
        self._warc = self._index = None

    def _cdxj(self, warc_name: str) -> Path:
        return self._index_dir / (warc_name.removesuffix(".warc.gz") + ".cdxj")

    def _sort_cdxj(self, warc_name: str) -> None:
        """The CDXJ of the WARC file just closed, from the lines made as its records were
        written (or, if they could not all be written, from its JSONL index)."""
        unsorted, self._unsorted = self._unsorted, None
        if unsorted is None:
            return
        path = Path(unsorted.name)
        try:
            unsorted.close()
            with open(path, encoding="utf-8") as handle:
                lines = handle.readlines()
            write_sorted(lines, self._cdxj(warc_name), self._settings.storage.fsync)
        except OSError:
            self._write_cdxj(warc_name)
        with contextlib.suppress(OSError):
            path.unlink()

    def _write_cdxj(self, warc_name: str) -> None:
        """The CDXJ of a closed WARC file, from its JSONL index (cdxj.py); on a volume that
        takes no more writes, none (recover makes it at the next start)."""
        jsonl = self._index_dir / (warc_name.removesuffix(".warc.gz") + ".jsonl")
        try:
            if jsonl.exists():
                write_cdxj(jsonl, warc_name, self._cdxj(warc_name), self._settings.storage.fsync)
        except OSError as exc:  # derived from the index: made at the next start instead
            log.warning("cdxj_not_written", file=warc_name, error=str(exc))

    def write(self, outcomes: Sequence[Outcome]) -> WriteResult:
        """Append records and index lines, flush (and fsync); returns the new lengths."""
        result = WriteResult()
        touched = result.touched
        for position, outcome in enumerate(outcomes):
            if self._warc is None or self._warc.size >= self._settings.output.warc_max_bytes:
                self._rotate(touched)
            assert self._warc is not None
            assert self._index is not None
            warc_file = warc_offset = warc_length = stored = None
            response, digest = outcome.response, outcome.payload_digest
            if response is not None and digest is not None:
                try:
                    stored, warc_offset = self._write_record(outcome, response, digest)
                    result.stored[position] = stored
                    warc_file = self._warc.path.name
                    warc_length = self._warc.size - warc_offset  # the response record's
                except OSError:
                    raise
                except Exception as exc:  # a record is built whole before any byte is written
                    log.error("warc_record_failed", url=outcome.entry.url, error=repr(exc))
                    message = f"cannot write WARC record: {exc!r}"
                    outcome = outcome.unwritten(message)
                    result.failed[position] = message
            revisit, digest = (None, None) if stored is None else (stored.revisit, stored.digest)
            line = index_line(outcome, warc_file, warc_offset, warc_length, revisit, digest)
            self._index.write(line)
            if warc_file is not None and self._unsorted is not None:
                self._unsorted.write(cdxj_line(line, warc_file) or "")
        if self._warc is not None and self._index is not None:
            fsync = self._settings.storage.fsync
            for handle in (self._warc, self._index):
                handle.flush(fsync)
                touched[self.rel(handle.path)] = handle.size
        if self._unsorted is not None:
            self._unsorted.flush()
        if self._digests is not None:
            self._digests.commit()
        return result

    def _write_record(
        self, outcome: Outcome, response: Response, digest: str
    ) -> tuple[Stored, int]:
        """Write the records of one response: a revisit when its server said it had not
        changed (a 304 to the conditional request of a recrawl) or when its payload is
        stored already (`output.dedup`), else the response in full. How it was written,
        and the offset of its response (or revisit) record."""
        assert self._warc is not None
        url = without_userinfo(outcome.entry.url)
        last = outcome.entry.last
        when = outcome.fetched_at
        if response.status == 304 and last is not None and last.digest and last.ref_date:
            refers = (last.ref_uri or url, last.ref_date)
            offset = self._warc.write_revisit(
                url, response, last.digest, when, refers, NOT_MODIFIED
            )
            return Stored("not_modified", last.digest, last.ref_uri, last.ref_date), offset
        before = self._stored_before(url, response, digest, last)
        if before is not None:
            offset = self._warc.write_revisit(url, response, digest, when, before)
            ref_uri = None if before[0] == url else before[0]
            return Stored("identical", digest, ref_uri, before[1]), offset
        offset = self._warc.write_exchange(url, response, digest, when)
        date = warc_date(when)
        if self._digests is not None and response.wire_bytes:
            self._digests.add(digest, url, date, self._warc.path.name, offset)
        return Stored(None, digest, None, date), offset

    def _stored_before(
        self, url: str, response: Response, digest: str, last: Visit | None
    ) -> tuple[str, str] | None:
        """(URI, WARC-Date) of the record that holds this payload already, if dedup is on:
        the URL's own last visit (a recrawl that found it unchanged), or any record of the
        digest memory. An empty or cut payload is written in full: nothing to share, or
        not all."""
        if self._settings.output.dedup == "off" or not response.wire_bytes or response.truncated:
            return None
        if last is not None and last.digest == digest and last.ref_date is not None:
            return last.ref_uri or url, last.ref_date
        return None if self._digests is None else self._digests.first(digest)

    def close(self) -> None:
        self._close_current({})
        if self._digests is not None:
            self._digests.close()
            self._digests = None
