"""Registrable domains (public suffix list shipped with publicsuffixlist; no network)."""

from __future__ import annotations

import ipaddress
from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList


@cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # reads its bundled list once, on first use


def hostname(host: str) -> str:
    """The name part of a host[:port] key (an IPv6 literal without its brackets)."""
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0]


@lru_cache(maxsize=65536)
def registrable(host: str) -> str:
    """The registrable domain of a host[:port] key; an IP address or a bare name: itself."""
    name = hostname(host)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return _psl().privatesuffix(name) or name
    return name
