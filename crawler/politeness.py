"""Adaptive per-host pace: slower after 429/503 and errors, Retry-After for the whole host.

A host's delay is politeness.delay (or its robots.txt Crawl-delay), doubled for each back-off
level up to politeness.max_delay. A 429 or 503 raises the level by one, a timeout or
connection error by a half; a run of `DECAY_AFTER` good answers lowers it by one. A
Retry-After on 429/503 blocks the whole host until then. The level and the blocked-until
time are saved in the crawl database, so a restart keeps them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import anyio

from crawler.dns import Resolver
from crawler.domains import hostname, registrable
from crawler.errors import DnsError
from crawler.settings import PolitenessSettings

DECAY_AFTER = 10
SLOWING_STATUSES = frozenset({429, 503})
_LATENCY_WEIGHT = 0.2  # exponential moving average of response times


@dataclass(slots=True, frozen=True)
class HostState:
    """What is saved of a host's pace (blocked_until is wall-clock time)."""

    host: str
    level: float
    blocked_until: float


class Pace:
    """The pace of one host."""

    def __init__(
        self,
        host: str,
        settings: PolitenessSettings,
        state: HostState | None,
        max_block: float | None = None,
    ) -> None:
        self.host = host
        self._settings = settings
        self._max_block = settings.max_retry_after if max_block is None else max_block
        self.level = state.level if state else 0.0
        self.blocked_until = state.blocked_until if state else 0.0
        self.crawl_delay = 0.0
        self.latency = 0.0
        self._streak = 0
        self.dirty = False

    def delay(self) -> float:
        base = max(self._settings.delay, self.crawl_delay)
        if self.level > 0:
            base = min(self._settings.max_delay, max(base, 1.0) * 2**self.level)
        if self._settings.latency_factor > 0:
            base = max(base, self._settings.latency_factor * self.latency)
        return base

    def state(self) -> HostState:
        self.dirty = False
        return HostState(self.host, self.level, self.blocked_until)

    def _slower(self, step: float) -> None:
        self.level = min(self.level + step, 16.0)
        self._streak = 0
        self.dirty = True

    def on_response(
        self, status: int, retry_after: float | None, elapsed: float, now: float
    ) -> None:
        """A response arrived `elapsed` seconds after its request; `now` is wall-clock time."""
        self.latency = (1 - _LATENCY_WEIGHT) * self.latency + _LATENCY_WEIGHT * elapsed
        if status in SLOWING_STATUSES:
            self._slower(1.0)
            if retry_after is not None:
                wait = min(retry_after, self._max_block)
                self.blocked_until = max(self.blocked_until, now + wait)
            return
        if status >= 500:
            self._slower(0.5)
            return
        self._streak += 1
        if self._streak >= DECAY_AFTER and self.level > 0:
            self.level = max(0.0, self.level - 1.0)
            self._streak = 0
            self.dirty = True

    def on_error(self) -> None:
        """A timeout or connection error: slow down, more gently than for a 429."""
        self._slower(0.5)


class BudgetKeys:
    """Which politeness budget a host[:port] draws on (`politeness.key`).

    `host`: its own. `domain`: one per registrable domain. `ip`: one per server address
    (the first address DNS gives), so many names on one server share one budget; a name
    that does not resolve keeps its own budget (its fetch will fail with the DNS error).
    """

    def __init__(self, mode: str, resolver: Resolver | None = None) -> None:
        self._mode = mode
        self._resolver = resolver or Resolver()
        self._known: dict[str, str] = {}

    def of(self, host: str) -> str:
        if self._mode == "host":
            return host
        if self._mode == "domain":
            return registrable(host)
        return self._known.get(host, host)

    async def learn(self, hosts: Iterable[str]) -> None:
        """Resolve the hosts not yet known (mode `ip` only), all at once: the lookups are
        asynchronous, and one that never answers must not hold up the others."""
        if self._mode != "ip":
            return
        todo = [h for h in dict.fromkeys(hosts) if h not in self._known]

        async def resolve(host: str) -> None:
            self._known[host] = await self._address(host)

        async with anyio.create_task_group() as tg:
            for host in todo:
                tg.start_soon(resolve, host)

    async def _address(self, host: str) -> str:
        try:
            return (await self._resolver.resolve(hostname(host)))[0]
        except DnsError:
            return host

    def forget(self, keys: Collection[str]) -> None:
        """Drop what is known of hosts whose budget `keys` were evicted (DNS may change)."""
        if self._known and keys:
            for host in [h for h, k in self._known.items() if k in keys or h in keys]:
                del self._known[host]
