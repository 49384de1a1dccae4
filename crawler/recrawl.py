"""When a finished URL is due again (`crawl.recrawl_after`, `crawl.recrawl_adaptive`).

With a fixed schedule a URL is due `recrawl_after` seconds after its last fetch. With the
adaptive one each URL keeps its own interval, which starts at `recrawl_after`, shrinks by a
fifth when a visit finds the page changed and grows by two fifths when it finds it as before
(a 304, or the same payload digest), within `recrawl_min` and `recrawl_max`: the rates of
Nutch's AdaptiveFetchSchedule, so a page that never changes is asked for less and less often
and one that changes at every visit converges on the shortest interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from crawler.settings import CrawlSettings

__all__ = ["DECREASE", "INCREASE", "Schedule"]

INCREASE = 0.4  # unchanged: the interval grows by this fraction
DECREASE = 0.2  # changed: the interval shrinks by this fraction


@dataclass(frozen=True, slots=True)
class Schedule:
    """The recrawl settings of a crawl (`after` 0: finished URLs are never due again)."""

    after: float = 0.0
    adaptive: bool = False
    low: float = 60.0
    high: float = 30 * 86400.0

    @classmethod
    def of(cls, crawl: CrawlSettings) -> Schedule:
        return cls(
            crawl.recrawl_after, crawl.recrawl_adaptive, crawl.recrawl_min, crawl.recrawl_max
        )

    @property
    def on(self) -> bool:
        return self.after > 0

    def signature(self) -> str:
        """What the frontier keeps to tell that the schedule changed (then it re-times
        every finished URL by the new one)."""
        if not self.on:
            return "off"
        if not self.adaptive:
            return json.dumps({"after": self.after})
        return json.dumps({"after": self.after, "min": self.low, "max": self.high})

    def clamp(self, interval: float) -> float:
        return min(max(interval, self.low), self.high)

    def next(
        self, fetched_at: float, interval: float | None, changed: bool | None
    ) -> tuple[float | None, float | None]:
        """(when the URL is due again, its interval to keep) after a visit at `fetched_at`
        that found it `changed` (None: nothing to compare with, a first visit or a failure),
        its interval so far being `interval` (None: none yet)."""
        if not self.on:
            return None, interval
        if not self.adaptive:
            return fetched_at + self.after, None
        current = self.clamp(self.after if interval is None else interval)
        if changed is True:
            current = self.clamp(current * (1 - DECREASE))
        elif changed is False:
            current = self.clamp(current * (1 + INCREASE))
        return fetched_at + current, current

    def shortest(self) -> float:
        """The soonest a URL finished now can be due again (how often to look)."""
        return self.low if self.adaptive else self.after
