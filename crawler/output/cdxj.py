"""CDXJ: the index of one WARC file that pywb, OutbackCDX and ReplayWeb.page read.

`index/<name>.cdxj` beside `warc/<name>.warc.gz`: a line per response record, `<SURT key>
<14-digit timestamp> <JSON>` (url, mime, status, digest, length, offset, filename, in that
order; mime left out when the response had no Content-Type header), sorted by bytes. The same
lines cdxj-indexer writes for the file (`cdxj-indexer --sort`), but made from the crawl's
own JSONL index of it, which holds every field already: the WARC is not read again.

Its lines are made as the records are written (`cdxj_line`, appended unsorted to
`index/<name>.cdxj.unsorted`, off the crawl's critical path in the output process) and
sorted into the `.cdxj` when the WARC file is closed (rotation, the crawl stopping); a WARC
file is never appended to once closed, so a `.cdxj` is always whole for its file. After a
crash the `.cdxj` of the file that was open is made from its JSONL index (`write_cdxj`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import surt

__all__ = ["cdxj_line", "cdxj_lines", "write_cdxj", "write_sorted"]

_MIME_END = re.compile(r"[;\s]")  # a Content-Type's media type ends at its parameters


def _line(entry: Mapping[str, Any]) -> str:
    url = str(entry["url"])
    fields: dict[str, str] = {"url": url}
    content_type = entry.get("content_type")
    if entry.get("revisit"):
        fields["mime"] = "warc/revisit"
    elif content_type is not None:  # present, even empty (as cdxj-indexer has it)
        fields["mime"] = _MIME_END.split(str(content_type), 1)[0].strip()
    fields["status"] = str(entry["status"])
    if entry.get("payload_digest"):
        fields["digest"] = str(entry["payload_digest"])
    fields["length"] = str(entry["warc_length"])
    fields["offset"] = str(entry["warc_offset"])
    fields["filename"] = str(entry["warc_file"])
    stamp = "".join(c for c in str(entry["fetched_at"])[:19] if c.isdigit())
    return f"{surt.surt(url)} {stamp} {json.dumps(fields)}\n"


def cdxj_line(entry: Mapping[str, Any], warc_name: str) -> str | None:
    """The CDXJ line of one JSONL index line, if it names a record of `warc_name`."""
    if entry.get("warc_file") != warc_name or entry.get("warc_length") is None:
        return None
    return _line(entry)


def cdxj_lines(index_lines: Iterable[Mapping[str, Any]], warc_name: str) -> list[str]:
    """The sorted CDXJ lines of `warc_name` from the JSONL index lines of its records."""
    lines = {cdxj_line(entry, warc_name) for entry in index_lines}
    lines.discard(None)
    return sorted(line for line in lines if line is not None)


def write_cdxj(jsonl: Path, warc_name: str, out: Path, fsync: bool) -> None:
    """Write `out` from the JSONL index `jsonl` of the WARC file `warc_name`."""
    with open(jsonl, encoding="utf-8") as handle:
        lines = cdxj_lines((json.loads(line) for line in handle if line.strip()), warc_name)
    write_sorted(lines, out, fsync)


def write_sorted(lines: Iterable[str], out: Path, fsync: bool) -> None:
    """Write `lines` (sorted, without repeats) to `out`: whole, or not at all (a temporary
    file renamed)."""
    lines = sorted(set(lines))
    partial = out.with_name(out.name + ".partial")
    with open(partial, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(lines)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
    os.replace(partial, out)
