"""Composition root: builds the pipeline for one data directory and runs it (to the end of
the frontier for `run`, until a signal for `serve`)."""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog

from crawler.committer import Writer
from crawler.dns import Resolver
from crawler.errors import StorageError, storage_error
from crawler.fetcher import Fetcher
from crawler.frontier import Frontier
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.guard import AddressGuard
from crawler.metrics import Metrics
from crawler.models import Entry, NewURL, Outcome
from crawler.output.process import OutputProcess
from crawler.politeness import HealthLimits
from crawler.progress import Tally, log_summaries, show_bar
from crawler.retry import RetryPolicy
from crawler.robots import Robots
from crawler.scheduler import Scheduler
from crawler.scope import Scope
from crawler.seeds import SeedReport, read_seeds
from crawler.seen import Seen
from crawler.settings import Settings
from crawler.worker import Worker

DB_NAME = "crawl.db"

log = structlog.get_logger("crawler")


def has_crawl(data_dir: Path) -> bool:
    """Whether `data_dir` holds a crawl (its database); StorageError if it cannot."""
    try:
        if data_dir.exists() and not data_dir.is_dir():
            raise StorageError(f"data directory {data_dir} exists and is not a directory")
        return (data_dir / DB_NAME).exists()
    except OSError as exc:
        raise storage_error(exc, "read data directory", data_dir) from exc


def make_data_dir(data_dir: Path) -> None:
    """Create the data directory (and its parents) unless it exists."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StorageError(f"data directory {data_dir} exists and is not a directory") from None
    except OSError as exc:
        raise storage_error(exc, "create data directory", data_dir) from exc


@contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock (making the directory if new): one `run` per crawl
    directory at a time."""
    make_data_dir(data_dir)
    lock = data_dir / "crawl.lock"
    try:
        handle = open(lock, "a+b")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise storage_error(exc, "open", lock) from exc
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(f"another crawler is running on {data_dir}") from None
        except OSError as exc:
            raise storage_error(exc, "lock", lock) from exc
        yield


async def open_frontier(data_dir: Path, settings: Settings) -> SQLiteFrontier:
    await anyio.to_thread.run_sync(make_data_dir, data_dir)
    return await SQLiteFrontier.open(
        data_dir / DB_NAME,
        fsync=settings.storage.fsync,
        busy_timeout=settings.storage.busy_timeout,
        max_per_host=settings.crawl.max_pages_per_host,
    )


async def add_seeds(
    frontier: Frontier, paths: Sequence[str], report: SeedReport, sort_query: bool = False
) -> None:
    """Add seed files to the frontier in batches; parsing (in a thread) overlaps inserting."""
    batches = read_seeds(paths, report, sort_query=sort_query)
    send, receive = anyio.create_memory_object_stream[list[NewURL]](1)

    async def parse() -> None:
        async with send:
            while (batch := await anyio.to_thread.run_sync(next, batches, None)) is not None:
                await send.send(batch)

    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(parse)
        async for batch in receive:
            report.added += await frontier.add(batch)


@dataclass(slots=True)
class RunResult:
    interrupted: int | None  # the signal that stopped the run, if any


class Crawl:
    """One crawl process: recover, then fetch until the frontier is exhausted (or, with
    `forever`, until a signal), with optional services (API, inbox) running alongside."""

    def __init__(
        self,
        data_dir: Path,
        settings: Settings,
        frontier: Frontier,
        *,
        forever: bool = False,
        progress_bar: bool = False,
    ) -> None:
        self._settings = settings
        self._frontier = frontier
        self._data_dir = data_dir
        self._sink: OutputProcess | None = None
        self._progress_bar = progress_bar
        # A host is never blocked longer than any of its URLs would wait for the same header.
        max_block = min(settings.politeness.max_retry_after, settings.retry.max_retry_after)
        self._policy = RetryPolicy(settings.retry)
        self._resolver = Resolver(settings.network)  # one DNS cache for the whole crawl
        self.scheduler = Scheduler(
            frontier,
            settings.politeness,
            settings.frontier,
            max_block=max_block,
            forever=forever,
            profiles=settings.profiles,
            health=HealthLimits(
                max_failures=settings.retry.host_max_failures,
                down_seconds=settings.retry.host_down_seconds,
                max_wait=settings.retry.max_wait,
            ),
            backoff=self._policy.backoff,
            resolver=self._resolver,
        )
        self._workers_scope = anyio.CancelScope()
        self.interrupted: int | None = None
        self.metrics = Metrics()
        self.tally: Tally | None = None  # set when run() starts
        self.storage_problem: str | None = None  # why output cannot be written now

    async def recover(self) -> None:
        """Make the output files agree with the database, and take back stale leases."""
        committed = await self._frontier.committed_outputs()
        self._sink = await anyio.to_thread.run_sync(OutputProcess, self._data_dir, self._settings)
        await anyio.to_thread.run_sync(self._sink.recover, committed)
        released = await self._frontier.release_all()
        if released:
            log.info("leases_released", count=released)

    def _on_commit(self, batch: list[Outcome], added: int) -> None:
        self.scheduler.committed()
        if self.tally is not None:
            self.tally.committed(batch, added)
        for outcome in batch:
            self.metrics.record(outcome)

    def _on_stall(self, problem: str | None) -> None:
        """The writer cannot write (disk full, read-only) or can again: hold the claims."""
        self.storage_problem = problem
        if problem is None:
            self.scheduler.resume("storage")
        else:
            self.scheduler.pause("storage")

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self.interrupted is not None:
                    log.warning("second_signal", signal=signum)
                    os._exit(128 + signum)  # same as a SIGKILL: the next start recovers
                self.interrupted = signum
                grace = self._settings.shutdown.grace_seconds
                log.warning("stopping", signal=signum, grace_seconds=grace)
                self.scheduler.stop()
                self._workers_scope.deadline = anyio.current_time() + grace

    async def run(
        self, services: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    ) -> RunResult:
        """Crawl; `services` run alongside until the crawl ends (they are then cancelled)."""
        settings = self._settings
        self.tally = Tally(await self._frontier.counts(top_hosts=0))
        fetcher = Fetcher(
            settings.fetch,
            AddressGuard(settings.network.allowed_networks),
            per_host_connections=max(
                [settings.politeness.per_host_concurrency]
                + [p.per_host_concurrency or 0 for p in settings.profiles.all]
            ),
            profiles=settings.profiles,
            store_credentials=settings.output.store_credentials,
            cookie_store=self._frontier,
            resolver=self._resolver,
        )
        policy = self._policy
        scope = Scope(settings.crawl)
        robots = (
            Robots(
                fetcher,
                self._frontier,
                settings.robots,
                settings.fetch.user_agent,
                pacing=self.scheduler,
                max_wait=settings.retry.max_wait,
            )
            if settings.robots.obey
            else None
        )
        assert self._sink is not None, "recover() first"
        seen = Seen(settings.crawl.sort_query)
        writer = Writer(
            self._frontier,
            self._sink,
            settings.storage,
            self._on_commit,
            self.scheduler.host_states,
            on_stall=self._on_stall,
            give_up=lambda: self.interrupted is not None,
            seen=seen,
            starving=lambda: self.scheduler.starving,
        )
        work_send, work_receive = anyio.create_memory_object_stream[Entry](0)
        result_send, result_receive = anyio.create_memory_object_stream[Outcome](
            settings.fetch.concurrency
        )
        writer_done = anyio.Event()

        async def run_writer() -> None:
            try:
                await writer.run(result_receive)
            finally:
                writer_done.set()

        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._watch_signals)
                outer.start_soon(run_writer)
                outer.start_soon(log_summaries, self.tally, settings.log.summary_seconds)
                if self._progress_bar:
                    outer.start_soon(show_bar, self.tally)
                for service in services:
                    outer.start_soon(service)
                with self._workers_scope:
                    async with anyio.create_task_group() as inner:
                        inner.start_soon(self.scheduler.run, work_send)
                        for _ in range(settings.fetch.concurrency):
                            worker = Worker(
                                fetcher,
                                policy,
                                self.scheduler,
                                settings.fetch.max_redirects,
                                settings.crawl,
                                scope,
                                robots,
                                settings.politeness.max_crawl_delay,
                                seen=seen,
                            )
                            inner.start_soon(worker.run, work_receive.clone(), result_send.clone())
                        work_receive.close()
                        result_send.close()
                # Workers are gone; the writer drains what they sent, then we stop watching.
                await writer_done.wait()
                outer.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._frontier.release(self.scheduler.leftovers())
                except StorageError as exc:  # a full disk: the next start releases them
                    log.warning("release_failed", error=str(exc))
                await fetcher.aclose()
                await self._resolver.aclose()
                await anyio.to_thread.run_sync(self._sink.close)
        return RunResult(self.interrupted)
