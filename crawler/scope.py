"""Crawl scope: which discovered URLs are followed (host, registrable domain, regexes)."""

from __future__ import annotations

import re

from crawler.domains import registrable
from crawler.settings import CrawlSettings


class Scope:
    """Decides whether a URL found on a page descending from seed host `origin` is followed."""

    def __init__(self, settings: CrawlSettings) -> None:
        self._mode = settings.scope
        self._include = [re.compile(r) for r in settings.include]
        self._exclude = [re.compile(r) for r in settings.exclude]
        self._unfiltered = not (self._include or self._exclude)

    def patterns_allow(self, url: str) -> bool:
        """Only the include/exclude regexes."""
        if self._include and not any(r.search(url) for r in self._include):
            return False
        return not any(r.search(url) for r in self._exclude)

    def allows(self, url: str, host: str, origin: str) -> bool:
        if host != origin:  # a host is always in its own host's (and domain's) scope
            if self._mode == "host":
                return False
            if self._mode == "domain" and registrable(host) != registrable(origin):
                return False
        return self._unfiltered or self.patterns_allow(url)
