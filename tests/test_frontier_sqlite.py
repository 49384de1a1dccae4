"""Tests for crawler/frontier/sqlite.py against a real SQLite file (WAL) in tmp_path.

What every backend must do is in test_frontier_contract.py; here is what is SQLite's own:
migrations, the file, several connections, the per-host cap of `open`.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
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


# -- lease tokens -----------------------------------------------------------------------------


async def test_lease_tokens_keep_growing_after_a_reopen(db_path: Path) -> None:
    first = await SQLiteFrontier.open(db_path, fsync=False)
    try:
        await first.add([_new(f"http://a.example/{i}") for i in range(3)])
        [one] = await first.claim(1, NOW, LEASE)
        [two] = await first.claim(1, NOW, LEASE)
        await first.commit(
            CommitBatch(finished=[Finished(one.key, State.DONE, None, 200, 1, NOW, one.token)])
        )
    finally:
        await first.aclose()
    again = await SQLiteFrontier.open(db_path, fsync=False)
    try:
        assert await again.release_all() == 1
        assert _rows(db_path, "SELECT last FROM lease_tokens") == [(two.token,)]
        tokens = {e.token for e in await again.claim(10, NOW, LEASE)}
        assert tokens == {two.token + 1}
    finally:
        await again.aclose()


async def test_a_lease_taken_before_migration_0008_is_released_at_start(
    frontier: SQLiteFrontier, db_path: Path
) -> None:
    """Rows leased by an older version have no token: no completion matches them, and
    release_all (every start of `run`) gives them back."""
    await frontier.add([_new("http://a.example/1")])
    [entry] = await frontier.claim(1, NOW, LEASE)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE urls SET lease_token = NULL")
    done = Finished(entry.key, State.DONE, None, 200, 1, NOW, entry.token)
    assert (await frontier.commit(CommitBatch(finished=[done]))).refused == (entry.key,)
    assert _row(db_path, entry.key)["state"] == "leased"
    assert await frontier.release_all() == 1
    [again] = await frontier.claim(1, NOW, LEASE)
    assert (again.key, again.token > entry.token) == (entry.key, True)


async def test_completions_are_checked_against_the_stored_token(
    frontier: SQLiteFrontier, db_path: Path
) -> None:
    """Fencing reads the token in the row (what another connection may have changed), not
    one remembered by this process."""
    await frontier.add([_new("http://a.example/1")])
    [entry] = await frontier.claim(1, NOW, LEASE)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE urls SET lease_token = lease_token + 1")
    stale = Finished(entry.key, State.FAILED, "timeout", None, 1, NOW, entry.token)
    assert (await frontier.commit(CommitBatch(finished=[stale]))).refused == (entry.key,)
    row = _row(db_path, entry.key)
    assert (row["state"], row["reason"], row["lease_token"]) == ("leased", None, entry.token + 1)


# -- commit -----------------------------------------------------------------------------------


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
        finished=[Finished(one.key, State.DONE, None, 200, 1, NOW, one.token)],
        deferred=[Deferred(two.key, 1, NOW + 5, "timeout", None, two.token)],
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


# -- the tallies of migration 0009 ------------------------------------------------------------


def _scanned(path: Path) -> dict[tuple[str, str], int]:
    """URLs by state and reason, counted the slow way (what the tallies must agree with)."""
    return {
        (str(state), str(reason)): int(n)
        for state, reason, n in _rows(
            path, "SELECT state, coalesce(reason, ''), count(*) FROM urls GROUP BY 1, 2"
        )
    }


def _tallied(path: Path) -> dict[tuple[str, str], int]:
    return {
        (str(state), str(reason)): int(n)
        for state, reason, n in _rows(path, "SELECT state, reason, n FROM tallies WHERE n != 0")
    }


_BY_HOST = (
    "SELECT host, count(*), sum(state = 'queued'), sum(state = 'leased'), sum(state = 'done'),"
    " sum(state = 'failed'), sum(state = 'skipped') FROM urls GROUP BY host ORDER BY host"
)


def _agree(path: Path) -> None:
    """The tallies by state and reason (0009) and by host (0010) say what a full scan says."""
    assert _tallied(path) == _scanned(path)
    kept = _rows(path, "SELECT * FROM host_urls WHERE total > 0 ORDER BY host")
    assert kept == _rows(path, _BY_HOST)


async def test_tallies_agree_with_a_scan_through_every_kind_of_change(db_path: Path) -> None:
    """Adds (with duplicates, seeds and capped discoveries), claims, fenced completions
    (one refused), deferrals with reasons, releases and a restart's release_all: after each
    step the tallies say what a full scan says, and counts() reports them."""
    frontier = await SQLiteFrontier.open(db_path, fsync=False, max_per_host=3)
    try:
        urls = [_new(f"http://h{i % 4}.example/{i}") for i in range(12)]
        assert await frontier.add(urls + urls[:5]) == 12
        assert _tallied(db_path) == {("queued", ""): 12}
        _agree(db_path)
        leased = await frontier.claim(8, NOW, LEASE)
        _agree(db_path)
        one, two, three, four, *rest = leased
        await frontier.release([rest[0]])
        stale = rest[0]
        [stale_again] = [e for e in await frontier.claim(8, NOW, LEASE) if e.key == stale.key]
        found = [_new(f"http://h0.example/new{i}") for i in range(3)]  # capped at 3 per host
        await frontier.commit(
            CommitBatch(
                finished=[
                    Finished(one.key, State.DONE, None, 200, 1, NOW, one.token),
                    Finished(two.key, State.FAILED, "dns", None, 1, NOW, two.token),
                    Finished(three.key, State.SKIPPED, "robots", None, 0, NOW, three.token),
                    Finished(stale.key, State.DONE, None, 200, 1, NOW, stale.token),  # refused
                ],
                deferred=[Deferred(four.key, 1, NOW + 60, "http_503", 503, four.token)],
                discovered=found,
            )
        )
        _agree(db_path)
        assert (await frontier.release_all()) > 0
        scanned = _scanned(db_path)
        _agree(db_path)
        counts = await frontier.counts(top_hosts=0)
        by_state: dict[str, int] = {}
        for (state, _), n in scanned.items():
            by_state[state] = by_state.get(state, 0) + n
        assert {k: v for k, v in counts.states.items() if v} == by_state
        assert counts.total == sum(scanned.values())
        assert counts.reasons == {"dns": 1, "robots": 1}
        assert stale_again.key == stale.key
    finally:
        await frontier.aclose()


# What migrations 0011 (recrawl) and 0012 (console) added, taken away again: the schema of a
# version before them.
UNDO_0011 = "DROP TABLE host_controls; DROP TABLE excludes; DROP INDEX urls_host_reasons;"
UNDO_0011 += "DROP INDEX urls_recrawl; DROP TABLE visits;" + "".join(
    f" ALTER TABLE urls DROP COLUMN {column};"
    for column in (
        "etag", "last_modified", "digest", "ref_uri", "ref_date", "recrawl_interval", "recrawl_at"
    )
)  # fmt: skip


async def test_migrations_0009_0010_tally_a_crawl_made_before_them(db_path: Path) -> None:
    """A database from before the tallies gets them (by state and by host) from one scan
    when it is opened."""
    frontier = await SQLiteFrontier.open(db_path, fsync=False)
    await frontier.add([_new(f"http://a.example/{i}") for i in range(5)])
    [entry, *_] = await frontier.claim(2, NOW, LEASE)
    await frontier.commit(
        CommitBatch(finished=[Finished(entry.key, State.FAILED, "tls", None, 1, NOW, entry.token)])
    )
    await frontier.aclose()
    with sqlite3.connect(db_path) as conn:  # as a version before 0009 left it
        conn.executescript(
            "DROP TRIGGER urls_tallied; DROP TABLE tallies;"
            " DROP TRIGGER urls_host_moved; DROP TABLE host_urls;"
            f" {UNDO_0011} DELETE FROM schema_migrations WHERE version >= 9;"
        )
    frontier = await SQLiteFrontier.open(db_path, fsync=False)
    try:
        _agree(db_path)
        assert (await frontier.counts(top_hosts=0)).reasons == {"tls": 1}
    finally:
        await frontier.aclose()


async def test_a_report_does_not_wait_for_a_commit_in_progress(db_path: Path) -> None:
    """The per-host lists of a report group every URL (seconds at millions): they are read
    on a connection of their own, so a report and the crawl's claims and commits do not
    queue behind each other (before, a report held the frontier for its whole scan)."""
    frontier = await SQLiteFrontier.open(db_path, fsync=False)
    try:
        await frontier.add([_new(f"http://h{i % 7}.example/{i}") for i in range(50)])
        async with frontier._transaction() as db:  # a commit in progress
            await db.execute("UPDATE urls SET attempts = attempts + 1")
            with anyio.fail_after(5):
                counts = await frontier.counts(top_hosts=3)
        assert counts.total == 50
        assert [h.total for h in counts.hosts] == [8, 7, 7]
        assert counts.waiting[0].host == "h0.example"
    finally:
        await frontier.aclose()
