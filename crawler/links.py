"""Link extraction (selectolax): the URLs an HTML page links to, resolved and filtered."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler.joiner import Joiner

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Links are read from the first MiB of a page (decoded), as Common Crawl keeps the first MiB:
# past that, the page costs neither memory nor parsing time (its `links_truncated` is true).
MAX_BYTES = 1024 * 1024
_FOLLOWED_REL = frozenset({"alternate", "next", "prev", "canonical"})
_SELECTOR = "a[href], area[href], link[href], frame[src], iframe[src], meta, base[href]"
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
    invalid: int = 0  # http(s) links that name no fetchable URL (a bad host or port...)
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


def source(body: bytes, content_type: str | None) -> str | bytes:
    """An HTML body as `extract` takes it: its charset from the BOM, the HTTP charset, then
    <meta charset>, else UTF-8; never raises. The BOM wins over the HTTP charset, as in
    browsers (WHATWG encoding sniffing).

    A UTF-8 body stays bytes (BOM removed): the parser decodes UTF-8 itself, invalid bytes
    to U+FFFD as `bytes.decode(errors="replace")` does, so it is not decoded to text only to
    be encoded back. A body in any other charset is decoded to text."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            body = body[len(bom) :]
            return body if name == "utf-8" else body.decode(name, errors="replace")
    declared = _CHARSET.search(content_type or "")
    codec = _codec(declared.group(1) if declared else None)
    if codec is None:
        meta = _META_CHARSET.search(body[:4096])
        codec = _codec(meta.group(1).decode("ascii") if meta else None)
        if codec is not None and codec.startswith("utf-16"):
            codec = "utf-8"  # a page whose bytes we can read as ASCII is not UTF-16
    if codec is None or codec == "utf-8":
        return body
    try:
        return body.decode(codec, errors="replace")
    except (LookupError, ValueError):
        return body  # a codec that cannot read text (base64, idna, ...): UTF-8


def _nofollow(directives: str) -> bool:
    words = set(re.split(r"[\s,:]+", directives))
    return "nofollow" in words or "none" in words


def extract(
    text: str | bytes,
    page_url: str,
    *,
    max_links: int,
    obey_rel_nofollow: bool = True,
    x_robots_tag: str | None = None,
) -> Links:
    """Links of an HTML document (text, or UTF-8 bytes) whose (final) URL is `page_url`."""
    found = Links()
    if x_robots_tag and _nofollow(x_robots_tag.lower()):
        found.nofollow = True
        return found
    nodes = LexborHTMLParser(text).css(_SELECTOR)
    resolver = _resolver(nodes, page_url)
    if resolver is None:
        found.nofollow = True
        return found
    join = resolver.join
    seen: set[str] = set()
    urls = found.urls
    for node in nodes:
        href = _href(node, obey_rel_nofollow)
        url = join(href) if href else None
        if url is None or url in seen:
            continue
        if len(urls) >= max_links:
            found.truncated = True
            break
        seen.add(url)
        urls.append(url)
    found.invalid = resolver.unresolved
    return found


def _resolver(nodes: list[LexborNode], page_url: str) -> Joiner | None:
    """What the page's links resolve against (its first <base href>); None: meta nofollow."""
    base: Joiner | None = None
    for node in nodes:
        tag = node.tag
        if tag == "meta":
            attrs = node.attributes
            if (attrs.get("name") or "").lower() == "robots" and _nofollow(
                (attrs.get("content") or "").lower()
            ):
                return None
        elif tag == "base" and base is None:
            page = Joiner(page_url)
            href = node.attributes.get("href")
            base_url = page.join(href) if href else None
            base = Joiner(base_url) if base_url else page
    return base or Joiner(page_url)


def _href(node: LexborNode, obey_rel_nofollow: bool) -> str | None:
    """The link of an element the selector found, None when it is not followed."""
    attrs = node.attributes
    tag = node.tag
    if tag == "a" or tag == "area":
        if obey_rel_nofollow and "rel" in attrs and _has_nofollow(attrs["rel"]):
            return None
        return attrs.get("href")
    if tag == "meta":
        if (attrs.get("http-equiv") or "").lower() != "refresh":
            return None
        match = _REFRESH_URL.match(attrs.get("content") or "")
        return match.group(1) if match else None
    if tag == "link":
        rels = set((attrs.get("rel") or "").lower().split())
        if not rels & _FOLLOWED_REL or "stylesheet" in rels:
            return None
        return attrs.get("href")
    if tag == "frame" or tag == "iframe":
        return attrs.get("src")
    return None  # <base>


def _has_nofollow(rel: str | None) -> bool:
    return rel is not None and "nofollow" in rel.lower().split()


def title_of(html: bytes) -> str | None:
    """The text of an HTML document's <title> (from its start, e.g. its first 64 KiB),
    whitespace collapsed; None without one."""
    if not html:
        return None
    node = LexborHTMLParser(html).css_first("title")
    if node is None:
        return None
    text = " ".join((node.text() or "").split())
    return text or None
