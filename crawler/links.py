"""Link extraction (selectolax): the URLs an HTML page links to, resolved and filtered."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

HTML_TYPES = ("text/html", "application/xhtml+xml")
_FOLLOWED_REL = frozenset({"alternate", "next", "prev", "canonical"})
_SELECTOR = "base[href], meta, a[href], area[href], link[href], frame[src], iframe[src]"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
_REFRESH_URL = re.compile(r"^\s*[\d.]*\s*[;,]?\s*(?:url\s*=\s*)?[\"']?([^\"']*)", re.I)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(slots=True)
class Links:
    """What one page links to (absolute http(s) URLs, no fragments, first occurrence first)."""

    urls: list[str] = field(default_factory=list)
    truncated: bool = False  # more than max_links were found
    nofollow: bool = False  # the page (meta robots or X-Robots-Tag) asked not to follow


def is_html(content_type: str | None, body: bytes) -> bool:
    """HTML by Content-Type; when the type is missing, by sniffing the first bytes."""
    if content_type:
        return content_type.split(";", 1)[0].strip().lower() in HTML_TYPES
    head = body[:512].removeprefix(codecs.BOM_UTF8).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip()).name
    except LookupError:
        return None


def decode(body: bytes, content_type: str | None) -> str:
    """Text of an HTML body: BOM, HTTP charset, <meta charset>, then UTF-8; never raises.

    The BOM wins over the HTTP charset, as in browsers (WHATWG encoding sniffing)."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace")
    declared = _CHARSET.search(content_type or "")
    codec = _codec(declared.group(1) if declared else None)
    if codec is None:
        meta = _META_CHARSET.search(body[:4096])
        codec = _codec(meta.group(1).decode("ascii") if meta else None)
        if codec is not None and codec.startswith("utf-16"):
            codec = "utf-8"  # a page whose bytes we can read as ASCII is not UTF-16
    try:
        return body.decode(codec or "utf-8", errors="replace")
    except (LookupError, ValueError):
        return body.decode("utf-8", errors="replace")


def _absolute(base: str, href: str) -> str | None:
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # javascript:, mailto:, data:, tel:, ...
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    return url.split("#", 1)[0]


def _nofollow(directives: str) -> bool:
    words = set(re.split(r"[\s,:]+", directives))
    return "nofollow" in words or "none" in words


def extract(
    text: str,
    page_url: str,
    *,
    max_links: int,
    obey_rel_nofollow: bool = True,
    x_robots_tag: str | None = None,
) -> Links:
    """Links of an HTML document whose (final) URL is `page_url`."""
    found = Links()
    if x_robots_tag and _nofollow(x_robots_tag.lower()):
        found.nofollow = True
        return found
    tree = LexborHTMLParser(text)
    for meta in tree.css("meta[name]"):
        content = (meta.attributes.get("content") or "").lower()
        if (meta.attributes.get("name") or "").lower() == "robots" and _nofollow(content):
            found.nofollow = True
            return found
    first_base = tree.css_first("base[href]")
    base_href = first_base.attributes.get("href") if first_base is not None else None
    base = (_absolute(page_url, base_href) if base_href else None) or page_url
    seen: set[str] = set()
    for node in tree.css(_SELECTOR):
        attrs = node.attributes
        tag = node.tag
        href: str | None = None
        if tag == "base":
            continue
        if tag == "meta":
            content = attrs.get("content") or ""
            if (attrs.get("http-equiv") or "").lower() == "refresh":
                match = _REFRESH_URL.match(content)
                href = match.group(1) if match else None
        elif tag == "link":
            rels = set((attrs.get("rel") or "").lower().split())
            if rels & _FOLLOWED_REL and "stylesheet" not in rels:
                href = attrs.get("href")
        elif tag in ("frame", "iframe"):
            href = attrs.get("src")
        else:  # a, area
            if obey_rel_nofollow and "nofollow" in (attrs.get("rel") or "").lower().split():
                continue
            href = attrs.get("href")
        url = _absolute(base, href) if href else None
        if url is None or url in seen:
            continue
        if len(found.urls) >= max_links:
            found.truncated = True
            break
        seen.add(url)
        found.urls.append(url)
    return found
