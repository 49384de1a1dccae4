"""Writer: the one task that appends results to WARC + JSONL, then commits them to the frontier."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
from anyio.abc import ObjectReceiveStream

from crawler.errors import StorageError
from crawler.frontier import CommitBatch, Deferred, Finished, Frontier
from crawler.models import Outcome, OutcomeKind
from crawler.settings import StorageSettings
from crawler.writers import Outputs


class Writer:
    """Batches outcomes; each batch is written, flushed (fsynced), then committed at once.

    A URL becomes final in the frontier only in the transaction that also records the new
    committed length of the output files, so a crash at any point loses or repeats nothing.
    """

    def __init__(
        self,
        frontier: Frontier,
        outputs: Outputs,
        settings: StorageSettings,
        on_commit: Callable[[list[Outcome]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._frontier = frontier
        self._outputs = outputs
        self._settings = settings
        self._on_commit = on_commit
        self._clock = clock

    async def run(self, results: ObjectReceiveStream[Outcome]) -> None:
        async with results:
            while True:
                try:
                    batch = [await results.receive()]
                except anyio.EndOfStream:
                    return
                closed = await self._fill(results, batch)
                await self._flush(batch)
                if closed:
                    return

    async def _fill(self, results: ObjectReceiveStream[Outcome], batch: list[Outcome]) -> bool:
        """Add to `batch` until it is full or commit_interval has passed; True at end of stream."""
        deadline = self._clock() + self._settings.commit_interval
        while len(batch) < self._settings.commit_batch:
            try:
                batch.append(results.receive_nowait())  # type: ignore[attr-defined]
                continue
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            with anyio.move_on_after(remaining):
                try:
                    batch.append(await results.receive())
                except anyio.EndOfStream:
                    return True
        return False

    async def _flush(self, batch: list[Outcome]) -> None:
        final = [o for o in batch if o.kind is OutcomeKind.TERMINAL]
        commit = CommitBatch()
        try:
            if final:
                commit.outputs = await anyio.to_thread.run_sync(self._outputs.write, final)
        except OSError as exc:
            raise StorageError(f"cannot write output: {exc}") from exc
        finally:
            for outcome in final:
                if outcome.response is not None:
                    outcome.response.close()
        for o in batch:
            if o.kind is OutcomeKind.TERMINAL:
                commit.finished.append(
                    Finished(o.entry.key, o.state, o.reason, o.status, o.attempts, o.fetched_at)
                )
                commit.discovered.extend(o.new_urls)
            else:
                commit.deferred.append(
                    Deferred(o.entry.key, o.attempts, o.not_before, o.reason, o.status)
                )
        with anyio.CancelScope(shield=True):
            await self._frontier.commit(commit)
        self._on_commit(batch)
