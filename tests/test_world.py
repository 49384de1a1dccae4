"""End to end in a small world (bench/world): every host class, a real `crawler run`, and
every seed's index line checked against the world's oracle (`bench.world.expected`).

Settings are the defaults plus what the world needs (its DNS server, loopback allowed, its
CA), and a few waits shortened only because the defaults would take minutes: a stalled
server is given up after `fetch.read_timeout` (30 s, three attempts, five failures before
the host is down), and a robots.txt answering 5xx is retried from `robots.retry_base` (60 s)
for `robots.max_wait`. The classes and the reasons do not change with these numbers.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from bench.world import CLASSES, RunningWorld, expected, host_class, running_world, url_host
from tests.crawling import index_lines

pytestmark = pytest.mark.slow

SHORTER = [
    "fetch.read_timeout=3.0",  # stall, robots_stall: 30 s x 3 attempts and 5 host failures
    "robots.retry_base=1.0",  # robots_5xx: first re-fetch after 60 s...
    "robots.max_wait=3.0",  # ...and given up after 300 s (retry.max_wait)
    "retry.backoff_base=0.5",  # probes of a stalled host: 2 + 4 + 8 + 16 s between them
]
# Classes whose check fails because of a crawler bug (class -> what goes wrong); each is
# an xfail of its own, the other classes are still asserted.
KNOWN_BUGS: dict[str, str] = {}


def _crawl(root: Path) -> tuple[RunningWorld, list[str], dict[str, list[dict[str, Any]]]]:
    args = ["--hosts", "300", "--urls", "600", "--max-per-host", "4", "--big-bytes", "300000"]
    with running_world(root / "world", *args) as world:
        data_dir = root / "data"
        cmd = [sys.executable, "-m", "crawler", "run", "--data-dir", str(data_dir)]
        cmd += ["--seeds", str(world.seeds), "--config", str(world.config), "--quiet"]
        for item in [*SHORTER, 'log.level="warning"']:
            cmd += ["--set", item]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=55, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in index_lines(data_dir):
            lines[line["url"]].append(line)
        return world, world.seeds.read_text(encoding="utf-8").split(), lines


def test_world_crawl_ends_as_the_oracle_says(tmp_path: Path) -> None:
    """One test, not one per class: under xdist work stealing a shared fixture would start
    a world and a crawl in every worker."""
    world, seeds, lines = _crawl(tmp_path)
    shape = world.shape
    kinds = {url: host_class(shape, url_host(url)) for url in seeds}
    assert set(kinds.values()) == set(CLASSES), "every host class has seeds"
    counts = {url: len(lines.get(url, [])) for url in seeds}
    assert {url: n for url, n in counts.items() if n != 1} == {}, "one index line per seed"
    wrong: dict[str, list[tuple[str, list[tuple[str, str | None]], tuple[str, str], str]]] = {}
    for url in seeds:
        want = expected(shape, url)
        line = lines[url][0]
        got = (line["state"], line["reason"])
        if got not in want:
            entry = (url, sorted(want, key=str), got, line.get("message") or "")
            wrong.setdefault(kinds[url], []).append(entry)
    unexplained = {kind: found for kind, found in wrong.items() if kind not in KNOWN_BUGS}
    assert unexplained == {}
    if wrong:
        pytest.xfail("; ".join(KNOWN_BUGS[kind] for kind in sorted(wrong)))
