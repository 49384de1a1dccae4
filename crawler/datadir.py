"""The crawl's data directory: its lock, its database, and adding seed files to it."""

from __future__ import annotations

import dataclasses
import fcntl
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio

from crawler.errors import ConfigError, StorageError, storage_error
from crawler.frontier import Frontier
from crawler.frontier.postgres import PostgresFrontier, redacted
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.models import NewURL
from crawler.seeds import SeedReport, read_seeds
from crawler.settings import Settings

DB_NAME = "crawl.db"


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


def storage_url(settings: Settings) -> str:
    """The shared frontier's URL (storage.url or the file storage.url_file names), or ""."""
    storage = settings.storage
    if storage.url and storage.url_file:
        raise ConfigError("storage.url and storage.url_file: give only one")
    url = storage.url
    if storage.url_file:
        try:
            url = Path(storage.url_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(
                f"storage.url_file: cannot read {storage.url_file}: {reason}"
            ) from None
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"storage.url: must be a postgresql:// URL, got {redacted(url)}")
    return url


def node_name(settings: Settings) -> str:
    return settings.node.name or socket.gethostname()


def for_this_node(settings: Settings) -> Settings:
    """In a crawl shared through storage.url, output files carry the node's name
    (`crawler-NODE-...warc.gz`), so the files of all nodes can be gathered in one place."""
    if not storage_url(settings):
        return settings
    prefix = f"{settings.output.prefix}-{node_name(settings)}"
    return dataclasses.replace(settings, output=dataclasses.replace(settings.output, prefix=prefix))


async def open_frontier(data_dir: Path, settings: Settings) -> Frontier:
    """The crawl's frontier: shared in PostgreSQL (storage.url), else SQLite in `data_dir`."""
    await anyio.to_thread.run_sync(make_data_dir, data_dir)
    url = storage_url(settings)
    if url:
        # A lease must outlive any fetch and its commit, or a live node's URL is taken over.
        needed = settings.fetch.deadline + settings.storage.commit_interval
        if settings.frontier.lease_seconds <= needed:
            raise ConfigError(
                f"frontier.lease_seconds = {settings.frontier.lease_seconds:g}: must be more"
                f" than fetch.deadline + storage.commit_interval ({needed:g}) with storage.url"
            )
        return await PostgresFrontier.open(
            url,
            node=node_name(settings),
            max_per_host=settings.crawl.max_pages_per_host,
            delay=settings.politeness.delay,
        )
    return await SQLiteFrontier.open(
        data_dir / DB_NAME,
        fsync=settings.storage.fsync,
        busy_timeout=settings.storage.busy_timeout,
        max_per_host=settings.crawl.max_pages_per_host,
    )


async def add_seeds(
    frontier: Frontier,
    paths: Sequence[str],
    report: SeedReport,
    sort_query: bool = False,
    *,
    recrawl: bool = False,
) -> None:
    """Add seed files to the frontier in batches; parsing (in a thread) overlaps inserting.
    With `recrawl`, the URLs already there are made due now (`Frontier.recrawl`)."""
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
            if recrawl:
                report.due += await frontier.recrawl([u.key for u in batch], time.time())
