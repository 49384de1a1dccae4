"""URL validation, canonicalisation (w3lib) and the 64-bit de-duplication key."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

from w3lib.url import safe_url_string

MAX_URL_LENGTH = 8 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}

# A URL that is already in canonical form: lower-case http(s) scheme and host, no port, no
# userinfo, no fragment, no percent-escapes and only characters that need no escaping.
# For these, canonicalisation is the identity; everything else takes the w3lib path.
_CANONICAL = re.compile(
    r"(?P<origin>(?P<scheme>https?)://(?P<host>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?)"
    r"(?P<path>/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?(?P<query>\?[A-Za-z0-9._~!$&()*+,;=:@/?-]+)?"
)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class BadURL(ValueError):
    """The text is not a URL the crawler can fetch; str(exc) says why."""


def _normalise_escape(match: re.Match[str]) -> str:
    byte = int(match.group(1), 16)
    return chr(byte) if byte in _UNRESERVED else "%" + match.group(1).upper()


def validate(text: str) -> str:
    """Return `text` as a fetchable URL or raise BadURL with a short reason."""
    if len(text) > MAX_URL_LENGTH or len(text.encode("utf-8", "surrogatepass")) > MAX_URL_LENGTH:
        raise BadURL(f"longer than {MAX_URL_LENGTH} bytes")
    if _CONTROL.search(text):
        raise BadURL("contains whitespace or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadURL(f"unparsable: {exc}") from None
    if parts.scheme.lower() not in DEFAULT_PORTS:
        raise BadURL(f"scheme {parts.scheme or '(none)'!r} is not http or https")
    if not parts.hostname:
        raise BadURL("no host")
    if port == 0:
        raise BadURL("port 0")
    return text


def canonical(url: str, sort_query: bool = False) -> str:
    """The form used for de-duplication; the URL fetched is always the one given.

    Lower-case scheme and host, default port and fragment dropped, empty path made "/",
    percent-encoding normalised (unreserved characters decoded, escapes upper-cased),
    unsafe characters escaped by w3lib; the query keeps its order unless `sort_query`.
    """
    match = _fast(url)
    if match is not None:
        return _fast_canonical(url, match, sort_query)
    safe = safe_url_string(url)
    parts = urlsplit(safe)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().removesuffix(".")
    if ":" in host:
        host = f"[{host}]"
    netloc = host
    if parts.port is not None and parts.port != DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{parts.port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    path = _ESCAPE.sub(_normalise_escape, parts.path) or "/"
    query = _ESCAPE.sub(_normalise_escape, parts.query)
    if sort_query:
        query = _sorted_query(query)
    return urlunsplit((scheme, netloc, path, query, ""))


def _sorted_query(query: str) -> str:
    """`b=2&a=1` and `a=1&b=2` are one URL (each pair is kept as written, duplicates too)."""
    return "&".join(sorted(query.split("&"))) if "&" in query else query


def _fast(url: str) -> re.Match[str] | None:
    """A match when `url` is already canonical (a default port written out is not)."""
    match = _CANONICAL.fullmatch(url)
    if match is None or len(url) > MAX_URL_LENGTH:  # ASCII only: characters = bytes
        return None
    port = match.group("port")
    if port is not None and (int(port) > 65535 or int(port) == DEFAULT_PORTS[match["scheme"]]):
        return None
    return match


def _fast_canonical(url: str, match: re.Match[str], sort_query: bool = False) -> str:
    query = match.group("query")
    if sort_query and query is not None and "&" in query:
        path = match.group("path") or "/"
        return f"{match.group('origin')}{path}?{_sorted_query(query[1:])}"
    if match.group("path") is not None:
        return url
    return f"{match.group('origin')}/{query or ''}"


def identify(text: str, sort_query: bool = False) -> tuple[int, str]:
    """Validate `text` and return its (key, host): the one call on the seeding hot path."""
    match = _fast(text)
    if match is not None:
        port = match.group("port")
        host = match.group("host") if port is None else f"{match.group('host')}:{port}"
        return url_key(_fast_canonical(text, match, sort_query)), host
    validate(text)
    return url_key(canonical(text, sort_query)), host_of(text)


def url_key(canonical_url: str) -> int:
    """A signed 64-bit hash of the canonical URL: the frontier's primary key."""
    digest = hashlib.blake2b(canonical_url.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def host_of(url: str) -> str:
    """The politeness key of a URL: lower-case host, with the port when not the default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removesuffix(".")  # example.com. is example.com
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host
