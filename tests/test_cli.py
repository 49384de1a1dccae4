"""The CLI as a real subprocess: signals, SIGKILL and resume, seed while running, status."""

from __future__ import annotations

import itertools
import json
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import servers as site
from tests.crawling import (
    cli_process,
    database_rows,
    index,
    index_lines,
    sets,
    warc_records,
    write_seeds,
)
from tests.servers import Conn, Hit, Site, SiteFactory
from tests.waiting import eventually


def _slow_site(make_site: SiteFactory, pages: int, seconds: float) -> Site:
    s = make_site()
    for i in range(pages):
        s.route(f"/p{i}", site.slow(seconds, b"<html>page %d</html>" % i))
    return s


def _run(data: Path, seeds: Path, *assignments: str) -> subprocess.Popen[bytes]:
    return cli_process(data, "run", "--seeds", str(seeds), *sets(*assignments))


def _status(data: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "crawler", "status", "--json", "--data-dir", str(data)],
        capture_output=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for the process, close its pipes; returns its exit code (stderr shown on error)."""
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode not in (0, -signal.SIGKILL, 130, 143):
        sys.stderr.write(err.decode(errors="replace"))
    return proc.returncode


def _wait_for_lines(data: Path, at_least: int, timeout: float = 20) -> None:
    eventually(
        lambda: len(index_lines(data)),
        timeout,
        f"at least {at_least} index lines",
        until=lambda n: n >= at_least,
    )


def _wait_in_flight(s: Site, at_least: int) -> None:
    eventually(
        lambda: s.max_in_flight,
        10,
        f"{at_least} fetches in flight at once",
        until=lambda n: n >= at_least,
    )


def _assert_exactly_once(data: Path, urls: list[str]) -> None:
    lines = index(data)  # fails on any URL with two lines
    assert sorted(lines) == sorted(urls)
    responses = [r for r in warc_records(data) if r["type"] == "response"]
    assert sorted(r["url"] for r in responses) == sorted(urls)
    for line in lines.values():
        assert line["warc_file"] is not None
    status = _status(data)
    assert status["total"] == len(urls)
    assert status["states"] == {
        "queued": 0,
        "leased": 0,
        "done": len(urls),
        "failed": 0,
        "skipped": 0,
    }


def test_sigkill_at_any_moment_then_resume_is_exactly_once(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = _slow_site(make_site, pages=300, seconds=0.02)
    urls = [s.url(f"/p{i}") for i in range(300)]
    seeds = write_seeds(tmp_path / "seeds.txt", urls)
    data = tmp_path / "crawl"
    settings = ("storage.fsync=true", "storage.commit_batch=16", "storage.commit_interval=0.02")
    for kill_after_lines in (0, 20, 90, 180):
        proc = _run(data, seeds, *settings)
        if kill_after_lines:
            _wait_for_lines(data, kill_after_lines)
        else:
            time.sleep(0.3)  # killed while seeding or on its first batch
        proc.send_signal(signal.SIGKILL)
        _finish(proc, 10)
        assert proc.returncode == -signal.SIGKILL
    proc = _run(data, seeds, *settings)
    assert _finish(proc, 60) == 0
    _assert_exactly_once(data, urls)
    # Refetches after a SIGKILL are bounded by what was uncommitted at each kill.
    assert len(s.hits) < 300 + 4 * 64


def test_sigterm_releases_in_flight_and_resume_finishes(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = _slow_site(make_site, pages=12, seconds=3)
    urls = [s.url(f"/p{i}") for i in range(12)]
    seeds = write_seeds(tmp_path / "seeds.txt", urls)
    data = tmp_path / "crawl"
    proc = _run(data, seeds, "shutdown.grace_seconds=0.2", "politeness.per_host_concurrency=4")
    _wait_in_flight(s, 4)
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc, 10) == 143
    status = _status(data)
    states = status["states"]
    assert isinstance(states, dict)
    assert states["queued"] == 12  # released, not failed
    assert states["leased"] == 0
    assert index_lines(data) == []
    s.route("*", site.ok(b"fast now"))
    for i in range(12):
        s.route(f"/p{i}", site.ok(b"<html>page %d</html>" % i))
    proc = _run(data, seeds)
    assert _finish(proc, 30) == 0
    lines = index(data)
    assert len(lines) == 12
    # The interrupted attempts were not charged.
    assert {line["attempts"] for line in lines.values()} == {1}


def test_sigterm_lets_in_flight_fetches_finish_within_grace(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = _slow_site(make_site, pages=8, seconds=0.5)
    urls = [s.url(f"/p{i}") for i in range(8)]
    seeds = write_seeds(tmp_path / "seeds.txt", urls)
    data = tmp_path / "crawl"
    proc = _run(data, seeds, "shutdown.grace_seconds=5", "politeness.per_host_concurrency=2")
    _wait_in_flight(s, 2)
    proc.send_signal(signal.SIGINT)
    assert _finish(proc, 10) == 130
    lines = index(data)
    assert 2 <= len(lines) < 8
    assert all(line["state"] == "done" for line in lines.values())
    proc = _run(data, seeds)
    assert _finish(proc, 30) == 0
    _assert_exactly_once(data, urls)


def test_seed_while_running_is_picked_up(tmp_path: Path, make_site: SiteFactory) -> None:
    s = _slow_site(make_site, pages=20, seconds=0.1)
    # /p9 is answered only once the seeding is done: the run is surely still running then,
    # however slowly a loaded machine starts the `seed` process.
    reached, seeded = threading.Event(), threading.Event()

    def gate(conn: Conn, hit: Hit) -> None:
        reached.set()
        seeded.wait(30)
        conn.respond(200, b"<html>page 9</html>", {"Content-Type": "text/html"})

    s.route("/p9", gate)
    first = [s.url(f"/p{i}") for i in range(10)]
    later = [s.url(f"/p{i}") for i in range(10, 20)]
    data = tmp_path / "crawl"
    proc = _run(
        data, write_seeds(tmp_path / "first.txt", first), "politeness.per_host_concurrency=1"
    )
    assert reached.wait(20), "the run never asked for /p9"
    more = write_seeds(tmp_path / "later.txt", later + first[:3])
    try:
        added = subprocess.run(
            [sys.executable, "-m", "crawler", "seed", "--data-dir", str(data), str(more)],
            capture_output=True,
            check=True,
        )
    finally:
        seeded.set()
    assert b"added 10" in added.stdout
    assert _finish(proc, 30) == 0
    _assert_exactly_once(data, first + later)


def test_status_json_counts_states_reasons_and_hosts(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    a = make_site("127.0.0.1")
    b = make_site("127.0.0.2")
    a.route("/ok", site.ok(b"fine"))
    a.route("/missing", site.status(404))
    b.route("/down", site.status(503))
    urls = [a.url("/ok"), a.url("/missing"), b.url("/down")]
    data = tmp_path / "crawl"
    proc = _run(data, write_seeds(tmp_path / "s.txt", urls), "retry.max_attempts=1")
    assert _finish(proc, 30) == 0
    status = _status(data)
    assert status["total"] == 3
    assert status["states"] == {"queued": 0, "leased": 0, "done": 2, "failed": 1, "skipped": 0}
    assert status["reasons"] == {"http_503": 1}
    hosts = status["hosts"]
    assert isinstance(hosts, list)
    by_host = {h["host"]: h for h in hosts}
    assert by_host[f"127.0.0.1:{a.port}"]["done"] == 2
    assert by_host[f"127.0.0.2:{b.port}"]["failed"] == 1
    text = subprocess.run(
        [sys.executable, "-m", "crawler", "status", "--data-dir", str(data)],
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "http_503" in text


def test_second_run_on_the_same_directory_is_refused(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    # Enough slow pages that the first run is still crawling (not already exiting, when a
    # SIGTERM meets the default handler) however long the second takes to start.
    s = _slow_site(make_site, pages=30, seconds=1)
    seeds = write_seeds(tmp_path / "s.txt", [s.url(f"/p{i}") for i in range(30)])
    data = tmp_path / "crawl"
    first = _run(data, seeds)
    eventually((data / "crawl.db").exists, 10, "the first run's crawl.db")
    second = _run(data, seeds)
    _, err = second.communicate(timeout=10)
    assert second.returncode == 3
    assert b"another crawler is running" in err
    first.send_signal(signal.SIGTERM)
    assert _finish(first, 15) == 143


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "crawler", "run", "--data-dir", str(tmp_path / "c"),
            "--set", "fetch.concurrency=0",
        ],
        capture_output=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert b"fetch.concurrency" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "crawler", "run", "--data-dir", str(tmp_path / "c"),
         "--seeds", str(tmp_path / "nope.txt")],
        capture_output=True,
    )  # fmt: skip
    assert missing.returncode == 2
    assert b"nope.txt" in missing.stderr


def test_seeds_from_stdin_and_gzip(tmp_path: Path, make_site: SiteFactory) -> None:
    import gzip

    s = make_site()
    s.route("/a", site.ok(b"a"))
    s.route("/b", site.ok(b"b"))
    gz = tmp_path / "seeds.txt.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(s.url("/a") + "\n")
    data = tmp_path / "crawl"
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "run", "--data-dir", str(data), "--seeds", str(gz),
         "--seeds", "-", *sets()],
        input=(s.url("/b") + "\nhttp://\n").encode(),
        capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(index(data)) == [s.url("/a"), s.url("/b")]
    assert b"<stdin>" in proc.stdout  # the bad line is reported with its source


def test_a_fresh_crawl_sends_its_first_request_at_once(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """No process ran on this crawl before, so no host can have just been hit: the first
    request does not wait a delay (with `politeness.delay` 60 s it waited a minute), and
    a second run on the same crawl, just after, does."""
    s = make_site()
    s.route("/only", site.ok(b"<html>one</html>"))
    s.route("/later", site.ok(b"<html>two</html>"))
    data = tmp_path / "crawl"
    slow = ("politeness.delay=60", "robots.obey=false")
    proc = _run(data, write_seeds(tmp_path / "a.txt", [s.url("/only")]), *slow)
    assert _finish(proc, 30) == 0
    assert sorted(index(data)) == [s.url("/only")]
    proc = _run(data, write_seeds(tmp_path / "b.txt", [s.url("/later")]), *slow)
    with pytest.raises(subprocess.TimeoutExpired):  # the first run's request was just now
        proc.communicate(timeout=3)
    proc.send_signal(signal.SIGINT)
    _finish(proc, 15)
    assert s.hits_for("/later") == []


@pytest.mark.timing
def test_politeness_holds_across_a_sigkill_restart(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    for i in range(6):
        s.route(f"/p{i}", site.ok(b"<html>%d</html>" % i))
    urls = [s.url(f"/p{i}") for i in range(6)]
    seeds = write_seeds(tmp_path / "seeds.txt", urls)
    data = tmp_path / "crawl"
    polite = ("politeness.delay=1.0", "politeness.per_host_concurrency=1")
    proc = _run(data, seeds, *polite)
    eventually(lambda: len(s.hits), 15, "2 requests before the kill", until=lambda n: n >= 2)
    proc.send_signal(signal.SIGKILL)
    _finish(proc, 10)
    last_before = max(hit.started for hit in s.hits)
    proc = _run(data, seeds, *polite)
    assert _finish(proc, 30) == 0
    starts = sorted(hit.started for hit in s.hits)
    after = [t for t in starts if t > last_before]
    assert after, "nothing fetched after the restart"
    assert after[0] - last_before >= 1.0 - 0.005  # the restart waited out the delay
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 1.0 - 0.005
    assert sorted(index(data)) == sorted(urls)


@pytest.mark.timing
def test_retry_after_is_honoured_after_a_crash(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/limited", site.sequence(site.retry_after(429, "3"), site.ok(b"finally")))
    url = s.url("/limited")
    seeds = write_seeds(tmp_path / "seeds.txt", [url])
    data = tmp_path / "crawl"
    proc = _run(data, seeds)
    # Killed once the deferral is committed (not merely answered): its wait is on disk.
    eventually(
        lambda: database_rows(data, "SELECT state, reason, attempts FROM urls WHERE url = ?", url),
        15,
        "the 429's deferral committed",
        until=lambda rows: rows == [("queued", "http_429", 1)],
    )
    proc.send_signal(signal.SIGKILL)
    _finish(proc, 10)
    proc = _run(data, seeds)
    assert _finish(proc, 30) == 0
    hits = s.hits_for("/limited")
    assert len(hits) == 2
    assert hits[1].started - hits[0].started >= 3.0 - 0.005
    line = index(data)[s.url("/limited")]
    assert (line["state"], line["attempts"]) == ("done", 2)


def test_a_dead_output_process_stops_the_crawl_cleanly(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = _slow_site(make_site, pages=200, seconds=0.02)
    urls = [s.url(f"/p{i}") for i in range(200)]
    seeds = write_seeds(tmp_path / "seeds.txt", urls)
    data = tmp_path / "crawl"
    proc = _run(data, seeds)
    _wait_for_lines(data, 10)
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert children, "no output process found"
    for child in children:
        subprocess.run(["kill", "-9", child], check=True)
    assert _finish(proc, 30) == 3  # a storage error: exit 3, state consistent
    proc = _run(data, seeds)
    assert _finish(proc, 60) == 0
    _assert_exactly_once(data, urls)


@pytest.mark.parametrize(("soft", "hard"), [(256, None), (256, 1024)])
def test_run_raises_its_open_files_limit_for_its_concurrency(
    tmp_path: Path, make_site: SiteFactory, soft: int, hard: int | None
) -> None:
    """1,000 concurrent fetches need about 4,256 open files; a soft limit of 256 is raised
    to that (up to the hard limit), and a hard limit too low for it is said once."""
    s = make_site()
    s.route("/", site.ok(b"<html>ok</html>"))
    seeds = write_seeds(tmp_path / "seeds.txt", [s.url("/")])
    _, system_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit_hard = system_hard if hard is None else hard
    if system_hard != resource.RLIM_INFINITY and system_hard < 4256 and hard is None:
        pytest.skip(f"the hard limit here ({system_hard}) is below what the test raises to")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, limit_hard))

    result = subprocess.run(
        [
            *(sys.executable, "-m", "crawler", "run", "--data-dir", str(tmp_path / "crawl")),
            *("--seeds", str(seeds), *sets("fetch.concurrency=1000", 'log.level="info"')),
        ],
        capture_output=True,
        preexec_fn=lower,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith(b"{")]
    if hard is None:
        [raised] = [e for e in events if e["event"] == "open_files_limit_raised"]
        assert (raised["before"], raised["after"]) == (256, 4256)
    else:
        [low] = [e for e in events if e["event"] == "open_files_limit_low"]
        assert (low["limit"], low["needed"]) == (1024, 4256)
