"""Crawl scope: which discovered URLs are followed (host, registrable domain, regexes)."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from crawler.settings import CrawlSettings


class Scope:
    """Decides whether a URL found on a page descending from seed host `origin` is followed."""

    def __init__(self, settings: CrawlSettings) -> None:
        self._mode = settings.scope
        self._include = [re.compile(r) for r in settings.include]
        self._exclude = [re.compile(r) for r in settings.exclude]
        psl = PublicSuffixList() if self._mode == "domain" else None

        @lru_cache(maxsize=65536)
        def registrable(host: str) -> str:
            """The registrable domain of a host[:port] key; an IP or a bare name: itself."""
            name = host[1 : host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return (psl.privatesuffix(name) if psl else None) or name
            return name

        self._registrable = registrable

    def patterns_allow(self, url: str) -> bool:
        """Only the include/exclude regexes."""
        if self._include and not any(r.search(url) for r in self._include):
            return False
        return not any(r.search(url) for r in self._exclude)

    def allows(self, url: str, host: str, origin: str) -> bool:
        if self._mode == "host" and host != origin:
            return False
        if self._mode == "domain" and self._registrable(host) != self._registrable(origin):
            return False
        return self.patterns_allow(url)
