"""URL validation, canonicalisation (w3lib) and the 64-bit de-duplication key.

A URL enters the frontier in the form it is fetched in: its host as browsers read it (an
IPv4 address in any numeric spelling the WHATWG URL standard accepts, `0177.0.0.1`,
`0x7f.1`, `2130706433`, `127.1`, as its dotted quad), so the address the guard judges is
the address the HTTP client connects to; and without userinfo, which is never sent or
stored (a seed with userinfo is refused: credentials belong in a profile). A host the HTTP
client refuses (invalid IDNA, a bad IPv4 address) is refused here, before it is queued.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import idna
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
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")  # as serialised
_NUMBER = {10: re.compile("[0-9]+"), 16: re.compile("[0-9A-Fa-f]+"), 8: re.compile("[0-7]+")}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# The start of a URL up to its authority, then the authority's userinfo (to its last "@").
_USERINFO = re.compile(r"([^/?#]*?//)[^/?#]*@")

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
    rf"(?P<url>https?://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?:/[^\x00-\x20\x7f#?;]*)?"
    rf"{_QUERY}){_FRAGMENT}",
    re.S,
)
_ROOTED_LINK = re.compile(rf"(?P<url>(?:/{_SEG})+{_QUERY}){_FRAGMENT}", re.S)  # not "//"
_RELATIVE_LINK = re.compile(  # no ":" before the first "/" (it would be a scheme), no "//"
    rf"(?P<url>(?!\.)[^\x00-\x20\x7f#?;/:]+(?:/(?!\.){_P}+)*/?{_QUERY}){_FRAGMENT}", re.S
)
_QUERY_LINK = re.compile(rf"(?P<url>\?[^\x00-\x20\x7f#]+){_FRAGMENT}", re.S)
_BASE = re.compile(
    r"(?P<origin>https?://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?)"
    r"(?P<path>/[^\x00-\x20\x7f#?;]*)?(?:[?#].*)?",
    re.S,
)


class BadURL(ValueError):
    """The text is not a URL the crawler can fetch; str(exc) says why."""


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
    return _fetch_form(text, parts)


def without_userinfo(url: str) -> str:
    """`url` without the userinfo of its authority (`user:pw@`), which is never sent or stored.

    For links and redirect targets, which are followed without it. Text, not a parse: it
    never raises, so even a target that is not followed is recorded without it."""
    if "@" not in url:
        return url
    match = _USERINFO.match(url)
    return url if match is None else url[: match.end(1)] + url[match.end() :]


def _fetch_form(url: str, parts: SplitResult) -> str:
    """`url` (split into `parts`, with a host) as it is fetched: no userinfo, its host as the
    HTTP client reads it. BadURL when the client would refuse the host."""
    hostname = parts.hostname or ""
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        # urlsplit lets [v1.x] (IPvFuture) and [::1]junk through; the client does not
        if ":" not in hostname or hostport[hostport.find("]") + 1 :][:1] not in ("", ":"):
            raise BadURL(f"{hostport!r} is not an IPv6 address with an optional port")
    elif (host := _host(hostname)) != hostname:
        _, colon, port = hostport.partition(":")
        hostport = host + colon + port  # the port as written
    elif "@" not in parts.netloc:
        return url
    return _with_netloc(url, parts, hostport)


def _with_netloc(url: str, parts: SplitResult, netloc: str) -> str:
    """`url` with another authority, every other character as written."""
    start = len(parts.scheme) + 3  # "http://"
    if url[start : start + len(parts.netloc)] != parts.netloc:  # urlsplit dropped some \t\n
        return urlunsplit(parts._replace(netloc=netloc))
    return url[:start] + netloc + url[start + len(parts.netloc) :]


def _host(hostname: str) -> str:
    """A host name (lower-case, as urlsplit gives it) as the HTTP client reads it.

    An IPv4 address in any spelling the WHATWG URL standard accepts becomes its dotted quad
    (a host whose last label is a number is an IPv4 address or invalid); any other host is
    kept as written. BadURL for what the client refuses: a bad IPv4 address, a name that is
    not valid IDNA 2008 (the client encodes non-ASCII names with `idna.encode`).
    """
    if ":" in hostname or _DOTTED_QUAD.fullmatch(hostname):
        return hostname  # IPv6 (urlsplit checked it) or already a dotted quad
    name = hostname
    try:
        if not hostname.isascii():
            name = idna.encode(hostname).decode("ascii")
        elif "xn--" in hostname:  # an A-label must decode, as its U-label must encode
            for label in hostname.split("."):
                if label.startswith("xn--"):
                    idna.decode(label)
    except UnicodeError as exc:  # idna.IDNAError included
        raise BadURL(f"host {hostname[:100]!r} is not valid IDNA: {exc}") from None
    return _ipv4(name) if _ends_in_number(name) else hostname


def _ends_in_number(host: str) -> bool:
    """The WHATWG "ends in a number checker": is the last label (a final "." aside) a number?"""
    labels = host.split(".")
    if labels[-1] == "":
        if len(labels) == 1:
            return False
        labels.pop()
    last = labels[-1]
    return (last.isascii() and last.isdigit()) or _number(last) is not None


def _number(text: str) -> int | None:
    """The WHATWG "IPv4 number parser": `0x` hexadecimal, `0` octal, else decimal; None when
    `text` is none of them."""
    if not text:
        return None
    radix = 10
    if text[:2] in ("0x", "0X"):
        text, radix = text[2:], 16
    elif len(text) > 1 and text[0] == "0":
        text, radix = text[1:], 8
    if not text:
        return 0  # "0x" is 0
    if _NUMBER[radix].fullmatch(text) is None:
        return None
    digits = text.lstrip("0") or "0"
    return int(digits, radix) if len(digits) <= 16 else 1 << 64  # out of range either way


def _ipv4(host: str) -> str:
    """The WHATWG "IPv4 parser" for a host that ends in a number: its dotted quad, or BadURL.

    One to four parts, each decimal, octal (`0177`) or hexadecimal (`0x7f`); the last part
    fills the bytes the others leave (`127.1` is 127.0.0.1, `2130706433` is 127.0.0.1)."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    numbers: list[int] = []
    for label in labels[:5]:
        number = _number(label)
        if number is None:
            break
        numbers.append(number)
    last = numbers[-1] if numbers else 0
    if (
        len(numbers) != len(labels)
        or len(numbers) > 4
        or any(n > 255 for n in numbers[:-1])
        or last >= 256 ** (5 - len(numbers))
    ):
        raise BadURL(f"host {host[:100]!r} ends in a number but is not an IPv4 address")
    for index, number in enumerate(numbers[:-1]):
        last += number << (8 * (3 - index))
    return str(ipaddress.IPv4Address(last))


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
    host = _host((parts.hostname or "").lower()).removesuffix(".")
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
    if (host[host.rfind(".") + 1] <= "9" and not _DOTTED_QUAD.fullmatch(host)) or "xn--" in host:
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


def _plain(host: str) -> bool:
    """Whether `host` (ASCII letters, digits, "." and "-") is not an IPv4 address spelt
    otherwise than as a dotted quad: the fast paths' test, exact when the last label does
    not start with a digit (only then can it be a number)."""
    start = host.rfind(".", 0, len(host) - 1) + 1  # a final "." belongs to the last label
    return not host[start : start + 1].isdigit() or _DOTTED_QUAD.fullmatch(host) is not None


def identify(text: str, sort_query: bool = False) -> tuple[int, str]:
    """Validate `text` and return the (key, host) of the URL fetched for it."""
    _, canonical_url, host = locate(text, sort_query)
    return url_key(canonical_url), host


def locate(text: str, sort_query: bool = False) -> tuple[str, str, str]:
    """Validate `text` and return (URL to fetch, canonical URL, host): the one call on the
    seeding hot path, and `identify` before the key, for a caller that may drop the URL by
    its host (scope) without paying for its key. The URL to fetch is `validate`'s."""
    match = _fast(text)
    if match is not None:
        port = match.group("port")
        host = match.group("host") if port is None else f"{match.group('host')}:{port}"
        return text, _fast_canonical(text, match, sort_query), host
    url = validate(text)
    return url, canonical(url, sort_query), host_of(url)


class Resolver:
    """Absolute http(s) URLs of the links of one page, as `urljoin(base, href)` gives them
    but in the form they are fetched in (`validate`'s, without the userinfo they may have).

    The common shapes of link (absolute, "/rooted", "relative/path", "?query") are joined
    by string concatenation when the base allows it; every other link takes urljoin.
    """

    __slots__ = ("_dir", "_origin", "_path", "base")

    def __init__(self, base: str) -> None:
        self.base = base
        self._origin: str | None = None
        self._path = self._dir = ""
        match = _BASE.fullmatch(base)
        if match is None or int(match["port"] or 0) > 65535 or not _plain(match["host"]):
            return  # userinfo, IPv6, odd characters, bad port, 127.1: urljoin for every link
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
            if match is not None and int(match["port"] or 0) <= 65535 and _plain(match["host"]):
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
    """The general case of `Resolver.join`: urljoin, then the checks and the fetched form."""
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None  # javascript:, mailto:, data:, tel:, ...
    try:
        parts.port  # noqa: B018 - raises on a bad port
        url = _fetch_form(url, parts)
    except ValueError:  # BadURL included
        return None
    return url.split("#", 1)[0]


def url_key(canonical_url: str) -> int:
    """A signed 64-bit hash of the canonical URL: the frontier's primary key."""
    digest = hashlib.blake2b(canonical_url.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def host_of(url: str) -> str:
    """The politeness key of a URL: lower-case host (an IPv4 address as its dotted quad), with
    the port when not the default."""
    parts = urlsplit(url)
    host = _host(parts.hostname or "").removesuffix(".")  # example.com. is example.com
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host
