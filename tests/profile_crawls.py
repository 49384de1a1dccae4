"""Helpers of the fetch-profile tests' crawls: a TOML writer for `[[profile]]` tables,
`run_crawl` (`crawler run --config FILE` in-process), the request headers of the WARC
request records, and a search of a crawl's files for secrets."""

from __future__ import annotations

import gzip
import json
import re
import tomllib
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator

from crawler.cli import main
from tests.crawling import sets, write_seeds

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """One value in TOML syntax (strings as basic strings, dicts as inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def write_config(
    path: Path,
    profiles: list[dict[str, Any]],
    sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A TOML file with `[section]` tables and one `[[profile]]` table per profile."""
    lines: list[str] = []
    for section, values in (sections or {}).items():
        lines.append(f"[{section}]")
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for profile in profiles:
        lines.append("[[profile]]")
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in profile.items()]
        lines.append("")
    text = "\n".join(lines)
    parsed = tomllib.loads(text)  # the writer's own check: what we meant is what TOML says
    assert parsed.get("profile", []) == [_plain(p) for p in profiles], text
    path.write_text(text, encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def run_args(data_dir: Path, urls: list[str], config: Path, *assignments: str) -> list[str]:
    """Arguments of `crawler run` over `urls` with `--config` and the fast test settings."""
    seeds = write_seeds(data_dir.parent / f"{data_dir.name}-seeds.txt", urls)
    return [
        "run",
        "--data-dir",
        str(data_dir),
        "--seeds",
        str(seeds),
        "--config",
        str(config),
        *sets(*assignments),
    ]


def run_crawl(data_dir: Path, urls: list[str], config: Path, *assignments: str) -> int:
    """`crawler run --config FILE` in-process; returns the exit code."""
    return main(run_args(data_dir, urls, config, *assignments))


def request_headers(data_dir: Path) -> dict[str, list[dict[str, str]]]:
    """URL -> the HTTP headers (names lower-cased) of each WARC request record for it."""
    found: dict[str, list[dict[str, str]]] = {}
    for path in sorted((data_dir / "warc").glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type != "request":
                    continue
                url = record.rec_headers.get_header("WARC-Target-URI")
                headers = {k.lower(): v for k, v in record.http_headers.headers}
                found.setdefault(url, []).append(headers)
    return found


def readable_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed too when it is gzip (WARC and rotated index files)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        with suppress(OSError, EOFError):
            return data + gzip.decompress(data)
    return data


def files_containing(folder: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in any file under `folder` (gzip read through)."""
    hits: list[tuple[str, str]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = readable_bytes(path)
        hits += [(str(path.relative_to(folder)), n) for n in needles if n.encode() in data]
    return hits
