"""URL validation, canonicalisation (w3lib) and the 64-bit de-duplication key.

A URL enters the frontier in the form it is fetched in: its host as browsers read it (an
IPv4 address in any numeric spelling the WHATWG URL standard accepts, `0177.0.0.1`,
`0x7f.1`, `2130706433`, `127.1`, as its dotted quad), so the address the guard judges is
the address the HTTP client connects to; and without userinfo, which is never sent or
stored (a seed with userinfo is refused: credentials belong in a profile). A host the HTTP
client refuses (invalid IDNA, a bad IPv4 address) is refused here, before it is queued.
The host is read by hosts.py (which defines `BadURL`); links are joined by joiner.py.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, urlsplit, urlunsplit

from w3lib.url import safe_url_string

from crawler.hosts import DEFAULT_PORTS, DOTTED_QUAD, BadURL, ascii_host, client_host, fetch_form

MAX_URL_LENGTH = 8 * 1024

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
# The start of a URL up to its authority, then the authority's userinfo (to its last "@").
_USERINFO = re.compile(r"([^/?#]*?//)[^/?#]*@")


# A character a URI may not hold as written (RFC 3986: outside unreserved, reserved and
# "%"), or a "%" that starts no escape; controls and DEL are left for `validate` to refuse.
_NOT_URI = re.compile(r"[^\x00-\x1f\x7fA-Za-z0-9\-._~:/?#@!$&'()*+,;=%]|%(?![0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"  # refused by validate, not escaped
_PATH_SAFE = "/:@!$&'()*+,;=%~" + _CONTROLS
_QUERY_SAFE = _PATH_SAFE + "?/"


def encoded(text: str) -> str:
    """`text` as a URI (RFC 3986): each character a URI may not hold (a space, `|`, `"`,
    `[` outside the host, non-ASCII...) percent-encoded as UTF-8, in the path, query and
    fragment, and a non-ASCII host name as its IDNA A-label; escapes already there are kept.
    What browsers send for a link `café.html` or `a b.html` (`caf%C3%A9.html`, `a%20b.html`),
    and what a WARC-Target-URI must be. Text that needs none of this comes back as it is."""
    if _NOT_URI.search(text) is None:
        return text
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:
        return text  # validate says why
    netloc = parts.netloc
    if hostname and not hostname.isascii():
        try:
            host = ascii_host(hostname)
        except UnicodeError:
            return text  # validate refuses the host
        userinfo, at, hostport = netloc.rpartition("@")
        port = hostport[hostport.rfind(":") :] if parts.port is not None else ""
        netloc = f"{userinfo}{at}{host}{port}"

    def escape(part: str, safe: str) -> str:
        return quote(_STRAY_PERCENT.sub("%25", part), safe=safe)

    return urlunsplit(
        (
            parts.scheme,
            netloc,
            escape(parts.path, _PATH_SAFE),
            escape(parts.query, _QUERY_SAFE),
            escape(parts.fragment, _QUERY_SAFE),
        )
    )


def _normalise_escape(match: re.Match[str]) -> str:
    byte = int(match.group(1), 16)
    return chr(byte) if byte in _UNRESERVED else "%" + match.group(1).upper()


def validate(text: str) -> str:
    """Return the URL to fetch for `text`, or raise BadURL with a short reason.

    That is `text` itself, unless its host is an IPv4 address spelt otherwise than as a
    dotted quad: then the same URL with the dotted quad (`http://0x7f.1:8080/a#b` gives
    `http://127.0.0.1:8080/a#b`). A URL with userinfo is refused: it is never sent.
    """
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
    if "@" in parts.netloc:
        raise BadURL("userinfo in the URL: credentials belong in a profile")
    return fetch_form(text, parts)


def without_userinfo(url: str) -> str:
    """`url` without the userinfo of its authority (`user:pw@`), which is never sent or stored.

    For links and redirect targets, which are followed without it. Text, not a parse: it
    never raises, so even a target that is not followed is recorded without it."""
    if "@" not in url:
        return url
    match = _USERINFO.match(url)
    return url if match is None else url[: match.end(1)] + url[match.end() :]


def canonical(url: str, sort_query: bool = False) -> str:
    """The form used for de-duplication; the URL fetched is the one `validate` gives.

    Lower-case scheme and host (an IPv4 address as its dotted quad), default port, userinfo
    and fragment dropped, empty path made "/",
    percent-encoding normalised (unreserved characters decoded, escapes upper-cased),
    unsafe characters escaped by w3lib; the query keeps its order unless `sort_query`.
    """
    match = _fast(url)
    if match is not None:
        return _fast_canonical(url, match, sort_query)
    safe = safe_url_string(url)
    parts = urlsplit(safe)
    scheme = parts.scheme.lower()
    host = client_host((parts.hostname or "").lower()).removesuffix(".")
    if ":" in host:
        host = f"[{host}]"
    netloc = host
    if parts.port is not None and parts.port != DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{parts.port}"
    path = _ESCAPE.sub(_normalise_escape, parts.path) or "/"
    query = _ESCAPE.sub(_normalise_escape, parts.query)
    if sort_query:
        query = _sorted_query(query)
    return urlunsplit((scheme, netloc, path, query, ""))


def _sorted_query(query: str) -> str:
    """`b=2&a=1` and `a=1&b=2` are one URL (each pair is kept as written, duplicates too)."""
    return "&".join(sorted(query.split("&"))) if "&" in query else query


def _fast(url: str) -> re.Match[str] | None:
    """A match when `url` is already canonical (a default port written out is not) and
    fetched as written (its host is no IPv4 address in another spelling, no A-label)."""
    match = _CANONICAL.fullmatch(url)
    if match is None or len(url) > MAX_URL_LENGTH:  # ASCII only: characters = bytes
        return None
    host = match["host"]  # below: a last label that starts with a digit may be a number
    if (host[host.rfind(".") + 1] <= "9" and not DOTTED_QUAD.fullmatch(host)) or "xn--" in host:
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
    """Validate `text` and return the (key, host) of the URL fetched for it."""
    _, canonical_url, host = locate(text, sort_query)
    return url_key(canonical_url), host


def locate(text: str, sort_query: bool = False) -> tuple[str, str, str]:
    """Validate `text` and return (URL to fetch, canonical URL, host): the one call on the
    seeding hot path, and `identify` before the key, for a caller that may drop the URL by
    its host (scope) without paying for its key. Every URL enters the frontier through
    here (seeds, links, redirects, sitemaps): the URL to fetch is `validate`'s of its
    `encoded` form, one form however the URL was written."""
    match = _fast(text)
    if match is not None:
        port = match.group("port")
        host = match.group("host") if port is None else f"{match.group('host')}:{port}"
        return text, _fast_canonical(text, match, sort_query), host
    url = validate(encoded(text))
    return url, canonical(url, sort_query), host_of(url)


def url_key(canonical_url: str) -> int:
    """A signed 64-bit hash of the canonical URL: the frontier's primary key."""
    digest = hashlib.blake2b(canonical_url.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def host_of(url: str) -> str:
    """The politeness key of a URL: lower-case host (an IPv4 address as its dotted quad), with
    the port when not the default."""
    parts = urlsplit(url)
    host = client_host(parts.hostname or "").removesuffix(".")  # example.com. is example.com
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host
