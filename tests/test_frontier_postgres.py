"""The PostgreSQL frontier's own machinery (the contract is in test_frontier_contract.py):
hosts held by one node at a time, handed over a delay apart, taken from a dead node with
its leases; migrations applied once and a newer schema refused; the password kept out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from crawler.errors import StorageError
from crawler.frontier import CommitBatch, Finished, State, rules
from crawler.frontier.postgres import PostgresFrontier, redacted
from crawler.models import NewURL
from crawler.urls import canonical, host_of, url_key
from tests.postgres import new_database

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
LEASE = 900.0


def _new(url: str) -> NewURL:
    return NewURL(key=url_key(canonical(url)), url=url, host=host_of(url))


@pytest.fixture
async def url() -> str:
    return await new_database()


@pytest.fixture
async def nodes(url: str) -> AsyncIterator[tuple[PostgresFrontier, PostgresFrontier]]:
    a = await PostgresFrontier.open(url, node="a", delay=2.0)
    b = await PostgresFrontier.open(url, node="b", delay=2.0)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_host_is_crawled_by_one_node_and_handed_over_a_delay_later(
    nodes: tuple[PostgresFrontier, PostgresFrontier],
) -> None:
    a, b = nodes
    await a.add([_new(f"http://h.example/{i}") for i in range(4)])
    [first] = await a.claim(1, NOW, NOW + LEASE)
    await a.add([_new("http://o.example/")])
    # b gets the other host, never h.example while a holds one of its URLs
    taken = await b.claim(10, NOW, NOW + LEASE)
    assert {e.host for e in taken} == {"o.example"}
    assert await b.claim(10, NOW, NOW + LEASE) == []
    done = Finished(first.key, State.DONE, None, 200, 1, NOW, first.token)
    await a.commit(CommitBatch(finished=[done]))  # a holds none of h.example now
    # the host's last request started before that commit (at about NOW on the claims'
    # clock): b waits a delay (2 s) from it
    assert await b.claim(10, NOW + 1.9, NOW + LEASE) == []
    later = await b.claim(10, NOW + 2.5, NOW + LEASE)
    assert {e.host for e in later} == {"h.example"}
    assert len(later) == 3


async def test_the_last_owner_takes_its_host_back_at_once(
    nodes: tuple[PostgresFrontier, PostgresFrontier],
) -> None:
    a, _ = nodes
    await a.add([_new(f"http://h.example/{i}") for i in range(3)])
    entries = await a.claim(3, NOW, NOW + LEASE)
    await a.release(entries)  # its own pace still holds: no handover wait for it
    assert len(await a.claim(3, NOW, NOW + LEASE)) == 3


async def test_a_dead_nodes_leases_and_hosts_go_to_the_others_and_its_late_work_is_refused(
    nodes: tuple[PostgresFrontier, PostgresFrontier],
) -> None:
    a, b = nodes
    await a.add([_new("http://h.example/1")])
    [held] = await a.claim(1, NOW, NOW + 30)
    assert await b.claim(1, NOW + 29, NOW + 60) == []  # a's lease and hold still run
    [taken] = await b.claim(1, NOW + 31, NOW + 60)
    assert taken.key == held.key
    assert taken.token > held.token
    late = Finished(held.key, State.DONE, None, 200, 1, NOW + 32, held.token)
    assert (await a.commit(CommitBatch(finished=[late]))).refused == (held.key,)
    ok = Finished(taken.key, State.DONE, None, 200, 1, NOW + 33, taken.token)
    assert (await b.commit(CommitBatch(finished=[ok]))).refused == ()


async def test_nodes_opening_an_empty_database_at_once_migrate_it_once(url: str) -> None:
    opened: list[PostgresFrontier] = []

    async def open_one(name: str) -> None:
        opened.append(await PostgresFrontier.open(url, node=name))

    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(open_one, name)
    for frontier in opened:
        await frontier.aclose()
    conn = await asyncpg.connect(url)
    try:
        assert [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")] == [
            v for v, _, _ in rules.migrations("postgres")
        ]
        await conn.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 0)")
    finally:
        await conn.close()
    with pytest.raises(StorageError, match="schema version 999, newer than this crawler"):
        await PostgresFrontier.open(url, node="a")


async def test_errors_name_the_server_but_never_the_password() -> None:
    url = "postgresql://crawler:s3cret-pw@127.0.0.1:1/crawl"
    assert redacted(url) == "postgresql://127.0.0.1:1/crawl"
    with pytest.raises(StorageError) as caught:
        await PostgresFrontier.open(url, node="a", timeout=2)
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
