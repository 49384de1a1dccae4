"""`crawler serve` as a real subprocess: HTTP API, inbox, pause, SIGTERM, a full disk."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import servers as site
from tests.crawling import index, index_lines, warc_records
from tests.servers import SiteFactory
from tests.service import Service
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def test_seeds_by_http_status_and_metrics(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    s = make_site()
    s.route("*", site.ok(b"<html>page</html>"))
    svc = Service(tmp_path / "crawl")
    services.append(svc)
    assert svc.json("GET", "/healthz") == {"ok": True}
    assert svc.json("GET", "/readyz")["ready"] is True
    text = "\n".join([s.url("/a"), s.url("/b"), "", "# comment", "not a url", s.url("/a")])
    answer = svc.json("POST", "/seeds", text.encode())
    assert answer["accepted"] == 2
    assert answer["duplicate"] == 1
    assert answer["invalid"] == 1
    assert "line 5" in answer["errors"][0]
    posted = json.dumps([s.url("/c"), s.url("/b"), 42]).encode()
    answer = svc.json("POST", "/seeds", posted, **{"Content-Type": "application/json"})
    assert (answer["accepted"], answer["duplicate"], answer["invalid"]) == (1, 1, 1)

    status = svc.wait_final(3)
    assert status["states"]["done"] == 3
    assert status["hosts"][0]["host"] == s.base_url.split("//")[1]
    assert "politeness" in status["hosts"][0]
    assert "pages_per_second" in status["rates"]

    code, body = svc.call("GET", "/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    done = [
        sample.value
        for sample in families["crawler_attempts"].samples
        if sample.name == "crawler_attempts_total" and sample.labels.get("outcome") == "done"
    ]
    assert done == [3.0]
    assert svc.stop() == 143
    assert sorted(index(tmp_path / "crawl")) == sorted(s.url(p) for p in ("/a", "/b", "/c"))


def test_posted_seeds_with_userinfo_or_hosts_the_client_refuses_are_invalid(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    s = make_site()
    s.route("*", site.ok(b"page"))
    svc = Service(tmp_path / "crawl")
    services.append(svc)
    lines = [
        f"http://user:pw@127.0.0.1:{s.port}/a",
        "http://☃.invalid/",
        f"http://0177.0.0.1:{s.port}/b",  # accepted, as http://127.0.0.1:PORT/b
        f"http://1.2.3.999:{s.port}/",
    ]
    answer = svc.json("POST", "/seeds", "\n".join(lines).encode())
    assert (answer["accepted"], answer["duplicate"], answer["invalid"]) == (1, 0, 3)
    assert answer["errors"][0].startswith("line 1: ")
    assert "credentials belong in a profile" in answer["errors"][0]
    assert f"'http://127.0.0.1:{s.port}/a'" in answer["errors"][0]  # quoted without it
    assert "not valid IDNA" in answer["errors"][1]
    assert "not an IPv4 address" in answer["errors"][2]
    svc.wait_final(1)
    assert svc.stop() == 143
    assert list(index(tmp_path / "crawl")) == [s.url("/b")]
    assert "authorization" not in s.hits_for("/b")[0].headers
    assert not any("user:pw" in line for line in svc.raw)  # never logged


def test_mutating_endpoints_need_the_token(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    svc = Service(tmp_path / "crawl", 'service.token="s3cret"')
    services.append(svc)
    seeds = b"http://127.0.0.1:9/x"
    assert svc.call("POST", "/seeds", seeds)[0] == 401
    assert svc.call("POST", "/pause", b"", {"Authorization": "Bearer wrong"})[0] == 401
    assert svc.call("POST", "/seeds", seeds, {"Authorization": "Basic s3cret"})[0] == 401
    assert svc.call("POST", "/pause", b"", {"Authorization": "Bearer s3cret"})[0] == 200
    assert svc.call("GET", "/status")[0] == 200  # reading needs no token
    # every request is logged, refused ones too (method, path, status, duration)
    requests = eventually(
        lambda: [e for e in svc.log if e.get("event") == "api_request"],
        10,
        "an api_request log line per request",
        until=lambda found: len(found) >= 5,
    )
    assert [(e["method"], e["path"], e["status"]) for e in requests] == [
        ("POST", "/seeds", 401),
        ("POST", "/pause", 401),
        ("POST", "/seeds", 401),
        ("POST", "/pause", 200),
        ("GET", "/status", 200),
    ]
    assert all(isinstance(e["ms"], float) for e in requests)
    assert "s3cret" not in "".join(svc.raw)  # never logged


def test_bad_and_oversized_bodies(tmp_path: Path, services: list[Service]) -> None:
    svc = Service(tmp_path / "crawl", "service.max_request_bytes=2048")
    services.append(svc)
    assert svc.call("POST", "/seeds", b"[not json", {"Content-Type": "application/json"})[0] == 400
    assert (
        svc.call("POST", "/seeds", b'{"url": "x"}', {"Content-Type": "application/json"})[0] == 400
    )
    assert svc.call("POST", "/seeds", b"\xff\xfe\xfa")[0] == 400
    assert svc.call("POST", "/seeds", b"http://127.0.0.1:9/x\n" * 500)[0] == 413
    assert svc.call("GET", "/nowhere")[0] == 404
    assert svc.call("GET", "/seeds")[0] == 405
    assert svc.last_headers["allow"] == "POST"
    assert svc.call("DELETE", "/status")[0] == 405
    assert svc.last_headers["allow"] == "GET, HEAD"
    assert svc.json("GET", "/healthz") == {"ok": True}  # still serving
    assert svc.json("GET", "/status")["total"] == 0  # nothing was added by a bad request


def test_concurrent_posts_add_each_url_once(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    s = make_site()
    s.route("*", site.ok(b"ok"))
    svc = Service(tmp_path / "crawl")
    services.append(svc)
    svc.json("POST", "/pause")
    answers: list[dict[str, Any]] = []

    def post(offset: int) -> None:
        urls = "\n".join(s.url(f"/p{i}") for i in range(offset, offset + 100))
        answers.append(svc.json("POST", "/seeds", urls.encode()))

    threads = [threading.Thread(target=post, args=(n * 50,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    unique = 7 * 50 + 100  # offsets 0, 50, ... 350 with 100 URLs each
    assert sum(a["accepted"] for a in answers) == unique
    assert sum(a["duplicate"] for a in answers) == 800 - unique
    time.sleep(1.5)
    assert s.hits == []  # paused: nothing fetched
    svc.json("POST", "/resume")
    svc.wait_final(unique)
    assert svc.stop() == 143
    assert len(index(tmp_path / "crawl")) == unique


def test_inbox_files_are_ingested_once_and_a_part_file_waits(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    s = make_site()
    s.route("*", site.ok(b"ok"))
    data = tmp_path / "crawl"
    inbox = data / "inbox"
    inbox.mkdir(parents=True)
    svc = Service(data, "service.inbox_settle_seconds=0.3", "service.inbox_interval=0.2")
    services.append(svc)
    part = inbox / "batch.txt.part"
    part.write_text(s.url("/1") + "\n")
    time.sleep(1.5)
    assert svc.json("GET", "/status")["total"] == 0  # still being written: not read
    with open(part, "a") as handle:
        handle.write(s.url("/2") + "\nhttp://\n")
    part.rename(inbox / "batch.txt")
    status = svc.wait_final(2)
    assert status["total"] == 2
    assert (inbox / "rejected" / "batch.txt").exists()  # one bad line: kept for a look
    assert "line 3" in (inbox / "rejected" / "batch.txt.errors.txt").read_text()
    (inbox / "again.txt").write_text(s.url("/1") + "\n" + s.url("/3") + "\n")
    svc.wait_final(3)
    assert (inbox / "done" / "again.txt").exists()
    assert svc.stop() == 143
    assert sorted(h.path for h in s.hits) == ["/1", "/2", "/3"]


def test_sigterm_releases_slow_fetches_and_restart_fetches_them_once(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    s = make_site()
    slow_paths = [f"/slow{i}" for i in range(3)]
    for path in slow_paths:
        s.route(path, site.sequence(site.slow(30), site.ok(b"second time")))
    s.route("*", site.ok(b"ok"))
    data = tmp_path / "crawl"
    svc = Service(data, "shutdown.grace_seconds=1")
    services.append(svc)
    urls = [s.url(p) for p in slow_paths] + [s.url(f"/fast{i}") for i in range(5)]
    svc.json("POST", "/seeds", "\n".join(urls).encode())
    svc.wait_final(5)
    eventually(
        lambda: sorted(h.path for h in s.hits if h.path.startswith("/slow")),
        10,
        "the 3 slow fetches started",
        until=lambda started: len(started) >= 3,
    )
    assert svc.stop(timeout=20) == 143
    lines = index_lines(data)
    assert sorted(line["url"] for line in lines) == sorted(urls[3:])  # slow ones not failed

    again = Service(data)
    services.append(again)
    again.wait_final(8)
    assert again.stop() == 143
    assert sorted(index(data)) == sorted(urls)
    assert all(line["state"] == "done" for line in index(data).values())
    assert all(line["attempts"] == 1 for line in index(data).values())  # none was charged
    responses = [r["url"] for r in warc_records(data) if r["type"] in ("response", "revisit")]
    assert sorted(responses) == sorted(urls)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return result.returncode == 0


def test_a_full_disk_holds_the_crawl_and_it_resumes_when_space_returns(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    volume = tmp_path / "volume"
    if not _mount_tmpfs(volume, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        s = make_site()
        pages = 40
        for i in range(pages):
            s.route(f"/p{i}", site.ok(os.urandom(150_000), content_type="application/pdf"))
        data = volume / "crawl"
        svc = Service(data, "service.min_free_bytes=0", "fetch.concurrency=2")
        services.append(svc)
        urls = [s.url(f"/p{i}") for i in range(pages)]
        svc.json("POST", "/seeds", "\n".join(urls).encode())
        _, body = eventually(
            lambda: svc.call("GET", "/readyz"),
            30,
            "the disk filled up (/readyz answers 503)",
            until=lambda answer: answer[0] == 503,
            interval=0.2,
        )
        assert json.loads(body)["writer"] != "ok"
        held = svc.json("GET", "/status")
        assert held["states"]["done"] < pages
        assert held["storage_problem"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(volume)], check=True)
        svc.wait_final(pages, timeout=60)
        assert svc.json("GET", "/readyz")["ready"] is True
        assert svc.stop() == 143
        lines = index(data)  # one line per URL: nothing written twice
        assert sorted(lines) == sorted(urls)
        assert {line["state"] for line in lines.values()} == {"done"}
        responses = [r["url"] for r in warc_records(data) if r["type"] in ("response", "revisit")]
        assert sorted(responses) == sorted(urls)
    finally:
        for service in services:
            service.close()
        subprocess.run(["umount", "-l", str(volume)], capture_output=True)
