"""Memory per body end to end: large bodies through a real `crawler run` subprocess.

The peak RSS of the crawler's processes (the crawler and its output child) is read from
/proc/<pid>/status (VmHWM) while it runs, and compared with a crawl of one small page under
the same settings: the difference is what the large bodies cost. (getrusage's ru_maxrss is
no use here: a process started by fork + exec keeps, as its own maximum, the RSS it had
before exec, i.e. that of the test process that forked it.)
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from tests.crawling import index, sets, write_seeds
from tests.servers import Conn, Handler, Hit, Site, SiteFactory, ok

MIB = 1024 * 1024
LARGE = 50 * MIB
# README: a body costs at most about 1.5 MiB of RAM whatever its size, plus up to ~20 MB
# while the links of one page (its first MiB) are parsed.
PER_BODY_MIB = 2
PARSE_MIB = 24
SETTINGS = [
    f"fetch.max_body_bytes={64 * MIB}",
    "crawl.max_depth=1",  # bodies are kept decoded for link extraction: the costly case
    "fetch.deadline=120",
]


@functools.cache
def _html(size: int) -> bytes:
    """An HTML page of `size` bytes with a link every line."""
    line = b'<p><a href="/next">next</a> Lorem ipsum dolor sit amet, consectetur.</p>\n'
    head = b"<!doctype html><html><body>\n"
    return (head + line * (size // len(line) + 1))[:size]


@functools.cache
def _gzipped(size: int) -> bytes:
    return gzip.compress(_html(size), compresslevel=1, mtime=0)


def _kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None  # a zombie has no memory lines


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(name))
    return found


def _crawl_peaks(data: Path, urls: list[str]) -> dict[int, int]:
    """Run `crawler run`; returns each process's peak RSS (KiB, by pid)."""
    seeds = write_seeds(data.parent / f"{data.name}-seeds.txt", urls)
    args = [sys.executable, "-m", "crawler", "run", "--data-dir", str(data)]
    args += ["--seeds", str(seeds), *sets(*SETTINGS)]
    with open(data.parent / f"{data.name}.log", "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    peaks: dict[int, int] = {}
    try:
        while True:  # the test's timeout bounds this loop
            for pid in [process.pid, *_children(process.pid)]:
                peak = _kib(pid, "VmHWM")
                if peak is not None:
                    peaks[pid] = max(peaks.get(pid, 0), peak)
            if process.poll() is not None:
                break
            time.sleep(0.01)
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, (data.parent / f"{data.name}.log").read_text()
    assert len(peaks) == 2, peaks  # the crawler and its output child were both seen
    return peaks


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> int:
    """The sum of the processes' peak RSS (KiB) for one small page."""
    with Site() as small:
        small.route("/small", ok(_html(20_000)))
        data = tmp_path_factory.mktemp("baseline") / "crawl"
        return sum(_crawl_peaks(data, [small.url("/small")]).values())


def _together(barrier: threading.Barrier, handler: Handler) -> Handler:
    """`handler`, once the barrier's count of requests have arrived: the bodies are
    fetched at once."""

    def handle(conn: Conn, hit: Hit) -> None:
        barrier.wait()
        handler(conn, hit)

    return handle


def _site(make_site: SiteFactory, bodies: list[str]) -> tuple[Site, list[str]]:
    s = make_site()
    barrier = threading.Barrier(len(bodies), timeout=30)
    for i, kind in enumerate(bodies):
        if kind == "gzip":
            handler = ok(_gzipped(LARGE), headers={"Content-Encoding": "gzip"})
        else:
            handler = ok(_html(LARGE))
        s.route(f"/large/{i}", _together(barrier, handler))
    s.route("/next", ok(b"<html>next</html>"))
    return s, [s.url(f"/large/{i}") for i in range(len(bodies))]


def _payload(data: Path, line: dict[str, Any]) -> tuple[str, int]:
    """(payload digest, length) of the WARC response record an index line points at."""
    with open(data / "warc" / line["warc_file"], "rb") as handle:
        handle.seek(line["warc_offset"])
        record = next(iter(ArchiveIterator(handle)))
        sha1, length = hashlib.sha1(), 0
        while chunk := record.raw_stream.read(MIB):
            sha1.update(chunk)
            length += len(chunk)
        return "sha1:" + base64.b32encode(sha1.digest()).decode("ascii"), length


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "bodies", [["identity"], ["identity", "gzip", "identity", "gzip"]], ids=["one", "four"]
)
def test_large_bodies_cost_bounded_memory(
    tmp_path: Path, make_site: SiteFactory, baseline: int, bodies: list[str]
) -> None:
    """50 MiB bodies (at once, in crawl mode: decoded for links) cost the crawler and its
    output child no more than README says; their WARC records are whole."""
    _, urls = _site(make_site, bodies)
    data = tmp_path / "crawl"
    peaks = _crawl_peaks(data, urls)

    lines = index(data)
    for url in urls:
        line = lines[url]
        assert (line["state"], line["decoded_length"], line["truncated"]) == ("done", LARGE, False)
        assert line["links_truncated"] is True  # links were read from the first MiB only
        if line["revisit"] == "identical":  # stored once: its twin's record holds it
            twins = [
                other
                for other in lines.values()
                if other["payload_digest"] == line["payload_digest"] and not other["revisit"]
            ]
            assert len(twins) == 1
            continue
        assert _payload(data, line) == (line["payload_digest"], line["length"])
    extra = (sum(peaks.values()) - baseline) / 1024
    bound = PARSE_MIB + PER_BODY_MIB * len(urls)
    assert extra <= bound, f"{len(urls)} x 50 MiB: {extra:.1f} MiB over the baseline {peaks}"
