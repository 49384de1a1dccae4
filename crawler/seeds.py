"""Seed lists: read URL files (plain, .gz or stdin) or text, validate each line, report bad ones."""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from crawler.hosts import BadURL
from crawler.models import NewURL
from crawler.urls import locate, url_key, without_userinfo

MAX_REPORTED = 10
MAX_QUOTED = 200  # characters of a bad line quoted in its reason


@dataclass(slots=True)
class BadLine:
    source: str
    line: int  # 0: the file as a whole (cannot open, cannot read further)
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@dataclass(slots=True)
class SeedReport:
    """What reading seeds produced: counts, plus the first few bad lines.

    `on_bad`, if set, is also given every bad line (e.g. to list them all in a file)."""

    read: int = 0
    added: int = 0
    invalid: int = 0
    due: int = 0  # finished URLs made due again (`crawler seed --recrawl`)
    examples: list[BadLine] = field(default_factory=list)
    on_bad: Callable[[BadLine], None] | None = field(default=None, compare=False, repr=False)

    def bad(self, line: BadLine) -> None:
        self.invalid += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(line)
        if self.on_bad is not None:
            self.on_bad(line)


def parse_line(text: str, sort_query: bool = False) -> NewURL:
    """One seed URL (already stripped) as a frontier entry, or BadURL.

    The entry's URL is the one fetched: `text`, or its IPv4 host respelt as a dotted quad."""
    url, canonical_url, host = locate(text, sort_query)
    return NewURL(key=url_key(canonical_url), url=url, host=host)


def parse_lines(
    lines: Iterable[str], sort_query: bool = False, source: str = "<request>"
) -> tuple[list[NewURL], SeedReport]:
    """Seed lines (blank lines and # comments skipped) as frontier entries, and a report."""
    report = SeedReport()
    stripped = ((n, line.strip()) for n, line in enumerate(lines, start=1))
    wanted = ((n, line) for n, line in stripped if line and not line.startswith("#"))
    return list(_parse(wanted, source, report, sort_query)), report


def _parse(
    lines: Iterable[tuple[int, str]], source: str, report: SeedReport, sort_query: bool
) -> Iterator[NewURL]:
    for number, text in lines:
        report.read += 1
        try:
            yield parse_line(text, sort_query)
        except BadURL as exc:  # quoted without userinfo: the report may be logged or stored
            quoted = without_userinfo(text)[:MAX_QUOTED]
            report.bad(BadLine(source, number, f"{exc}: {quoted!r}"))


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _lines(stream: IO[bytes], source: str, report: SeedReport) -> Iterator[tuple[int, str]]:
    try:
        for number, raw in enumerate(stream, start=1):
            try:
                text = raw.decode("utf-8-sig").strip()
            except UnicodeDecodeError:
                report.read += 1
                quoted = raw.strip()[:MAX_QUOTED]
                report.bad(BadLine(source, number, f"not valid UTF-8: {quoted!r}"))
                continue
            if text and not text.startswith("#"):
                yield number, text
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        report.bad(BadLine(source, 0, f"cannot read further: {exc}"))


def read_seeds(
    paths: Iterable[str],
    report: SeedReport,
    batch_size: int = 50_000,
    sort_query: bool = False,
) -> Generator[list[NewURL], None, None]:
    """Yield batches of valid seed URLs from `paths`; bad lines go into `report`."""
    batch: list[NewURL] = []
    for path in paths:
        source = "<stdin>" if path == "-" else path
        try:
            stream = _open(path)
        except OSError as exc:
            report.bad(BadLine(source, 0, f"cannot open: {exc.strerror}"))
            continue
        try:
            for url in _parse(_lines(stream, source, report), source, report, sort_query):
                batch.append(url)
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        finally:
            if path != "-":
                stream.close()
    if batch:
        yield batch


def seed_files_exist(paths: Iterable[str]) -> list[str]:
    """Names of the given seed files that do not exist (stdin always exists)."""
    return [p for p in paths if p != "-" and not Path(p).is_file()]
