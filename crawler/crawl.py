"""Composition root: `assemble` builds the parts of one crawl into a frozen Pipeline, and
`Crawl` runs it (to the end of the frontier for `run`, until a signal for `serve`)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from crawler.committer import Committer
from crawler.console import MAX_CONCURRENCY, HostEvents
from crawler.dns import Resolver
from crawler.errors import StorageError
from crawler.fetcher import Fetcher
from crawler.frontier import Frontier, HostControl
from crawler.guard import AddressGuard
from crawler.judge import Judge
from crawler.metrics import Metrics
from crawler.models import Entry, Outcome
from crawler.output.process import OutputProcess
from crawler.politeness import HealthLimits
from crawler.progress import Tally, log_summaries, show_bar
from crawler.recrawl import Schedule
from crawler.retry import RetryPolicy
from crawler.robots import Robots
from crawler.scheduler import Scheduler
from crawler.scope import Scope
from crawler.seen import Seen
from crawler.settings import Settings
from crawler.worker import EXCLUDED, Worker

log = structlog.get_logger("crawler")

# How often a running crawl records that it is alive (Frontier.beat): a restart keeps every
# host a delay away from the previous process's last possible request, a fresh crawl does
# not wait at all.
BEAT_SECONDS = 1.0
SWEEP_BATCH = 10_000  # queued URLs read at once when an exclude pattern is added
CONTROLS_SECONDS = 1.0  # `serve` reads the operator's host controls this often
RECRAWL_LOOK_SECONDS = 30.0  # `serve` looks for URLs due again at least this often


@dataclass(frozen=True, slots=True, kw_only=True)
class Pipeline:
    """The long-lived parts of one crawl, built once by `assemble`, shared by its tasks."""

    settings: Settings
    frontier: Frontier
    sink: OutputProcess  # the output files, written by a child process
    resolver: Resolver  # one DNS cache for the whole crawl
    fetcher: Fetcher
    scheduler: Scheduler
    judge: Judge
    robots: Robots | None
    seen: Seen  # links already sent to the frontier, shared by the judge and the committer
    metrics: Metrics


@asynccontextmanager
async def assemble(
    data_dir: Path, settings: Settings, frontier: Frontier, *, forever: bool = False
) -> AsyncIterator[Pipeline]:
    """Build a crawl's parts on an open frontier after making the output files agree with
    the database and taking back stale leases; close what was opened on the way out."""
    committed = await frontier.committed_outputs()
    sink = await anyio.to_thread.run_sync(OutputProcess, data_dir, settings)
    resolver = Resolver(settings.network)
    fetcher: Fetcher | None = None
    try:
        await anyio.to_thread.run_sync(sink.recover, committed)
        released = await frontier.release_all()
        if released:
            log.info("leases_released", count=released)
        fetcher = _fetcher(settings, frontier, resolver)
        policy = RetryPolicy(settings.retry)
        last_beat = await frontier.last_beat()
        quiet_since = None if last_beat is None else last_beat + BEAT_SECONDS
        scheduler = _scheduler(
            settings, frontier, resolver, policy, forever=forever, quiet_since=quiet_since
        )
        seen = Seen(settings.crawl.sort_query)
        yield Pipeline(
            settings=settings,
            frontier=frontier,
            sink=sink,
            resolver=resolver,
            fetcher=fetcher,
            scheduler=scheduler,
            judge=_judge(settings, policy, seen),
            robots=_robots(settings, fetcher, frontier, scheduler),
            seen=seen,
            metrics=Metrics(),
        )
    finally:
        with anyio.CancelScope(shield=True):
            if fetcher is not None:
                await fetcher.aclose()
            await resolver.aclose()
            await anyio.to_thread.run_sync(sink.close)


def _judge(settings: Settings, policy: RetryPolicy, seen: Seen) -> Judge:
    crawl = settings.crawl
    max_redirects = settings.fetch.max_redirects
    return Judge(policy, crawl, max_redirects=max_redirects, scope=Scope(crawl), seen=seen)


def _fetcher(settings: Settings, frontier: Frontier, resolver: Resolver) -> Fetcher:
    # Each origin's pool allows what the console may set for a host (the scheduler keeps
    # the requests in flight to what is set; an idle connection is kept only once opened).
    connections = [settings.politeness.per_host_concurrency, MAX_CONCURRENCY]
    connections += [p.per_host_concurrency or 0 for p in settings.profiles.all]
    return Fetcher(
        settings.fetch,
        AddressGuard(settings.network.allowed_networks),
        per_host_connections=max(connections),
        profiles=settings.profiles,
        store_credentials=settings.output.store_credentials,
        cookie_store=frontier,
        resolver=resolver,
    )


def _scheduler(
    settings: Settings,
    frontier: Frontier,
    resolver: Resolver,
    policy: RetryPolicy,
    *,
    forever: bool,
    quiet_since: float | None,
) -> Scheduler:
    # A host is never blocked longer than any of its URLs would wait for the same header.
    max_block = min(settings.politeness.max_retry_after, settings.retry.max_retry_after)
    return Scheduler(
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
        backoff=policy.backoff,
        resolver=resolver,
        quiet_since=quiet_since,
    )


def _robots(
    settings: Settings, fetcher: Fetcher, frontier: Frontier, scheduler: Scheduler
) -> Robots | None:
    if not settings.robots.obey:
        return None
    return Robots(
        fetcher,
        frontier,
        settings.robots,
        settings.fetch.user_agent,
        pacing=scheduler,
        max_wait=settings.retry.max_wait,
        archive=True,  # robots.txt responses go to the WARC and the index
    )


async def recrawl_due(frontier: Frontier, schedule: Schedule) -> int:
    """Time the finished URLs by `schedule` if it changed since the last start, then queue
    again those due now; how many were."""
    started = time.monotonic()
    retimed = await frontier.retime(schedule)
    if retimed is not None:
        seconds = round(time.monotonic() - started, 2)
        log.info("recrawl_retimed", urls=retimed, schedule=schedule.signature(), seconds=seconds)
    due = await frontier.recrawl_due(time.time())
    if due:
        log.info("recrawl_due", urls=due)
    return due


@dataclass(slots=True)
class RunResult:
    interrupted: int | None  # the signal that stopped the run, if any


class Crawl:
    """Runs a Pipeline: the scheduler, `fetch.concurrency` workers and the committer, with
    optional services (API, inbox) alongside. It is the committer's listener."""

    def __init__(self, parts: Pipeline, *, progress_bar: bool = False) -> None:
        self.parts = parts
        self.scheduler = parts.scheduler
        self.metrics = parts.metrics
        self._progress_bar = progress_bar
        self._committer = Committer(
            parts.frontier,
            parts.sink,
            parts.settings.storage,
            listener=self,
            hosts=parts.scheduler,
            seen=parts.seen,
            lease_seconds=parts.settings.frontier.lease_seconds,
            schedule=Schedule.of(parts.settings.crawl),
        )
        self._workers_scope = anyio.CancelScope()
        self.interrupted: int | None = None
        self.tally: Tally | None = None  # set when run() starts
        self.storage_problem: str | None = None  # why output cannot be written now
        self.events = HostEvents()  # each host's last fetch events (the console's)
        self.statuses: Counter[str] = Counter()  # final outcomes by status class ("2xx", "none")
        self._submit: MemoryObjectSendStream[Outcome] | None = None

    # -- the committer's listener -----------------------------------------------------------
    def committed(self, outcomes: list[Outcome], added: int) -> None:
        self.scheduler.committed()
        if self.tally is not None:
            self.tally.committed(outcomes, added)
        for outcome in outcomes:
            self.metrics.record(outcome)
            self.events.record(outcome)
            if outcome.final:
                status = outcome.status
                self.statuses["none" if status is None else f"{status // 100}xx"] += 1

    def stalled(self, problem: str | None) -> None:
        """Output cannot be written (disk full, read-only) or can again: hold the claims."""
        self.storage_problem = problem
        if problem is None:
            self.scheduler.resume("storage")
        else:
            self.scheduler.pause("storage")

    @property
    def stopping(self) -> bool:
        return self.interrupted is not None

    # -- running ----------------------------------------------------------------------------
    async def watch_controls(self) -> None:
        """`serve`: apply what the operator set (PATCH /hosts, /excludes), read from the
        frontier every CONTROLS_SECONDS: set on another node, or before a restart."""
        frontier, scheduler = self.parts.frontier, self.scheduler
        applied: dict[str, HostControl] | None = None
        while True:
            try:
                controls = await frontier.host_controls()
                # Applied again while any is timed: its blocked_until may just have passed.
                timed = any(c.blocked_until is not None for c in controls.values())
                if controls != applied or timed:
                    scheduler.control(controls)
                    applied = controls
                self.exclude(await frontier.excludes())
            except StorageError as exc:
                log.warning("controls_unread", error=str(exc))
            await anyio.sleep(CONTROLS_SECONDS)

    def exclude(self, patterns: Sequence[str]) -> None:
        """The live exclude patterns are these (a URL matching one ends skipped, unfetched)."""
        judge = self.parts.judge
        if [p.pattern for p in judge.excludes] != list(patterns):
            judge.excludes = tuple(re.compile(p) for p in patterns)

    async def sweep(self, pattern: str) -> int:
        """End skipped (reason "excluded") every queued URL `pattern` matches, those this
        process holds in its buffers too, through the committer like any outcome (index
        line, commit); how many."""
        frontier, matcher = self.parts.frontier, re.compile(pattern)
        lease = self.parts.settings.frontier.lease_seconds
        swept, after = 0, -(2**63)
        buffered = self.scheduler.take(lambda url: matcher.search(url) is not None)
        while (submit := self._submit) is not None:
            batch = await frontier.queued_urls(after, SWEEP_BATCH)
            if not batch and not buffered:
                break
            after = batch[-1][0] if batch else after
            keys = [key for key, url in batch if matcher.search(url)]
            entries = buffered + await frontier.lease(keys, time.time() + lease)
            buffered = []
            for done, entry in enumerate(entries):
                outcome = Outcome.skipped(entry, attempts=entry.attempts, reason=EXCLUDED)
                try:
                    await submit.send(outcome)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    await frontier.release(entries[done:])  # stopping: they stay queued
                    return swept
                swept += 1
        return swept

    async def watch_recrawl(self) -> None:
        """`serve`: queue finished URLs again as they come due (crawl.recrawl_after), looking
        when the next is due, and at least as often as a URL finished now could be."""
        frontier, schedule = self.parts.frontier, Schedule.of(self.parts.settings.crawl)
        if not schedule.on:
            return
        every = min(RECRAWL_LOOK_SECONDS, max(1.0, schedule.shortest()))
        while True:
            try:
                due = await frontier.recrawl_due(time.time())
                if due:
                    log.info("recrawl_due", urls=due)
                    if self.tally is not None:
                        self.tally.recount(await frontier.counts(top_hosts=0))
                    self.scheduler.committed()  # new work: claim now, not at the next poll
                upcoming = await frontier.next_recrawl()
            except StorageError as exc:
                log.warning("recrawl_check_failed", error=str(exc))
                upcoming = None
            wait = every if upcoming is None else upcoming - time.time()
            await anyio.sleep(min(max(wait, 0.5), every))

    async def _beat(self) -> None:
        frontier, wall = self.parts.frontier, time.time
        while True:
            try:
                await frontier.beat(wall())
            except StorageError as exc:  # a full disk: the committer reports and recovers
                log.debug("beat_failed", error=str(exc))
            await anyio.sleep(BEAT_SECONDS)

    async def _renew(self) -> None:
        """Where leases expire, renew those this node holds (buffered, in flight, waiting
        to go back) every quarter of a lease, so a long wait never loses one."""
        frontier, lease = self.parts.frontier, self.parts.settings.frontier.lease_seconds
        while True:
            await anyio.sleep(lease / 4)
            try:
                await frontier.renew(self.scheduler.leftovers(), time.time() + lease)
            except StorageError as exc:
                log.warning("renew_failed", error=str(exc))

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self.interrupted is not None:
                    log.warning("second_signal", signal=signum)
                    os._exit(128 + signum)  # same as a SIGKILL: the next start recovers
                self.interrupted = signum
                grace = self.parts.settings.shutdown.grace_seconds
                log.warning("stopping", signal=signum, grace_seconds=grace)
                self.scheduler.stop()
                self._workers_scope.deadline = anyio.current_time() + grace

    async def run(
        self, services: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    ) -> RunResult:
        """Crawl; `services` run alongside until the crawl ends (they are then cancelled)."""
        settings = self.parts.settings
        self.tally = Tally(await self.parts.frontier.counts(top_hosts=0))
        result_send, result_receive = anyio.create_memory_object_stream[Outcome](
            settings.fetch.concurrency
        )
        committer_done = anyio.Event()

        async def run_committer() -> None:
            try:
                await self._committer.run(result_receive)
            finally:
                committer_done.set()

        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._watch_signals)
                outer.start_soon(self._beat)
                if self.parts.frontier.leases_expire:
                    outer.start_soon(self._renew)
                outer.start_soon(run_committer)
                outer.start_soon(log_summaries, self.tally, settings.log.summary_seconds)
                if self._progress_bar:
                    outer.start_soon(show_bar, self.tally)
                for service in services:
                    outer.start_soon(service)
                self._submit = result_send.clone()  # outcomes that are not a worker's
                try:
                    with self._workers_scope:
                        await self._fetch(result_send)
                finally:
                    submit, self._submit = self._submit, None
                    submit.close()
                # Workers are gone; the committer drains what they sent, then we stop watching.
                await committer_done.wait()
                outer.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.parts.frontier.release(self.scheduler.leftovers())
                except StorageError as exc:  # a full disk: the next start releases them
                    log.warning("release_failed", error=str(exc))
        return RunResult(self.interrupted)

    async def _fetch(self, results: MemoryObjectSendStream[Outcome]) -> None:
        """The scheduler hands entries to the workers until the frontier is done (or stop)."""
        parts = self.parts
        work_send, work_receive = anyio.create_memory_object_stream[Entry](0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(parts.scheduler.run, work_send)
            for _ in range(parts.settings.fetch.concurrency):
                worker = Worker(
                    parts.fetcher,
                    parts.scheduler,
                    parts.judge,
                    robots=parts.robots,
                    max_crawl_delay=parts.settings.politeness.max_crawl_delay,
                )
                tg.start_soon(worker.run, work_receive.clone(), results.clone())
            work_receive.close()
            results.close()
