"""The invariant "every run ends; no host holds up another", end to end with default settings.

A seed list mixes healthy URLs with every kind of host that used to keep a run going: a
refused port, a host that accepts and never answers, NXDOMAIN names and names whose DNS
never answers (from a DNS server of the test's own on loopback), a robots.txt that answers
503, a 429 with `Retry-After: 86400` on a host holding more URLs than one claim batch, an
address the guard refuses, and octal/hex/decimal/short spellings of IPv4 addresses. The run
must end by itself with exit 0, every URL final with the right reason, the healthy URLs
done, and each dead host asked no more than the health check allows.

Only what would make the test take minutes is changed from the defaults: the fetch timeouts
(a stalled host is found out after 1 s, not 30) and how long a robots.txt answering 503 is
waited for (asked again after 1 s, not 60; given up after 10 s, not 300: the default bound
has a test of its own in test_robots.py, with a clock of its own). Retry, politeness and
host-health settings are the defaults a user gets.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.settings import RetrySettings
from tests import servers as site
from tests.crawling import index, write_seeds
from tests.nameserver import NameServer
from tests.servers import SiteFactory

ROBOTS_NOT_FOUND = site.ok(b"none", 404, content_type="text/plain")
BIG = 600  # more URLs than one claim batch (512) on the rate-limited host


def _closed_port(host: str) -> int:
    """A port on `host` that nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nameserver() -> Iterator[NameServer]:
    server = NameServer().start()
    yield server
    server.stop()


def test_a_run_with_dead_blocked_and_hostile_hosts_ends_with_every_url_final(
    tmp_path: Path, make_site: SiteFactory, nameserver: NameServer
) -> None:
    healthy = make_site("127.0.0.2")
    healthy.route("/robots.txt", ROBOTS_NOT_FOUND)
    stalled = make_site("127.0.0.3")  # accepts, reads the request, never answers
    stalled.route("*", site.stall_headers(30.0))
    robots_503 = make_site("127.0.0.4")
    robots_503.route("/robots.txt", site.status(503))
    limited = make_site("127.0.0.5")
    limited.route("/robots.txt", ROBOTS_NOT_FOUND)
    limited.route("*", site.retry_after(429, "86400"))
    refused = f"http://127.0.0.6:{_closed_port('127.0.0.6')}"
    guarded = make_site("127.0.0.9")  # loopback, but outside the allowed networks

    good = [healthy.url(f"/ok{i}") for i in range(5)]
    # The healthy host in the numeric forms browsers accept: stored and fetched as
    # 127.0.0.2 (guarded like any address); the same spellings of a refused address fail.
    port = healthy.port
    spelled = {
        f"http://0177.0.0.2:{port}/octal": healthy.url("/octal"),
        f"http://0x7f.0.0.2:{port}/hex": healthy.url("/hex"),
        f"http://2130706434:{port}/decimal": healthy.url("/decimal"),
        f"http://127.2:{port}/short": healthy.url("/short"),
    }
    dead = [f"{refused}/r{i}" for i in range(20)] + [stalled.url(f"/s{i}") for i in range(20)]
    unavailable = [robots_503.url(f"/p{i}") for i in range(3)]
    rate_limited = [limited.url(f"/l{i}") for i in range(BIG)]
    blocked = [guarded.url(f"/g{i}") for i in range(2_000)]  # failed at ~1/s before
    # Names from a DNS server of the test's own: one that resolves to the healthy host,
    # NXDOMAIN names, and names whose DNS never answers.
    nameserver.a("good.test", "127.0.0.2")
    for i in range(5):
        nameserver.silent(f"silent{i}.test")
    named = [f"http://good.test:{port}/named"]
    nxdomain = [f"http://nx{i}.test:{port}/x{j}" for i in range(10) for j in range(3)]
    no_answer = [f"http://silent{i}.test:{port}/x{j}" for i in range(5) for j in range(3)]
    blocked_spelled = [f"http://0x7f.0.0.9:{guarded.port}/hex", f"http://0177.9:{guarded.port}/"]
    seeds = write_seeds(
        tmp_path / "seeds.txt",
        good
        + list(spelled)
        + named
        + nxdomain
        + no_answer
        + dead
        + unavailable
        + rate_limited
        + blocked
        + blocked_spelled,
    )
    data = tmp_path / "crawl"

    settings = [
        'network.allowed_networks=["127.0.0.0/29"]',
        f'network.dns_servers=["{nameserver.address}"]',
        "fetch.connect_timeout=1",
        "fetch.read_timeout=1",
        "robots.retry_base=1",
        "robots.max_wait=10",
        'log.level="warning"',
    ]
    args = ["run", "--data-dir", str(data), "--seeds", str(seeds)]
    code = main(args + [word for item in settings for word in ("--set", item)])

    assert code == 0
    lines = index(data)
    assert len(lines) == len(seeds.read_text().split())
    for url in good + list(spelled.values()) + named:
        assert lines[url]["state"] == "done", lines[url]
    for url in [guarded.url("/hex"), guarded.url("/")]:
        assert (lines[url]["state"], lines[url]["reason"]) == ("failed", "blocked_address")
    for url in rate_limited:
        assert (lines[url]["state"], lines[url]["reason"]) == ("failed", "http_429"), lines[url]
    for url in unavailable:
        line = lines[url]
        assert (line["state"], line["reason"]) == ("failed", "robots_unavailable"), line
    for url in blocked:
        assert (lines[url]["state"], lines[url]["reason"]) == ("failed", "blocked_address")
    reasons = Counter((lines[url]["reason"], lines[url]["host_down"]) for url in dead)
    assert reasons == {("connect", True): 20, ("timeout", True): 20}, reasons
    for url in nxdomain + no_answer:
        assert (lines[url]["state"], lines[url]["reason"]) == ("failed", "dns"), lines[url]
    assert sum(line["host_down"] for line in lines.values()) >= len(dead) + 40

    limit = RetrySettings().host_max_failures
    per_host = 2  # politeness.per_host_concurrency: requests that may be in flight at once
    assert len(stalled.hits) <= limit + per_host
    assert len(limited.hits_for("/robots.txt")) == 1
    # One 429 with a Retry-After past retry.max_wait gives the host up: the URLs in flight
    # at that moment are all that reach it; the other ~600 fail without a request.
    assert len(limited.hits) <= 1 + per_host
    assert guarded.hits == []
    assert all(len(healthy.hits_for(f"/ok{i}")) == 1 for i in range(5))
    assert all(len(healthy.hits_for(path)) == 1 for path in ("/octal", "/hex", "/short"))
