"""Sitemaps (sitemaps.org): the page and sitemap URLs a sitemap lists, with hard caps.

A gzipped sitemap (.xml.gz, served as a file rather than with Content-Encoding) is inflated
here with the same care as a body: never past MAX_BYTES, so a compressed bomb costs nothing.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError, XMLPullParser

MAX_BYTES = 50 * 1024 * 1024  # uncompressed, per file (sitemaps.org)
MAX_URLS = 50_000  # per file (sitemaps.org)
_CHUNK = 64 * 1024


@dataclass(slots=True)
class Sitemap:
    """What one sitemap file lists; `index` True: the URLs are sitemaps themselves."""

    urls: list[str] = field(default_factory=list)
    index: bool = False
    truncated: bool = False
    error: str | None = None


def _inflate(data: bytes) -> tuple[bytes, bool]:
    """Gunzip `data` up to MAX_BYTES; (bytes, truncated)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = io.BytesIO()
    pending = data
    while pending and out.tell() < MAX_BYTES:
        out.write(inflater.decompress(pending, min(_CHUNK, MAX_BYTES - out.tell())))
        pending = inflater.unconsumed_tail
        if inflater.eof:
            break
    return out.getvalue(), bool(pending) and not inflater.eof


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def parse(body: bytes) -> Sitemap:
    """The <loc> URLs of a <urlset> or <sitemapindex>; never raises."""
    found = Sitemap()
    try:
        if body[:2] == b"\x1f\x8b":
            body, found.truncated = _inflate(body)
        elif len(body) > MAX_BYTES:
            body, found.truncated = body[:MAX_BYTES], True
        parser: Any = XMLPullParser(events=("start", "end"))
        for start in range(0, len(body), _CHUNK):
            parser.feed(body[start : start + _CHUNK])
            for event, element in parser.read_events():
                if not isinstance(element, Element):
                    continue
                name = _local(element.tag)
                if event == "start":
                    if name == "sitemapindex":
                        found.index = True
                    continue
                if name == "loc" and element.text and element.text.strip():
                    if len(found.urls) >= MAX_URLS:
                        found.truncated = True
                        return found
                    found.urls.append(element.text.strip())
                elif name in ("url", "sitemap"):
                    element.clear()  # keep memory flat on a large file
        if not found.truncated:
            parser.close()  # a document cut short is an error (what was read still counts)
    except (ParseError, zlib.error, ValueError) as exc:
        found.error = f"{type(exc).__name__}: {exc}"
    return found
