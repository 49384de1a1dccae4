"""Crawler nodes sharing one crawl through PostgreSQL (`storage.url`), as real processes on a
real server (tests/postgres.py) crawling loopback sites."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import asyncpg
import pytest

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
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")


def _status(data: Path, url: str) -> dict[str, object]:
    command = [sys.executable, "-m", "crawler", "status", "--json", "--data-dir", str(data)]
    out = subprocess.run(
        [*command, "--set", f'storage.url="{url}"'],
        capture_output=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _pages(make_site: SiteFactory, hosts: int, pages: int) -> list[str]:
    urls = []
    for h in range(hosts):
        s = make_site(f"127.0.0.{h + 1}")
        for i in range(pages):
            s.route(f"/p{i}", site.slow(0.05, b"<html>page %d</html>" % i))
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
    assert status["states"] == {"queued": 0, "leased": 0, "done": 12, "failed": 0, "skipped": 0}
    proc = cli_process(data, *_node(data, url, "a", None))
    code, err = _finish(proc)
    assert code == 0, err
    assert len(index_lines(data)) == len(urls)


def test_two_nodes_started_together_share_the_crawl_exactly_once(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """Two nodes start at the same moment on an empty database (one applies the schema),
    both get work, and every URL ends exactly once across them: one index line in the union
    of their indexes, one WARC response record, each referenced by its line."""
    url = _database()
    urls = _pages(make_site, 4, 15)
    seeds = write_seeds(tmp_path / "s.txt", urls)
    # Small claims, so that the node first up does not lease the whole list at once.
    more = ("politeness.delay=0.1", "frontier.claim_batch=4")
    procs = {
        name: cli_process(tmp_path / name, *_node(tmp_path / name, url, name, seeds, *more))
        for name in ("a", "b")
    }
    for proc in procs.values():
        code, err = _finish(proc)
        assert code == 0, err
    lines = {name: index_lines(tmp_path / name) for name in procs}
    assert all(lines.values()), {name: len(found) for name, found in lines.items()}
    seen = Counter(line["url"] for found in lines.values() for line in found)
    assert sorted(seen) == sorted(urls)
    assert set(seen.values()) == {1}
    for name, found in lines.items():
        responses = [r for r in warc_records(tmp_path / name) if r["type"] == "response"]
        assert len(responses) == len(found)
        assert {r["url"] for r in responses} == {line["url"] for line in found}

    async def migrations() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()

    assert anyio.run(migrations) == [1]


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    bad = "postgresql://crawler:s3cret-pw@127.0.0.1:1/crawl"
    proc = cli_process(tmp_path / "node", *_node(tmp_path / "node", bad, "a", None))
    code, err = _finish(proc, 30)
    assert code == 3, err
    assert "s3cret-pw" not in err
    assert "127.0.0.1:1" in err
    assert "Traceback" not in err
