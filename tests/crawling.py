"""Helpers for end-to-end tests: run the CLI in-process or as a subprocess, read the output."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator

from crawler.cli import main

LOOPBACK = 'network.allowed_networks=["127.0.0.0/8"]'
FAST = [
    LOOPBACK,
    "politeness.delay=0",
    "politeness.per_host_concurrency=4",
    "fetch.concurrency=8",
    "retry.backoff_base=0.05",
    "retry.backoff_max=0.2",
    "storage.fsync=false",
    "storage.commit_interval=0.05",
    'log.level="warning"',
    "robots.obey=false",  # robots.txt has tests of its own (test_robots.py)
]


def sets(*assignments: str) -> list[str]:
    args: list[str] = []
    for item in [*FAST, *assignments]:
        args += ["--set", item]
    return args


def write_seeds(path: Path, urls: list[str]) -> Path:
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return path


def crawl(data_dir: Path, urls: list[str], *assignments: str) -> int:
    """`crawler run` in-process over `urls` with fast test settings; returns the exit code."""
    seeds = write_seeds(data_dir.parent / f"{data_dir.name}-seeds.txt", urls)
    return main(["run", "--data-dir", str(data_dir), "--seeds", str(seeds), *sets(*assignments)])


def index_lines(data_dir: Path, robots: bool = False) -> list[dict[str, Any]]:
    """The index lines of the crawl's URLs (with `robots`, of its robots.txt fetches too).

    A last line with no newline yet, one a running crawl is still writing, is left out."""
    lines: list[dict[str, Any]] = []
    for path in sorted((data_dir / "index").glob("*.jsonl")):
        *whole, _being_written = path.read_bytes().split(b"\n")
        lines.extend(json.loads(line) for line in whole)
    return lines if robots else [line for line in lines if line.get("kind") != "robots"]


def index(data_dir: Path, robots: bool = False) -> dict[str, dict[str, Any]]:
    """url -> its index line; fails if any URL has more than one line."""
    lines = index_lines(data_dir, robots)
    counts = Counter(line["url"] for line in lines)
    repeated = [url for url, n in counts.items() if n > 1]
    assert not repeated, f"URLs with more than one index line: {repeated[:5]}"
    return {line["url"]: line for line in lines}


def warc_records(data_dir: Path) -> list[dict[str, Any]]:
    """Every record of every WARC file, read back with warcio."""
    records: list[dict[str, Any]] = []
    for path in sorted((data_dir / "warc").glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                records.append(
                    {
                        "file": path.name,
                        "type": record.rec_type,
                        "url": record.rec_headers.get_header("WARC-Target-URI"),
                        "headers": dict(record.rec_headers.headers),
                        "http_headers": dict(record.http_headers.headers)
                        if record.http_headers
                        else {},
                        "status": record.http_headers.get_statuscode()
                        if record.http_headers
                        else None,
                        "payload": record.content_stream().read(),
                    }
                )
    return records


def response_at(data_dir: Path, warc_file: str, offset: int) -> Any:
    """Read the single record at `offset` (its own gzip member) as warcio sees it."""
    with open(data_dir / "warc" / warc_file, "rb") as handle:
        handle.seek(offset)
        record = next(iter(ArchiveIterator(handle)))
        return record.rec_type, record.rec_headers.get_header("WARC-Target-URI")


def cli_process(data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    """`crawler ...` as a real subprocess (for signals)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", *args, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def gz_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def database_rows(data_dir: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """The rows of `sql` on the crawl's database, read-only and from outside the crawler
    (what is committed, whatever the crawler holds in memory); [] while the database or its
    tables do not exist yet."""
    uri = f"{(data_dir / 'crawl.db').resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "unable to open" in str(exc) or "no such table" in str(exc):
            return []
        raise
