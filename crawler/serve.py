"""`crawler serve`: the crawl runs forever, fed by the inbox and the HTTP API.

The crawl, the API (hypercorn), the inbox watcher and the disk-space watcher share one
event loop. New URLs are picked up within the scheduler's idle poll (a second).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import structlog

from crawler import status
from crawler.api import Api, serve_api
from crawler.console import changed_control, host_view, timestamp
from crawler.crawl import Crawl
from crawler.errors import StorageError
from crawler.frontier import Counts, HostControl, HostRow, HostState, State
from crawler.inbox import Inbox, Ingested
from crawler.seeds import parse_lines

DISK_CHECK_SECONDS = 2.0
COUNTS_MAX_AGE = 5.0  # /status and /metrics share one frontier count for this long

log = structlog.get_logger("crawler.serve")


class ServiceBackend:
    """What the API sees of the running crawl."""

    def __init__(self, crawl: Crawl, data_dir: Path) -> None:
        self._crawl = crawl
        self._frontier = crawl.parts.frontier
        self._data_dir = data_dir
        self._settings = crawl.parts.settings
        self._counts: tuple[float, Counts] | None = None
        self._counts_lock = anyio.Lock()

    async def _fresh_counts(self) -> Counts:
        async with self._counts_lock:
            now = time.monotonic()
            if self._counts is None or now - self._counts[0] > COUNTS_MAX_AGE:
                self._counts = (now, await self._frontier.counts(top_hosts=10))
            return self._counts[1]

    def free_bytes(self) -> int:
        return shutil.disk_usage(self._data_dir).free

    async def status(self) -> dict[str, Any]:
        counts = await self._fresh_counts()
        scheduler = self._crawl.scheduler
        tally = self._crawl.tally
        result = status.as_dict(counts)
        for host in result["hosts"]:
            host["politeness"] = scheduler.pace_of(host["host"])
        result.update(
            rates=tally.rates() if tally else {},
            in_flight=scheduler.inflight,
            paused=scheduler.paused,
            storage_problem=self._crawl.storage_problem,
        )
        return result

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        free = await anyio.to_thread.run_sync(self.free_bytes)
        try:
            await self._frontier.next_due()
            database = "ok"
        except StorageError as exc:
            database = str(exc)
        writer = self._crawl.storage_problem or "ok"
        disk = "ok" if free >= self._settings.service.min_free_bytes else "low"
        checks = {"database": database, "writer": writer, "disk": disk, "free_bytes": free}
        return all(v == "ok" for v in (database, writer, disk)), checks

    async def metrics(self) -> tuple[bytes, str]:
        metrics = self._crawl.metrics
        metrics.set_frontier(await self._fresh_counts())
        metrics.set_inflight(self._crawl.scheduler.inflight)
        return metrics.render()

    async def add_urls(self, lines: list[str], recrawl: bool = False) -> dict[str, Any]:
        """Add the URLs of `lines`; with `recrawl`, those already there are made due now."""
        urls, report = parse_lines(lines, self._settings.crawl.sort_query)
        accepted = await self._frontier.add(urls) if urls else 0
        due = await self._frontier.recrawl([u.key for u in urls], time.time()) if recrawl else 0
        self._seeded(accepted)
        if due and self._crawl.tally is not None:
            self._crawl.tally.recount(await self._frontier.counts(top_hosts=0))
        duplicate = len(urls) - accepted
        log.info(
            "seeds_posted",
            accepted=accepted,
            duplicate=duplicate,
            due=due,
            invalid=report.invalid,
        )
        answer = {
            "accepted": accepted,
            "duplicate": duplicate,
            "invalid": report.invalid,
            "errors": [f"line {bad.line}: {bad.reason}" for bad in report.examples],
        }
        if recrawl:
            answer["due"] = due
        return answer

    def _seeded(self, added: int) -> None:
        if self._crawl.tally is not None:
            self._crawl.tally.seeded(added)
        self._crawl.scheduler.committed()  # new work: claim now, not at the next poll
        self._counts = None

    async def hosts(self, sort: str, q: str, limit: int, offset: int) -> dict[str, Any]:
        """`GET /hosts`: a page of the host table."""
        scheduler, now = self._crawl.scheduler, time.time()
        if sort == "inflight":
            busiest = scheduler.busiest(offset + limit)[offset:]
            rows = await self._frontier.hosts(hosts=busiest)
        else:
            rows = await self._frontier.hosts(sort=sort, q=q, limit=limit, offset=offset)
        rows = await self._budget_controls(rows)
        views = [
            host_view(row, scheduler.pace_of(row.host), self._crawl.events, now) for row in rows
        ]
        return {"hosts": views, "sort": sort, "q": q, "limit": limit, "offset": offset}

    async def host(self, host: str, known: bool = True) -> dict[str, Any] | None:
        """`GET /hosts/{host}`: a host's view, its robots.txt state and last fetch events
        (None, if `known`: the crawl knows nothing of it)."""
        rows = await self._frontier.hosts(hosts=[host])
        if not rows:
            control = (await self._frontier.host_controls()).get(host)
            if control is None and known:
                return None
            blank = {s.value: 0 for s in State}
            rows = [HostRow(host, 0, blank, HostState(host, 0, 0), control or HostControl(host))]
        now = time.time()
        rows = await self._budget_controls(rows)
        view = host_view(rows[0], self._crawl.scheduler.pace_of(host), self._crawl.events, now)
        robots = await self._frontier.robots(host)
        view["robots"] = None
        if robots is not None:
            failing = robots.failing_since
            view["robots"] = {
                "status": robots.status,
                "expires_at": timestamp(robots.expires_at),
                "failing_since": timestamp(failing),
                "allows_all": robots.body is None,
            }
        view["events"] = self._crawl.events.of(host)
        return view

    async def _budget_controls(self, rows: list[HostRow]) -> list[HostRow]:
        """With politeness.key `domain` or `ip`, a host's controls are its budget's (the
        table's join matched them by host name)."""
        if self._settings.politeness.key == "host" or not rows:
            return rows
        controls = await self._frontier.host_controls()
        scheduler = self._crawl.scheduler
        budgets = [scheduler.known_budget(row.host) for row in rows]
        return [
            replace(row, control=controls.get(budget, HostControl(budget)))
            for row, budget in zip(rows, budgets, strict=True)
        ]

    async def change_host(self, host: str, change: Any) -> dict[str, Any]:
        """`PATCH /hosts/{host}`: the operator's controls changed (and kept), in force at
        once here (other nodes read them within a second)."""
        key = await self._crawl.scheduler.budget_of(host)  # what politeness.key makes it
        controls = await self._frontier.host_controls()
        control = changed_control(controls.get(key, HostControl(key)), change)
        await self._frontier.save_host_control(control, time.time())
        if control.empty:
            controls.pop(key, None)
        else:
            controls[key] = control
        self._crawl.scheduler.control(controls)
        log.info("host_controlled", host=host, **{k: change[k] for k in sorted(change)})
        view = await self.host(host, known=False)
        assert view is not None  # (known=False: a blank host's view)
        return view

    def progress(self) -> dict[str, Any]:
        """`GET /events`: what the console plots, once a second (totals since the start
        of this process; the page takes differences)."""
        crawl, tally = self._crawl, self._crawl.tally
        return {
            "at": time.time(),
            "total": tally.total if tally else 0,
            "states": dict(tally.states) if tally else {},
            "rates": tally.rates() if tally else {},
            "bytes": tally.bytes if tally else 0,
            "statuses": dict(crawl.statuses),
            "in_flight": crawl.scheduler.inflight,
            "paused": crawl.scheduler.paused,
            "storage_problem": crawl.storage_problem,
        }

    async def excludes(self) -> dict[str, Any]:
        return {"patterns": await self._frontier.excludes()}

    async def add_exclude(self, pattern: str) -> dict[str, Any]:
        """`POST /excludes`: kept, in force for every URL not fetched yet; the queued ones
        it matches end skipped now (the answer says how many)."""
        await self._frontier.save_excludes([pattern], [], time.time())
        patterns = await self._frontier.excludes()
        self._crawl.exclude(patterns)
        skipped = await self._crawl.sweep(pattern)
        self._counts = None
        log.info("exclude_added", pattern=pattern, skipped=skipped)
        return {"patterns": patterns, "skipped": skipped}

    async def remove_exclude(self, pattern: str) -> dict[str, Any]:
        """`DELETE /excludes`: URLs it made skipped stay so; later ones are fetched."""
        await self._frontier.save_excludes([], [pattern], time.time())
        patterns = await self._frontier.excludes()
        self._crawl.exclude(patterns)
        log.info("exclude_removed", pattern=pattern)
        return {"patterns": patterns}

    def pause(self) -> None:
        log.info("paused")
        self._crawl.scheduler.pause("api")

    def resume(self) -> None:
        log.info("resumed")
        self._crawl.scheduler.resume("api")

    async def watch_disk(self) -> None:
        """Below service.min_free_bytes: stop claiming (before the disk is full) until above."""
        low = False
        while True:
            free = await anyio.to_thread.run_sync(self.free_bytes)
            if free < self._settings.service.min_free_bytes and not low:
                low = True
                log.error("disk_space_low", free_bytes=free)
                self._crawl.scheduler.pause("disk")
            elif free >= self._settings.service.min_free_bytes and low:
                low = False
                log.warning("disk_space_ok", free_bytes=free)
                self._crawl.scheduler.resume("disk")
            await anyio.sleep(DISK_CHECK_SECONDS)

    async def watch_inbox(self) -> None:
        inbox = Inbox(
            self._data_dir / "inbox",
            self._frontier,
            sort_query=self._settings.crawl.sort_query,
            settle_seconds=self._settings.service.inbox_settle_seconds,
        )
        await inbox.run(self._settings.service.inbox_interval, on_ingested=self._ingested)

    def _ingested(self, ingested: Ingested) -> None:
        self._seeded(ingested.added)


async def serve(crawl: Crawl, data_dir: Path) -> int | None:
    """Run the crawl with the API, inbox and disk watchers; returns the stopping signal."""
    settings = crawl.parts.settings
    backend = ServiceBackend(crawl, data_dir)
    api = Api(backend, settings.service)
    shutdown = anyio.Event()

    def started(addresses: list[str]) -> None:
        log.info("listening", addresses=addresses)

    async with anyio.create_task_group() as tg:
        # The API outlives the crawl by a moment: it stops cleanly once the crawl is done.
        tg.start_soon(serve_api, api, settings.service.listen, started, shutdown)
        try:
            services = [
                backend.watch_inbox,
                backend.watch_disk,
                crawl.watch_recrawl,
                crawl.watch_controls,
            ]
            result = await crawl.run(services)
        finally:
            api.stopping.set()
            shutdown.set()
    return result.interrupted
