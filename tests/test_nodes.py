"""Crawler nodes sharing one crawl through PostgreSQL (`storage.url`), as real processes on a
real server (tests/postgres.py) crawling loopback sites."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import asyncpg
import pytest

from crawler.frontier import rules
from tests import servers as site
from tests.crawling import LOOPBACK, cli_process, index_lines, warc_records, write_seeds
from tests.postgres import new_database
from tests.servers import SiteFactory

pytestmark = pytest.mark.slow


def _database() -> str:
    return anyio.run(new_database)


def _node(data: Path, url: str, name: str, seeds: Path | None, *more: str) -> list[str]:
    args = ["run"] if seeds is None else ["run", "--seeds", str(seeds)]
    for item in (
        LOOPBACK,
        f'storage.url="{url}"',
        f'node.name="{name}"',
        "storage.fsync=false",
        'log.level="warning"',
        *more,
    ):
        args += ["--set", item]
    return args


def _finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    """Its exit code, and what it wrote (logs go to stdout, errors to stderr)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace") + err.decode(errors="replace")


def _status(data: Path, url: str) -> dict[str, object]:
    command = [sys.executable, "-m", "crawler", "status", "--json", "--data-dir", str(data)]
    out = subprocess.run(
        [*command, "--set", f'storage.url="{url}"'],
        capture_output=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _pages(make_site: SiteFactory, hosts: int, pages: int, seconds: float = 0.05) -> list[str]:
    urls = []
    for h in range(hosts):
        s = make_site(f"127.0.0.{h + 1}")
        for i in range(pages):
            s.route(f"/p{i}", site.slow(seconds, b"<html>page %d</html>" % i))
            urls.append(s.url(f"/p{i}"))
    return urls


def test_a_crawl_on_postgres_runs_reports_and_resumes(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """One node, default settings but loopback: every URL once, `status` from the database,
    and a second run finds nothing left to do (nothing fetched twice)."""
    url = _database()
    urls = _pages(make_site, 2, 6)
    data = tmp_path / "node"
    proc = cli_process(data, *_node(data, url, "a", write_seeds(tmp_path / "s.txt", urls)))
    code, err = _finish(proc)
    assert code == 0, err
    assert sorted(line["url"] for line in index_lines(data)) == sorted(urls)
    status = _status(tmp_path / "elsewhere", url)  # any directory: the crawl is in PostgreSQL
    assert status["total"] == len(urls)
    [node] = status["nodes"]  # type: ignore[misc]
    assert (node["node"], node["leased"], node["done"]) == ("a", 0, len(urls))
    assert status["states"] == {"queued": 0, "leased": 0, "done": 12, "failed": 0, "skipped": 0}
    proc = cli_process(data, *_node(data, url, "a", None))
    code, err = _finish(proc)
    assert code == 0, err
    assert len(index_lines(data)) == len(urls)


def test_two_nodes_started_together_share_the_crawl_exactly_once(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """Two nodes start at the same moment on an empty database (one applies the schema),
    both get work (each crawls the hosts it holds), and every URL ends exactly once across
    them: one index line in the union of their indexes, one WARC response record, each
    referenced by its line."""
    url = _database()
    urls = _pages(make_site, 24, 3, seconds=0.3)
    seeds = write_seeds(tmp_path / "s.txt", urls)
    # Small nodes (4 fetches at once, claims of 4): the node first up cannot take every host.
    more = ("politeness.delay=0.1", "frontier.claim_batch=4", "fetch.concurrency=4")
    procs = {
        name: cli_process(tmp_path / name, *_node(tmp_path / name, url, name, seeds, *more))
        for name in ("a", "b")
    }
    for code, err in [_finish(proc) for proc in procs.values()]:  # all reaped, then judged
        assert code == 0, err
    lines = {name: index_lines(tmp_path / name) for name in procs}
    assert all(lines.values()), {name: len(found) for name, found in lines.items()}
    seen = Counter(line["url"] for found in lines.values() for line in found)
    assert sorted(seen) == sorted(urls)
    assert set(seen.values()) == {1}
    robots = (
        Counter(line["url"] for name in procs for line in index_lines(tmp_path / name, robots=True))
        - seen
    )
    assert set(robots.values()) <= {1}, robots  # robots.txt fetched once crawl-wide
    for name in lines:
        files = [p.name for p in (tmp_path / name / "warc").iterdir()]
        assert files
        assert all(f.startswith(f"crawler-{name}-") for f in files), files  # the node's name
        # every committed record is referenced once: the pages', and robots.txt's (fetched
        # once for the whole crawl, by whichever node came first)
        everything = index_lines(tmp_path / name, robots=True)
        responses = [
            r for r in warc_records(tmp_path / name) if r["type"] in ("response", "revisit")
        ]
        assert sorted(r["url"] for r in responses) == sorted(line["url"] for line in everything)

    async def migrations() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()

    assert anyio.run(migrations) == [v for v, _, _ in rules.migrations("postgres")]


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    bad = "postgresql://crawler:s3cret-pw@127.0.0.1:1/crawl"
    proc = cli_process(tmp_path / "node", *_node(tmp_path / "node", bad, "a", None))
    code, err = _finish(proc, 30)
    assert code == 3, err
    assert "s3cret-pw" not in err
    assert "127.0.0.1:1" in err
    assert "Traceback" not in err


@pytest.mark.timing
def test_politeness_holds_across_three_nodes_as_the_server_sees_it(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """Three nodes, default politeness (1 s between starts, 2 at once per host), robots.txt
    on: each host sees its requests, robots.txt included, at least a delay apart and never
    more than two at once, whichever nodes send them."""
    url = _database()
    sites = [make_site(f"127.0.0.{h + 1}") for h in range(12)]
    urls = []
    for s in sites:
        for i in range(3):
            s.route(f"/p{i}", site.slow(0.3, b"<html>page %d</html>" % i))
            urls.append(s.url(f"/p{i}"))
    seeds = write_seeds(tmp_path / "s.txt", urls)
    small = ("frontier.claim_batch=2", "fetch.concurrency=2")  # so that all three get work
    procs = {
        name: cli_process(tmp_path / name, *_node(tmp_path / name, url, name, seeds, *small))
        for name in ("a", "b", "c")
    }
    for proc in procs.values():
        code, err = _finish(proc, 120)
        assert code == 0, err
    lines = [line for name in procs for line in index_lines(tmp_path / name)]
    assert sorted(line["url"] for line in lines) == sorted(urls)
    assert sum(1 for name in procs if index_lines(tmp_path / name)) >= 2
    for s in sites:
        starts = sorted(hit.started for hit in s.hits)
        assert len(starts) == 4  # robots.txt and three pages
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 1.0 - 0.005, gaps
        assert s.max_in_flight <= 2


def test_a_retry_after_seen_by_one_node_holds_the_host_for_all(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """The first page answers 429 with Retry-After: 4; no node sends the host anything for
    those 4 s, though two nodes have its other URLs to crawl."""
    url = _database()
    s = make_site()
    s.route("/p0", site.sequence(site.retry_after(429, "4"), site.ok(b"<html>0</html>")))
    for i in range(1, 6):
        s.route(f"/p{i}", site.ok(b"<html>%d</html>" % i))
    urls = [s.url(f"/p{i}") for i in range(6)]
    seeds = write_seeds(tmp_path / "s.txt", urls)
    fast = ("politeness.delay=0.2", "robots.obey=false", "frontier.claim_batch=1")
    procs = {
        name: cli_process(tmp_path / name, *_node(tmp_path / name, url, name, seeds, *fast))
        for name in ("a", "b")
    }
    for proc in procs.values():
        code, err = _finish(proc, 120)
        assert code == 0, err
    limited = s.hits_for("/p0")[0].started
    after = sorted(hit.started for hit in s.hits if hit.started > limited)
    assert after, "nothing after the 429"
    assert after[0] - limited >= 4.0 - 0.05
    lines = [line for name in procs for line in index_lines(tmp_path / name)]
    assert sorted(line["url"] for line in lines) == sorted(urls)


def _eventually(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.05)


SHORT_LEASES = ("fetch.deadline=2", "frontier.lease_seconds=10", "politeness.delay=0.1")


def test_a_killed_node_s_urls_are_crawled_by_the_others_within_the_lease(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """Node a is SIGKILLed mid-crawl holding leases; b crawls a's URLs once they expire (10 s
    here) and ends; a restarted on its directory cuts its files back to what the database
    says it committed and finds nothing to do. Across both, each URL ends exactly once."""
    url = _database()
    urls = _pages(make_site, 12, 4, seconds=0.3)
    seeds = write_seeds(tmp_path / "s.txt", urls)
    more = (*SHORT_LEASES, "frontier.claim_batch=4", "fetch.concurrency=4")
    a = cli_process(tmp_path / "a", *_node(tmp_path / "a", url, "a", seeds, *more))
    _eventually(lambda: len(index_lines(tmp_path / "a")) >= 3, 30, "a crawls")
    b = cli_process(tmp_path / "b", *_node(tmp_path / "b", url, "b", None, *more))
    a.send_signal(signal.SIGKILL)
    _finish(a)
    killed_at = time.monotonic()
    code, err = _finish(b, 120)
    assert code == 0, err
    a = cli_process(tmp_path / "a", *_node(tmp_path / "a", url, "a", None, *more))
    code, err = _finish(a)
    assert code == 0, err
    assert time.monotonic() - killed_at < 60
    seen = Counter(line["url"] for n in "ab" for line in index_lines(tmp_path / n))
    assert sorted(seen) == sorted(urls)
    assert set(seen.values()) == {1}
    assert len(index_lines(tmp_path / "b")) > 0


def test_a_node_stopped_past_its_lease_has_its_late_work_refused(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """Node a is frozen (SIGSTOP) past its leases while b takes its URLs over; thawed, a's
    late results are dropped before their records are written: each URL ends once in the
    frontier, with one record and index line across the nodes. (Frozen in the middle of a
    commit, a holds that batch's leases locked: b passes them over and a commits them when
    thawed.)"""
    url = _database()
    urls = _pages(make_site, 8, 4, seconds=0.3)
    seeds = write_seeds(tmp_path / "s.txt", urls)
    more = (*SHORT_LEASES, "frontier.claim_batch=8", "fetch.concurrency=8")
    a = cli_process(tmp_path / "a", *_node(tmp_path / "a", url, "a", seeds, *more))
    _eventually(lambda: len(index_lines(tmp_path / "a")) >= 2, 30, "a crawls")
    a.send_signal(signal.SIGSTOP)
    b = cli_process(tmp_path / "b", *_node(tmp_path / "b", url, "b", None, *more))
    time.sleep(13)  # past a's leases: b has taken its URLs
    a.send_signal(signal.SIGCONT)
    outputs = []
    for proc in (a, b):
        code, out = _finish(proc, 120)
        assert code == 0, out
        outputs.append(out)
    assert "leases_lost" in outputs[0] or "completions_refused" in outputs[0]
    seen = Counter(line["url"] for n in "ab" for line in index_lines(tmp_path / n))
    assert sorted(seen) == sorted(urls)
    assert set(seen.values()) == {1}, [url for url, n in seen.items() if n > 1]
    status = _status(tmp_path / "elsewhere", url)
    assert status["states"] == {
        "queued": 0, "leased": 0, "done": len(urls), "failed": 0, "skipped": 0
    }  # fmt: skip


def test_connections_cut_mid_crawl_lose_nothing(tmp_path: Path, make_site: SiteFactory) -> None:
    """The database drops every connection of both nodes again and again while they crawl
    (as a restart or a network cut would): they connect anew and go on; every URL ends
    exactly once."""
    url = _database()
    urls = _pages(make_site, 12, 4, seconds=0.1)
    seeds = write_seeds(tmp_path / "s.txt", urls)
    more = ("politeness.delay=0.1", "frontier.claim_batch=4", "fetch.concurrency=4")
    procs = {
        name: cli_process(tmp_path / name, *_node(tmp_path / name, url, name, seeds, *more))
        for name in ("a", "b")
    }

    async def cut() -> int:
        conn = await asyncpg.connect(url)
        cuts = 0
        try:
            while any(proc.poll() is None for proc in procs.values()):
                cuts += len(
                    await conn.fetch(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                await anyio.sleep(0.3)
        finally:
            await conn.close()
        return cuts

    assert anyio.run(cut) > 0
    for code, out in [_finish(proc) for proc in procs.values()]:  # all reaped, then judged
        assert code == 0, out
    seen = Counter(line["url"] for n in procs for line in index_lines(tmp_path / n))
    assert sorted(seen) == sorted(urls)
    assert set(seen.values()) == {1}
