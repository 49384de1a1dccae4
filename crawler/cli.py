"""Command line: `crawler run | serve | seed | status`
(exit 0 done, 2 usage, 3 storage, 130/143 stopped by SIGINT/SIGTERM)."""

from __future__ import annotations

import argparse
import gc
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import structlog

from crawler import __version__, logs, status
from crawler.crawl import Crawl, assemble, recrawl_due
from crawler.datadir import (
    add_seeds,
    exclusive,
    for_this_node,
    has_crawl,
    open_frontier,
    storage_url,
)
from crawler.errors import ConfigError, StopCrawl
from crawler.recrawl import Schedule
from crawler.seeds import SeedReport, seed_files_exist
from crawler.settings import Settings, load_settings

log = structlog.get_logger("crawler")


FILES_PER_REQUEST = 4  # its socket, its spooled body, idle keep-alive sockets of recent hosts
FILES_BASE = 256
GC_THRESHOLD = 10_000  # allocations between young-generation collections (default 700)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", required=True, type=Path, help="the crawl's directory")
    common.add_argument("--config", type=Path, help="TOML file overriding config/default.toml")
    common.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting (TOML value syntax); repeatable",
    )
    parser = argparse.ArgumentParser(prog="crawler", description="Polite, resumable bulk fetcher.")
    parser.add_argument("--version", action="version", version=f"crawler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="crawl until no URL is left")
    run.add_argument("--seeds", action="append", default=[], help="seed file (.gz, - for stdin)")
    run.add_argument("--quiet", action="store_true", help="only warnings and errors")
    run.add_argument("--max-depth", type=int, help="follow links this deep (sets crawl.max_depth)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    srv = sub.add_parser("serve", parents=[common], help="run forever: inbox, HTTP API and metrics")
    srv.add_argument("--seeds", action="append", default=[], help="seed file (.gz, - for stdin)")
    seed = sub.add_parser("seed", parents=[common], help="add URLs to a crawl's frontier")
    seed.add_argument("files", nargs="+", help="seed files (.gz accepted, - for stdin)")
    seed.add_argument("--create", action="store_true", help="start a crawl if there is none")
    seed.add_argument(
        "--recrawl", action="store_true", help="fetch listed URLs again now (if fetched before)"
    )
    exp = sub.add_parser("export", parents=[common], help="package a stopped crawl (WACZ)")
    exp.add_argument("--wacz", required=True, type=Path, help="the WACZ file to write")
    stat = sub.add_parser("status", parents=[common], help="counts by state, reason and host")
    stat.add_argument("--json", action="store_true", help="one JSON object for machines")
    return parser


def _report(report: SeedReport) -> None:
    log.info("seeds", read=report.read, added=report.added, due=report.due, invalid=report.invalid)
    for bad in report.examples:
        log.warning("bad_seed_line", source=bad.source, line=bad.line, reason=bad.reason)
    if report.invalid > len(report.examples):
        log.warning("bad_seed_lines_not_shown", count=report.invalid - len(report.examples))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    settings = for_this_node(settings)
    with exclusive(args.data_dir):
        frontier = await open_frontier(args.data_dir, settings)
        try:
            serving = args.command == "serve"
            bar = not serving and not args.quiet and not args.no_progress and sys.stderr.isatty()
            async with assemble(args.data_dir, settings, frontier, forever=serving) as parts:
                if args.seeds:
                    report = SeedReport()
                    await add_seeds(frontier, args.seeds, report, settings.crawl.sort_query)
                    _report(report)
                await recrawl_due(frontier, Schedule.of(settings.crawl))
                crawl = Crawl(parts, progress_bar=bar)
                crawl.exclude(await frontier.excludes())  # the operator's, kept (serve)
                if serving:
                    from crawler import serve  # the API server: not loaded for `run` (0.1 s)

                    interrupted = await serve.serve(crawl, args.data_dir)
                else:
                    interrupted = (await crawl.run()).interrupted
            counts = await frontier.counts(top_hosts=0)  # states and reasons only: no scan
        finally:
            await frontier.aclose()
    # The summary: totals by state, and why URLs failed or were skipped (e.g. {"dns": 12}).
    log.info(
        "finished" if interrupted is None else "interrupted",
        **counts.states,
        reasons=counts.reasons,
    )
    if interrupted is not None:
        return 128 + interrupted
    return 0


def _no_crawl(data_dir: Path) -> ConfigError:
    return ConfigError(f"no crawl in {data_dir} (no crawl.db)")


async def _seed(args: argparse.Namespace, settings: Settings) -> int:
    shared = bool(storage_url(settings))  # the crawl is in PostgreSQL, not in the directory
    if not args.create and not shared and not has_crawl(args.data_dir):  # a typo: no new crawl
        raise ConfigError(f"{_no_crawl(args.data_dir)}; --create starts one there")
    frontier = await open_frontier(args.data_dir, settings)
    report = SeedReport()
    try:
        sort_query = settings.crawl.sort_query
        await add_seeds(frontier, args.files, report, sort_query, recrawl=args.recrawl)
    finally:
        await frontier.aclose()
    _report(report)
    due = f", due again {report.due}" if args.recrawl else ""
    print(f"read {report.read}, added {report.added}{due}, invalid {report.invalid}")
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    if not storage_url(settings) and not has_crawl(args.data_dir):
        raise _no_crawl(args.data_dir)
    from crawler.export import export_wacz  # only this command needs it

    made = await export_wacz(args.data_dir, settings, args.wacz)
    log.info("exported", wacz=str(args.wacz), **made)
    print(f"{args.wacz}: {made['warc_files']} WARC file(s), {made['pages']} page(s)")
    return 0


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    if not storage_url(settings) and not has_crawl(args.data_dir):
        raise _no_crawl(args.data_dir)
    frontier = await open_frontier(args.data_dir, settings)
    try:
        counts = await frontier.counts()
    finally:
        await frontier.aclose()
    print(status.as_json(counts) if args.json else status.as_text(counts))
    return 0


def _tune_gc() -> None:
    """Collect cycles less often in a long crawl.

    Each page allocates thousands of short-lived containers that reference counting frees;
    at the default threshold (700) the collector still ran ~40 times per 1,000 pages and
    took ~3% of the main process's CPU (0.8 s of 27 s in a 20,000-page crawl-mode run).
    What is loaded at start (modules, settings) is frozen: it is never garbage, so no
    collection scans it again."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _raise_open_files(concurrency: int) -> None:
    """Raise the soft limit on open files to what `concurrency` requests need, up to the hard
    limit. Each request in flight holds a socket and may spool its body to a file, and
    recently used hosts keep idle connections: FILES_PER_REQUEST each, plus FILES_BASE for
    the database, output files, DNS and the API. A soft limit of 1,024 (a common default)
    would otherwise fail requests with "too many open files" at 1,000 concurrent fetches."""
    need = FILES_BASE + FILES_PER_REQUEST * concurrency
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < need:
        log.warning("open_files_limit_low", limit=target, needed=need, concurrency=concurrency)
    else:
        log.info("open_files_limit_raised", before=soft, after=target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        assignments = list(args.assignments)
        if getattr(args, "max_depth", None) is not None:
            assignments.append(f"crawl.max_depth={args.max_depth}")
        settings = load_settings(args.config, assignments)
        level = "warning" if getattr(args, "quiet", False) else settings.log.level
        logs.configure(level, settings.log.format)
        files = args.seeds if args.command in ("run", "serve") else getattr(args, "files", [])
        missing = seed_files_exist(files)
        if missing:
            raise ConfigError(f"seed file not found: {', '.join(missing)}")
        commands = {"run": _run, "serve": _run, "seed": _seed, "status": _status, "export": _export}
        command = commands[args.command]
        if command is _run:
            _tune_gc()
            _raise_open_files(settings.fetch.concurrency)
        return anyio.run(command, args, settings)
    except (StopCrawl, KeyboardInterrupt, BaseExceptionGroup) as exc:
        error = _stop_error(exc)
        if isinstance(error, StopCrawl):
            print(f"crawler: error: {error}", file=sys.stderr)
            return error.exit_code
        if isinstance(error, KeyboardInterrupt):
            return 128 + signal.SIGINT
        raise


def _stop_error(exc: BaseException) -> BaseException | None:
    """The StopCrawl (or KeyboardInterrupt) inside a possibly nested exception group."""
    if isinstance(exc, StopCrawl | KeyboardInterrupt):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _stop_error(inner)
            if found is not None:
                return found
    return None
