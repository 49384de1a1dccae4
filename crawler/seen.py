"""The links a crawl has already met: a bounded memory shared by the workers and the writer.

Most links on a page are ones the crawl has met before (navigation, pages linked from many
others). Remembering each link's host and key, and which keys the frontier already holds,
makes such a link cost two dictionary lookups instead of canonicalisation, a hash, a NewURL
and an insert the database would ignore.

Forgetting is always safe: a forgotten link is worked out again and the frontier ignores a
key it already has. Each table is cleared when full, which bounds memory.
"""

from __future__ import annotations

import sys

from crawler.urls import canonical, locate, url_key

MAX_LINKS = 50_000  # links remembered with their host (and key): ~12 MB when full
MAX_KEYS = 500_000  # keys known to be in the frontier (~30 MB when full)


class Seen:
    def __init__(
        self, sort_query: bool = False, max_links: int = MAX_LINKS, max_keys: int = MAX_KEYS
    ) -> None:
        self._sort_query = sort_query
        self._max_links = max_links
        self._max_keys = max_keys
        # link -> (host, key); the key is None until the link is first in scope somewhere.
        self._links: dict[str, tuple[str, int | None]] = {}
        self._keys: set[int] = set()

    def host(self, url: str) -> tuple[str, int | None]:
        """(host, key or None) of the absolute URL `url`; ValueError when it is not fetchable."""
        found = self._links.get(url)
        if found is None:
            found = (sys.intern(locate(url, self._sort_query)[1]), None)  # hosts repeat
            self._remember(url, found)
        return found

    def key(self, url: str) -> int:
        """The frontier key of `url`, a URL `host` has accepted."""
        host, key = self.host(url)
        if key is None:
            key = url_key(canonical(url, self._sort_query))
            self._links[url] = (host, key)  # host() has just made room for it
        return key

    def _remember(self, url: str, found: tuple[str, int | None]) -> None:
        if len(self._links) >= self._max_links:
            self._links.clear()
        self._links[url] = found

    def stored(self, key: int) -> bool:
        """Whether `key` is in the frontier, or in a batch on its way there."""
        return key in self._keys

    def store(self, key: int) -> bool:
        """Note that `key` goes into the frontier; False when it was known to be there."""
        keys = self._keys
        if key in keys:
            return False
        if len(keys) >= self._max_keys:
            keys.clear()
        keys.add(key)
        return True
