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
from crawler.frontier.values import HostState
from crawler.settings import PolitenessSettings

DECAY_AFTER = 10
SLOWING_STATUSES = frozenset({429, 503})
# Failures with no answer that count towards a host being down (a DNS or TLS failure does
# not mean the server is overloaded: only the others slow the pace down too).
HOST_FAILURES = frozenset(
    {"dns", "connect", "tls", "timeout", "deadline", "connection_reset", "blocked_address"}
)
SLOWING_REASONS = frozenset({"connect", "timeout", "deadline", "connection_reset"})
LEARN_WAIT = 1.0  # seconds a claim waits for the addresses of its new hosts (key "ip")
_LATENCY_WEIGHT = 0.2  # exponential moving average of response times


@dataclass(slots=True, frozen=True, kw_only=True)
class HealthLimits:
    """When a host is given up (retry.host_max_failures, host_down_seconds, max_wait)."""

    max_failures: int = 5
    down_seconds: float = 3600.0
    max_wait: float = 300.0


class Pace:
    """The pace and health of one host."""

    def __init__(
        self,
        host: str,
        settings: PolitenessSettings,
        state: HostState | None,
        max_block: float | None = None,
        health: HealthLimits | None = None,
    ) -> None:
        self.host = host
        self._settings = settings
        self._max_block = settings.max_retry_after if max_block is None else max_block
        self._health = health or HealthLimits()
        self.level = state.level if state else 0.0
        self.blocked_until = state.blocked_until if state else 0.0
        self.failures = state.failures if state else 0
        self.down_until = state.down_until if state else 0.0
        self.down_reason = state.down_reason if state else None
        self.crawl_delay = 0.0
        self.operator_delay: float | None = None  # set from the console: replaces the configured
        self.latency = 0.0
        self._streak = 0
        self.dirty = False

    def delay(self) -> float:
        configured = self._settings.delay if self.operator_delay is None else self.operator_delay
        base = max(configured, self.crawl_delay)
        if self.level > 0:
            base = min(self._settings.max_delay, max(base, 1.0) * 2**self.level)
        if self._settings.latency_factor > 0:
            base = max(base, self._settings.latency_factor * self.latency)
        return base

    def delay_source(self) -> str:
        """What sets `delay()` now: the back-off, the response times (latency_factor), a
        robots.txt Crawl-delay, the operator, or the configuration (politeness or profile)."""
        configured = self._settings.delay if self.operator_delay is None else self.operator_delay
        if self.level > 0:
            return "back-off"
        if self._settings.latency_factor > 0 and (
            self._settings.latency_factor * self.latency > max(configured, self.crawl_delay)
        ):
            return "latency"
        if self.crawl_delay > configured:
            return "crawl-delay"
        return "configured" if self.operator_delay is None else "operator"

    def state(self) -> HostState:
        self.dirty = False
        return HostState(
            self.host,
            self.level,
            self.blocked_until,
            self.failures,
            self.down_until,
            self.down_reason,
        )

    def given_up(self, now: float) -> str | None:
        """The reason its URLs fail without a request (down, or blocked too long), if so."""
        return self.down_reason if self.down_until > now else None

    def _slower(self, step: float) -> None:
        self.level = min(self.level + step, 16.0)
        self._streak = 0
        self.dirty = True

    def _give_up(self, reason: str, until: float) -> None:
        self.down_reason = reason
        self.down_until = max(self.down_until, until)
        self.dirty = True

    def on_response(
        self, status: int, retry_after: float | None, elapsed: float, now: float
    ) -> None:
        """A response arrived `elapsed` seconds after its request; `now` is wall-clock time."""
        self.latency = (1 - _LATENCY_WEIGHT) * self.latency + _LATENCY_WEIGHT * elapsed
        if self.failures or self.down_until:  # it answers: whatever was wrong is over
            self.failures = 0
            self.down_until = 0.0
            self.down_reason = None
            self.dirty = True
        if status in SLOWING_STATUSES:
            self._slower(1.0)
            if retry_after is not None:
                wait = min(retry_after, self._max_block)
                self.blocked_until = max(self.blocked_until, now + wait)
                if retry_after > self._health.max_wait:  # nobody waits that long for it
                    self._give_up(f"http_{status}", now + wait)
            return
        if status >= 500:
            self._slower(0.5)
            return
        self._streak += 1
        if self._streak >= DECAY_AFTER and self.level > 0:
            self.level = max(0.0, self.level - 1.0)
            self._streak = 0
            self.dirty = True

    def on_failure(self, reason: str, now: float, hold: float) -> None:
        """No answer at all (`reason`: dns, connect, timeout, ...): the next probe waits
        `hold` seconds; after `max_failures` in a row the host is down. An address the
        guard refuses is down at once."""
        if reason in SLOWING_REASONS:
            self._slower(0.5)
        self.failures += 1
        self.dirty = True
        if reason == "blocked_address" or self.failures >= self._health.max_failures:
            self._give_up(reason, now + self._health.down_seconds)
        else:
            self.blocked_until = max(self.blocked_until, now + hold)


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
        """Resolve the hosts not yet known (mode `ip` only), all at once, for LEARN_WAIT
        seconds at most: a claim waits for this, and a name whose DNS never answers must
        hold up neither the other lookups nor the hand-out. A host not resolved by then
        keeps its own budget while its slot lives (its fetch will meet the DNS error)."""
        if self._mode != "ip":
            return
        todo = [h for h in dict.fromkeys(hosts) if h not in self._known]

        async def resolve(host: str) -> None:
            self._known[host] = await self._address(host)

        with anyio.move_on_after(LEARN_WAIT):
            async with anyio.create_task_group() as tg:
                for host in todo:
                    tg.start_soon(resolve, host)
        for host in todo:
            self._known.setdefault(host, host)

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
