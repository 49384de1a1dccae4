"""Tests for crawler/frontier/sqlite.py against a real SQLite file (WAL) in tmp_path."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import anyio.lowlevel
import pytest

from crawler.errors import StorageError
from crawler.frontier import CommitBatch, Deferred, Finished
from crawler.frontier.sqlite import SQLiteFrontier, migrations_dir
from crawler.models import NewURL, State
from crawler.urls import canonical, host_of, url_key

NOW = 1_700_000_000.0
LEASE = NOW + 900


def _new(url: str, **fields: Any) -> NewURL:
    return NewURL(key=url_key(canonical(url)), url=url, host=host_of(url), **fields)


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the database through a separate stdlib connection (what another process sees)."""
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql, params))


def _row(path: Path, key: int) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM urls WHERE key = ?", (key,)).fetchone()
    assert row is not None
    return dict(row)


pytestmark = pytest.mark.anyio


# -- opening and migrations -------------------------------------------------------------------


def _migration_files() -> list[str]:
    return sorted(p.name for p in migrations_dir().glob("*.sql"))


async def test_migrations_are_recorded(frontier: SQLiteFrontier, db_path: Path) -> None:
    rows = _rows(db_path, "SELECT version, name, applied_at FROM schema_migrations ORDER BY 1")
    assert [name for _, name, _ in rows] == _migration_files()
    assert [version for version, _, _ in rows] == list(range(1, len(rows) + 1))
    assert all(applied > 0 for _, _, applied in rows)
    assert _rows(db_path, "PRAGMA journal_mode") == [("wal",)]


async def test_reopen_is_idempotent_and_keeps_data(db_path: Path) -> None:
    first = await SQLiteFrontier.open(db_path, fsync=False)
    assert await first.add([_new("http://a.example/1"), _new("http://a.example/2")]) == 2
    await first.aclose()
    before = _rows(db_path, "SELECT * FROM schema_migrations")
    for _ in range(2):
        again = await SQLiteFrontier.open(db_path, fsync=True)
        assert (await again.counts()).total == 2
        await again.aclose()
    assert _rows(db_path, "SELECT * FROM schema_migrations") == before


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.endswith("(_connection_worker_thread)")}


async def _close_stray_connections() -> None:
    """Close aiosqlite connections left behind by a failed open (else the process never exits)."""
    for obj in gc.get_objects():
        if isinstance(obj, aiosqlite.Connection):
            await obj.close()


async def test_open_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "crawl.db"
    path.write_bytes(b"definitely not an SQLite database\n" * 200)
    try:
        with pytest.raises(StorageError, match="cannot open frontier database") as info:
            await SQLiteFrontier.open(path)
        assert str(path) in str(info.value)
        assert info.value.exit_code == 3
    finally:
        await _close_stray_connections()


async def test_failed_open_closes_its_connection(tmp_path: Path) -> None:
    path = tmp_path / "crawl.db"
    path.write_bytes(b"definitely not an SQLite database\n" * 200)
    before = _worker_threads()
    try:
        with pytest.raises(StorageError):
            await SQLiteFrontier.open(path)
        leaked = _worker_threads() - before
        for thread in leaked:
            await anyio.to_thread.run_sync(thread.join, 0.3)
        assert [t.name for t in leaked if t.is_alive()] == []
    finally:
        await _close_stray_connections()


def _statements(sql: str) -> Iterator[str]:
    """Split an SQL script into statements (semicolons may appear in comments)."""
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""


async def test_concurrent_first_open_is_safe(db_path: Path) -> None:
    # Another process has just created schema_migrations and is migrating (holds the lock).
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode = WAL")
        other.execute(
            "CREATE TABLE schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        other.execute("BEGIN IMMEDIATE")
        outcome: list[object] = []

        async def open_ours() -> None:
            try:
                outcome.append(await SQLiteFrontier.open(db_path, fsync=False, busy_timeout=10))
            except StorageError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(open_ours)
            await anyio.sleep(0.5)  # ours has read version 0 and waits for the lock
            for path in sorted(migrations_dir().glob("*.sql")):
                for statement in _statements(path.read_text(encoding="utf-8")):
                    other.execute(statement)
                version = int(path.name[:4])
                other.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, path.name)
                )
            other.execute("COMMIT")
    finally:
        other.close()
        await _close_stray_connections()
    assert len(outcome) == 1
    result = outcome[0]
    if isinstance(result, SQLiteFrontier):
        await result.aclose()
    assert not isinstance(result, StorageError), str(result)


# -- add --------------------------------------------------------------------------------------


async def test_add_deduplicates_by_key(frontier: SQLiteFrontier, db_path: Path) -> None:
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
    assert _row(db_path, dupes[0].key)["url"] in {"http://b.example/x", "http://B.example/x"}
    assert (await frontier.counts()).total == 7


async def test_add_stores_every_field(frontier: SQLiteFrontier, db_path: Path) -> None:
    url = _new(
        "http://a.example:8080/p",
        depth=3,
        redirects=2,
        chain="11 22",
        discovered_from="http://a.example:8080/",
    )
    await frontier.add([url])
    row = _row(db_path, url.key)
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


async def test_add_a_large_batch(frontier: SQLiteFrontier) -> None:
    urls = [_new(f"http://h{i % 50}.example/{i}") for i in range(20_000)]
    assert await frontier.add(urls) == 20_000
    assert await frontier.add(urls[:100]) == 0
    assert (await frontier.counts()).states["queued"] == 20_000


# -- claim ------------------------------------------------------------------------------------


async def test_claim_leases_up_to_limit_and_never_twice(
    frontier: SQLiteFrontier, db_path: Path
) -> None:
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
    assert _rows(db_path, "SELECT DISTINCT state, lease_until FROM urls") == [("leased", LEASE)]


async def test_claim_takes_urls_in_hash_order(frontier: SQLiteFrontier) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(30)]
    await frontier.add(urls)
    keys = sorted(u.key for u in urls)
    for start in (0, 10, 20):
        claimed = await frontier.claim(10, NOW, LEASE)
        assert sorted(e.key for e in claimed) == keys[start : start + 10]


async def test_claim_interleaves_hosts(frontier: SQLiteFrontier) -> None:
    # added host by host; hash order spreads them
    urls = [_new(f"http://host{h}.example/page/{i}") for h in range(10) for i in range(100)]
    await frontier.add(urls)
    claimed = await frontier.claim(50, NOW, LEASE)
    assert len(claimed) == 50
    assert len({e.host for e in claimed}) >= 5


async def test_claim_respects_not_before(frontier: SQLiteFrontier) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(3)]
    await frontier.add(urls)
    leased = await frontier.claim(3, NOW, LEASE)
    await frontier.commit(
        CommitBatch(
            deferred=[
                Deferred(leased[0].key, 1, NOW + 100, "http_503", 503),
                Deferred(leased[1].key, 1, NOW + 200, "timeout", None),
            ]
        )
    )
    await frontier.release([leased[2].key], not_before=NOW + 50)
    assert await frontier.claim(10, NOW, LEASE) == []
    assert await frontier.claim(10, NOW + 49.9, LEASE) == []
    assert [e.key for e in await frontier.claim(10, NOW + 50, LEASE)] == [leased[2].key]
    assert [e.key for e in await frontier.claim(10, NOW + 150, LEASE)] == [leased[0].key]
    late = await frontier.claim(10, NOW + 1000, LEASE)
    assert [e.key for e in late] == [leased[1].key]
    assert late[0].attempts == 1  # deferral charged the attempt


async def test_claim_takes_the_earliest_not_before_first(frontier: SQLiteFrontier) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(4)]
    await frontier.add(urls)
    leased = await frontier.claim(4, NOW, LEASE)
    # leased[0] waits longest, leased[3] least
    waits = [Deferred(e.key, 1, NOW + 10 * (4 - i), None, None) for i, e in enumerate(leased)]
    await frontier.commit(CommitBatch(deferred=waits))
    first = await frontier.claim(2, NOW + 100, LEASE)
    assert {e.key for e in first} == {leased[3].key, leased[2].key}
    second = await frontier.claim(2, NOW + 100, LEASE)
    assert {e.key for e in second} == {leased[1].key, leased[0].key}


# -- commit -----------------------------------------------------------------------------------


async def test_commit_applies_everything(frontier: SQLiteFrontier, db_path: Path) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(4)]
    await frontier.add(urls)
    done, failed, skipped, deferred = await frontier.claim(4, NOW, LEASE)
    found = [_new("http://b.example/new", depth=1, discovered_from=done.url), _new(done.url)]
    await frontier.commit(
        CommitBatch(
            finished=[
                Finished(done.key, State.DONE, None, 200, 1, NOW + 1),
                Finished(failed.key, State.FAILED, "http_404", 404, 1, NOW + 2),
                Finished(skipped.key, State.SKIPPED, "robots", None, 0, NOW + 3),
            ],
            deferred=[Deferred(deferred.key, 2, NOW + 60, "connect", None)],
            discovered=found,
            outputs={"warc/a.warc.gz": 1234, "index/a.jsonl": 99},
        )
    )
    row = _row(db_path, done.key)
    assert (row["state"], row["reason"], row["status"], row["attempts"]) == ("done", None, 200, 1)
    assert row["finished_at"] == NOW + 1
    assert row["lease_until"] is None
    row = _row(db_path, failed.key)
    assert (row["state"], row["reason"], row["status"]) == ("failed", "http_404", 404)
    row = _row(db_path, skipped.key)
    assert (row["state"], row["reason"], row["attempts"]) == ("skipped", "robots", 0)
    row = _row(db_path, deferred.key)
    assert (row["state"], row["attempts"], row["not_before"]) == ("queued", 2, NOW + 60)
    assert (row["reason"], row["lease_until"]) == ("connect", None)
    row = _row(db_path, found[0].key)
    assert (row["state"], row["depth"], row["discovered_from"]) == ("queued", 1, done.url)
    assert await frontier.committed_outputs() == {"warc/a.warc.gz": 1234, "index/a.jsonl": 99}
    counts = await frontier.counts()
    assert counts.total == 5  # the rediscovered done URL was not added again
    assert counts.states == {"queued": 2, "leased": 0, "done": 1, "failed": 1, "skipped": 1}


async def test_commit_outputs_update_in_place(frontier: SQLiteFrontier) -> None:
    await frontier.commit(CommitBatch(outputs={"warc/a.warc.gz": 10}))
    await frontier.commit(CommitBatch(outputs={"warc/a.warc.gz": 20, "warc/b.warc.gz": 5}))
    await frontier.commit(CommitBatch())
    assert await frontier.committed_outputs() == {"warc/a.warc.gz": 20, "warc/b.warc.gz": 5}


async def test_commit_is_atomic(frontier: SQLiteFrontier, db_path: Path) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(2)]
    await frontier.add(urls)
    one, two = await frontier.claim(2, NOW, LEASE)
    await frontier.commit(CommitBatch(outputs={"warc/a.warc.gz": 100}))
    # make the last statement of the commit fail (as a full disk would)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE UPDATE ON outputs"
            " BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"
        )
    batch = CommitBatch(
        finished=[Finished(one.key, State.DONE, None, 200, 1, NOW)],
        deferred=[Deferred(two.key, 1, NOW + 5, "timeout", None)],
        discovered=[_new("http://c.example/")],
        outputs={"warc/a.warc.gz": 200},
    )
    with pytest.raises((StorageError, sqlite3.Error), match="disk full"):
        await frontier.commit(batch)
    assert _rows(db_path, "SELECT DISTINCT state FROM urls") == [("leased",)]
    assert (await frontier.counts()).total == 2
    assert await frontier.committed_outputs() == {"warc/a.warc.gz": 100}
    # the frontier is still usable after the rollback
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER poison")
    await frontier.commit(batch)
    assert (await frontier.counts()).states["done"] == 1
    assert await frontier.committed_outputs() == {"warc/a.warc.gz": 200}


# -- release ----------------------------------------------------------------------------------


async def test_release_does_not_charge_an_attempt(frontier: SQLiteFrontier, db_path: Path) -> None:
    urls = [_new(f"http://a.example/{i}") for i in range(3)]
    await frontier.add(urls)
    leased = await frontier.claim(3, NOW, LEASE)
    await frontier.commit(CommitBatch(deferred=[Deferred(leased[0].key, 1, NOW, "dns", None)]))
    again = await frontier.claim(1, NOW, LEASE)
    assert again[0].attempts == 1
    await frontier.release([e.key for e in leased])
    rows = _rows(db_path, "SELECT state, attempts, lease_until FROM urls ORDER BY key")
    assert sorted(rows) == [("queued", 0, None), ("queued", 0, None), ("queued", 1, None)]
    reclaimed = await frontier.claim(10, NOW, LEASE)
    assert sorted(e.attempts for e in reclaimed) == [0, 0, 1]


async def test_release_only_touches_leased_urls(frontier: SQLiteFrontier, db_path: Path) -> None:
    await frontier.add([_new("http://a.example/1"), _new("http://a.example/2")])
    one, two = await frontier.claim(2, NOW, LEASE)
    await frontier.commit(CommitBatch(finished=[Finished(one.key, State.DONE, None, 200, 1, NOW)]))
    await frontier.release([one.key, two.key, 12345], not_before=NOW + 30)
    assert _row(db_path, one.key)["state"] == "done"
    assert (_row(db_path, two.key)["state"], _row(db_path, two.key)["not_before"]) == (
        "queued",
        NOW + 30,
    )
    await frontier.release([])  # a no-op


async def test_release_keeps_a_later_not_before(frontier: SQLiteFrontier, db_path: Path) -> None:
    await frontier.add([_new("http://a.example/1")])
    [entry] = await frontier.claim(1, NOW, LEASE)
    await frontier.commit(CommitBatch(deferred=[Deferred(entry.key, 1, NOW + 500, None, 503)]))
    [entry] = await frontier.claim(1, NOW + 600, LEASE)
    await frontier.release([entry.key], not_before=NOW + 10)
    assert _row(db_path, entry.key)["not_before"] == NOW + 500


async def test_release_all(frontier: SQLiteFrontier) -> None:
    await frontier.add([_new(f"http://a.example/{i}") for i in range(10)])
    assert await frontier.release_all() == 0
    leased = await frontier.claim(7, NOW, LEASE)
    await frontier.commit(
        CommitBatch(finished=[Finished(leased[0].key, State.DONE, None, 200, 1, NOW)])
    )
    assert await frontier.release_all() == 6
    counts = await frontier.counts()
    assert (counts.states["queued"], counts.states["leased"], counts.states["done"]) == (9, 0, 1)
    assert len(await frontier.claim(100, NOW, LEASE)) == 9


# -- next_due, has_pending --------------------------------------------------------------------


async def test_next_due(frontier: SQLiteFrontier) -> None:
    assert await frontier.next_due() is None
    await frontier.add([_new(f"http://a.example/{i}") for i in range(3)])
    assert await frontier.next_due() == 0.0
    a, b, c = await frontier.claim(3, NOW, LEASE)
    assert await frontier.next_due() is None  # leased URLs are not due
    await frontier.commit(
        CommitBatch(
            deferred=[
                Deferred(a.key, 1, NOW + 30, None, None),
                Deferred(b.key, 1, NOW + 10, None, None),
            ],
            finished=[Finished(c.key, State.DONE, None, 200, 1, NOW)],
        )
    )
    assert await frontier.next_due() == NOW + 10


async def test_has_pending(frontier: SQLiteFrontier) -> None:
    assert await frontier.has_pending() is False
    await frontier.add([_new("http://a.example/1"), _new("http://a.example/2")])
    assert await frontier.has_pending() is True
    one, two = await frontier.claim(2, NOW, LEASE)
    assert await frontier.has_pending() is True  # leased only
    await frontier.commit(CommitBatch(finished=[Finished(one.key, State.DONE, None, 200, 1, NOW)]))
    assert await frontier.has_pending() is True
    await frontier.commit(
        CommitBatch(finished=[Finished(two.key, State.FAILED, "dns", None, 3, NOW)])
    )
    assert await frontier.has_pending() is False


# -- counts -----------------------------------------------------------------------------------


async def test_counts_states_reasons_and_top_hosts(frontier: SQLiteFrontier) -> None:
    empty = await frontier.counts()
    assert empty.total == 0
    assert empty.states == {s.value: 0 for s in State}
    assert empty.reasons == {}
    assert empty.hosts == []

    sizes = {"big.example": 6, "mid.example": 4, "small.example:8080": 2, "tiny.example": 1}
    for host, n in sizes.items():
        await frontier.add([_new(f"http://{host}/{i}") for i in range(n)])
    leased = await frontier.claim(100, NOW, LEASE)
    by_host: dict[str, list[int]] = {}
    for entry in leased:
        by_host.setdefault(entry.host, []).append(entry.key)
    big = by_host["big.example"]
    finished = [
        Finished(big[0], State.DONE, None, 200, 1, NOW),
        Finished(big[1], State.FAILED, "http_404", 404, 1, NOW),
        Finished(big[2], State.FAILED, "http_404", 404, 1, NOW),
        Finished(big[3], State.FAILED, "dns", None, 3, NOW),
        Finished(by_host["mid.example"][0], State.SKIPPED, "robots", None, 0, NOW),
    ]
    deferred = [Deferred(big[4], 1, NOW + 5, "timeout", None)]  # not a final reason
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


# -- several connections ----------------------------------------------------------------------


async def test_second_connection_can_add_while_first_is_open(
    frontier: SQLiteFrontier, db_path: Path
) -> None:
    await frontier.add([_new("http://a.example/1")])
    leased = await frontier.claim(1, NOW, LEASE)
    second = await SQLiteFrontier.open(db_path, fsync=False, busy_timeout=5.0)
    try:
        assert await second.add([_new("http://a.example/1"), _new("http://b.example/2")]) == 1
        assert (await second.counts()).states["leased"] == 1
    finally:
        await second.aclose()
    # the first connection sees the new URL and can claim it
    more = await frontier.claim(10, NOW, LEASE)
    assert [e.url for e in more] == ["http://b.example/2"]
    assert more[0].key != leased[0].key


async def test_concurrent_verbs_on_one_connection(frontier: SQLiteFrontier) -> None:
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
    claimed.extend(e.key for e in await frontier.claim(1000, NOW, LEASE))
    assert len(claimed) == len(set(claimed)) == 250


async def test_max_per_host_caps_discoveries_but_never_seeds(db_path: Path) -> None:
    capped = await SQLiteFrontier.open(db_path, fsync=False, max_per_host=3)
    try:
        seeds = [_new(f"http://a.example/s{i}") for i in range(2)]
        assert await capped.add(seeds) == 2
        links = [_new(f"http://a.example/l{i}", discovered_from="x") for i in range(5)]
        others = [_new(f"http://b.example/l{i}", discovered_from="x") for i in range(2)]
        # A duplicate of a seed is not a new URL and must not use up the budget.
        await capped.commit(CommitBatch(discovered=[seeds[0], *links, *others]))
        assert await capped.add([_new(f"http://a.example/s{i}") for i in range(2, 6)]) == 4
    finally:
        await capped.aclose()
    hosts = dict(_rows(db_path, "SELECT host, count(*) FROM urls GROUP BY host"))
    assert hosts == {"a.example": 2 + 1 + 4, "b.example": 2}
    kept = {r[0] for r in _rows(db_path, "SELECT url FROM urls WHERE url LIKE '%/l%'")}
    assert "http://a.example/l0" in kept  # the first link found is the one kept
    assert "http://a.example/l1" not in kept


async def test_max_per_host_counts_what_earlier_runs_added(db_path: Path) -> None:
    plain = await SQLiteFrontier.open(db_path, fsync=False)
    try:
        await plain.commit(
            CommitBatch(
                discovered=[_new(f"http://a.example/{i}", discovered_from="x") for i in range(3)]
            )
        )
    finally:
        await plain.aclose()
    capped = await SQLiteFrontier.open(db_path, fsync=False, max_per_host=4)
    try:
        more = [_new(f"http://a.example/more{i}", discovered_from="x") for i in range(3)]
        await capped.commit(CommitBatch(discovered=more))
    finally:
        await capped.aclose()
    assert _rows(db_path, "SELECT count(*) FROM urls") == [(4,)]
