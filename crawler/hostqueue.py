"""Host queue: each host's download slot (buffered URLs, pace, next start), in start order.

A host here is a politeness budget (`politeness.key`). Its slot holds the URLs buffered for
it, its requests in flight and its earliest next start; a heap orders the hosts with a URL
to hand out by that start, so the next URL ready is found without looking at the others.
The queue only sorts and times: the claimer fills it from the frontier (and takes what it
gives back there), the scheduler hands out.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from crawler.frontier.values import HostControl, HostState
from crawler.models import Entry
from crawler.politeness import BudgetKeys, HealthLimits, Pace
from crawler.settings import PolitenessSettings
from crawler.specs import Profiles

LOOKAHEAD = 30.0  # seconds of work buffered per host; the rest waits in the frontier


@dataclass(slots=True)
class HostSlot:
    """A host's download slot: its queue, requests in flight, pace and earliest next start.

    Its start timing (monotonic clock) changes only through `book` and `hold`, and only ever
    later: a start booked or a hold applied is never undone by another."""

    pace: Pace
    limit: int  # requests in flight at most (per_host_concurrency, or a profile's)
    base_limit: int = 0  # that limit as configured (the operator's may replace it)
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


class HostQueue:
    """The slots of the hosts active in this process, and the order they hand out URLs.

    A slot is on the heap at most once (`in_heap`): when it has a URL buffered and room for
    a request, keyed by its next start (or at once when its host is given up: its URLs fail
    without a request, so there is no politeness to keep)."""

    def __init__(
        self,
        politeness: PolitenessSettings,
        claim_batch: int,
        keys: BudgetKeys,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
        profiles: Profiles,
        max_block: float | None,
        health: HealthLimits,
        quiet_since: float | None = None,
    ) -> None:
        self._politeness = politeness
        self._keys = keys
        self._clock = clock
        self._wall = wall
        self._profiles = profiles
        self._max_block = max_block
        self._health = health
        # By budget key; the scheduler looks slots up here itself (a worker's report is on
        # the hot path), and only the queue adds or removes them.
        self.slots: dict[str, HostSlot] = {}
        self.controls: dict[str, HostControl] = {}  # what the operator set, by budget
        # URLs taken out of the queue, on their way back to the frontier (the claimer's job).
        self.given_back: list[tuple[float, list[Entry]]] = []  # (not_before, entries)
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._claim_batch = claim_batch
        self.buffered = 0  # URLs in all the slots' queues
        # A process that ran until `quiet_since` (wall clock) may have just hit any host:
        # none starts before a delay after that. A fresh crawl starts at once.
        self._start_floor = (
            0.0
            if quiet_since is None
            else clock() + max(0.0, quiet_since + politeness.delay - wall())
        )
        delay = politeness.delay
        per_host = politeness.per_host_concurrency
        self.cap = per_host * 2 + (  # URLs a host buffers at most
            claim_batch if delay == 0 else math.ceil(LOOKAHEAD / delay)
        )

    async def learn(self, hosts: Iterable[str]) -> None:
        """Find the budgets of hosts not seen yet (a DNS lookup for key `ip`)."""
        await self._keys.learn(hosts)

    def budgets(self, entries: Iterable[Entry]) -> list[str]:
        """The budget each entry's host draws on, in order."""
        of = self._keys.of
        return [of(e.host) for e in entries]

    def unknown(self, budgets: Iterable[str]) -> set[str]:
        """The budgets with no slot yet (their saved pace is to be read)."""
        return {b for b in budgets if b not in self.slots}

    def open(self, budget: str, host: str, saved: HostState | None = None) -> HostSlot:
        """The slot of `budget` (drawn on by `host`), made with its `saved` pace if new."""
        slot = self.slots.get(budget)
        if slot is None:
            settings = self._settings_for(host)
            pace = Pace(budget, settings, saved, self._max_block, self._health)
            limit = settings.per_host_concurrency
            slot = self.slots[budget] = HostSlot(pace=pace, limit=limit, base_limit=limit)
            slot.hold(self._start_floor)
            if budget in self.controls:
                self._apply(budget, slot)
            self.hold(slot)
        return slot

    def control(self, controls: Mapping[str, HostControl]) -> None:
        """Apply what the operator set for hosts (all of it: a host left out has nothing
        set). A host held (paused, or blocked until later) gets no new request and buffers
        nothing: its buffered URLs go back to the frontier, and claims pass it over."""
        changed = set(self.controls) | set(controls)
        self.controls = dict(controls)
        for budget in changed:
            slot = self.slots.get(budget)
            if slot is not None:
                self._apply(budget, slot)

    def _apply(self, budget: str, slot: HostSlot) -> None:
        control = self.controls.get(budget)
        slot.pace.operator_delay = None if control is None else control.delay
        concurrency = None if control is None else control.concurrency
        slot.limit = slot.base_limit if concurrency is None else concurrency
        if self.held(budget):
            if slot.queue:
                self.given_back.append((self._wall(), list(slot.queue)))
                self.buffered -= len(slot.queue)
                slot.queue.clear()
            return
        slot.hold()
        self.push(budget, slot)

    def take(self, matches: Callable[[str], bool]) -> list[Entry]:
        """Remove from the buffers the entries whose URL `matches`; those entries."""
        taken: list[Entry] = []
        for slot in self.slots.values():
            if any(matches(entry.url) for entry in slot.queue):
                kept = [entry for entry in slot.queue if not matches(entry.url)]
                taken.extend(entry for entry in slot.queue if matches(entry.url))
                slot.queue = deque(kept)
        self.buffered -= len(taken)
        return taken

    def held(self, budget: str) -> bool:
        """The operator holds this host (paused, or blocked until later)."""
        control = self.controls.get(budget)
        return control is not None and control.holds(self._wall())

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

    def hold(self, slot: HostSlot) -> bool:
        """Apply the pace: the delay from the last start, and any blocked-until time. URLs
        buffered for a host that must wait long go back to the frontier until then (True)."""
        slot.hold()
        blocked = slot.pace.blocked_until - self._wall()
        if blocked > 0:
            slot.hold(self._clock() + blocked)
        if slot.queue and self.waits_long(slot):
            entries = list(slot.queue)
            ready = self._wall() + slot.next_start - self._clock()
            self.given_back.append((ready, entries))
            self.buffered -= len(entries)
            slot.queue.clear()
            return True
        return False

    def waits_long(self, slot: HostSlot) -> bool:
        """Its next start is beyond the lookahead (and its host not given up)."""
        return (
            slot.next_start - self._clock() > LOOKAHEAD and slot.pace.given_up(self._wall()) is None
        )

    def room(self) -> dict[str, int]:
        """How many more URLs each active host may buffer: none while it must wait long
        (they stay in the frontier and every other host gets the claim), a whole batch
        when it is given up (its URLs fail at once, without a request)."""
        room: dict[str, int] = {}
        for budget in self.controls:
            if self.held(budget):
                room[budget] = 0
        for budget, slot in self.slots.items():
            if budget in room:
                continue
            if slot.pace.given_up(self._wall()) is not None:
                room[budget] = self._claim_batch
            elif self.waits_long(slot):
                room[budget] = 0
            elif slot.queue:
                room[budget] = max(0, self.cap - len(slot.queue))
        return room

    def buffer(self, entry: Entry, budget: str, slot: HostSlot) -> None:
        slot.queue.append(entry)
        self.buffered += 1
        self.push(budget, slot)

    def buffer_first(self, entry: Entry, budget: str, slot: HostSlot) -> None:
        """`entry` is next for its host (it was handed out, and came back before a fetch)."""
        slot.queue.appendleft(entry)
        self.buffered += 1
        if self.hold(slot):  # must wait long: the claimer gives it back to the frontier
            return
        self.push(budget, slot)

    def push(self, budget: str, slot: HostSlot) -> None:
        if slot.queue and not slot.in_heap and not (self.controls and self.held(budget)):
            if slot.pace.given_up(self._wall()) is not None:
                at = 0.0  # its URLs fail without a request: no politeness to keep
            elif slot.inflight < slot.limit:
                at = slot.next_start
            else:
                return
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, budget))
            slot.in_heap = True

    def next_start(self) -> float | None:
        """When the first host on the heap may start (monotonic clock), if any is."""
        return self._heap[0][0] if self._heap else None

    def pop_ready(self, now: float) -> Entry | None:
        """The next URL whose host may start a request at `now`, counted in flight."""
        while self._heap and self._heap[0][0] <= now:
            _, _, budget = heapq.heappop(self._heap)
            slot = self.slots[budget]
            slot.in_heap = False
            if not slot.queue or (self.controls and self.held(budget)):
                continue
            given_up = slot.pace.given_up(self._wall()) is not None
            if not given_up and (slot.inflight >= slot.limit or slot.next_start > now):
                self.push(budget, slot)
                continue
            entry = slot.queue.popleft()
            self.buffered -= 1
            slot.inflight += 1
            if not given_up:  # until the hand-off books its start
                slot.hold(now + slot.pace.delay())
            self.push(budget, slot)
            return entry
        return None

    def evict_idle(self, now: float) -> None:
        """Forget idle hosts with nothing unsaved, once there are many."""
        if len(self.slots) > 4 * self._claim_batch:
            idle = {
                b
                for b, s in self.slots.items()
                if not s.queue and not s.inflight and s.next_start < now and not s.pace.dirty
            }
            for budget in idle:
                del self.slots[budget]
            self._keys.forget(idle)
