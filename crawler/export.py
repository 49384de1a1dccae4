"""`crawler export --wacz`: a stopped crawl as one WACZ 1.1.1 file (what ReplayWeb.page and
pywb open): `archive/` (the WARC files), `indexes/index.cdx.gz` (their CDXJ, merged and
sorted), `pages/pages.jsonl` (the HTML pages fetched, with their times and titles),
`datapackage.json` (size and sha256 of each) and `datapackage-digest.json`.

Only what the crawl committed goes in: each WARC file and index up to its committed
length (a crash leaves more on disk). Streamed: a WARC file is copied in chunks, the CDXJ
of each file is sorted alone and the files merged, so a crawl bigger than RAM exports. A
crawl that is running is refused (it holds the data directory's lock).
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import io
import json
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from crawler import __version__
from crawler.datadir import exclusive, open_frontier
from crawler.links import title_of
from crawler.output import cdxj_lines, payload_head
from crawler.settings import Settings

__all__ = ["export_wacz"]

WACZ_VERSION = "1.1.1"
CHUNK = 1024 * 1024
TITLE_BYTES = 64 * 1024  # a page's title is looked for in the start of its payload


async def export_wacz(data_dir: Path, settings: Settings, out: Path) -> dict[str, int]:
    """Write the WACZ of the crawl in `data_dir` to `out`; what went in (counts)."""
    with exclusive(data_dir):
        frontier = await open_frontier(data_dir, settings)
        try:
            committed = await frontier.committed_outputs()
        finally:
            await frontier.aclose()
        return _write(data_dir, committed, out)


def _write(data_dir: Path, committed: dict[str, int], out: Path) -> dict[str, int]:
    warcs = sorted(rel for rel in committed if rel.startswith("warc/") and rel.endswith(".gz"))
    partial = out.with_name(out.name + ".partial")
    resources: list[dict[str, Any]] = []
    pages = 0
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as wacz:
        for rel in warcs:
            name = Path(rel).name
            with open(data_dir / rel, "rb") as source:
                resources.append(_copy(wacz, f"archive/{name}", source, committed[rel]))
        with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
            sorted_files = []
            for rel in warcs:  # each file's CDXJ sorted alone, then merged
                lines = _index_lines(data_dir, rel, committed)
                path = Path(scratch) / (Path(rel).name + ".cdxj")
                path.write_text("".join(cdxj_lines(lines, Path(rel).name)), encoding="utf-8")
                sorted_files.append(stack.enter_context(open(path, encoding="utf-8")))
            index = _gzipped(line.encode() for line in heapq.merge(*sorted_files))
            resources.append(_copy(wacz, "indexes/index.cdx.gz", index))
        counted = [0]
        listing = _pages(data_dir, warcs, committed, counted)
        resources.append(_copy(wacz, "pages/pages.jsonl", listing))
        pages = counted[0]
        package = {
            "profile": "data-package",
            "resources": resources,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "wacz_version": WACZ_VERSION,
            "software": f"crawler {__version__}",
            "title": data_dir.resolve().name,
        }
        body = json.dumps(package, indent=2).encode()
        wacz.writestr("datapackage.json", body)
        digest = {"path": "datapackage.json", "hash": "sha256:" + hashlib.sha256(body).hexdigest()}
        wacz.writestr("datapackage-digest.json", json.dumps(digest, indent=2).encode())
    partial.replace(out)
    return {"warc_files": len(warcs), "pages": pages}


def _copy(
    wacz: zipfile.ZipFile, path: str, source: IO[bytes] | Iterator[bytes], limit: int = -1
) -> dict[str, Any]:
    """Store `source` (a file, up to `limit` bytes; or chunks) as `path`; its resource."""
    sha256, size = hashlib.sha256(), 0
    info = zipfile.ZipInfo(path, datetime.now(UTC).timetuple()[:6])
    with wacz.open(info, "w", force_zip64=True) as entry:
        for chunk in _chunks(source, limit):
            entry.write(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return {
        "name": Path(path).name.lower(),
        "path": path,
        "hash": "sha256:" + sha256.hexdigest(),
        "bytes": size,
    }


def _chunks(source: IO[bytes] | Iterator[bytes], limit: int) -> Iterator[bytes]:
    if not isinstance(source, io.IOBase):
        yield from source
        return
    left = limit
    while left:
        chunk = source.read(CHUNK if left < 0 else min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _gzipped(lines: Iterator[bytes]) -> Iterator[bytes]:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed:
        for line in lines:
            packed.write(line)
            if buffer.tell() >= CHUNK:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


def _index_lines(data_dir: Path, warc: str, committed: dict[str, int]) -> Iterator[dict[str, Any]]:
    """The committed JSONL index lines of the WARC file `warc` (its index of the same name)."""
    rel = "index/" + Path(warc).name.removesuffix(".warc.gz") + ".jsonl"
    length = committed.get(rel, 0)
    with open(data_dir / rel, "rb") as handle:
        for raw in handle.read(length).splitlines():
            if raw.strip():
                yield json.loads(raw)


def _is_page(line: dict[str, Any]) -> bool:
    """An HTML page fetched (not robots.txt, not a redirect or an error)."""
    content_type = str(line.get("content_type") or "").lower()
    return (
        line.get("kind") is None
        and line.get("status") == 200
        and content_type.startswith(("text/html", "application/xhtml"))
    )


def _pages(
    data_dir: Path, warcs: list[str], committed: dict[str, int], counted: list[int]
) -> Iterator[bytes]:
    """pages.jsonl: a header, then a page a line (its title from its payload's start),
    file by file; `counted` gets how many."""
    header = {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}
    yield (json.dumps(header) + "\n").encode()
    for rel in warcs:
        for line in _index_lines(data_dir, rel, committed):
            if not _is_page(line):
                continue
            page = {"id": uuid.uuid4().hex, "url": line["url"], "ts": line["fetched_at"]}
            if not line.get("revisit"):  # a revisit's payload is in another record
                head = payload_head(data_dir / rel, line["warc_offset"], TITLE_BYTES)
                title = title_of(head)
                if title:
                    page["title"] = title
            counted[0] += 1
            yield (json.dumps(page) + "\n").encode()
