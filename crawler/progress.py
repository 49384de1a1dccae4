"""Progress of a running crawl: totals kept up to date from commits, rates, a summary line
every `log.summary_seconds`, and a live bar on a terminal (rich).

The totals start from one count of the frontier and then move with each commit and each
batch of seeds added, so nothing here scans the database while the crawl runs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from crawler.frontier.values import Counts
from crawler.models import Outcome

RATE_WINDOW = 60.0  # seconds over which rates are averaged

log = structlog.get_logger("crawler.progress")


class Tally:
    """URL totals by state, moved by commits; rates over the last RATE_WINDOW seconds."""

    def __init__(self, counts: Counts, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.total = counts.total
        self.states = dict(counts.states)
        self.retries = 0
        self.bytes = 0
        self._events: deque[tuple[float, int, int]] = deque()  # (time, finished, bytes)

    def committed(self, batch: list[Outcome], added: int) -> None:
        finished = 0
        size = 0
        for outcome in batch:
            if outcome.response is not None:
                size += outcome.response.wire_bytes
            if outcome.final:
                finished += 1
                self.states["queued"] -= 1
                self.states[outcome.state.value] += 1
            else:
                self.retries += 1
        self.bytes += size
        self.seeded(added)
        now = self._clock()
        self._events.append((now, finished, size))
        while self._events and self._events[0][0] < now - RATE_WINDOW:
            self._events.popleft()

    def recount(self, counts: Counts) -> None:
        """Take the totals from a new count (finished URLs were queued again: a recrawl)."""
        self.total = counts.total
        self.states = dict(counts.states)

    def seeded(self, added: int) -> None:
        self.total += added
        self.states["queued"] += added

    @property
    def finished(self) -> int:
        return self.total - self.states["queued"] - self.states.get("leased", 0)

    def rates(self) -> dict[str, float]:
        """Pages finished and bytes received per second, over the last minute."""
        now = self._clock()
        recent = [e for e in self._events if e[0] >= now - RATE_WINDOW]
        if not recent:
            return {"pages_per_second": 0.0, "bytes_per_second": 0.0}
        span = max(1.0, now - recent[0][0]) if len(recent) > 1 else RATE_WINDOW
        return {
            "pages_per_second": round(sum(e[1] for e in recent) / span, 2),
            "bytes_per_second": round(sum(e[2] for e in recent) / span, 1),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.states.get("done", 0),
            "failed": self.states.get("failed", 0),
            "skipped": self.states.get("skipped", 0),
            "queued": self.states.get("queued", 0) + self.states.get("leased", 0),
            "retries": self.retries,
            **self.rates(),
        }


async def log_summaries(tally: Tally, every: float) -> None:
    """One `progress` log line every `every` seconds (0: never)."""
    if every <= 0:
        return
    while True:
        await anyio.sleep(every)
        log.info("progress", **tally.summary())


async def show_bar(tally: Tally, console: Console | None = None) -> None:
    """A live bar (done / total known, rate, failures, ETA) until cancelled."""
    columns = (
        TextColumn("[bold]crawl"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f} pages/s  failed {task.fields[failed]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("crawl", total=tally.total, rate=0.0, failed=0)
        while True:
            bar.update(
                task,
                total=tally.total,
                completed=tally.finished,
                rate=tally.rates()["pages_per_second"],
                failed=tally.states.get("failed", 0),
            )
            await anyio.sleep(0.5)
