"""Link resolution: the absolute URL each link of a page names, in its fetched form."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from crawler.hosts import DEFAULT_PORTS, fetch_form, is_plain
from crawler.urls import encoded

# Shapes of link that `Joiner` joins by concatenation, each chosen so that urljoin would
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


class Joiner:
    """Absolute http(s) URLs of the links of one page, as `urljoin(base, href)` gives them
    but in the form they are fetched in (`validate`'s, without the userinfo they may have).

    The common shapes of link (absolute, "/rooted", "relative/path", "?query") are joined
    by string concatenation when the base allows it; every other link takes urljoin. The
    URL comes back as browsers request it (`encoded`: `a b.html` as `a%20b.html`, `café`
    as `caf%C3%A9`); `unresolved` counts the http(s) links that name no fetchable URL.
    """

    __slots__ = ("_dir", "_origin", "_path", "base", "unresolved")

    def __init__(self, base: str) -> None:
        self.base = base
        self.unresolved = 0
        self._origin: str | None = None
        self._path = self._dir = ""
        match = _BASE.fullmatch(base)
        if match is None or int(match["port"] or 0) > 65535 or not is_plain(match["host"]):
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
        url = self._join(href)
        return None if url is None else encoded(url)

    def _join(self, href: str) -> str | None:
        href = href.strip()
        if not href or href[0] == "#":
            return None
        first = href[0]
        if first == "h" and href.startswith(("http://", "https://")):
            match = _ABSOLUTE_LINK.fullmatch(href)
            if match is not None and int(match["port"] or 0) <= 65535 and is_plain(match["host"]):
                return match["url"]
            return self._general(href)
        origin = self._origin
        if origin is None:
            return self._general(href)
        if first == "/":
            if href[1:2] != "/" and (match := _ROOTED_LINK.fullmatch(href)) is not None:
                return origin + match["url"]
        elif first == "?":
            if (match := _QUERY_LINK.fullmatch(href)) is not None:
                return origin + self._path + match["url"]
        elif self._dir and (match := _RELATIVE_LINK.fullmatch(href)) is not None:
            return origin + self._dir + match["url"]
        return self._general(href)

    def _general(self, href: str) -> str | None:
        """The general case: urljoin, then the checks and the fetched form."""
        try:
            url = urljoin(self.base, href)
            parts = urlsplit(url)
        except ValueError:
            self.unresolved += 1
            return None
        if parts.scheme not in DEFAULT_PORTS:
            return None  # javascript:, mailto:, data:, tel:, ...
        try:
            if not parts.hostname:
                raise ValueError("no host")
            parts.port  # noqa: B018 - raises on a bad port
            url = fetch_form(url, parts)
        except ValueError:  # BadURL included
            self.unresolved += 1
            return None
        return url.split("#", 1)[0]
