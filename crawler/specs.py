"""Fetch profile specs: the values a `[[profile]]` table becomes, and the profile a URL uses."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class AuthSpec:
    type: str
    username: str = ""
    token_url: str = ""
    client_id: str = ""
    scope: str = ""
    secret: str = field(default="", repr=False)  # password, token or client secret


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """What needs a client of its own: profiles equal in these share one."""

    proxy: str = ""
    verify: bool = True
    ca_bundle: str = ""
    client_cert: str = ""
    client_key: str = ""
    key_password: str = field(default="", repr=False, compare=True)


@dataclass(frozen=True, slots=True)
class Profile:
    index: int
    name: str
    hosts: tuple[str, ...] = ()
    url_regex: re.Pattern[str] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str = ""
    auth: AuthSpec | None = None
    transport: TransportSpec = field(default_factory=TransportSpec)
    cookies: bool = False
    timeouts: tuple[tuple[str, float], ...] = ()
    delay: float | None = None
    per_host_concurrency: int | None = None

    @property
    def label(self) -> str:
        return self.name or f"profile[{self.index}]"

    def timeout(self, name: str) -> float | None:
        return dict(self.timeouts).get(name)

    def matches_host(self, host: str) -> bool:
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif host == pattern:
                return True
        return False


class Profiles:
    """The configured profiles, in order."""

    def __init__(self, profiles: Sequence[Profile] = ()) -> None:
        self.all = tuple(profiles)
        self._by_host: dict[str, Profile | None] = {}

    def __bool__(self) -> bool:
        return bool(self.all)

    def match(self, url: str) -> Profile | None:
        """The first profile matching `url`, or None."""
        if not self.all:
            return None
        host = (urlsplit(url).hostname or "").lower().removesuffix(".")
        for profile in self.all:
            if profile.url_regex is not None:
                if profile.url_regex.search(url):
                    return profile
            elif profile.matches_host(host):
                return profile
        return None

    def for_host(self, host: str) -> Profile | None:
        """The first hosts-profile matching a host[:port] (politeness overrides use this)."""
        if host not in self._by_host:
            name = host[1 : host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
            found = [p for p in self.all if p.url_regex is None and p.matches_host(name)]
            if len(self._by_host) > 100_000:
                self._by_host.clear()
            self._by_host[host] = found[0] if found else None
        return self._by_host[host]
