"""Adaptive per-host pace: slower after 429/503 and errors, Retry-After for the whole host.

A host's delay is politeness.delay (or its robots.txt Crawl-delay), doubled for each back-off
level up to politeness.max_delay. A 429 or 503 raises the level by one, a timeout or
connection error by a half; a run of `DECAY_AFTER` good answers lowers it by one. A
Retry-After on 429/503 blocks the whole host until then. The level and the blocked-until
time are saved in the crawl database, so a restart keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

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
