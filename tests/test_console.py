"""The operator's console API (issue 15) on a live `crawler serve` crawling loopback hosts:
the host table, one host's view, and the controls that change a host while the crawl runs,
checked at the servers."""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests import servers as site
from tests.crawling import crawl, index_lines
from tests.servers import Site, SiteFactory
from tests.service import Service
from tests.waiting import eventually

pytestmark = pytest.mark.slow

PAGES = 60


def _site(make_site: SiteFactory, ip: str) -> Site:
    s = make_site(ip)
    s.route("*", site.ok(b"<html>page</html>"))
    return s


def _patch(svc: Service, host: str, change: dict[str, object]) -> dict[str, object]:
    status, body = svc.call(
        "PATCH", f"/hosts/{host}", json.dumps(change).encode(), {"Content-Type": JSON}
    )
    assert status == 200, body
    return json.loads(body)


JSON = "application/json"


@pytest.mark.timing  # the server's gaps to within 10 ms: alone, not beside xdist's load
def test_hosts_are_listed_paused_slowed_and_kept_across_a_restart(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    a, b = _site(make_site, "127.0.0.2"), _site(make_site, "127.0.0.3")
    host_a, host_b = a.base_url.split("//")[1], b.base_url.split("//")[1]
    data = tmp_path / "crawl"
    svc = Service(data, "politeness.delay=0.2", "politeness.per_host_concurrency=1")
    services.append(svc)
    urls = [s.url(f"/p{i}") for s in (a, b) for i in range(PAGES)]
    svc.json("POST", "/seeds", "\n".join(urls).encode())
    eventually(lambda: len(a.hits), 10, "host a fetched", until=lambda n: n >= 3)

    # Paused: nothing more starts there (what was in flight finishes); the other goes on.
    view = _patch(svc, host_a, {"paused": True})
    assert (view["paused"], view["held"]) == (True, True)
    time.sleep(0.5)  # in flight at the pause: done by now
    held_at, b_at = len(a.hits), len(b.hits)
    time.sleep(1.5)
    assert len(a.hits) == held_at
    assert len(b.hits) > b_at + 3
    table = svc.json("GET", "/hosts?sort=queued")
    rows = {row["host"]: row for row in table["hosts"]}
    assert rows[host_a]["paused"] is True
    assert rows[host_a]["queued"] + rows[host_a]["leased"] == PAGES - held_at
    assert rows[host_b]["done"] > 0
    assert [r["host"] for r in svc.json("GET", f"/hosts?q={host_b[:9]}")["hosts"]] == [host_b]

    # Unpaused: it goes on. Slowed: the gaps its server sees are the delay set.
    _patch(svc, host_a, {"paused": None})
    eventually(lambda: len(a.hits), 10, "host a again", until=lambda n: n > held_at + 2)
    view = _patch(svc, host_b, {"delay": 0.8})
    assert view["operator_delay"] == 0.8
    slowed_at = time.monotonic()
    starts = eventually(
        lambda: [h.started for h in b.hits if h.started > slowed_at + 0.3],
        20,
        "b fetched thrice slowed",
        until=lambda found: len(found) >= 3,
    )
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps
    assert min(gaps) >= 0.8 - 0.01
    one = svc.json("GET", f"/hosts/{host_b}")
    assert one["delay"] == 0.8
    assert one["delay_source"] == "operator"
    assert one["events"][0]["outcome"] == "done"
    assert svc.call("GET", "/hosts/nowhere.example")[0] == 404

    # Kept in the frontier: paused again, then restarted, it stays paused.
    _patch(svc, host_b, {"paused": True, "delay": None})
    assert svc.stop() == 143
    before = len(b.hits)
    svc = Service(data, "politeness.delay=0.2", "politeness.per_host_concurrency=1")
    services.append(svc)
    time.sleep(1.5)
    assert len(b.hits) == before
    one = svc.json("GET", f"/hosts/{host_b}")
    assert (one["paused"], one["operator_delay"]) == (True, None)


def test_bad_changes_are_refused_with_the_key_named(
    tmp_path: Path, services: list[Service]
) -> None:
    svc = Service(tmp_path / "crawl")
    services.append(svc)
    for change, words in (
        ({"paused": "yes"}, "paused"),
        ({"delay": -1}, "delay"),
        ({"per_host_concurrency": 0}, "per_host_concurrency"),
        ({"per_host_concurrency": 33}, "from 1 to 32"),
        ({"blocked_until": "tomorrow"}, "blocked_until"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ([], "JSON object"),
    ):
        status, body = svc.call("PATCH", "/hosts/a.example", json.dumps(change).encode())
        assert status == 400
        assert words in json.loads(body)["error"]
    assert svc.call("PATCH", "/hosts/a.example", b"{nope")[0] == 400
    assert svc.call("GET", "/hosts?sort=colour")[0] == 400
    assert svc.call("GET", "/hosts?limit=0")[0] == 400
    assert svc.call("DELETE", "/hosts/a.example")[0] == 405
    assert svc.last_headers["allow"] == "GET, HEAD, PATCH"
    # set before the host has a URL: in force once it has some
    assert svc.json("PATCH", "/hosts/a.example", b'{"paused": true}')["paused"] is True
    assert svc.json("GET", "/hosts/a.example")["paused"] is True


def test_an_exclude_skips_the_queued_urls_it_matches_and_later_ones(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    """POST /excludes: queued URLs matching end skipped ("excluded", an index line each, no
    request), as do later seeds; the answer says how many were queued. DELETE: later ones
    are fetched again."""
    s = _site(make_site, "127.0.0.2")
    data = tmp_path / "crawl"
    svc = Service(data, "politeness.delay=0.3", "politeness.per_host_concurrency=1")
    services.append(svc)
    urls = [s.url(f"/{kind}/{i}") for i in range(20) for kind in ("public", "private")]
    svc.json("POST", "/seeds", "\n".join(urls).encode())
    eventually(lambda: len(s.hits), 10, "the host fetched", until=lambda n: n >= 2)

    answer = svc.json("POST", "/excludes", b'{"pattern": "/private/"}')
    fetched_before = {h.path for h in s.hits if h.path.startswith("/private/")}
    assert answer["patterns"] == ["/private/"]
    assert answer["skipped"] >= 20 - len(fetched_before) - 2  # (two may be buffered)
    svc.json("POST", "/seeds", s.url("/private/later").encode())
    lines = eventually(
        lambda: index_lines(data),
        30,
        "every URL final",
        until=lambda found: len(found) == 41,
    )
    excluded = {line["url"] for line in lines if line["reason"] == "excluded"}
    assert all(line["state"] == "skipped" for line in lines if line["url"] in excluded)
    private = {s.url(f"/private/{i}") for i in range(20)} | {s.url("/private/later")}
    assert excluded == private - {s.url(p) for p in fetched_before}
    assert {h.path for h in s.hits if h.path.startswith("/private/")} == fetched_before
    assert svc.json("GET", "/excludes") == {"patterns": ["/private/"]}

    assert svc.call("POST", "/excludes", b'{"pattern": "(unclosed"}')[0] == 400
    assert svc.json("DELETE", "/excludes", b'{"pattern": "/private/"}') == {"patterns": []}
    svc.json("POST", "/seeds", s.url("/private/after").encode())
    eventually(lambda: s.hits_for("/private/after"), 10, "fetched once more allowed")


def test_events_stream_progress_once_a_second_and_the_page_is_served(
    tmp_path: Path, services: list[Service]
) -> None:
    svc = Service(tmp_path / "crawl")
    services.append(svc)
    with urllib.request.urlopen(svc.base + "/events", timeout=10) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        events = []
        while len(events) < 2:
            line = stream.readline().decode()
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    assert 0.5 < events[1]["at"] - events[0]["at"] < 2.0
    assert {"total", "states", "rates", "bytes", "statuses", "in_flight"} <= set(events[0])
    status, page = svc.call("GET", "/")
    assert status == 200
    assert svc.last_headers["content-type"] == "text/html; charset=utf-8"
    assert b"<title>crawler console</title>" in page
    assert b"http://" not in page
    assert b"https://" not in page


def test_a_later_run_of_the_crawl_honours_the_excludes_kept(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    s = _site(make_site, "127.0.0.2")
    data = tmp_path / "crawl"
    svc = Service(data)
    services.append(svc)
    assert svc.json("POST", "/excludes", b'{"pattern": "/private/"}')["skipped"] == 0
    assert svc.stop() == 143
    assert crawl(data, [s.url("/private/1"), s.url("/public/1")]) == 0
    lines = {line["url"]: line for line in index_lines(data)}
    assert (lines[s.url("/private/1")]["state"], lines[s.url("/private/1")]["reason"]) == (
        "skipped", "excluded"
    )  # fmt: skip
    assert lines[s.url("/public/1")]["state"] == "done"
    assert [h.path for h in s.hits] == ["/public/1"]


def test_a_concurrency_set_for_a_host_is_what_its_server_sees(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    s = make_site("127.0.0.2")
    s.route("*", site.slow(0.4))
    host = s.base_url.split("//")[1]
    svc = Service(tmp_path / "crawl", "politeness.per_host_concurrency=1", "politeness.delay=0")
    services.append(svc)
    svc.json("POST", "/seeds", "\n".join(s.url(f"/p{i}") for i in range(40)).encode())
    eventually(lambda: len(s.hits), 10, "the host fetched", until=lambda n: n >= 3)
    assert s.max_in_flight == 1
    assert _patch(svc, host, {"per_host_concurrency": 3})["per_host_concurrency"] == 3
    eventually(lambda: s.max_in_flight, 10, "three in flight", until=lambda n: n == 3)
    time.sleep(1.0)
    assert s.max_in_flight == 3  # never more


def test_with_key_ip_a_control_holds_for_every_host_on_that_address(
    tmp_path: Path, make_site: SiteFactory, services: list[Service]
) -> None:
    """politeness.key = "ip": two sites on one address are one budget, and what is set for
    one of them (by its host:port) holds for both, and shows on both rows."""
    one, two = _site(make_site, "127.0.0.2"), _site(make_site, "127.0.0.2")
    host_one, host_two = one.base_url.split("//")[1], two.base_url.split("//")[1]
    svc = Service(
        tmp_path / "crawl",
        'politeness.key="ip"',
        "politeness.delay=0.2",
        "politeness.per_host_concurrency=1",
    )
    services.append(svc)
    urls = [s.url(f"/p{i}") for s in (one, two) for i in range(40)]
    svc.json("POST", "/seeds", "\n".join(urls).encode())
    eventually(lambda: len(one.hits) + len(two.hits), 10, "fetching", until=lambda n: n >= 3)
    view = _patch(svc, host_one, {"paused": True})
    assert (view["key"], view["paused"]) == ("127.0.0.2", True)
    time.sleep(0.6)
    held = len(one.hits), len(two.hits)
    time.sleep(1.2)
    assert (len(one.hits), len(two.hits)) == held
    rows = {row["host"]: row for row in svc.json("GET", "/hosts")["hosts"]}
    assert rows[host_one]["paused"] is True
    assert rows[host_two]["paused"] is True
    _patch(svc, host_two, {"paused": None})  # the same budget: undone for both
    eventually(
        lambda: len(one.hits) + len(two.hits), 10, "fetching again", until=lambda n: n > sum(held)
    )
