"""Adaptive per-host pace: unit rules, then what servers see (including across a restart)."""

from __future__ import annotations

import itertools
import signal
import socket
import time
from pathlib import Path

import anyio
import pytest

from crawler.dns import Resolver
from crawler.frontier.values import HostState
from crawler.politeness import (
    DECAY_AFTER,
    LEARN_WAIT,
    BudgetKeys,
    HealthLimits,
    Pace,
)
from crawler.settings import NetworkSettings, PolitenessSettings
from tests import servers as site
from tests.crawling import cli_process, crawl, database_rows, index, sets, write_seeds
from tests.nameserver import NameServer
from tests.servers import SiteFactory
from tests.waiting import eventually

# The 429's deferral and its host's block, as committed: (state, reason, blocked_until).
_BLOCK = (
    "SELECT urls.state, urls.reason, hosts.blocked_until"
    " FROM urls JOIN hosts ON hosts.host = urls.host WHERE urls.url = ?"
)


def _pace(**settings: float) -> Pace:
    return Pace("h.example", PolitenessSettings(**settings), None)  # type: ignore[arg-type]


def test_429_doubles_the_delay_up_to_the_cap_and_successes_bring_it_back() -> None:
    pace = _pace(delay=1.0, max_delay=5.0)
    assert pace.delay() == 1.0
    pace.on_response(429, None, 0.1, now=0)
    assert pace.delay() == 2.0
    pace.on_response(503, None, 0.1, now=0)
    assert pace.delay() == 4.0
    pace.on_response(429, None, 0.1, now=0)
    assert pace.delay() == 5.0  # capped
    for _ in range(DECAY_AFTER):
        pace.on_response(200, None, 0.1, now=0)
    assert pace.level == 2.0
    assert pace.dirty


def test_errors_slow_down_more_gently_than_429() -> None:
    pace = _pace(delay=1.0)
    pace.on_failure("timeout", now=0, hold=1.0)
    gentle = pace.delay()
    pace = _pace(delay=1.0)
    pace.on_response(429, None, 0.1, now=0)
    assert 1.0 < gentle < pace.delay()


def test_retry_after_blocks_the_host_capped() -> None:
    pace = _pace(max_retry_after=60.0)
    pace.on_response(429, 30.0, 0.1, now=1000.0)
    assert pace.blocked_until == 1030.0
    pace.on_response(503, 86400.0, 0.1, now=1000.0)
    assert pace.blocked_until == 1060.0
    # A Retry-After past retry.max_wait (300 s by default) gives the host up until then.
    assert pace.state() == HostState("h.example", 2.0, 1060.0, 0, 1060.0, "http_503")
    assert not pace.dirty


def test_latency_aware_pacing() -> None:
    pace = _pace(delay=0.0, latency_factor=2.0)
    for _ in range(50):
        pace.on_response(200, None, 0.5, now=0)
    assert pace.delay() == pytest.approx(1.0, rel=0.01)


def test_retry_after_holds_the_whole_host_while_another_runs_at_full_speed(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """End to end on real time, in seconds; both forms (and bounds tighter than real time
    allows) on fake clocks in test_scheduler.py, an HTTP-date end to end in test_crawl.py."""
    limited = make_site("127.0.0.1")
    free = make_site("127.0.0.2")
    limited.route("/first", site.sequence(site.retry_after(429, "2"), site.ok(b"ok")))
    for i in range(3):
        limited.route(f"/other{i}", site.ok(b"ok"))
    for i in range(20):
        free.route(f"/p{i}", site.ok(b"ok"))
    urls = [limited.url("/first")] + [limited.url(f"/other{i}") for i in range(3)]
    urls += [free.url(f"/p{i}") for i in range(20)]
    data = tmp_path / "crawl"
    assert crawl(data, urls, "politeness.per_host_concurrency=1") == 0
    first = limited.hits_for("/first")[0].started
    later = sorted(h.started for h in limited.hits if h.started > first)
    assert later, "the limited host was never fetched again"
    assert later[0] - first >= 1.9  # nothing to that host during its Retry-After
    free_hits = sorted(h.started for h in free.hits)
    assert free_hits[-1] - free_hits[0] < 1.0  # the other host was not held up
    assert {line["state"] for line in index(data).values()} == {"done"}


@pytest.mark.timing
def test_a_restart_keeps_a_host_blocked(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/first", site.retry_after(429, "4"))
    s.route("/second", site.ok(b"ok"))
    seeds = write_seeds(tmp_path / "seeds.txt", [s.url("/first"), s.url("/second")])
    data = tmp_path / "crawl"
    args = ("run", "--seeds", str(seeds), *sets("politeness.per_host_concurrency=1"))
    proc = cli_process(data, *args)
    # Killed once the 429 and the host's block are committed (the block is in the future).
    eventually(
        lambda: database_rows(data, _BLOCK, s.url("/first")),
        15,
        "the 429 and its host's block committed",
        until=lambda rows: (
            bool(rows) and rows[0][:2] == ("queued", "http_429") and rows[0][2] > time.time()
        ),
    )
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    s.route("/first", site.ok(b"ok now"))
    proc = cli_process(data, *args)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    blocked_at = s.hits_for("/first")[0].started
    after = [h.started for h in s.hits if h.started > blocked_at]
    assert after
    assert min(after) - blocked_at >= 4.0 - 0.005


@pytest.mark.anyio
async def test_budget_keys() -> None:
    domain = BudgetKeys("domain")
    assert domain.of("a.example.co.uk:8080") == domain.of("b.example.co.uk") == "example.co.uk"
    assert domain.of("127.0.0.1:8080") == "127.0.0.1"
    assert domain.of("[::1]:8080") == "::1"
    host = BudgetKeys("host")
    assert host.of("a.example.co.uk:8080") == "a.example.co.uk:8080"
    resolver = Resolver()
    ip = BudgetKeys("ip", resolver)
    try:
        await ip.learn(["127.0.0.2:8080", "[::1]:81", "name.invalid", "localhost:80"])
    finally:
        await resolver.aclose()
    assert ip.of("localhost:80") == "127.0.0.1"
    assert ip.of("127.0.0.2:8080") == "127.0.0.2"
    assert ip.of("[::1]:81") == "::1"
    assert ip.of("name.invalid") == "name.invalid"  # does not resolve: its own budget
    assert ip.of("never.learnt") == "never.learnt"
    ip.forget({"127.0.0.2"})
    assert ip.of("127.0.0.2:8080") == "127.0.0.2:8080"


def test_politeness_key_ip_gives_names_of_one_server_one_budget(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    if socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    s = make_site("127.0.0.1")
    s.route("*", site.ok(b"ok"))
    by_ip = [s.url(f"/ip{i}") for i in range(3)]
    by_name = [s.url(f"/name{i}").replace("127.0.0.1", "localhost") for i in range(3)]
    data = tmp_path / "crawl"
    assert (
        crawl(
            data,
            by_ip + by_name,
            "politeness.key=ip",
            "politeness.delay=0.3",
            "politeness.per_host_concurrency=1",
        )
        == 0
    )
    starts = sorted(h.started for h in s.hits)
    assert len(starts) == 6
    assert {h.headers["host"].split(":")[0] for h in s.hits} == {"127.0.0.1", "localhost"}
    # One budget for both names: every start is a delay after the one before.
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.25
    assert s.max_in_flight == 1


# -- host health ----------------------------------------------------------------------------


def test_a_host_is_down_after_max_failures_in_a_row_and_probed_again_later() -> None:
    limits = HealthLimits(max_failures=3, down_seconds=600.0, max_wait=300.0)
    pace = Pace("h.example", PolitenessSettings(), None, health=limits)
    pace.on_failure("connect", now=1000.0, hold=2.0)
    assert pace.blocked_until == 1002.0  # the next request is a probe after the back-off
    pace.on_failure("connect", now=1002.0, hold=4.0)
    assert pace.given_up(1002.0) is None
    pace.on_failure("timeout", now=1006.0, hold=8.0)
    assert pace.given_up(1006.0) == "timeout"  # its last reason
    assert pace.state().down_until == 1606.0
    # After host_down_seconds one probe goes out; one more failure and it is down again.
    assert pace.given_up(1606.0) is None
    pace.on_failure("connect", now=1606.0, hold=16.0)
    assert pace.given_up(1606.0) == "connect"


def test_any_answer_resets_a_hosts_failures() -> None:
    pace = Pace("h.example", PolitenessSettings(), None, health=HealthLimits(max_failures=3))
    pace.on_failure("dns", now=0.0, hold=1.0)
    pace.on_failure("dns", now=1.0, hold=1.0)
    pace.on_response(503, None, 0.1, now=2.0)  # struggling, but there
    pace.on_failure("dns", now=3.0, hold=1.0)
    pace.on_failure("dns", now=4.0, hold=1.0)
    assert pace.given_up(4.0) is None
    assert pace.failures == 2


def test_an_address_the_guard_refuses_puts_its_host_down_at_once() -> None:
    pace = Pace("h.example", PolitenessSettings(), None)
    pace.on_failure("blocked_address", now=0.0, hold=1.0)
    assert pace.given_up(0.0) == "blocked_address"


def test_dns_and_tls_failures_do_not_slow_the_pace_but_count() -> None:
    pace = Pace("h.example", PolitenessSettings(delay=1.0), None)
    pace.on_failure("dns", now=0.0, hold=1.0)
    pace.on_failure("tls", now=0.0, hold=1.0)
    assert pace.delay() == 1.0
    assert pace.failures == 2


def test_health_is_saved_and_restored() -> None:
    pace = Pace("h.example", PolitenessSettings(), None)
    for _ in range(5):
        pace.on_failure("connect", now=0.0, hold=1.0)
    saved = pace.state()
    again = Pace("h.example", PolitenessSettings(), saved)
    assert again.given_up(1.0) == "connect"
    assert again.failures == 5


@pytest.mark.anyio
async def test_budget_keys_wait_for_a_silent_name_no_longer_than_learn_wait() -> None:
    """With politeness.key = "ip" a claim waits for its hosts' addresses: a name whose DNS
    never answers keeps its own budget after LEARN_WAIT, and the names that do answer are
    known by then (the default dns_timeout of 5 s is not waited out)."""
    server = NameServer().start()
    server.silent("silent.test")
    server.a("fine.test", "127.0.0.7")
    resolver = Resolver(NetworkSettings(dns_servers=(server.address,)))
    ip = BudgetKeys("ip", resolver)
    try:
        with anyio.fail_after(LEARN_WAIT + 2.0):
            await ip.learn(["silent.test:80", "fine.test:80"])
    finally:
        await resolver.aclose()
        server.stop()
    assert ip.of("fine.test:80") == "127.0.0.7"
    assert ip.of("silent.test:80") == "silent.test:80"  # its own budget, and it stays so
