"""Writer: the one task that appends results to WARC + JSONL, then commits them to the frontier."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
from anyio.abc import ObjectReceiveStream

from crawler.errors import StorageError
from crawler.frontier import CommitBatch, Deferred, Finished, Frontier
from crawler.models import Outcome, OutcomeKind, State
from crawler.politeness import HostState
from crawler.settings import StorageSettings
from crawler.writers import Sink

MAX_BATCH_BYTES = 64 * 1024 * 1024  # bodies in one batch: bounds the memory a batch holds


def _body_bytes(batch: list[Outcome]) -> int:
    return sum(o.response.wire_bytes for o in batch if o.response is not None)


class Writer:
    """Batches outcomes; each batch is written, flushed (fsynced), then committed at once.

    A URL becomes final in the frontier only in the transaction that also records the new
    committed length of the output files, so a crash at any point loses or repeats nothing.
    """

    def __init__(
        self,
        frontier: Frontier,
        sink: Sink,
        settings: StorageSettings,
        on_commit: Callable[[list[Outcome]], None],
        host_states: Callable[[], list[HostState]] = list,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host_states = host_states
        self._frontier = frontier
        self._sink = sink
        self._settings = settings
        self._on_commit = on_commit
        self._clock = clock

    async def run(self, results: ObjectReceiveStream[Outcome]) -> None:
        """Collect the next batch while the previous one is written: workers never wait
        for the disk, and at most two batches are held in memory."""
        async with results, anyio.create_task_group() as tg:
            flushed: anyio.Event | None = None
            while True:
                try:
                    batch = [await results.receive()]
                except anyio.EndOfStream:
                    return
                closed = await self._fill(results, batch)
                if flushed is not None:
                    await flushed.wait()  # batches are written and committed in order
                flushed = anyio.Event()
                tg.start_soon(self._flush_and_signal, batch, flushed)
                if closed:
                    return

    async def _flush_and_signal(self, batch: list[Outcome], flushed: anyio.Event) -> None:
        await self._flush(batch)
        flushed.set()

    async def _fill(self, results: ObjectReceiveStream[Outcome], batch: list[Outcome]) -> bool:
        """Add to `batch` until it is full or commit_interval has passed; True at end of stream."""
        deadline = self._clock() + self._settings.commit_interval
        size = _body_bytes(batch)
        while len(batch) < self._settings.commit_batch and size < MAX_BATCH_BYTES:
            item: Outcome | None = None
            try:
                item = results.receive_nowait()  # type: ignore[attr-defined]
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                return True
            if item is None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                with anyio.move_on_after(remaining):
                    try:
                        item = await results.receive()
                    except anyio.EndOfStream:
                        return True
                if item is None:
                    return False  # commit_interval has passed
            batch.append(item)
            size += _body_bytes([item])
        return False

    async def _flush(self, batch: list[Outcome]) -> None:
        final = [o for o in batch if o.kind is OutcomeKind.TERMINAL]
        commit = CommitBatch()
        try:
            if final:
                result = await anyio.to_thread.run_sync(self._sink.write, final)
                commit.outputs = result.touched
                for position, message in result.failed.items():
                    outcome = final[position]
                    outcome.state, outcome.reason, outcome.message = (
                        State.FAILED,
                        "warc_error",
                        message,
                    )
        except OSError as exc:
            raise StorageError(f"cannot write output: {exc}") from exc
        finally:
            for outcome in final:
                if outcome.response is not None:
                    outcome.response.close()
        for o in batch:
            commit.discovered.extend(o.new_urls)
            if o.kind is OutcomeKind.TERMINAL:
                commit.finished.append(
                    Finished(o.entry.key, o.state, o.reason, o.status, o.attempts, o.fetched_at)
                )
            else:
                commit.deferred.append(
                    Deferred(o.entry.key, o.attempts, o.not_before, o.reason, o.status)
                )
        commit.hosts = self._host_states()
        with anyio.CancelScope(shield=True):
            await self._frontier.commit(commit)
        self._on_commit(batch)
