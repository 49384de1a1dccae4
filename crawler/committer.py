"""Committer: the one task that has results written (WARC + JSONL), then commits them to the
frontier, batch by batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import anyio
import structlog
from anyio.abc import ObjectReceiveStream

from crawler.errors import FULL_ERRNOS, OutOfSpace, StorageError
from crawler.frontier import Frontier
from crawler.frontier.values import CommitBatch, Committed, Deferred, Finished, HostState
from crawler.models import Outcome, Response, State, Visit
from crawler.output import Sink, Stored, WriteResult
from crawler.recrawl import Schedule
from crawler.seen import Seen
from crawler.settings import StorageSettings

MAX_BATCH_BYTES = 64 * 1024 * 1024  # bodies in one batch: bounds the memory a batch holds
MAX_VALIDATOR = 1024  # characters of an ETag or Last-Modified kept for a recrawl
RETRY_FULL_DISK = 5.0  # seconds between attempts to write or commit while the disk is full

log = structlog.get_logger("crawler.committer")


def _body_bytes(batch: list[Outcome]) -> int:
    return sum(o.response.wire_bytes for o in batch if o.response is not None)


def _validator(response: Response, name: str) -> str | None:
    """A validator to keep for the next visit's conditional request; none past
    MAX_VALIDATOR characters (a hostile server would bloat every URL's row with it)."""
    value = response.header(name)
    return value if value is not None and len(value) <= MAX_VALIDATOR else None


class CommitListener(Protocol):
    """Told of each commit and of storage trouble; asked whether the crawl is stopping."""

    def committed(self, outcomes: list[Outcome], added: int) -> None:
        """`outcomes` are durable now (those whose lease was lost left out); `added` new URLs."""

    def stalled(self, problem: str | None) -> None:
        """Output cannot be written (disk full, read-only volume), or, with None, can again."""

    @property
    def stopping(self) -> bool:
        """True once the crawl stops: a full disk is then given up on, not waited out."""


class HostLedger(Protocol):
    """What the committer asks of the scheduler."""

    def host_states(self) -> list[HostState]:
        """Paces changed since the last call, saved with the batch."""

    @property
    def starving(self) -> bool:
        """Nothing left to hand out: commit what is held without waiting to fill the batch."""


class Committer:
    """Batches outcomes; each batch is written, flushed (fsynced), then committed at once.

    A URL becomes final in the frontier only in the transaction that also records the new
    committed length of the output files, so a crash at any point loses or repeats nothing.

    A full disk (or read-only volume) does not end the crawl: the batch is held, the output
    files are cut back to their committed length, and writing is tried again every
    RETRY_FULL_DISK seconds; meanwhile `stalled` says why and the listener is told.
    """

    def __init__(
        self,
        frontier: Frontier,
        sink: Sink,
        settings: StorageSettings,
        *,
        listener: CommitListener,
        hosts: HostLedger | None = None,
        seen: Seen | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = RETRY_FULL_DISK,
        lease_seconds: float = 900.0,
        schedule: Schedule | None = None,
    ) -> None:
        self._listener = listener
        self._schedule = schedule or Schedule()
        self._lease_seconds = lease_seconds
        self._hosts = hosts
        # Most links a crawl finds are already in the frontier: remembering the keys sent
        # there saves the database from inserting (and ignoring) them again.
        self._seen = seen or Seen()
        self._retry_after = retry_after
        self.stalled: str | None = None
        self._frontier = frontier
        self._sink = sink
        self._settings = settings
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
        """Add to `batch` until it is full or commit_interval has passed; True at end of stream.

        When the scheduler has nothing left to hand out (`starving`), the batch goes as soon
        as no more results are waiting: the workers idle until the links and deferrals it
        holds are committed, as they do at the start of a crawl, generation by generation."""
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
                if self._hosts is not None and self._hosts.starving:
                    return False
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
        """Write the final outcomes of `batch`, then commit the whole batch in one go. Where
        leases expire (several nodes), only the outcomes whose lease this node still holds
        are written, and the leases are held from that check to the commit."""
        written: list[CommitBatch] = []

        async def write(held: set[int]) -> CommitBatch:
            batch[:] = self._held(batch, held)
            written.append(await self._prepare(batch))
            return written[0]

        entries = [o.entry for o in batch if not o.archive_only]
        if not self._frontier.leases_expire:
            await write(set())
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    if written:  # (or written, then the commit failed: commit it now)
                        committed = await self._frontier.commit(written[0])
                    else:
                        until = time.time() + self._lease_seconds
                        committed = await self._frontier.commit_holding(entries, until, write)
                break
            except OutOfSpace as exc:
                await self._stall(exc)
        self._unstall()
        self._listener.committed(self._accepted(batch, committed), committed.added)

    async def _prepare(self, batch: list[Outcome]) -> CommitBatch:
        """Write the final outcomes of `batch`; the commit of all of it."""
        commit = CommitBatch()
        commit.outputs, stored = await self._write_final(batch)
        store = self._seen.store
        for position, o in enumerate(batch):
            if o.archive_only:
                continue  # written, and that is all: no URL of the frontier
            for new in o.new_urls:
                if store(new.key):  # also drops repeats within the batch
                    commit.discovered.append(new)
            key, token = o.entry.key, o.entry.token
            if o.final:
                commit.finished.append(self._finished(o, stored.get(position)))
            else:
                commit.deferred.append(
                    Deferred(key, o.attempts, o.not_before, o.reason, o.status, token)
                )
        commit.hosts = [] if self._hosts is None else self._hosts.host_states()
        return commit

    def _finished(self, o: Outcome, stored: Stored | None) -> Finished:
        """The completion of a final outcome, with what its visit leaves for the next one
        (its validators, payload digest and record; the last visit's where it got no
        response) and when it is due again."""
        last = o.entry.last
        keep, changed = last, None
        response = o.response
        if stored is not None and response is not None:
            etag, modified = _validator(response, "etag"), _validator(response, "last-modified")
            if stored.revisit == "not_modified":  # a 304 may update the validators
                changed = False
                if last is not None:
                    etag, modified = etag or last.etag, modified or last.last_modified
            elif last is not None and last.digest is not None:
                changed = last.digest != stored.digest
            interval = None if last is None else last.interval
            keep = Visit(etag, modified, stored.digest, stored.ref_uri, stored.ref_date, interval)
        recrawl_at = None
        if o.state is State.DONE or (keep is not None and keep.digest is not None):
            recrawl_at, interval = self._schedule.next(
                o.fetched_at or time.time(), None if keep is None else keep.interval, changed
            )
            if keep is not None and interval != keep.interval:
                keep = replace(keep, interval=interval)
            elif keep is None and interval is not None:
                keep = Visit(interval=interval)
        return Finished(
            o.entry.key, o.state, o.reason, o.status, o.attempts, o.fetched_at, o.entry.token,
            last=keep, recrawl_at=recrawl_at, visited=stored is not None,
            revisit=None if stored is None else stored.revisit,
        )  # fmt: skip

    def _held(self, batch: list[Outcome], held: set[int]) -> list[Outcome]:
        """The outcomes whose lease this node still holds (all, where leases do not
        expire): a record is written only for a completion the frontier will take (another
        node has the URL of a lost lease, and writes its record)."""
        if not self._frontier.leases_expire:
            return batch
        lost = [o for o in batch if o.entry.key not in held and not o.archive_only]
        if lost:
            log.warning("leases_lost", count=len(lost), urls=[o.entry.url for o in lost[:5]])
            for outcome in lost:
                if outcome.response is not None:
                    outcome.response.close()
        return [o for o in batch if o.entry.key in held or o.archive_only]

    async def _write_final(self, batch: list[Outcome]) -> tuple[dict[str, int], dict[int, Stored]]:
        """Write the final outcomes of `batch` (then close their responses); the output
        files touched, with their new lengths, and how each response was stored (by its
        position in `batch`). An outcome whose record could not be written is replaced in
        `batch` by its `warc_error` failure, which is what is committed."""
        positions = [i for i, o in enumerate(batch) if o.final]
        written = [batch[i] for i in positions]
        if not written:
            return {}, {}
        try:
            result = await self._write(written)
        except OSError as exc:  # an in-process sink (tests) raises the OS error itself
            kind = OutOfSpace if exc.errno in FULL_ERRNOS else StorageError
            raise kind(f"cannot write output: {exc}") from exc
        finally:
            for outcome in written:
                if outcome.response is not None:
                    outcome.response.close()
        for position, message in result.failed.items():
            at = positions[position]
            batch[at] = batch[at].unwritten(message)
        return result.touched, {positions[p]: how for p, how in result.stored.items()}

    @staticmethod
    def _accepted(batch: list[Outcome], committed: Committed) -> list[Outcome]:
        """The outcomes the frontier took: one whose lease was lost (another holder has its
        URL now) is not a result of this crawl and is not counted."""
        if not committed.refused:
            return [o for o in batch if not o.archive_only]
        refused = set(committed.refused)
        log.warning("completions_refused", count=len(refused), keys=sorted(refused)[:10])
        return [o for o in batch if o.entry.key not in refused and not o.archive_only]

    async def _write(self, final: list[Outcome]) -> WriteResult:
        while True:
            try:
                return await anyio.to_thread.run_sync(self._sink.write, final)
            except OutOfSpace as exc:
                await self._stall(exc)
                # Cut the files back to what is committed: the retry rewrites the batch whole.
                committed = await self._frontier.committed_outputs()
                try:
                    await anyio.to_thread.run_sync(self._sink.recover, committed)
                except OutOfSpace as again:
                    log.warning("output_recover_failed", error=str(again))

    async def _stall(self, exc: OutOfSpace) -> None:
        """Wait for space, or raise `exc` when stopping (the batch stays uncommitted: its
        URLs are fetched again after a restart, nothing is lost or written twice)."""
        if self._listener.stopping:
            raise exc
        if self.stalled is None:
            log.error("storage_full", error=str(exc), retry_seconds=self._retry_after)
        self.stalled = str(exc)
        self._listener.stalled(self.stalled)
        await anyio.sleep(self._retry_after)

    def _unstall(self) -> None:
        if self.stalled is not None:
            log.warning("storage_writable_again")
            self.stalled = None
            self._listener.stalled(None)
