"""Scheduler: claims URLs from the frontier and hands them to workers as hosts allow.

Politeness lives here: per host, at most `per_host_concurrency` requests in flight and
request starts at least `delay` apart. "Host" is the politeness budget a URL's host draws on
(`politeness.key`: the host itself, its registrable domain or its server's address).
Workers never wait for a host: they take whatever URL is ready next. URLs that cannot start
soon go back to the frontier with `not_before`.

The host queue (`hostqueue.py`) keeps each host's slot and the hand-out order; the claimer
(`claimer.py`) fills it from the frontier and gives URLs back. The scheduler runs the two in
one task, and takes what workers report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from crawler.claimer import IDLE_POLL, Claimer
from crawler.dns import Resolver
from crawler.frontier import Frontier
from crawler.frontier.values import HostControl, HostState
from crawler.hostqueue import HostQueue
from crawler.models import Entry
from crawler.politeness import BudgetKeys, HealthLimits
from crawler.settings import FrontierSettings, PolitenessSettings
from crawler.specs import Profiles


def _doubling(failures: int) -> float:
    """Seconds before probing a host again after `failures` in a row (the composition root
    passes the retry policy's back-off instead)."""
    return 2.0**failures


class Scheduler:
    """Hands out URLs as hosts allow, and adapts each host's pace to what workers report."""

    def __init__(
        self,
        frontier: Frontier,
        politeness: PolitenessSettings,
        settings: FrontierSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_block: float | None = None,
        forever: bool = False,
        profiles: Profiles | None = None,
        health: HealthLimits | None = None,
        backoff: Callable[[int], float] = _doubling,
        resolver: Resolver | None = None,
        quiet_since: float | None = None,
    ) -> None:
        """`quiet_since`: wall clock from which the crawl's previous process sent no
        request (None: no process ran before); no host starts before a delay after it."""
        self._backoff = backoff  # seconds between probes of a host after n failures
        self._forever = forever  # serve: an empty frontier means "wait for more", not "done"
        self._paused: set[str] = set()
        self._frontier = frontier
        self._delay = politeness.delay  # of a host not active in this process
        self._clock = clock
        self._wall = wall
        self._keys = BudgetKeys(politeness.key, resolver)
        self._hosts = HostQueue(
            politeness,
            settings.claim_batch,
            self._keys,
            clock=clock,
            wall=wall,
            profiles=profiles or Profiles(),
            max_block=max_block,
            health=health or HealthLimits(),
            quiet_since=quiet_since,
        )
        # The queue's slots by budget key, read here directly: workers report on every URL.
        self._slots = self._hosts.slots
        self._claimer = Claimer(frontier, settings, self._hosts, clock=clock, wall=wall)
        self._inflight: dict[int, Entry] = {}
        self._wakeup = anyio.Event()
        self._stopping = False
        self.finished = False

    # -- called by workers and the committer -------------------------------------------
    def done(self, entry: Entry) -> None:
        """A worker is finished with `entry` (its outcome is on the way to the committer)."""
        self._inflight.pop(entry.key, None)
        budget = self._keys.of(entry.host)
        slot = self._slots.get(budget)
        if slot is not None:
            slot.inflight -= 1
            self._hosts.push(budget, slot)
        self._wakeup.set()

    def again(self, entry: Entry) -> bool:
        """`entry` was held for its host's robots.txt, which has just been fetched: it goes
        first in its host's queue, still leased, and out at the host's next start. Back in
        the frontier it would wait behind the URLs of every host never tried, and with many
        hosts a crawl would fetch nearly every robots.txt before its first page. False (the
        caller hands in an outcome instead) when stopping or the host has no slot."""
        budget = self._keys.of(entry.host)
        slot = self._slots.get(budget)
        if slot is None or self._stopping:
            return False
        self._inflight.pop(entry.key, None)
        slot.inflight -= 1
        self._hosts.buffer_first(entry, budget, slot)
        self._wakeup.set()
        return True

    def committed(self) -> None:
        """The committer committed a batch: deferrals or new URLs may be claimable now."""
        self._claimer.claim_now()
        self._wakeup.set()

    def seconds_until_start(self, host: str) -> float:
        """How long before `host` may see another request start (for in-place retries)."""
        slot = self._slots.get(self._keys.of(host))
        return 0.0 if slot is None else max(0.0, slot.next_start - self._clock())

    def reserve_start(self, host: str) -> float:
        """Book `host`'s next request start (for an in-place retry); returns the seconds to
        wait for it. Booking and waiting are one step, so no other URL takes that start."""
        slot = self._slots.get(self._keys.of(host))
        if slot is None:
            return 0.0
        now = self._clock()
        start = max(now, slot.next_start)
        slot.book(start)
        return start - now

    def started(self, host: str) -> None:
        """A request to `host` goes out now: the delay counts from here, not from the
        hand-off (a busy event loop can make the two differ)."""
        slot = self._slots.get(self._keys.of(host))
        if slot is not None:
            slot.book(self._clock())

    def set_delay(self, host: str, delay: float) -> None:
        """Raise `host`'s delay (robots.txt Crawl-delay), never below politeness.delay."""
        slot = self._slots.get(self._keys.of(host))
        if slot is not None:
            slot.pace.crawl_delay = delay
            slot.hold()

    def delay_of(self, host: str) -> float:
        slot = self._slots.get(self._keys.of(host))
        return self._delay if slot is None else slot.pace.delay()

    def feedback(self, host: str, status: int, retry_after: float | None, elapsed: float) -> None:
        """How `host` answered: adapt its pace (and health)."""
        slot = self._slots.get(self._keys.of(host))
        if slot is None:
            return
        slot.pace.on_response(status, retry_after, elapsed, self._wall())
        if self._hosts.hold(slot):  # its URLs are to go back: wake the loop to release them
            self._wakeup.set()

    def failed(self, host: str, reason: str) -> None:
        """A request to `host` got no answer (`reason`: dns, connect, timeout, ...): the
        host's next request is a probe after the retry back-off; too many in a row and the
        host is down."""
        slot = self._slots.get(self._keys.of(host))
        if slot is None:
            return
        pace = slot.pace
        pace.on_failure(reason, self._wall(), self._backoff(pace.failures + 1))
        if self._hosts.hold(slot):  # its URLs are to go back: wake the loop to release them
            self._wakeup.set()

    def given_up(self, host: str) -> str | None:
        """Why `host`'s URLs now fail without a request (it is down, or blocked for longer
        than retry.max_wait), or None."""
        slot = self._slots.get(self._keys.of(host))
        return None if slot is None else slot.pace.given_up(self._wall())

    def pace_of(self, host: str) -> dict[str, Any] | None:
        """The politeness state of `host`'s budget, when it is active in this process."""
        slot = self._slots.get(self._keys.of(host))
        if slot is None:
            return None
        return {
            "delay": round(slot.pace.delay(), 3),
            "delay_source": slot.pace.delay_source(),
            "backoff_level": slot.pace.level,
            "blocked_until": slot.pace.blocked_until,
            "in_flight": slot.inflight,
            "buffered": len(slot.queue),
            "next_start": self._wall() + max(0.0, slot.next_start - self._clock()),
        }

    async def budget_of(self, host: str) -> str:
        """The politeness budget `host` draws on (`politeness.key`), learnt if need be."""
        await self._keys.learn([host])
        return self._keys.of(host)

    def known_budget(self, host: str) -> str:
        """The budget of `host` as known now (its own until learnt, for key `ip`)."""
        return self._keys.of(host)

    def busiest(self, limit: int) -> list[str]:
        """The budgets with most requests in flight now (most first)."""
        active = [(slot.inflight, budget) for budget, slot in self._slots.items() if slot.inflight]
        return [budget for _, budget in sorted(active, key=lambda a: (-a[0], a[1]))[:limit]]

    def host_states(self) -> list[HostState]:
        """Paces changed since the last call (the committer saves them with its batch)."""
        return [slot.pace.state() for slot in self._slots.values() if slot.pace.dirty]

    def control(self, controls: Mapping[str, HostControl]) -> None:
        """Apply what the operator set for hosts (every host's: one left out has nothing)."""
        self._hosts.control(controls)
        self._claimer.claim_now()
        self._wakeup.set()

    def take(self, matches: Callable[[str], bool]) -> list[Entry]:
        """Take out of the hosts' buffers the entries whose URL `matches` (still leased:
        the caller completes them)."""
        return self._hosts.take(matches)

    def pause(self, reason: str) -> None:
        """Hand out nothing new until every reason given is resumed (in-flight URLs finish)."""
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        self._paused.discard(reason)
        self._wakeup.set()

    @property
    def paused(self) -> list[str]:
        return sorted(self._paused)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def starving(self) -> bool:
        """No URL is buffered to hand out: idle workers wait for the frontier."""
        return self._hosts.buffered == 0

    @property
    def stopping(self) -> bool:
        """After stop(): a URL handed out meanwhile must not be fetched (it is released)."""
        return self._stopping

    def stop(self) -> None:
        """Stop handing out work (shutdown); buffered URLs are released by `leftovers`."""
        self._stopping = True
        self._wakeup.set()

    def leftovers(self) -> list[Entry]:
        """URLs leased but never finished: buffered, cut off in flight, or waiting to be
        given back."""
        entries = [e for slot in self._slots.values() for e in slot.queue]
        entries.extend(self._inflight.values())
        entries.extend(e for _, batch in self._hosts.given_back for e in batch)
        return entries

    # -- the hand-out loop ----------------------------------------------------------------
    async def _idle(self) -> None:
        """Nothing to hand out now: end the crawl if nothing is left, else wait a little."""
        if (
            not self._forever
            and not self._hosts.buffered
            and not self._inflight
            and not await self._frontier.has_pending()
        ):
            self.finished = True
            return
        timeout = IDLE_POLL
        next_start = self._hosts.next_start()
        if next_start is not None:
            timeout = min(timeout, max(0.0, next_start - self._clock()))
        empty = not self._hosts.buffered and not self._inflight
        timeout = await self._claimer.wait(timeout, empty)
        with anyio.move_on_after(timeout):
            await self._wakeup.wait()
        self._wakeup = anyio.Event()

    async def run(self, work: MemoryObjectSendStream[Entry]) -> None:
        """Hand URLs to workers until the frontier is exhausted or `stop` is called."""
        async with work:
            while not self._stopping:
                if self._paused:
                    with anyio.move_on_after(IDLE_POLL):
                        await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    continue
                await self._claimer.refill()
                now = self._clock()
                entry = self._hosts.pop_ready(now)
                if entry is None:
                    self._hosts.evict_idle(now)
                    await self._idle()
                    if self.finished:
                        return
                    continue
                self._inflight[entry.key] = entry
                await work.send(entry)
                # Handed off: its request starts now, not when it was picked (a robots.txt
                # fetch takes this start too); the worker books it again, later, when the
                # request itself goes out (`started`).
                slot = self._slots[self._keys.of(entry.host)]
                if slot.pace.given_up(self._wall()) is None:
                    slot.book(self._clock())
