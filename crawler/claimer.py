"""Claimer: fills the host queue from the frontier and gives back URLs that cannot start soon.

A claim takes a batch when the buffers run low, at most `cap` per host and no more than the
room each active host has left. A claimed URL whose host must wait beyond the lookahead goes
back to the frontier until then, and one over its host's cap for a lookahead. When a claim
finds nothing (or storage is full), the next waits an idle poll, or until the frontier's
next URL falls due.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from crawler.errors import OutOfSpace
from crawler.frontier import Frontier
from crawler.hostqueue import LOOKAHEAD, HostQueue, HostSlot
from crawler.models import Entry
from crawler.settings import FrontierSettings

IDLE_POLL = 1.0  # longest sleep when nothing is claimable (new seeds may arrive)

# Its warnings are the scheduler's, as before the claimer was split out of it.
log = structlog.get_logger("crawler.scheduler")


class Claimer:
    """Moves URLs between the frontier and the host queue (one task: the scheduler's)."""

    def __init__(
        self,
        frontier: Frontier,
        settings: FrontierSettings,
        hosts: HostQueue,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._frontier = frontier
        self._settings = settings
        self._hosts = hosts
        self._clock = clock
        self._wall = wall
        self._claim_after = 0.0

    def claim_now(self) -> None:
        """Deferrals or new URLs may be claimable: claim at the next refill."""
        self._claim_after = 0.0

    async def refill(self) -> None:
        """Give back what waits; claim a batch if the buffers run low and a claim is due."""
        await self._release_waiting()
        now = self._clock()
        if self._hosts.buffered >= self._settings.claim_batch or now < self._claim_after:
            return
        wall = self._wall()
        entries = await self._claim(now, wall)
        if not entries:
            return
        await self._place(entries, now, wall)
        await self._release_waiting()

    async def _claim(self, now: float, wall: float) -> list[Entry]:
        """A batch of URLs; none, and the next claim an idle poll later, if there is none."""
        try:
            entries = await self._frontier.claim(
                self._settings.claim_batch,
                wall,
                wall + self._settings.lease_seconds,
                per_host=self._hosts.cap,
                room=self._hosts.room(),
            )
        except OutOfSpace as exc:  # the committer reports it; claim again a little later
            log.warning("claim_failed", error=str(exc))
            self._claim_after = now + IDLE_POLL
            return []
        if not entries:
            self._claim_after = now + IDLE_POLL
        return entries

    async def _place(self, entries: list[Entry], now: float, wall: float) -> None:
        """Buffer each claimed URL in its host's slot, unless its host must wait long (it
        goes back until then) or its buffer is full (back for a lookahead)."""
        hosts = self._hosts
        await hosts.learn(e.host for e in entries)
        budgets = hosts.budgets(entries)
        new = hosts.unknown(budgets)
        saved = await self._frontier.host_states(list(new)) if new else {}
        overflow: list[tuple[Entry, str, HostSlot]] = []
        for entry, budget in zip(entries, budgets, strict=True):
            slot = hosts.open(budget, entry.host, saved.get(budget))
            if hosts.waits_long(slot):
                ready = wall + slot.next_start - now
                hosts.given_back.append((ready, [entry]))
            elif len(slot.queue) >= hosts.cap and slot.pace.given_up(wall) is None:
                overflow.append((entry, budget, slot))
            else:
                hosts.buffer(entry, budget, slot)
        if overflow:
            try:
                await self._frontier.release(
                    [entry for entry, _, _ in overflow], not_before=wall + LOOKAHEAD
                )
            except OutOfSpace:  # keep them buffered instead: over the cap, never lost
                for entry, budget, slot in overflow:
                    hosts.buffer(entry, budget, slot)

    async def _release_waiting(self) -> None:
        """Give URLs of hosts that must wait long back to the frontier, until then."""
        given_back = self._hosts.given_back
        while given_back:
            not_before, entries = given_back[-1]
            try:
                await self._frontier.release(entries, not_before=not_before)
            except OutOfSpace as exc:  # kept to try again; leftovers() covers a shutdown
                log.warning("release_failed", error=str(exc))
                return
            given_back.pop()

    async def wait(self, timeout: float, empty: bool) -> float:
        """How long to wait for work, at most `timeout`: until the next claim is due and,
        with nothing buffered or in flight (`empty`), until the frontier's next URL is."""
        if self._claim_after:
            timeout = min(timeout, max(0.0, self._claim_after - self._clock()))
        if empty:
            due = await self._frontier.next_due()
            # A due time already past is a URL the last claim passed over (its host is
            # blocked or has no room): claiming again at once would only spin.
            if due is not None and due > self._wall():
                timeout = min(timeout, due - self._wall())
                self._claim_after = min(self._claim_after, self._clock() + timeout)
        return timeout
