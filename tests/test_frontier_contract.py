"""The frontier contract (crawler/frontier/__init__.py): what every backend must do.

Each test runs once per backend in `STORES`. A backend joins by adding a context manager
that opens a fresh, empty frontier and yields it with a way to read one URL's stored fields
(issue 13 adds PostgreSQL here). Tests of one backend's own machinery (migrations, files,
pragmas) stay in that backend's test module.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from crawler.frontier import Frontier
from crawler.frontier.postgres import PostgresFrontier
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.frontier.values import (
    CommitBatch,
    Deferred,
    Entry,
    Finished,
    HostControl,
    HostState,
    HostWait,
    NewURL,
    RobotsRecord,
    State,
    Visit,
)
from crawler.recrawl import Schedule
from crawler.urls import canonical, host_of, url_key
from tests.postgres import new_database

NOW = 1_700_000_000.0
MONDAY = "Mon, 01 Jan 2024 00:00:00 GMT"
LEASE = NOW + 86_400  # later than any `now` these tests claim at, except to see it expire

pytestmark = pytest.mark.anyio


class Store(Protocol):
    """A backend under test."""

    frontier: Frontier
    takes_back_expired: bool  # whether a claim retakes leases past their lease_until

    async def row(self, key: int) -> dict[str, Any]:
        """One URL's stored fields, by the column names of migrations/sqlite (url, host,
        state, not_before, attempts, depth, redirects, chain, discovered_from, lease_until,
        reason, status, finished_at)."""
        ...

    async def recount(self) -> list[tuple[str, str, int]]:
        """(host, state, URLs) counted from the URLs themselves, sorted."""
        ...

    async def reasons(self) -> dict[str, int]:
        """URLs failed or skipped by reason, counted from the URLs themselves."""
        ...


class SQLiteStore:
    takes_back_expired = False  # one process owns the crawl: release_all at start

    def __init__(self, frontier: SQLiteFrontier, path: Path) -> None:
        self.frontier: Frontier = frontier
        self._path = path

    async def row(self, key: int) -> dict[str, Any]:
        with sqlite3.connect(self._path) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM urls WHERE key = ?", (key,)).fetchone()
        assert row is not None, f"no URL with key {key}"
        return dict(row)

    async def recount(self) -> list[tuple[str, str, int]]:
        with sqlite3.connect(self._path) as conn:
            rows = conn.execute(_RECOUNT).fetchall()
        return [tuple(r) for r in rows]

    async def reasons(self) -> dict[str, int]:
        with sqlite3.connect(self._path) as conn:
            return {str(r): int(n) for r, n in conn.execute(_REASONS).fetchall()}


_RECOUNT = "SELECT host, state, count(*) FROM urls GROUP BY host, state ORDER BY host, state"
_REASONS = (
    "SELECT coalesce(reason, ''), count(*) FROM urls WHERE state IN ('failed', 'skipped')"
    " GROUP BY 1"
)


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / "crawl.db"
    frontier = await SQLiteFrontier.open(path, fsync=False, busy_timeout=5.0)
    try:
        yield SQLiteStore(frontier, path)
    finally:
        await frontier.aclose()


class PostgresStore:
    takes_back_expired = True  # nodes share the crawl: a silent node's leases expire

    def __init__(self, frontier: PostgresFrontier, url: str) -> None:
        self.frontier: Frontier = frontier
        self._url = url

    async def row(self, key: int) -> dict[str, Any]:
        conn = await asyncpg.connect(self._url)
        try:
            row = await conn.fetchrow("SELECT * FROM urls WHERE key = $1", key)
        finally:
            await conn.close()
        assert row is not None, f"no URL with key {key}"
        return dict(row)

    async def recount(self) -> list[tuple[str, str, int]]:
        conn = await asyncpg.connect(self._url)
        try:
            rows = await conn.fetch(_RECOUNT)
        finally:
            await conn.close()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def reasons(self) -> dict[str, int]:
        conn = await asyncpg.connect(self._url)
        try:
            return {str(r): int(n) for r, n in await conn.fetch(_REASONS)}
        finally:
            await conn.close()


@asynccontextmanager
async def postgres_store(tmp_path: Path) -> AsyncIterator[Store]:
    url = await new_database()
    frontier = await PostgresFrontier.open(url, node="node-a")
    try:
        yield PostgresStore(frontier, url)
    finally:
        await frontier.aclose()


STORES: list[Callable[[Path], AbstractAsyncContextManager[Store]]] = [
    sqlite_store,
    postgres_store,
]


@pytest.fixture(params=STORES, ids=lambda opener: opener.__name__.removesuffix("_store"))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with request.param(tmp_path) as opened:
        yield opened


@pytest.fixture
def frontier(store: Store) -> Frontier:
    return store.frontier


def _new(url: str, **fields: Any) -> NewURL:
    return NewURL(key=url_key(canonical(url)), url=url, host=host_of(url), **fields)


def _done(entry: Entry, at: float = NOW, token: int | None = None) -> Finished:
    token = entry.token if token is None else token
    return Finished(entry.key, State.DONE, None, 200, 1, at, token)


def _defer(
    entry: Entry,
    not_before: float,
    *,
    attempts: int = 1,
    reason: str | None = None,
    status: int | None = None,
) -> Deferred:
    return Deferred(entry.key, attempts, not_before, reason, status, entry.token)


# -- add --------------------------------------------------------------------------------------


async def test_add_deduplicates_by_key(frontier: Frontier, store: Store) -> None:
    assert await frontier.add([]) == 0
    first = [_new(f"http://a.example/{i}") for i in range(5)]
    assert await frontier.add(first) == 5
    assert await frontier.add(first) == 0
    # an equivalent spelling of a known URL has the same key
    again = [_new("HTTP://A.EXAMPLE:80/0#frag"), _new("http://a.example/5"), first[1]]
    assert await frontier.add(again) == 1
    # duplicates inside one batch count once; one of the spellings is kept
    dupes = [_new("http://b.example/x"), _new("http://B.example/x"), _new("http://b.example/x")]
    assert await frontier.add(dupes) == 1
    assert (await store.row(dupes[0].key))["url"] in {"http://b.example/x", "http://B.example/x"}
    assert (await frontier.counts()).total == 7


async def test_add_never_brings_back_a_url_seen_before(frontier: Frontier) -> None:
    url = _new("http://a.example/1")
    await frontier.add([url])
    [entry] = await frontier.claim(10, NOW, LEASE)
    assert await frontier.add([url]) == 0  # leased
    await frontier.commit(CommitBatch(finished=[_done(entry)]))
    assert await frontier.add([url]) == 0  # final
    assert (await frontier.commit(CommitBatch(discovered=[url]))).added == 0
    assert await frontier.claim(10, NOW, LEASE) == []


async def test_add_stores_every_field(frontier: Frontier, store: Store) -> None:
    url = _new(
        "http://a.example:8080/p",
        depth=3,
        redirects=2,
        chain="11 22",
        discovered_from="http://a.example:8080/",
    )
    await frontier.add([url])
    row = await store.row(url.key)
    assert row["url"] == "http://a.example:8080/p"
    assert row["host"] == "a.example:8080"
    assert row["state"] == "queued"
    assert (row["depth"], row["redirects"], row["chain"]) == (3, 2, "11 22")
    assert row["discovered_from"] == "http://a.example:8080/"
    assert (row["attempts"], row["not_before"]) == (0, 0)
    [entry] = await frontier.claim(10, NOW, LEASE)
    assert (entry.key, entry.url, entry.host) == (url.key, url.url, url.host)
    assert (entry.attempts, entry.depth, entry.redirects) == (0, 3, 2)
    assert entry.chain == "11 22"
    assert entry.chain_keys() == [11, 22, url.key]
    assert entry.discovered_from == "http://a.example:8080/"


async def test_add_keeps_origin_and_kind(frontier: Frontier) -> None:
    await frontier.add(
        [_new("http://a.example/sitemap.xml", origin="seed.example", kind="sitemap")]
    )
    [entry] = await frontier.claim(10, NOW, LEASE)
    assert (entry.origin, entry.kind, entry.status) == ("seed.example", "sitemap", None)


async def test_add_a_large_batch(frontier: Frontier) -> None:
    urls = [_new(f"http://h{i % 50}.example/{i}") for i in range(20_000)]
    assert await frontier.add(urls) == 20_000
    assert await frontier.add(urls[:100]) == 0
    assert (await frontier.counts()).states["queued"] == 20_000


# -- claim ------------------------------------------------------------------------------------


async def test_claim_leases_up_to_limit_and_never_twice(frontier: Frontier, store: Store) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(25)]
    await frontier.add(urls)
    first = await frontier.claim(10, NOW, LEASE)
    second = await frontier.claim(10, NOW, LEASE)
    third = await frontier.claim(10, NOW, LEASE)
    assert [len(first), len(second), len(third)] == [10, 10, 5]
    keys = [e.key for e in first + second + third]
    assert len(set(keys)) == 25
    assert set(keys) == {u.key for u in urls}
    assert await frontier.claim(10, NOW, LEASE) == []
    rows = [await store.row(u.key) for u in urls]
    assert {(row["state"], row["lease_until"]) for row in rows} == {("leased", LEASE)}


async def test_claim_takes_urls_in_hash_order(frontier: Frontier) -> None:
    """Within a host: the earliest `not_before` first, then in key order."""
    urls = [_new(f"http://a.example/{i}") for i in range(30)]
    await frontier.add(urls)
    keys = sorted(u.key for u in urls)
    for start in (0, 10, 20):
        claimed = await frontier.claim(10, NOW, LEASE)
        assert sorted(e.key for e in claimed) == keys[start : start + 10]


async def test_claim_interleaves_hosts(frontier: Frontier) -> None:
    # added host by host; hash order spreads them
    urls = [_new(f"http://host{h}.example/page/{i}") for h in range(10) for i in range(100)]
    await frontier.add(urls)
    claimed = await frontier.claim(50, NOW, LEASE)
    assert len(claimed) == 50
    assert len({e.host for e in claimed}) >= 5


async def test_a_big_host_never_hides_the_others(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://big.example/{i}") for i in range(500)])
    await frontier.add([_new(f"http://small{i}.example/") for i in range(3)])
    claimed = await frontier.claim(10, NOW, LEASE)
    assert len(claimed) == 10
    assert {f"small{i}.example" for i in range(3)} <= {e.host for e in claimed}


async def test_successive_claims_take_turns_over_hosts(frontier: Frontier) -> None:
    hosts = ["a.example", "b.example", "c.example"]
    await frontier.add([_new(f"http://{host}/{i}") for host in hosts for i in range(5)])
    taken = [e.host for _ in range(6) for e in await frontier.claim(1, NOW, LEASE)]
    assert len(taken) == 6
    for start in range(4):  # every three claims in a row serve every host
        assert sorted(taken[start : start + 3]) == hosts
    assert Counter(taken) == dict.fromkeys(hosts, 2)


async def test_claim_caps_each_host(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://{h}.example/{i}") for h in "ab" for i in range(10)])
    claimed = await frontier.claim(10, NOW, LEASE, per_host=2)
    assert Counter(e.host for e in claimed) == {"a.example": 2, "b.example": 2}


async def test_claim_gives_each_host_at_most_its_room(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://{h}.example/{i}") for h in "abc" for i in range(5)])
    room = {"a.example": 0, "b.example": 1}  # hosts not named may take per_host
    claimed = await frontier.claim(10, NOW, LEASE, per_host=3, room=room)
    assert Counter(e.host for e in claimed) == {"b.example": 1, "c.example": 3}


async def test_claim_passes_over_a_blocked_host(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://{h}.example/{i}") for h in "ab" for i in range(3)])
    await frontier.commit(CommitBatch(hosts=[HostState("a.example", 1.0, NOW + 100)]))
    assert {e.host for e in await frontier.claim(10, NOW, LEASE)} == {"b.example"}
    assert await frontier.claim(10, NOW + 99, LEASE) == []
    later = await frontier.claim(10, NOW + 100, LEASE)
    assert [e.host for e in later] == ["a.example"] * 3


async def test_claim_hands_out_a_given_up_host(frontier: Frontier) -> None:
    """Its URLs fail at once, without a request: holding them back would only delay that."""
    await frontier.add([_new(f"http://a.example/{i}") for i in range(3)])
    down = HostState("a.example", 0.0, NOW + 100, 5, NOW + 3600, "dns")
    await frontier.commit(CommitBatch(hosts=[down]))
    assert len(await frontier.claim(10, NOW, LEASE)) == 3


async def test_claim_respects_not_before(frontier: Frontier) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(3)]
    await frontier.add(urls)
    leased = await frontier.claim(3, NOW, LEASE)
    await frontier.commit(
        CommitBatch(
            deferred=[
                _defer(leased[0], NOW + 100, reason="http_503", status=503),
                _defer(leased[1], NOW + 200, reason="timeout"),
            ]
        )
    )
    await frontier.release([leased[2]], not_before=NOW + 50)
    assert await frontier.claim(10, NOW, LEASE) == []
    assert await frontier.claim(10, NOW + 49.9, LEASE) == []
    assert [e.key for e in await frontier.claim(10, NOW + 50, LEASE)] == [leased[2].key]
    assert [e.key for e in await frontier.claim(10, NOW + 150, LEASE)] == [leased[0].key]
    late = await frontier.claim(10, NOW + 1000, LEASE)
    assert [e.key for e in late] == [leased[1].key]
    assert late[0].attempts == 1  # deferral charged the attempt
    assert late[0].status is None  # the status of the last attempt, none after a timeout


async def test_claim_takes_the_earliest_not_before_first(frontier: Frontier) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(4)]
    await frontier.add(urls)
    leased = await frontier.claim(4, NOW, LEASE)
    # leased[0] waits longest, leased[3] least
    waits = [_defer(e, NOW + 10 * (4 - i)) for i, e in enumerate(leased)]
    await frontier.commit(CommitBatch(deferred=waits))
    first = await frontier.claim(2, NOW + 100, LEASE)
    assert {e.key for e in first} == {leased[3].key, leased[2].key}
    second = await frontier.claim(2, NOW + 100, LEASE)
    assert {e.key for e in second} == {leased[1].key, leased[0].key}


async def test_concurrent_claims_never_lease_twice(frontier: Frontier) -> None:
    claimed: list[int] = []

    async def adder(n: int) -> None:
        await frontier.add([_new(f"http://h{n}.example/{i}") for i in range(50)])

    async def claimer() -> None:
        for _ in range(20):
            claimed.extend(e.key for e in await frontier.claim(10, NOW, LEASE))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(adder, n)
        tg.start_soon(claimer)
        tg.start_soon(claimer)
    claimed.extend(e.key for e in await frontier.claim(1000, NOW, LEASE))
    assert len(claimed) == len(set(claimed)) == 250


# -- lease tokens and fencing -----------------------------------------------------------------


async def test_each_claim_has_a_larger_token_shared_by_its_entries(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://{h}.example/{i}") for h in "abc" for i in range(4)])
    claims = [await frontier.claim(4, NOW, LEASE) for _ in range(3)]
    tokens = []
    for entries in claims:
        assert len(entries) == 4
        assert len({e.token for e in entries}) == 1
        tokens.append(entries[0].token)
    assert 0 < tokens[0] < tokens[1] < tokens[2]
    await frontier.release_all()
    assert all(e.token > tokens[2] for e in await frontier.claim(100, NOW, LEASE))


async def test_a_completion_whose_lease_was_lost_is_refused(
    frontier: Frontier, store: Store
) -> None:
    await frontier.add([_new("http://a.example/1"), _new("http://a.example/2")])
    old = await frontier.claim(2, NOW, LEASE)
    await frontier.release(old)
    new = await frontier.claim(2, NOW, LEASE + 1)
    assert {e.key for e in new} == {e.key for e in old}
    one, two = old
    stale = CommitBatch(
        finished=[Finished(one.key, State.FAILED, "http_500", 500, 3, NOW, one.token)],
        deferred=[_defer(two, NOW + 60, attempts=2, reason="timeout")],
        discovered=[_new("http://b.example/found")],
        outputs={"warc/a.warc.gz": 10},
        hosts=[HostState("a.example", 1.0, 0.0)],
    )
    result = await frontier.commit(stale)
    assert result.refused == tuple(sorted([one.key, two.key]))
    for entry in old:  # still the new holder's, untouched
        row = await store.row(entry.key)
        assert (row["state"], row["lease_until"], row["attempts"]) == ("leased", LEASE + 1, 0)
        assert (row["reason"], row["status"], row["not_before"]) == (None, None, 0)
    # the rest of the batch is true all the same
    assert result.added == 1
    assert await frontier.committed_outputs() == {"warc/a.warc.gz": 10}
    assert await frontier.host_states(["a.example"]) == {
        "a.example": HostState("a.example", 1.0, 0.0)
    }
    # the new holder's completions apply
    done = await frontier.commit(CommitBatch(finished=[_done(e) for e in new]))
    assert done.refused == ()
    assert (await frontier.counts()).states["done"] == 2


async def test_a_completion_after_release_all_is_refused(frontier: Frontier) -> None:
    await frontier.add([_new("http://a.example/1")])
    [entry] = await frontier.claim(1, NOW, LEASE)
    assert await frontier.release_all() == 1
    result = await frontier.commit(CommitBatch(finished=[_done(entry)]))
    assert result.refused == (entry.key,)
    assert (await frontier.counts()).states["queued"] == 1
    [again] = await frontier.claim(1, NOW, LEASE)
    assert again.token > entry.token


async def test_a_url_completes_once(frontier: Frontier, store: Store) -> None:
    await frontier.add([_new("http://a.example/1")])
    [entry] = await frontier.claim(1, NOW, LEASE)
    assert (await frontier.commit(CommitBatch(finished=[_done(entry)]))).refused == ()
    late = Finished(entry.key, State.FAILED, "timeout", None, 2, NOW + 5, entry.token)
    assert (await frontier.commit(CommitBatch(finished=[late]))).refused == (entry.key,)
    defer = await frontier.commit(CommitBatch(deferred=[_defer(entry, NOW + 9)]))
    assert defer.refused == (entry.key,)
    row = await store.row(entry.key)
    assert (row["state"], row["reason"], row["finished_at"]) == ("done", None, NOW)


async def test_an_entry_not_from_a_claim_completes_nothing(frontier: Frontier) -> None:
    url = _new("http://a.example/1")
    await frontier.add([url])
    [leased] = await frontier.claim(1, NOW, LEASE)
    forged = Entry(url.key, url.url, url.host)  # token 0: never handed out
    assert (await frontier.commit(CommitBatch(finished=[_done(forged)]))).refused == (url.key,)
    await frontier.release([forged])
    counts = await frontier.counts()
    assert (counts.states["leased"], counts.states["done"]) == (1, 0)
    assert (await frontier.commit(CommitBatch(finished=[_done(leased)]))).refused == ()


async def test_a_release_whose_lease_was_lost_changes_nothing(
    frontier: Frontier, store: Store
) -> None:
    await frontier.add([_new("http://a.example/1")])
    [old] = await frontier.claim(1, NOW, LEASE)
    await frontier.release([old])
    [new] = await frontier.claim(1, NOW, LEASE + 1)
    await frontier.release([old], not_before=NOW + 500)
    row = await store.row(new.key)
    assert (row["state"], row["lease_until"], row["not_before"]) == ("leased", LEASE + 1, 0)
    assert (await frontier.commit(CommitBatch(finished=[_done(new)]))).refused == ()


async def test_an_expired_lease(frontier: Frontier, store: Store) -> None:
    """Several nodes: a claim takes back a lease past its lease_until, and the old holder's
    completion is refused. One node (SQLite): leases last while it runs; release_all at
    the next start takes them back."""
    await frontier.add([_new("http://a.example/1")])
    [old] = await frontier.claim(1, NOW, NOW + 60)
    later = await frontier.claim(1, NOW + 61, NOW + 200)
    if store.takes_back_expired:
        assert [(e.key, e.token > old.token) for e in later] == [(old.key, True)]
        refused = await frontier.commit(CommitBatch(finished=[_done(old)]))
        assert refused.refused == (old.key,)
        assert (await frontier.commit(CommitBatch(finished=[_done(later[0])]))).refused == ()
    else:
        assert later == []
        assert await frontier.has_pending() is True
        assert (await store.row(old.key))["state"] == "leased"
        assert await frontier.release_all() == 1
        [again] = await frontier.claim(1, NOW + 61, NOW + 200)
        assert again.token > old.token
        assert (await frontier.commit(CommitBatch(finished=[_done(old)]))).refused == (old.key,)


# -- commit -----------------------------------------------------------------------------------


async def test_commit_applies_everything(frontier: Frontier, store: Store) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(4)]
    await frontier.add(urls)
    done, failed, skipped, deferred = await frontier.claim(4, NOW, LEASE)
    found = [_new("http://b.example/new", depth=1, discovered_from=done.url), _new(done.url)]
    result = await frontier.commit(
        CommitBatch(
            finished=[
                _done(done, NOW + 1),
                Finished(failed.key, State.FAILED, "http_404", 404, 1, NOW + 2, failed.token),
                Finished(skipped.key, State.SKIPPED, "robots", None, 0, NOW + 3, skipped.token),
            ],
            deferred=[_defer(deferred, NOW + 60, attempts=2, reason="connect")],
            discovered=found,
            outputs={"warc/a.warc.gz": 1234, "index/a.jsonl": 99},
        )
    )
    assert (result.added, result.refused) == (1, ())
    row = await store.row(done.key)
    assert (row["state"], row["reason"], row["status"], row["attempts"]) == ("done", None, 200, 1)
    assert row["finished_at"] == NOW + 1
    assert row["lease_until"] is None
    row = await store.row(failed.key)
    assert (row["state"], row["reason"], row["status"]) == ("failed", "http_404", 404)
    row = await store.row(skipped.key)
    assert (row["state"], row["reason"], row["attempts"]) == ("skipped", "robots", 0)
    row = await store.row(deferred.key)
    assert (row["state"], row["attempts"], row["not_before"]) == ("queued", 2, NOW + 60)
    assert (row["reason"], row["lease_until"]) == ("connect", None)
    row = await store.row(found[0].key)
    assert (row["state"], row["depth"], row["discovered_from"]) == ("queued", 1, done.url)
    assert await frontier.committed_outputs() == {"warc/a.warc.gz": 1234, "index/a.jsonl": 99}
    counts = await frontier.counts()
    assert counts.total == 5  # the rediscovered done URL was not added again
    assert counts.states == {"queued": 2, "leased": 0, "done": 1, "failed": 1, "skipped": 1}


async def test_a_deferred_url_comes_back_with_its_last_status(frontier: Frontier) -> None:
    await frontier.add([_new("http://a.example/1")])
    [entry] = await frontier.claim(1, NOW, LEASE)
    await frontier.commit(CommitBatch(deferred=[_defer(entry, NOW + 5, reason="x", status=503)]))
    [again] = await frontier.claim(1, NOW + 5, LEASE)
    assert (again.key, again.attempts, again.status) == (entry.key, 1, 503)


async def test_commit_outputs_update_in_place(frontier: Frontier) -> None:
    assert await frontier.committed_outputs() == {}
    await frontier.commit(CommitBatch(outputs={"warc/a.warc.gz": 10}))
    await frontier.commit(CommitBatch(outputs={"warc/a.warc.gz": 20, "warc/b.warc.gz": 5}))
    await frontier.commit(CommitBatch())
    assert await frontier.committed_outputs() == {"warc/a.warc.gz": 20, "warc/b.warc.gz": 5}


# -- release ----------------------------------------------------------------------------------


async def test_release_does_not_charge_an_attempt(frontier: Frontier, store: Store) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(3)]
    await frontier.add(urls)
    leased = await frontier.claim(3, NOW, LEASE)
    await frontier.commit(CommitBatch(deferred=[_defer(leased[0], NOW, reason="dns")]))
    again = await frontier.claim(1, NOW, LEASE)
    assert again[0].attempts == 1
    await frontier.release([*leased[1:], *again])
    rows = [await store.row(u.key) for u in urls]
    states = sorted((r["state"], r["attempts"], r["lease_until"]) for r in rows)
    assert states == [("queued", 0, None), ("queued", 0, None), ("queued", 1, None)]
    reclaimed = await frontier.claim(10, NOW, LEASE)
    assert sorted(e.attempts for e in reclaimed) == [0, 0, 1]


async def test_release_only_touches_leased_urls(frontier: Frontier, store: Store) -> None:
    await frontier.add([_new("http://a.example/1"), _new("http://a.example/2")])
    one, two = await frontier.claim(2, NOW, LEASE)
    await frontier.commit(CommitBatch(finished=[_done(one)]))
    unknown = Entry(12345, "http://nowhere.example/", "nowhere.example", token=one.token)
    await frontier.release([one, two, unknown], not_before=NOW + 30)
    assert (await store.row(one.key))["state"] == "done"
    row = await store.row(two.key)
    assert (row["state"], row["not_before"]) == ("queued", NOW + 30)
    await frontier.release([])  # a no-op
    assert (await frontier.counts()).total == 2


async def test_release_keeps_a_later_not_before(frontier: Frontier, store: Store) -> None:
    await frontier.add([_new("http://a.example/1")])
    [entry] = await frontier.claim(1, NOW, LEASE)
    await frontier.commit(CommitBatch(deferred=[_defer(entry, NOW + 500, status=503)]))
    [entry] = await frontier.claim(1, NOW + 600, LEASE)
    await frontier.release([entry], not_before=NOW + 10)
    assert (await store.row(entry.key))["not_before"] == NOW + 500


async def test_release_all(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://a.example/{i}") for i in range(10)])
    assert await frontier.release_all() == 0
    leased = await frontier.claim(7, NOW, LEASE)
    await frontier.commit(CommitBatch(finished=[_done(leased[0])]))
    assert await frontier.release_all() == 6
    counts = await frontier.counts()
    assert (counts.states["queued"], counts.states["leased"], counts.states["done"]) == (9, 0, 1)
    assert len(await frontier.claim(100, NOW, LEASE)) == 9


async def test_counts_agree_with_the_urls_after_every_kind_of_change(
    frontier: Frontier, store: Store
) -> None:
    """The counts are kept as URLs move (not counted at each report): after each kind of
    change, mixed in one commit or not, they equal a count of the URLs themselves."""
    rng = random.Random(13)
    hosts = ["a.example", "b.example:8080", "c.example", "d.example"]
    added = 0
    now = NOW

    async def check(step: str) -> None:
        counted = await store.recount()
        counts = await frontier.counts(top_hosts=100)
        by_host = sorted(
            (h.host, state, n) for h in counts.hosts for state, n in h.states.items() if n
        )
        assert by_host == counted, step
        states: Counter[str] = Counter()
        for _, state, n in counted:
            states[state] += n
        assert counts.states == {s.value: states[s.value] for s in State}, step
        assert counts.total == sum(states.values()), step
        assert counts.reasons == await store.reasons(), step

    for round_ in range(12):
        fresh = [_new(f"http://{rng.choice(hosts)}/{added + i}") for i in range(rng.randint(0, 9))]
        added += len(fresh)
        await frontier.add(fresh + fresh[:2])  # some twice
        await check(f"add, round {round_}")
        now += 30
        leased = await frontier.claim(rng.randint(1, 12), now, now + 45)
        await check(f"claim, round {round_}")
        rng.shuffle(leased)
        finished, deferred, released = [], [], []
        for entry in leased:
            roll = rng.random()
            if roll < 0.3:
                finished.append(replace(_done(entry, now), recrawl_at=now + rng.choice((10, 90))))
            elif roll < 0.45:
                finished.append(
                    Finished(entry.key, State.FAILED, "http_404", 404, 1, now, entry.token)
                )
            elif roll < 0.55:
                finished.append(
                    Finished(entry.key, State.SKIPPED, "robots", None, 0, now, entry.token)
                )
            elif roll < 0.75:
                deferred.append(_defer(entry, now + rng.choice((0, 60)), reason="timeout"))
            elif roll < 0.85:
                released.append(entry)
            # else: kept leased (past its lease by a later round: taken back or left)
        stale = [_done(e, now, token=e.token - 1) for e in leased[:1]]  # refused
        found = [_new(f"http://{rng.choice(hosts)}/{added + i}") for i in range(3)]
        added += len(found)
        await frontier.commit(
            CommitBatch(finished=finished + stale, deferred=deferred, discovered=found)
        )
        await check(f"commit, round {round_}")
        await frontier.release(released, now + 5)
        await check(f"release, round {round_}")
        await frontier.recrawl_due(now)
        await check(f"recrawl_due, round {round_}")
        again = [f.key for f in finished if rng.random() < 0.3] + [u.key for u in found[:1]]
        await frontier.recrawl(again, now)
        await check(f"recrawl, round {round_}")
    await frontier.release_all()
    await check("release_all")
    assert sum(n for _, _, n in await store.recount()) == added


# -- next_due, has_pending --------------------------------------------------------------------


async def test_next_due(frontier: Frontier) -> None:
    assert await frontier.next_due() is None
    await frontier.add([_new(f"http://a.example/{i}") for i in range(3)])
    assert await frontier.next_due() == 0.0
    a, b, c = await frontier.claim(3, NOW, LEASE)
    assert await frontier.next_due() is None  # leased URLs are not due
    await frontier.commit(
        CommitBatch(
            deferred=[_defer(a, NOW + 30), _defer(b, NOW + 10)],
            finished=[_done(c)],
        )
    )
    assert await frontier.next_due() == NOW + 10


async def test_has_pending(frontier: Frontier) -> None:
    assert await frontier.has_pending() is False
    await frontier.add([_new("http://a.example/1"), _new("http://a.example/2")])
    assert await frontier.has_pending() is True
    one, two = await frontier.claim(2, NOW, LEASE)
    assert await frontier.has_pending() is True  # leased only
    await frontier.commit(CommitBatch(finished=[_done(one)]))
    assert await frontier.has_pending() is True
    await frontier.commit(
        CommitBatch(finished=[Finished(two.key, State.FAILED, "dns", None, 3, NOW, two.token)])
    )
    assert await frontier.has_pending() is False


# -- counts -----------------------------------------------------------------------------------


async def test_counts_states_reasons_and_top_hosts(frontier: Frontier) -> None:
    empty = await frontier.counts()
    assert empty.total == 0
    assert empty.states == {s.value: 0 for s in State}
    assert empty.reasons == {}
    assert empty.hosts == []
    assert empty.waiting == []

    sizes = {"big.example": 6, "mid.example": 4, "small.example:8080": 2, "tiny.example": 1}
    for host, n in sizes.items():
        await frontier.add([_new(f"http://{host}/{i}") for i in range(n)])
    leased = await frontier.claim(100, NOW, LEASE)
    by_host: dict[str, list[Entry]] = {}
    for entry in leased:
        by_host.setdefault(entry.host, []).append(entry)
    big = by_host["big.example"]
    mid = by_host["mid.example"][0]
    finished = [
        _done(big[0]),
        Finished(big[1].key, State.FAILED, "http_404", 404, 1, NOW, big[1].token),
        Finished(big[2].key, State.FAILED, "http_404", 404, 1, NOW, big[2].token),
        Finished(big[3].key, State.FAILED, "dns", None, 3, NOW, big[3].token),
        Finished(mid.key, State.SKIPPED, "robots", None, 0, NOW, mid.token),
    ]
    deferred = [_defer(big[4], NOW + 5, reason="timeout")]  # not a final reason
    await frontier.commit(CommitBatch(finished=finished, deferred=deferred))

    counts = await frontier.counts(top_hosts=3)
    assert counts.total == 13
    assert counts.states == {"queued": 1, "leased": 7, "done": 1, "failed": 3, "skipped": 1}
    assert counts.reasons == {"http_404": 2, "dns": 1, "robots": 1}
    assert next(iter(counts.reasons)) == "http_404"  # most frequent first
    assert [h.host for h in counts.hosts] == ["big.example", "mid.example", "small.example:8080"]
    top = counts.hosts[0]
    assert top.total == 6
    assert top.states == {"queued": 1, "leased": 1, "done": 1, "failed": 3, "skipped": 0}
    assert counts.hosts[1].states["skipped"] == 1
    assert len((await frontier.counts(top_hosts=10)).hosts) == 4
    none = await frontier.counts(top_hosts=0)
    assert (none.total, none.hosts, none.waiting) == (13, [], [])


async def test_counts_tell_why_queued_urls_wait(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://a.example/{i}") for i in range(4)])
    await frontier.add([_new("http://b.example/1"), _new("http://c.example/1")])
    claimed = await frontier.claim(10, NOW, LEASE, room={"a.example": 1, "b.example": 0})
    assert sorted(e.host for e in claimed) == ["a.example", "c.example"]  # not waiting
    a = next(e for e in claimed if e.host == "a.example")
    await frontier.commit(
        CommitBatch(
            deferred=[_defer(a, NOW + 30)],
            hosts=[HostState("a.example", 2.0, NOW + 120, 1, 0.0, None)],
        )
    )
    await frontier.save_robots(RobotsRecord("b.example", None, 503, NOW + 60, NOW - 60))
    waiting = (await frontier.counts(top_hosts=10)).waiting
    assert waiting == [
        HostWait("a.example", 4, 0.0, 2.0, NOW + 120, 1, 0.0, None, None),
        HostWait("b.example", 1, 0.0, 0.0, 0.0, 0, 0.0, None, NOW + 60),
    ]
    assert [w.host for w in (await frontier.counts(top_hosts=1)).waiting] == ["a.example"]


# -- robots, host and cookie state ------------------------------------------------------------


async def test_robots_round_trip(frontier: Frontier) -> None:
    assert await frontier.robots("a.example") is None
    first = RobotsRecord("a.example", "User-agent: *\nDisallow: /x\n", 200, NOW + 3600, None)
    await frontier.save_robots(first)
    assert await frontier.robots("a.example") == first
    failing = RobotsRecord("a.example", None, None, NOW + 60, NOW)
    await frontier.save_robots(failing)
    assert await frontier.robots("a.example") == failing
    assert await frontier.robots("b.example") is None


async def test_host_states_round_trip(frontier: Frontier) -> None:
    assert await frontier.host_states(["a.example"]) == {}
    a = HostState("a.example", 1.5, NOW + 10)
    b = HostState("b.example:8080", 0.0, 0.0, 5, NOW + 3600, "dns")
    await frontier.commit(CommitBatch(hosts=[a, b]))
    found = await frontier.host_states(["a.example", "b.example:8080", "c.example", "a.example"])
    assert found == {"a.example": a, "b.example:8080": b}
    recovered = HostState("b.example:8080", 0.0, 0.0)
    await frontier.commit(CommitBatch(hosts=[recovered]))
    assert await frontier.host_states(["b.example:8080"]) == {"b.example:8080": recovered}
    many = [HostState(f"h{i}.example", float(i % 3), 0.0) for i in range(1200)]
    await frontier.commit(CommitBatch(hosts=many))
    assert await frontier.host_states([h.host for h in many]) == {h.host: h for h in many}
    assert await frontier.host_states([]) == {}


async def test_cookies_round_trip(frontier: Frontier) -> None:
    assert await frontier.load_cookies("shop") is None
    await frontier.save_cookies("shop", '[{"name": "sid", "value": "1"}]')
    await frontier.save_cookies("other", "[]")
    assert await frontier.load_cookies("shop") == '[{"name": "sid", "value": "1"}]'
    await frontier.save_cookies("shop", "[]")
    assert await frontier.load_cookies("shop") == "[]"
    assert await frontier.load_cookies("other") == "[]"


async def test_the_last_beat_is_kept(frontier: Frontier) -> None:
    """A crawl that never ran has no beat (its first requests go at once); afterwards the
    latest beat is what a restart keeps its politeness from."""
    assert await frontier.last_beat() is None
    await frontier.beat(NOW)
    await frontier.beat(NOW + 1.5)
    assert await frontier.last_beat() == NOW + 1.5


async def test_commit_holding_writes_what_is_held_and_no_claim_takes_it_meanwhile(
    frontier: Frontier, store: Store
) -> None:
    """The records of a batch are written while its leases are held: `write` is told
    which are still held, and a claim made meanwhile, past their expiry, passes them over
    (another node's claim, with several nodes: the URLs end once, with this commit)."""
    await frontier.add([_new(f"http://a.example/{i}") for i in range(3)])
    one, two, three = await frontier.claim(3, NOW, NOW + 60)
    await frontier.release([three])  # no longer held
    told: list[set[int]] = []

    async def write(held: set[int]) -> CommitBatch:
        told.append(held)
        meanwhile = await frontier.claim(10, NOW + 120, NOW + 300)
        assert [e.key for e in meanwhile] == [three.key]
        return CommitBatch(finished=[_done(one), _done(two)])

    committed = await frontier.commit_holding([one, two, three], NOW + 90, write)
    assert told == [{one.key, two.key}]
    assert committed.refused == ()
    assert [(await store.row(e.key))["state"] for e in (one, two)] == ["done", "done"]
    assert (await frontier.counts()).states["done"] == 2


async def test_renew_extends_only_the_leases_still_held(frontier: Frontier, store: Store) -> None:
    await frontier.add([_new(f"http://a.example/{i}") for i in range(3)])
    one, two, three = await frontier.claim(3, NOW, NOW + 60)
    await frontier.release([three])
    stale = Entry(two.key, two.url, two.host, token=two.token - 1)  # an older lease of it
    assert await frontier.renew([one, stale, three], NOW + 600) == {one.key}
    assert (await store.row(one.key))["lease_until"] == NOW + 600
    assert (await store.row(two.key))["lease_until"] == NOW + 60
    assert await frontier.renew([], NOW + 600) == set()


# -- recrawl ----------------------------------------------------------------------------------

SEEN = Visit('"e1"', MONDAY, "sha1:AAAA", None, "2024-01-01T00:00:00.000000Z", 120.0)


async def _finish_one(frontier: Frontier, url: str, finished: Callable[[Entry], Finished]) -> Entry:
    await frontier.add([_new(url)])
    [entry] = [e for e in await frontier.claim(100, NOW, LEASE) if e.url == url]
    committed = await frontier.commit(CommitBatch(finished=[finished(entry)]))
    assert committed.refused == ()
    return entry


async def test_a_finished_url_comes_due_with_what_its_last_visit_left(
    frontier: Frontier, store: Store
) -> None:
    """A completion keeps the URL's last visit (validators, digest, record, interval) and
    when it is due again; `recrawl_due` queues it then (attempts 0, no reason, not before
    its time), and the next claim hands it out with that visit, for a conditional request."""
    entry = await _finish_one(
        frontier,
        "http://a.example/page",
        lambda e: replace(_done(e), attempts=2, last=SEEN, recrawl_at=NOW + 60),
    )
    assert await frontier.next_recrawl() == NOW + 60
    assert await frontier.recrawl_due(NOW + 59) == 0
    assert not await frontier.has_pending()  # finished, if due later: a run may end
    assert await frontier.recrawl_due(NOW + 61) == 1
    assert await frontier.next_recrawl() is None
    row = await store.row(entry.key)
    assert (row["state"], row["attempts"], row["reason"], row["not_before"]) == (
        "queued", 0, None, NOW + 60
    )  # fmt: skip
    [again] = await frontier.claim(10, NOW + 61, LEASE)
    assert (again.key, again.last, again.attempts, again.status) == (entry.key, SEEN, 0, 200)
    assert (await frontier.counts(top_hosts=0)).states["leased"] == 1


async def test_recrawl_due_goes_in_batches_and_takes_only_what_is_due(frontier: Frontier) -> None:
    await frontier.add([_new(f"http://h{i % 50}.example/{i}") for i in range(600)])
    entries = await frontier.claim(600, NOW, LEASE)
    await frontier.commit(
        CommitBatch(
            finished=[
                replace(_done(e), recrawl_at=NOW + (i % 2) * 100) for i, e in enumerate(entries)
            ]
        )
    )
    assert await frontier.recrawl_due(NOW) == 300
    assert (await frontier.counts(top_hosts=0)).states == {
        "queued": 300, "leased": 0, "done": 300, "failed": 0, "skipped": 0
    }  # fmt: skip
    assert await frontier.next_recrawl() == NOW + 100


async def test_recrawl_makes_listed_urls_due_now(frontier: Frontier, store: Store) -> None:
    """The operator's recrawl: finished URLs (done, failed, skipped) are queued again at
    once, a queued one waits no longer, a leased one and an unknown key are left alone."""
    done = await _finish_one(frontier, "http://a.example/done", lambda e: _done(e))
    failed = await _finish_one(
        frontier,
        "http://a.example/failed",
        lambda e: Finished(e.key, State.FAILED, "http_404", 404, 1, NOW, e.token),
    )
    await frontier.add([_new("http://b.example/later"), _new("http://c.example/leased")])
    claimed = {e.host: e for e in await frontier.claim(10, NOW, LEASE)}
    later, leased = claimed["b.example"], claimed["c.example"]
    await frontier.commit(CommitBatch(deferred=[_defer(later, NOW + 3600)]))
    keys = [done.key, failed.key, later.key, leased.key, 12345]

    assert await frontier.recrawl(keys, NOW + 5) == 2

    for entry in (done, failed, later):
        row = await store.row(entry.key)
        assert (row["state"], row["not_before"], row["reason"]) == ("queued", NOW + 5, None)
    assert (await store.row(leased.key))["state"] == "leased"
    counts = await frontier.counts(top_hosts=0)
    assert counts.states == {"queued": 3, "leased": 1, "done": 0, "failed": 0, "skipped": 0}
    assert counts.reasons == {}


async def test_retime_times_finished_urls_by_a_new_schedule(
    frontier: Frontier, store: Store
) -> None:
    """A changed schedule re-times every finished URL a recrawl visits (done ones, and
    failed or skipped ones that got an answer before) from its last fetch; the same schedule
    again changes nothing; a schedule turned off clears them."""
    done = await _finish_one(frontier, "http://a.example/done", lambda e: _done(e, NOW - 500))
    kept = await _finish_one(
        frontier,
        "http://a.example/was-fetched",
        lambda e: replace(
            Finished(e.key, State.FAILED, "timeout", None, 3, NOW - 100, e.token), last=SEEN
        ),
    )
    never = await _finish_one(
        frontier,
        "http://a.example/never",
        lambda e: Finished(e.key, State.FAILED, "dns", None, 3, NOW, e.token),
    )

    async def times() -> list[float | None]:
        return [(await store.row(e.key))["recrawl_at"] for e in (done, kept, never)]

    assert await frontier.retime(Schedule(after=1000)) == 2
    assert await times() == [NOW + 500, NOW + 900, None]
    assert await frontier.retime(Schedule(after=1000)) is None
    # adaptive: a URL's own interval (120) where it has one, within min and max
    assert await frontier.retime(Schedule(1000, adaptive=True, low=200, high=800)) == 2
    assert await times() == [NOW + 300, NOW + 100, None]
    assert await frontier.retime(Schedule()) == 2
    assert await times() == [None, None, None]
    assert await frontier.recrawl_due(NOW + 10**6) == 0


async def test_visits_are_counted_by_kind(frontier: Frontier) -> None:
    """`counts().visits`: the responses written and the revisits among them, from the
    completions the frontier took (a refused one counts nothing)."""
    await frontier.add([_new(f"http://a.example/{i}") for i in range(4)])
    a, b, c, d = await frontier.claim(4, NOW, LEASE)
    await frontier.commit(
        CommitBatch(
            finished=[
                replace(_done(a), visited=True),
                replace(_done(b), visited=True, revisit="not_modified"),
                replace(_done(c), visited=True, revisit="identical"),
                replace(_done(d, token=d.token - 1), visited=True, revisit="identical"),
            ]
        )
    )
    visits = (await frontier.counts(top_hosts=0)).visits
    assert visits == {"visits": 3, "not_modified": 1, "identical": 1}


# -- the operator's controls ------------------------------------------------------------------


async def test_host_controls_round_trip_and_an_empty_one_removes_them(frontier: Frontier) -> None:
    paused = HostControl("a.example", paused=True)
    tuned = HostControl("b.example:8080", blocked_until=NOW + 60, delay=2.5, concurrency=1)
    await frontier.save_host_control(paused, NOW)
    await frontier.save_host_control(tuned, NOW)
    assert await frontier.host_controls() == {"a.example": paused, "b.example:8080": tuned}
    unpaused = replace(paused, paused=False, delay=0.5)
    await frontier.save_host_control(unpaused, NOW + 1)
    await frontier.save_host_control(HostControl("b.example:8080"), NOW + 1)  # all undone
    assert await frontier.host_controls() == {"a.example": unpaused}


async def test_excludes_are_kept_in_the_order_added(frontier: Frontier) -> None:
    await frontier.save_excludes([r"/private/", r"\.pdf$"], [], NOW)
    await frontier.save_excludes([r"/private/", r"^https://"], [r"\.pdf$", "never-added"], NOW + 1)
    assert await frontier.excludes() == [r"/private/", r"^https://"]


async def test_the_host_table_sorts_filters_and_pages(frontier: Frontier) -> None:
    """`hosts`: a row per host with its URLs by state (failed and skipped ones by reason),
    saved pace and controls; sorted most first (then by name), filtered by a substring (`_`
    and `%` taken literally), paged."""
    urls = [f"http://big.example/{i}" for i in range(5)] + ["http://a_b.example/1"]
    urls += [f"http://small.example/{i}" for i in range(2)] + ["http://axb.example/1"]
    await frontier.add([_new(u) for u in urls])
    small = [e for e in await frontier.claim(50, NOW, LEASE) if e.host == "small.example"]
    await frontier.commit(
        CommitBatch(
            finished=[
                Finished(small[0].key, State.FAILED, "http_404", 404, 1, NOW, small[0].token),
                Finished(small[1].key, State.SKIPPED, "robots", None, 0, NOW, small[1].token),
            ],
            hosts=[HostState("small.example", 2.0, NOW + 60, 1)],
        )
    )
    await frontier.release_all()
    await frontier.save_host_control(HostControl("small.example", paused=True, delay=3.0), NOW)

    rows = await frontier.hosts(sort="queued", limit=2)
    assert [(r.host, r.states["queued"]) for r in rows] == [("big.example", 5), ("a_b.example", 1)]
    assert [r.host for r in await frontier.hosts(limit=2, offset=2)] == [
        "axb.example", "small.example"
    ]  # fmt: skip
    [row] = await frontier.hosts(q="a_b")
    assert (row.host, row.total) == ("a_b.example", 1)
    [row] = await frontier.hosts(sort="errors", limit=1)
    assert row.host == "small.example"
    assert row.reasons == {"failed": {"http_404": 1}, "skipped": {"robots": 1}}
    assert (row.pace.level, row.pace.blocked_until) == (2.0, NOW + 60)
    assert row.control == HostControl("small.example", paused=True, delay=3.0)
    assert [r.host for r in await frontier.hosts(hosts=["small.example", "none.example"])] == [
        "small.example"
    ]
