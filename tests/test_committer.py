"""The committer task (crawler/committer.py) over a real SQLite frontier: when a batch is
committed, and what its listener is told."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import anyio
import pytest

from crawler.committer import Committer
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.frontier.values import HostState
from crawler.models import Entry, NewURL, Outcome, Response, State
from crawler.output import WriteResult
from crawler.settings import StorageSettings
from crawler.urls import identify

LONG = 60.0  # a commit interval no test waits for


class Listener:
    """A CommitListener that keeps what it is told."""

    def __init__(self, on_commit: Callable[[list[Outcome], int], None]) -> None:
        self._on_commit = on_commit
        self.stopping = False

    def committed(self, outcomes: list[Outcome], added: int) -> None:
        self._on_commit(outcomes, added)

    def stalled(self, problem: str | None) -> None:
        raise AssertionError(f"no test here fills the disk: {problem}")


class Hosts:
    """A HostLedger with no host states to save."""

    def __init__(self, starving: bool) -> None:
        self.starving = starving

    def host_states(self) -> list[HostState]:
        return []


class NoOutput:
    """A sink for batches without final outcomes (deferrals write nothing)."""

    def write(self, outcomes: list[Outcome]) -> WriteResult:
        raise AssertionError("a deferral is never written")

    def recover(self, committed: dict[str, int]) -> None:
        pass


def _deferral(url: str) -> Outcome:
    key, host = identify(url)
    found_key, found_host = identify(url + "/next")
    return Outcome.deferred(
        Entry(key, url, host),
        attempts=1,
        reason="robots_fetched",
        not_before=0.0,
        new_urls=(NewURL(found_key, url + "/next", found_host, depth=1),),
    )


async def _run(frontier: SQLiteFrontier, starving: bool) -> bool:
    """Send one deferral with a new link and wait up to 1 s for its commit, then close the
    stream (which commits what is left). Returns whether it was committed within 1 s."""
    committed = anyio.Event()
    commits = 0

    def on_commit(batch: list[Outcome], added: int) -> None:
        nonlocal commits
        commits += 1
        committed.set()

    committer = Committer(
        frontier,
        NoOutput(),  # type: ignore[arg-type]
        StorageSettings(fsync=False, commit_interval=LONG),
        listener=Listener(on_commit),
        hosts=Hosts(starving),
    )
    send, receive = anyio.create_memory_object_stream[Outcome](8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run, receive)
        await send.send(_deferral("http://a.example/p"))
        with anyio.move_on_after(1.0):
            await committed.wait()
        early = committed.is_set()
        await send.aclose()
    assert commits == 1
    return early


@pytest.mark.anyio
async def test_a_starving_scheduler_gets_new_links_at_once(frontier: SQLiteFrontier) -> None:
    assert await _run(frontier, starving=True)  # without waiting for commit_interval
    assert await frontier.has_pending()
    [entry] = await frontier.claim(10, 1e12, 2e12)
    assert entry.url == "http://a.example/p/next"  # the link is claimable now


@pytest.mark.anyio
async def test_a_busy_scheduler_lets_the_batch_fill(frontier: SQLiteFrontier) -> None:
    assert not await _run(frontier, starving=False)  # held for commit_interval or a full batch
    [entry] = await frontier.claim(10, 1e12, 2e12)
    assert entry.url == "http://a.example/p/next"


@pytest.mark.anyio
async def test_a_completion_goes_under_its_lease_and_a_lost_one_is_not_counted(
    frontier: SQLiteFrontier,
) -> None:
    for url in ("http://a.example/1", "http://b.example/1"):
        key, host = identify(url)
        await frontier.add([NewURL(key, url, host)])
    kept, lost = sorted(await frontier.claim(2, 0.0, 1e12), key=lambda e: e.host)
    await frontier.release([lost])
    [holder] = await frontier.claim(1, 0.0, 1e12)  # another holder has it now
    counted: list[Outcome] = []
    committer = Committer(
        frontier,
        NoOutput(),  # type: ignore[arg-type]
        StorageSettings(fsync=False, commit_interval=LONG),
        listener=Listener(lambda batch, added: counted.extend(batch)),
    )
    send, receive = anyio.create_memory_object_stream[Outcome](8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run, receive)
        for entry in (kept, lost):
            await send.send(Outcome.deferred(entry, attempts=1, reason="timeout", not_before=0.0))
        await send.aclose()
    assert [o.entry for o in counted] == [kept]
    states = (await frontier.counts()).states
    assert (states["queued"], states["leased"]) == (1, 1)
    [again] = await frontier.claim(1, 0.0, 1e12)
    assert (again.key, again.attempts) == (kept.key, 1)
    assert holder.key == lost.key


class UnwritableRecords:
    """A sink that writes nothing and reports every outcome's record as not written."""

    def write(self, outcomes: Sequence[Outcome]) -> WriteResult:
        return WriteResult(failed={i: f"cannot write record {i}" for i in range(len(outcomes))})

    def recover(self, committed: dict[str, int]) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.anyio
async def test_a_record_not_written_is_committed_as_warc_error(frontier: SQLiteFrontier) -> None:
    url = "http://a.example/p"
    key, host = identify(url)
    await frontier.add([NewURL(key, url, host)])
    [entry] = await frontier.claim(10, 1e12, 2e12)
    body = io.BytesIO(b"ok")
    response = Response(200, "OK", "HTTP/1.1", [], [], "GET", "/p", body, 2, 2, False)
    reported: list[Outcome] = []

    def on_commit(batch: list[Outcome], added: int) -> None:
        reported.extend(batch)

    committer = Committer(
        frontier,
        UnwritableRecords(),
        StorageSettings(fsync=False, commit_interval=LONG),
        listener=Listener(on_commit),
    )
    send, receive = anyio.create_memory_object_stream[Outcome](8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.run, receive)
        await send.send(Outcome.done(entry, attempts=1, response=response, status=200))
        await send.aclose()
    [outcome] = reported
    assert (outcome.state, outcome.reason, outcome.message, outcome.status) == (
        State.FAILED,
        "warc_error",
        "cannot write record 0",
        200,
    )
    assert body.closed  # the committer owns the response: closed once the batch is written
    counts = await frontier.counts()
    assert (counts.states["failed"], counts.reasons) == (1, {"warc_error": 1})
