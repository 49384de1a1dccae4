"""Scheduler: claims URLs from the frontier and hands them to workers as hosts allow.

Politeness lives here: per host, at most `per_host_concurrency` requests in flight and
request starts at least `delay` apart. "Host" is the politeness budget a URL's host draws on
(`politeness.key`: the host itself, its registrable domain or its server's address).
Workers never wait for a host: they take whatever URL is ready next. URLs that cannot start
soon go back to the frontier with `not_before`.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from crawler.dns import Resolver
from crawler.errors import OutOfSpace
from crawler.frontier import Frontier
from crawler.frontier.values import HostState
from crawler.models import Entry
from crawler.politeness import BudgetKeys, HealthLimits, Pace
from crawler.profiles import Profiles
from crawler.settings import FrontierSettings, PolitenessSettings

LOOKAHEAD = 30.0  # seconds of work buffered per host; the rest waits in the frontier
IDLE_POLL = 1.0  # longest sleep when nothing is claimable (new seeds may arrive)

log = structlog.get_logger("crawler.scheduler")


def _doubling(failures: int) -> float:
    """Seconds before probing a host again after `failures` in a row (the composition root
    passes the retry policy's back-off instead)."""
    return 2.0**failures


@dataclass(slots=True)
class HostSlot:
    """A host's download slot: its queue, requests in flight, pace and earliest next start.

    Its start timing (monotonic clock) changes only through `book` and `hold`, and only ever
    later: a start booked or a hold applied is never undone by another."""

    pace: Pace
    limit: int  # requests in flight at most (per_host_concurrency, or a profile's)
    queue: deque[Entry] = field(default_factory=deque)
    inflight: int = 0
    next_start: float = 0.0  # no request may start before this
    in_heap: bool = False
    last_start: float = 0.0  # the latest request start booked

    def book(self, start: float) -> None:
        """A request starts at `start`: the next one waits a delay from it."""
        self.last_start = max(self.last_start, start)
        self.next_start = max(self.next_start, start + self.pace.delay())

    def hold(self, until: float = -math.inf) -> None:
        """The next start waits a delay (as the pace now says) from the last one, and at
        least until `until`."""
        self.next_start = max(self.next_start, self.last_start + self.pace.delay(), until)


class Scheduler:
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
    ) -> None:
        self._health = health or HealthLimits()
        self._backoff = backoff  # seconds between probes of a host after n failures
        self._release_later: list[tuple[float, list[Entry]]] = []  # (not_before, entries)
        self._profiles = profiles or Profiles()
        self._forever = forever  # serve: an empty frontier means "wait for more", not "done"
        self._paused: set[str] = set()
        self._max_block = max_block
        self._frontier = frontier
        self._politeness = politeness
        self._settings = settings
        self._clock = clock
        self._wall = wall
        self._slots: dict[str, HostSlot] = {}  # by budget key
        self._keys = BudgetKeys(politeness.key, resolver)
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._buffered = 0
        self._inflight: dict[int, Entry] = {}
        self._wakeup = anyio.Event()
        self._stopping = False
        self._claim_after = 0.0
        # Right after a start, a host may just have been hit by the previous process.
        self._start_floor = clock() + politeness.delay
        delay = politeness.delay
        per_host = politeness.per_host_concurrency
        self._host_cap = per_host * 2 + (
            settings.claim_batch if delay == 0 else math.ceil(LOOKAHEAD / delay)
        )
        self.finished = False

    # -- called by workers and the writer -------------------------------------------------
    def done(self, entry: Entry) -> None:
        """A worker is finished with `entry` (its outcome is on the way to the writer)."""
        self._inflight.pop(entry.key, None)
        budget = self._keys.of(entry.host)
        slot = self._slots.get(budget)
        if slot is not None:
            slot.inflight -= 1
            self._push(budget, slot)
        self._wakeup.set()

    def committed(self) -> None:
        """The writer committed a batch: deferrals or new URLs may be claimable now."""
        self._claim_after = 0.0
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
        return self._politeness.delay if slot is None else slot.pace.delay()

    def feedback(self, host: str, status: int, retry_after: float | None, elapsed: float) -> None:
        """How `host` answered: adapt its pace (and health)."""
        slot = self._slots.get(self._keys.of(host))
        if slot is None:
            return
        slot.pace.on_response(status, retry_after, elapsed, self._wall())
        self._hold(slot)

    def failed(self, host: str, reason: str) -> None:
        """A request to `host` got no answer (`reason`: dns, connect, timeout, ...): the
        host's next request is a probe after the retry back-off; too many in a row and the
        host is down."""
        slot = self._slots.get(self._keys.of(host))
        if slot is None:
            return
        pace = slot.pace
        pace.on_failure(reason, self._wall(), self._backoff(pace.failures + 1))
        self._hold(slot)

    def given_up(self, host: str) -> str | None:
        """Why `host`'s URLs now fail without a request (it is down, or blocked for longer
        than retry.max_wait), or None."""
        slot = self._slots.get(self._keys.of(host))
        return None if slot is None else slot.pace.given_up(self._wall())

    def _hold(self, slot: HostSlot) -> None:
        """Apply the pace: the delay from the last start, and any blocked-until time. URLs
        buffered for a host that must wait long go back to the frontier until then."""
        slot.hold()
        blocked = slot.pace.blocked_until - self._wall()
        if blocked > 0:
            slot.hold(self._clock() + blocked)
        if slot.queue and self._waits_long(slot):
            entries = list(slot.queue)
            ready = self._wall() + slot.next_start - self._clock()
            self._release_later.append((ready, entries))
            self._buffered -= len(entries)
            slot.queue.clear()
            self._wakeup.set()

    def _waits_long(self, slot: HostSlot) -> bool:
        return (
            slot.next_start - self._clock() > LOOKAHEAD and slot.pace.given_up(self._wall()) is None
        )

    def pace_of(self, host: str) -> dict[str, float | int] | None:
        """The politeness state of `host`'s budget, when it is active in this process."""
        slot = self._slots.get(self._keys.of(host))
        if slot is None:
            return None
        return {
            "delay": round(slot.pace.delay(), 3),
            "backoff_level": slot.pace.level,
            "blocked_until": slot.pace.blocked_until,
            "in_flight": slot.inflight,
            "buffered": len(slot.queue),
        }

    def host_states(self) -> list[HostState]:
        """Paces changed since the last call (the writer saves them with its batch)."""
        return [slot.pace.state() for slot in self._slots.values() if slot.pace.dirty]

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
        return self._buffered == 0

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
        entries.extend(e for _, batch in self._release_later for e in batch)
        return entries

    # -- internals ------------------------------------------------------------------------
    def _settings_for(self, host: str) -> PolitenessSettings:
        """politeness.*, with the delay / concurrency of a profile matching `host`."""
        profile = self._profiles.for_host(host) if self._profiles else None
        if profile is None or (profile.delay is None and profile.per_host_concurrency is None):
            return self._politeness
        return dataclasses.replace(
            self._politeness,
            delay=self._politeness.delay if profile.delay is None else profile.delay,
            per_host_concurrency=profile.per_host_concurrency
            or self._politeness.per_host_concurrency,
        )

    def _slot(self, budget: str, host: str, saved: HostState | None = None) -> HostSlot:
        slot = self._slots.get(budget)
        if slot is None:
            settings = self._settings_for(host)
            pace = Pace(budget, settings, saved, self._max_block, self._health)
            slot = self._slots[budget] = HostSlot(pace=pace, limit=settings.per_host_concurrency)
            slot.hold(self._start_floor)
            self._hold(slot)
        return slot

    def _push(self, budget: str, slot: HostSlot) -> None:
        if slot.queue and not slot.in_heap:
            if slot.pace.given_up(self._wall()) is not None:
                at = 0.0  # its URLs fail without a request: no politeness to keep
            elif slot.inflight < slot.limit:
                at = slot.next_start
            else:
                return
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, budget))
            slot.in_heap = True

    async def _refill(self) -> None:
        await self._release_waiting()
        now = self._clock()
        if self._buffered >= self._settings.claim_batch or now < self._claim_after:
            return
        wall = self._wall()
        try:
            entries = await self._frontier.claim(
                self._settings.claim_batch,
                wall,
                wall + self._settings.lease_seconds,
                per_host=self._host_cap,
                room=self._room(),
            )
        except OutOfSpace as exc:  # the writer reports it; claim again a little later
            log.warning("claim_failed", error=str(exc))
            self._claim_after = now + IDLE_POLL
            return
        if not entries:
            self._claim_after = now + IDLE_POLL
            return
        await self._keys.learn(e.host for e in entries)
        budgets = [self._keys.of(e.host) for e in entries]
        new = {b for b in budgets if b not in self._slots}
        saved = await self._frontier.host_states(list(new)) if new else {}
        overflow: list[tuple[Entry, HostSlot]] = []
        for entry, budget in zip(entries, budgets, strict=True):
            slot = self._slot(budget, entry.host, saved.get(budget))
            if self._waits_long(slot):
                ready = wall + slot.next_start - now
                self._release_later.append((ready, [entry]))
            elif len(slot.queue) >= self._host_cap and slot.pace.given_up(wall) is None:
                overflow.append((entry, slot))
            else:
                self._buffer(entry, budget, slot)
        if overflow:
            try:
                await self._frontier.release(
                    [entry for entry, _ in overflow], not_before=wall + LOOKAHEAD
                )
            except OutOfSpace:  # keep them buffered instead: over the cap, never lost
                for entry, slot in overflow:
                    self._buffer(entry, self._keys.of(entry.host), slot)
        await self._release_waiting()

    def _room(self) -> dict[str, int]:
        """How many more URLs each active host may buffer: none while it must wait long
        (they stay in the frontier and every other host gets the claim), a whole batch
        when it is given up (its URLs fail at once, without a request)."""
        room: dict[str, int] = {}
        for budget, slot in self._slots.items():
            if slot.pace.given_up(self._wall()) is not None:
                room[budget] = self._settings.claim_batch
            elif self._waits_long(slot):
                room[budget] = 0
            elif slot.queue:
                room[budget] = max(0, self._host_cap - len(slot.queue))
        return room

    async def _release_waiting(self) -> None:
        """Give URLs of hosts that must wait long back to the frontier, until then."""
        while self._release_later:
            not_before, entries = self._release_later[-1]
            try:
                await self._frontier.release(entries, not_before=not_before)
            except OutOfSpace as exc:  # kept to try again; leftovers() covers a shutdown
                log.warning("release_failed", error=str(exc))
                return
            self._release_later.pop()

    def _buffer(self, entry: Entry, budget: str, slot: HostSlot) -> None:
        slot.queue.append(entry)
        self._buffered += 1
        self._push(budget, slot)

    def _evict_idle(self, now: float) -> None:
        if len(self._slots) > 4 * self._settings.claim_batch:
            idle = {
                b
                for b, s in self._slots.items()
                if not s.queue and not s.inflight and s.next_start < now and not s.pace.dirty
            }
            for budget in idle:
                del self._slots[budget]
            self._keys.forget(idle)

    def _pop_ready(self, now: float) -> Entry | None:
        while self._heap and self._heap[0][0] <= now:
            _, _, budget = heapq.heappop(self._heap)
            slot = self._slots[budget]
            slot.in_heap = False
            if not slot.queue:
                continue
            given_up = slot.pace.given_up(self._wall()) is not None
            if not given_up and (slot.inflight >= slot.limit or slot.next_start > now):
                self._push(budget, slot)
                continue
            entry = slot.queue.popleft()
            self._buffered -= 1
            slot.inflight += 1
            if not given_up:  # until the hand-off books its start
                slot.hold(now + slot.pace.delay())
            self._push(budget, slot)
            return entry
        return None

    async def _idle(self) -> None:
        """Nothing to hand out now: end the crawl if nothing is left, else wait a little."""
        if (
            not self._forever
            and not self._buffered
            and not self._inflight
            and not await self._frontier.has_pending()
        ):
            self.finished = True
            return
        timeout = IDLE_POLL
        if self._heap:
            timeout = min(timeout, max(0.0, self._heap[0][0] - self._clock()))
        if self._claim_after:
            timeout = min(timeout, max(0.0, self._claim_after - self._clock()))
        if not self._buffered and not self._inflight:
            due = await self._frontier.next_due()
            # A due time already past is a URL the last claim passed over (its host is
            # blocked or has no room): claiming again at once would only spin.
            if due is not None and due > self._wall():
                timeout = min(timeout, due - self._wall())
                self._claim_after = min(self._claim_after, self._clock() + timeout)
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
                await self._refill()
                now = self._clock()
                entry = self._pop_ready(now)
                if entry is None:
                    self._evict_idle(now)
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
