"""The links a crawl has already met: a bounded memory shared by the judge and the committer.

Most links on a page are ones the crawl has met before (navigation, pages linked from many
others). Remembering each link's host and key, and which keys the frontier already holds,
makes such a link cost two dictionary lookups instead of canonicalisation, a hash, a NewURL
and an insert the database would ignore.

Forgetting is always safe: a forgotten link is worked out again and the frontier ignores a
key it already has. Each table is cleared when full, which bounds memory.
"""

from __future__ import annotations

import sys

from crawler.hosts import BadURL
from crawler.urls import locate, url_key

MAX_LINKS = 50_000  # links remembered with their host (and key): ~12 MB when full
MAX_KEYS = 500_000  # keys known to be in the frontier (~30 MB when full)


class Seen:
    def __init__(
        self, sort_query: bool = False, max_links: int = MAX_LINKS, max_keys: int = MAX_KEYS
    ) -> None:
        self._sort_query = sort_query
        self._max_links = max_links
        self._max_keys = max_keys
        # link -> (host, key, or its canonical URL until the link is first in scope: the
        # key is only worth its hash for a link that is followed).
        self._links: dict[str, tuple[str, int | str]] = {}
        self._keys: set[int] = set()

    def host(self, url: str) -> tuple[str, int | None]:
        """(host, key or None) of the absolute URL `url`; ValueError when it is not fetchable
        as written (links come from `Joiner` in the form they are fetched in; a sitemap's
        `http://user@host/` or `http://127.1/` is not followed)."""
        found = self._links.get(url)
        if found is None:
            fetched, canonical_url, host = locate(url, self._sort_query)
            if fetched != url:
                raise BadURL(f"fetched as {fetched}")
            if len(self._links) >= self._max_links:
                self._links.clear()
            found = self._links[url] = (sys.intern(host), canonical_url)  # hosts repeat
        host, key = found
        return host, key if isinstance(key, int) else None

    def key(self, url: str) -> int:
        """The frontier key of `url`, a URL `host` has accepted."""
        self.host(url)
        host, key = self._links[url]
        if isinstance(key, str):
            key = url_key(key)
            self._links[url] = (host, key)
        return key

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
