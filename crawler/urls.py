"""URL validation, canonicalisation (w3lib) and the 64-bit de-duplication key."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urljoin, urlsplit, urlunsplit

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

# Shapes of link that `Resolver` joins by concatenation, each chosen so that urljoin would
# return the very same string: no whitespace or control characters (urlsplit strips or drops
# some), no ";" in a path (urlparse splits off "params" and drops an empty one), no "."/".."
# segment (urljoin removes them), no empty query ("?" alone is dropped). Anything else, or
# any doubt, takes urljoin. The fragment is dropped either way.
_P = r"[^\x00-\x20\x7f#?;/]"  # a character of a path segment
_SEG = rf"(?!\.){_P}*"  # a segment that is neither "." nor ".." (nor starts with ".")
_QUERY = r"(?:\?[^\x00-\x20\x7f#]+)?"
_FRAGMENT = r"(?:#.*)?"
_ABSOLUTE_LINK = re.compile(
    rf"(?P<url>https?://[A-Za-z0-9.-]+(?::(?P<port>[0-9]{{1,5}}))?(?:/[^\x00-\x20\x7f#?;]*)?"
    rf"{_QUERY}){_FRAGMENT}",
    re.S,
)
_ROOTED_LINK = re.compile(rf"(?P<url>(?:/{_SEG})+{_QUERY}){_FRAGMENT}", re.S)  # not "//"
_RELATIVE_LINK = re.compile(  # no ":" before the first "/" (it would be a scheme), no "//"
    rf"(?P<url>(?!\.)[^\x00-\x20\x7f#?;/:]+(?:/(?!\.){_P}+)*/?{_QUERY}){_FRAGMENT}", re.S
)
_QUERY_LINK = re.compile(rf"(?P<url>\?[^\x00-\x20\x7f#]+){_FRAGMENT}", re.S)
_BASE = re.compile(
    r"(?P<origin>https?://[A-Za-z0-9.-]+(?::(?P<port>[0-9]{1,5}))?)"
    r"(?P<path>/[^\x00-\x20\x7f#?;]*)?(?:[?#].*)?",
    re.S,
)


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
    canonical_url, host = locate(text, sort_query)
    return url_key(canonical_url), host


def locate(text: str, sort_query: bool = False) -> tuple[str, str]:
    """Validate `text` and return its (canonical URL, host): `identify` before the key.

    For a caller that may drop the URL by its host (scope) without paying for its key."""
    match = _fast(text)
    if match is not None:
        port = match.group("port")
        host = match.group("host") if port is None else f"{match.group('host')}:{port}"
        return _fast_canonical(text, match, sort_query), host
    validate(text)
    return canonical(text, sort_query), host_of(text)


class Resolver:
    """Absolute http(s) URLs of the links of one page, as `urljoin(base, href)` gives them.

    The common shapes of link (absolute, "/rooted", "relative/path", "?query") are joined
    by string concatenation when the base allows it; every other link takes urljoin.
    """

    __slots__ = ("_dir", "_origin", "_path", "base")

    def __init__(self, base: str) -> None:
        self.base = base
        self._origin: str | None = None
        self._path = self._dir = ""
        match = _BASE.fullmatch(base)
        if match is None or int(match["port"] or 0) > 65535:
            return  # userinfo, IPv6, odd characters, bad port: urljoin for every link
        self._origin = match["origin"]
        self._path = match["path"] or ""
        directory = self._path[: self._path.rfind("/") + 1] or "/"
        # urljoin merges a relative path into the base's directory, dropping its empty and
        # dot segments: concatenation is only right when it has none.
        if "//" not in directory and "/./" not in directory and "/../" not in directory:
            self._dir = directory

    def join(self, href: str) -> str | None:
        """The URL `href` names, without its fragment; None unless http(s) with a host."""
        href = href.strip()
        if not href or href[0] == "#":
            return None
        first = href[0]
        if first == "h" and href.startswith(("http://", "https://")):
            match = _ABSOLUTE_LINK.fullmatch(href)
            if match is not None and int(match["port"] or 0) <= 65535:
                return match["url"]
            return _join(self.base, href)
        origin = self._origin
        if origin is None:
            return _join(self.base, href)
        if first == "/":
            if href[1:2] != "/" and (match := _ROOTED_LINK.fullmatch(href)) is not None:
                return origin + match["url"]
        elif first == "?":
            if (match := _QUERY_LINK.fullmatch(href)) is not None:
                return origin + self._path + match["url"]
        elif self._dir and (match := _RELATIVE_LINK.fullmatch(href)) is not None:
            return origin + self._dir + match["url"]
        return _join(self.base, href)


def _join(base: str, href: str) -> str | None:
    """The general case of `Resolver.join`: urljoin, then the checks."""
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None  # javascript:, mailto:, data:, tel:, ...
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    return url.split("#", 1)[0]


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
