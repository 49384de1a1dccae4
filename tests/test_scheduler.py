"""Scheduler: per-host slots, the restart floor and the bounded per-host buffer (fake clock)."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from crawler.frontier import CommitBatch, Finished
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.frontier.values import HostState
from crawler.hostqueue import HostQueue
from crawler.models import Entry, NewURL, State
from crawler.politeness import BudgetKeys, HealthLimits
from crawler.retry import parse_retry_after
from crawler.scheduler import Scheduler
from crawler.settings import FrontierSettings, PolitenessSettings
from crawler.specs import Profiles


async def _frontier(tmp_path: Path, hosts: dict[str, int]) -> SQLiteFrontier:
    frontier = await SQLiteFrontier.open(tmp_path / "crawl.db", fsync=False)
    urls = [
        NewURL(key=hash((host, i)), url=f"http://{host}/{i}", host=host)
        for host, n in hosts.items()
        for i in range(n)
    ]
    await frontier.add(urls)
    return frontier


async def _nothing_within(receive: anyio.abc.ObjectReceiveStream[Entry], seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        await receive.receive()
        return False
    return True


def _advance(scheduler: Scheduler, seconds: float, *clocks: list[float]) -> None:
    """Move the fake clocks on by `seconds` and wake the scheduler, as the writer's next
    commit would. On real time it wakes by itself when a start falls due; it cannot see a
    fake clock move, and would sleep through a check that nothing is handed out."""
    for clock in clocks:
        clock[0] += seconds
    scheduler.committed()


@pytest.mark.anyio
@pytest.mark.parametrize("quiet_for", [None, 10.0])
async def test_a_fresh_crawl_or_one_long_stopped_starts_at_once(
    tmp_path: Path, quiet_for: float | None
) -> None:
    """No process ran before (None), or the last one stopped a delay ago: the first request
    goes out at once (the first request of every crawl waited a whole delay before)."""
    frontier = await _frontier(tmp_path, {"a.example": 2})
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=2, delay=10.0),
        FrontierSettings(claim_batch=8),
        quiet_since=None if quiet_for is None else time.time() - quiet_for,
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            with anyio.fail_after(2):
                await receive.receive()
            scheduler.stop()
    finally:
        receive.close()
        await frontier.aclose()


@pytest.mark.anyio
async def test_delay_holds_after_start_and_between_requests(tmp_path: Path) -> None:
    frontier = await _frontier(tmp_path, {"a.example": 3})
    now = [1000.0]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=2, delay=10.0),
        FrontierSettings(claim_batch=8),
        clock=lambda: now[0],
        quiet_since=time.time(),  # the previous process was running just now
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            # A restart may follow a request of the previous process: wait out the delay.
            assert await _nothing_within(receive, 0.2)
            _advance(scheduler, 10, now)
            first = await receive.receive()
            # Concurrency 2 allows another request, but not before the delay has passed.
            assert await _nothing_within(receive, 0.2)
            _advance(scheduler, 10, now)
            second = await receive.receive()
            assert first.key != second.key
            # Two in flight: even with the delay over, nothing until one is done.
            _advance(scheduler, 10, now)
            assert await _nothing_within(receive, 0.2)
            scheduler.done(first)
            third = await receive.receive()
            assert third.key not in (first.key, second.key)
            scheduler.stop()
    finally:
        receive.close()
        await frontier.aclose()


@pytest.mark.anyio
async def test_a_host_buffers_only_its_lookahead_the_rest_waits_in_the_frontier(
    tmp_path: Path,
) -> None:
    frontier = await _frontier(tmp_path, {"big.example": 40, "small.example": 2})
    now = [0.0]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=1, delay=10.0),
        FrontierSettings(claim_batch=50),
        clock=lambda: now[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            _advance(scheduler, 10, now)
            got = {(await receive.receive()).host, (await receive.receive()).host}
            assert got == {"big.example", "small.example"}  # the big host does not starve it
            scheduler.stop()
        # per host: 1 x 2 + ceil(30 s lookahead / 10 s delay) = 5 buffered (topped up again
        # after the hand-out: at most one more leased, the one in flight); the rest stays in
        # the frontier
        counts = await frontier.counts()
        leased = counts.states["leased"]
        assert 5 + 2 <= leased <= 5 + 1 + 2
        assert counts.states["queued"] == 42 - leased
        due = await frontier.next_due()
        assert due is not None
        # Claims pass over a host whose buffer is full: its other URLs are not leased and
        # given back again and again (no churn), they simply wait, ready, in the frontier.
        assert due == 0.0
        leftovers = scheduler.leftovers()
        assert len(leftovers) == leased  # none finished
        await frontier.release(leftovers)
        assert (await frontier.counts()).states["leased"] == 0
    finally:
        receive.close()
        await frontier.aclose()


@pytest.mark.anyio
async def test_finishes_when_the_frontier_is_exhausted(tmp_path: Path) -> None:
    frontier = await _frontier(tmp_path, {"a.example": 2})
    scheduler = Scheduler(frontier, PolitenessSettings(delay=0), FrontierSettings())
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(scheduler.run, send)
                async with receive:
                    async for entry in receive:
                        # what the writer would do: make it final, then tell the scheduler
                        done = Finished(entry.key, State.DONE, None, 200, 1, 0.0, entry.token)
                        await frontier.commit(CommitBatch(finished=[done]))
                        scheduler.done(entry)
                        scheduler.committed()
        assert scheduler.finished
    finally:
        await frontier.aclose()


@pytest.mark.anyio
async def test_an_in_place_retry_books_its_start(tmp_path: Path) -> None:
    frontier = await _frontier(tmp_path, {"a.example": 2})
    now = [100.0]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=2, delay=1.0),
        FrontierSettings(),
        clock=lambda: now[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            _advance(scheduler, 1, now)
            first = await receive.receive()
            # The retry books the next start (1 s on); the scheduler may not hand it out too.
            assert scheduler.reserve_start(first.host) == pytest.approx(1.0)
            _advance(scheduler, 1, now)
            assert await _nothing_within(receive, 0.2)
            _advance(scheduler, 1, now)
            await receive.receive()
            scheduler.stop()
    finally:
        receive.close()
        await frontier.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "shared"),
    [("host", False), ("domain", True)],
)
async def test_politeness_key_domain_makes_hosts_share_one_budget(
    tmp_path: Path, key: str, shared: bool
) -> None:
    frontier = await _frontier(tmp_path, {"a.example.co.uk": 1, "b.example.co.uk:8080": 1})
    now = [1000.0]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=1, delay=10.0, key=key),
        FrontierSettings(claim_batch=8),
        clock=lambda: now[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            _advance(scheduler, 10, now)  # past the restart floor
            first = await receive.receive()
            scheduler.done(first)
            # One budget for the domain: the other host waits for the delay; two: it does not.
            assert await _nothing_within(receive, 0.2) is shared
            if shared:
                _advance(scheduler, 10, now)
                await receive.receive()
            scheduler.stop()
    finally:
        receive.close()
        await frontier.aclose()


@pytest.mark.anyio
async def test_blocked_and_busy_hosts_never_starve_a_ready_one(tmp_path: Path) -> None:
    """Tens of thousands of URLs on hosts that are blocked (saved Retry-After), blocked
    while they run (a 429 with Retry-After), or merely slow do not delay the first
    request of a host that may be fetched now, with default claim batch and politeness."""
    frontier = await _frontier(
        tmp_path,
        {"saved-block.example": 20_000, "slow.example": 20_000, "ready.example": 2},
    )
    await frontier.add(
        [NewURL(key=hash(("late", i)), url=f"http://late.example/{i}", host="late.example")
         for i in range(10_000)]
    )  # fmt: skip
    wall = [1_000_000.0]
    await frontier.commit(CommitBatch(hosts=[HostState("saved-block.example", 0.0, 1e12)]))
    now = [0.0]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(),
        FrontierSettings(),
        clock=lambda: now[0],
        wall=lambda: wall[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    got: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            _advance(scheduler, 1.0, now)  # past the restart floor (politeness.delay)
            with anyio.fail_after(10):
                while "ready.example" not in got:
                    entry = await receive.receive()
                    got.append(entry.host)
                    if entry.host == "late.example":  # blocked for 200 s while it runs
                        scheduler.feedback(entry.host, 429, 200.0, 0.1)
                    scheduler.done(entry)
            scheduler.stop()
        assert "saved-block.example" not in got
        assert got.count("late.example") <= 1
        # Per host one start per second (politeness.delay): the ready host came in the
        # first round, not after the others' tens of thousands of URLs.
        assert len(got) <= 4
    finally:
        receive.close()
        await frontier.release(scheduler.leftovers())
        counts = await frontier.counts()
        await frontier.aclose()
    # Only the URLs handed out (and never committed here) are still leased: everything
    # buffered or given back for its host's block is queued again, none lost.
    assert counts.states["leased"] == len(got)
    assert counts.states["queued"] == 50_002 - len(got)


# -- Retry-After and a saved block, on fake clocks (the end-to-end tests on real time are in
# -- test_politeness.py, test_crawl.py and test_cli.py) -------------------------------------

WALL = 1_000_000.0  # a whole second: an HTTP-date names it exactly


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("5", 5.0), (email.utils.formatdate(WALL + 7, usegmt=True), 7.0)],
    ids=["seconds", "http-date"],
)
async def test_retry_after_holds_the_whole_host_while_another_runs_at_full_speed(
    tmp_path: Path, retry_after: str, wait: float
) -> None:
    """What the worker does with a 429's Retry-After (parse it on the wall clock, tell the
    scheduler) holds every URL of that host for the whole wait, longer than the back-off
    of the 429 alone (2 s), and not one URL of another host."""
    frontier = await _frontier(tmp_path, {"limited.example": 4, "free.example": 20})
    now, wall = [0.0], [WALL]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=1, delay=0.0),
        FrontierSettings(claim_batch=50),
        clock=lambda: now[0],
        wall=lambda: wall[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    limited: list[Entry] = []
    free: list[Entry] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            with anyio.fail_after(10):
                while len(free) < 20 or not limited:
                    entry = await receive.receive()
                    if entry.host == "limited.example":
                        assert not limited, "the limited host was fetched during its wait"
                        seconds = parse_retry_after(retry_after, wall[0])
                        scheduler.feedback(entry.host, 429, seconds, 0.1)
                        limited.append(entry)
                    else:
                        free.append(entry)
                    scheduler.done(entry)
            # All 20 of the free host went out without the clocks moving: it was not held.
            assert len({entry.key for entry in free}) == 20
            assert await _nothing_within(receive, 0.2)
            _advance(scheduler, wait - 0.1, now, wall)
            assert await _nothing_within(receive, 0.2)  # nothing to it during Retry-After
            _advance(scheduler, 0.1, now, wall)
            with anyio.fail_after(5):
                again = await receive.receive()
            assert again.host == "limited.example"
            assert again.key != limited[0].key
            scheduler.stop()
    finally:
        receive.close()
        await frontier.aclose()


@pytest.mark.anyio
async def test_a_hosts_block_saved_before_a_restart_holds_until_it_ends(tmp_path: Path) -> None:
    """A Retry-After committed before a crash (the host's row) holds a new scheduler on a
    fresh start, whatever its own clocks say, until the saved wall-clock time."""
    frontier = await _frontier(tmp_path, {"a.example": 2})
    await frontier.commit(CommitBatch(hosts=[HostState("a.example", 1.0, WALL + 4.0)]))
    now, wall = [0.0], [WALL]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=1, delay=0.0),
        FrontierSettings(),
        clock=lambda: now[0],
        wall=lambda: wall[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            assert await _nothing_within(receive, 0.2)
            _advance(scheduler, 3.9, now, wall)
            assert await _nothing_within(receive, 0.2)
            _advance(scheduler, 0.1, now, wall)
            with anyio.fail_after(5):
                first = await receive.receive()
            assert first.host == "a.example"
            scheduler.stop()
    finally:
        receive.close()
        await frontier.aclose()


@pytest.mark.anyio
async def test_a_crawl_delay_counts_from_the_last_start_and_never_lowers_the_delay(
    tmp_path: Path,
) -> None:
    """robots.txt's Crawl-delay (set_delay) on a fake clock; end to end in test_robots.py."""
    frontier = await _frontier(tmp_path, {"a.example": 3})
    now = [1000.0]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=2, delay=1.0),
        FrontierSettings(claim_batch=8),
        clock=lambda: now[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            _advance(scheduler, 1.0, now)  # past the restart floor
            first = await receive.receive()
            scheduler.set_delay(first.host, 5.0)  # read from robots.txt after the first start
            assert scheduler.delay_of(first.host) == 5.0
            _advance(scheduler, 4.9, now)
            assert await _nothing_within(receive, 0.2)
            _advance(scheduler, 0.1, now)
            with anyio.fail_after(5):
                second = await receive.receive()
            assert second.key != first.key
            scheduler.set_delay(first.host, 0.1)  # a Crawl-delay below politeness.delay
            assert scheduler.delay_of(first.host) == 1.0
            scheduler.stop()
    finally:
        receive.close()
        await frontier.aclose()


class _CountingClaims:
    """A frontier that counts its claims (everything else goes to the real one)."""

    def __init__(self, inner: SQLiteFrontier) -> None:
        self._inner = inner
        self.claims = 0

    async def claim(self, *args: Any, **kwargs: Any) -> list[Entry]:
        self.claims += 1
        return await self._inner.claim(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.anyio
async def test_a_frontier_holding_only_blocked_hosts_is_not_claimed_in_a_loop(
    tmp_path: Path,
) -> None:
    """Every queued URL is on a host blocked by a saved Retry-After: the scheduler waits
    (claiming about once per idle poll), it does not spin on claims that return nothing."""
    inner = await _frontier(tmp_path, {"blocked.example": 50})
    await inner.commit(CommitBatch(hosts=[HostState("blocked.example", 0.0, 1e12)]))
    frontier = _CountingClaims(inner)
    scheduler = Scheduler(
        frontier,  # type: ignore[arg-type]
        PolitenessSettings(),
        FrontierSettings(),
        forever=True,
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            assert await _nothing_within(receive, 2.5)
            scheduler.stop()
    finally:
        receive.close()
        await inner.aclose()
    assert 1 <= frontier.claims <= 5  # about one per second (IDLE_POLL), not hundreds


def test_the_host_queue_hands_out_the_first_start_and_a_busy_host_waits() -> None:
    """The host queue alone, with no frontier nor task: the host whose start falls due first
    goes first, each start holds its host a delay, and a host at its concurrency waits until
    a request of it is over."""
    now = [1000.0]
    hosts = HostQueue(
        PolitenessSettings(per_host_concurrency=1, delay=10.0),
        8,
        BudgetKeys("host"),
        clock=lambda: now[0],
        wall=lambda: 5e8,
        profiles=Profiles(),
        max_block=None,
        health=HealthLimits(),
        quiet_since=5e8,  # the previous process ran until now
    )
    entries = [Entry(key=i, url=f"http://{h}/", host=h) for i, h in enumerate("aab")]
    for entry, budget in zip(entries, hosts.budgets(entries), strict=True):
        hosts.buffer(entry, budget, hosts.open(budget, entry.host))
    assert hosts.buffered == 3
    assert hosts.pop_ready(1009.0) is None  # the restart floor: a delay after the start
    assert hosts.pop_ready(1010.0) is entries[0]
    assert hosts.pop_ready(1010.0) is entries[2]  # "a" is held a delay; "b" is ready
    assert hosts.pop_ready(1030.0) is None  # "a" has its one request in flight
    slot = hosts.slots["a"]
    slot.inflight -= 1  # as the scheduler's done() does
    hosts.push("a", slot)
    assert hosts.pop_ready(1030.0) is entries[1]
    assert hosts.buffered == 0


@pytest.mark.anyio
async def test_a_url_back_from_its_robots_fetch_goes_first_at_its_hosts_next_start(
    tmp_path: Path,
) -> None:
    """`again`: a URL whose request slot went to its host's robots.txt is not deferred to
    the frontier (where it would wait behind every host never tried): it stays leased, first
    in its host's queue, and goes out once the host's delay from the robots.txt start has
    passed; stopped before that, it is among the leftovers to release."""
    frontier = await _frontier(tmp_path, {"a.example": 3, "b.example": 1})
    now = [100.0]
    scheduler = Scheduler(
        frontier,
        PolitenessSettings(per_host_concurrency=1, delay=1.0),
        FrontierSettings(claim_batch=8),
        clock=lambda: now[0],
    )
    send, receive = anyio.create_memory_object_stream[Entry](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run, send)
            _advance(scheduler, 1, now)  # past the restart floor
            firsts = {}
            for _ in range(2):
                entry = await receive.receive()
                firsts[entry.host] = entry
            robots_for = firsts["a.example"]  # its slot went to a.example's robots.txt
            scheduler.done(firsts["b.example"])
            assert scheduler.again(robots_for)
            assert (await frontier.counts()).states["leased"] == 4  # nothing went back
            assert await _nothing_within(receive, 0.2)  # a.example's delay holds
            _advance(scheduler, 1, now)
            assert (await receive.receive()).key == robots_for.key  # before a.example's others
            assert scheduler.again(robots_for)
            scheduler.stop()
            assert robots_for.key in {e.key for e in scheduler.leftovers()}
            assert not scheduler.again(robots_for)  # stopping: the caller sends an outcome
    finally:
        receive.close()
        await frontier.aclose()
