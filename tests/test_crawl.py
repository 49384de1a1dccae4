"""End-to-end: `crawler run` against real loopback servers; outcomes asserted per URL."""

from __future__ import annotations

import email.utils
import gzip
import itertools
import time
from pathlib import Path

import anyio
import pytest

from crawler.frontier.sqlite import SQLiteFrontier
from crawler.models import NewURL
from tests import servers as site
from tests.crawling import crawl, index, response_at, warc_records
from tests.servers import SiteFactory

PAGE = b"<html><body>" + b"x" * 5000 + b"</body></html>"


def test_fetches_every_seed_once_and_writes_warc_and_index(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    for i in range(30):
        s.route(f"/p{i}", site.ok(PAGE + str(i).encode()))
    s.route("/gone", site.status(404, body=b"nope"))
    urls = [s.url(f"/p{i}") for i in range(30)] + [s.url("/gone")]
    urls.append(s.url("/p1#fragment"))  # the same page as /p1 for de-duplication
    data = tmp_path / "crawl"

    assert crawl(data, urls) == 0

    lines = index(data)
    assert len(lines) == 31
    assert all(line["state"] == "done" for line in lines.values())
    assert lines[s.url("/gone")]["status"] == 404
    assert lines[s.url("/gone")]["reason"] is None
    page = lines[s.url("/p3")]
    assert page["status"] == 200
    assert page["length"] == len(PAGE) + 1
    assert page["payload_digest"].startswith("sha1:")
    assert page["ip"] == "127.0.0.1"
    assert response_at(data, page["warc_file"], page["warc_offset"]) == ("response", s.url("/p3"))
    for path in (f"/p{i}" for i in range(30)):
        assert len(s.hits_for(path)) == 1, path
    records = warc_records(data)
    assert records[0]["type"] == "warcinfo"
    responses = [r for r in records if r["type"] == "response"]
    assert len(responses) == 31
    assert len([r for r in records if r["type"] == "request"]) == 31
    by_url = {r["url"]: r for r in responses}
    assert by_url[s.url("/p7")]["payload"] == PAGE + b"7"
    assert by_url[s.url("/gone")]["status"] == "404"


def test_rerun_refetches_nothing(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/a", site.ok(PAGE))
    s.route("/b", site.ok(PAGE))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/a"), s.url("/b")]) == 0
    assert crawl(data, [s.url("/a"), s.url("/b")]) == 0
    assert len(s.hits) == 2
    assert len(index(data)) == 2


@pytest.mark.timing
def test_politeness_per_host_concurrency_and_delay_seen_by_server(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    busy = make_site("127.0.0.1")
    other = make_site("127.0.0.2")
    for i in range(6):
        busy.route(f"/s{i}", site.slow(0.5))
    for i in range(6):
        other.route(f"/f{i}", site.ok(b"fast"))
    urls = [busy.url(f"/s{i}") for i in range(6)] + [other.url(f"/f{i}") for i in range(6)]
    data = tmp_path / "crawl"

    started = time.monotonic()
    assert crawl(data, urls, "politeness.per_host_concurrency=2", "politeness.delay=0.1") == 0

    assert busy.max_in_flight <= 2
    assert other.max_in_flight <= 2
    for server in (busy, other):
        starts = sorted(hit.started for hit in server.hits)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 0.1 - 0.005, gaps  # 5 ms for the server's own timestamping
    # The slow host does not hold up the fast one: both proceed in parallel.
    other_done = max(hit.finished or 0 for hit in other.hits)
    busy_done = max(hit.finished or 0 for hit in busy.hits)
    assert other_done - started < busy_done - started
    assert all(line["state"] == "done" for line in index(data).values())


def test_429_retry_after_seconds_is_honoured(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/limited", site.sequence(site.retry_after(429, "1"), site.ok(b"finally")))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/limited")]) == 0
    hits = s.hits_for("/limited")
    assert len(hits) == 2
    assert hits[1].started - hits[0].started >= 1.0
    line = index(data)[s.url("/limited")]
    assert (line["state"], line["status"], line["attempts"]) == ("done", 200, 2)


def test_429_retry_after_http_date_is_honoured(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    s.route("/limited", site.sequence(site.retry_after(429, when), site.ok(b"finally")))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/limited")]) == 0
    hits = s.hits_for("/limited")
    assert len(hits) == 2
    # HTTP dates have one-second resolution: 3 s ahead means a wait of more than 2 s.
    assert hits[1].started - hits[0].started >= 1.9
    assert index(data)[s.url("/limited")]["state"] == "done"


def test_retry_after_is_capped(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/limited", site.sequence(site.retry_after(503, "86400"), site.ok(b"ok")))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/limited")], "retry.max_retry_after=0.3") == 0
    hits = s.hits_for("/limited")
    assert 0.3 <= hits[1].started - hits[0].started < 5
    assert index(data)[s.url("/limited")]["state"] == "done"


def test_503_then_200(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/flaky", site.sequence(site.status(503), site.ok(b"good")))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/flaky")]) == 0
    line = index(data)[s.url("/flaky")]
    assert (line["state"], line["status"], line["attempts"]) == ("done", 200, 2)


def test_retries_exhausted_records_last_status(tmp_path: Path, make_site: SiteFactory) -> None:
    # Two hosts: each answer doubles its host's delay (adaptive back-off), so six answers
    # from one host would wait about a minute of default delays.
    s = make_site("127.0.0.1")
    b = make_site("127.0.0.2")
    s.route("/down", site.status(503))
    b.route("/busy", site.retry_after(429, "0"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/down"), b.url("/busy")], "retry.max_attempts=3") == 0
    assert len(s.hits_for("/down")) == 3
    assert len(b.hits_for("/busy")) == 3
    lines = index(data)
    down = lines[s.url("/down")]
    assert (down["state"], down["reason"], down["status"], down["attempts"]) == (
        "failed",
        "http_503",
        503,
        3,
    )
    assert lines[b.url("/busy")]["reason"] == "http_429"


def test_other_4xx_are_results_never_retried(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/gone", site.status(410))
    s.route("/forbidden", site.status(403))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/gone"), s.url("/forbidden")]) == 0
    assert len(s.hits) == 2
    assert {line["status"] for line in index(data).values()} == {410, 403}


def test_reset_mid_body_is_retried(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/reset", site.sequence(site.reset_mid_body(10_000, 1_000), site.ok(PAGE)))
    s.route("/always", site.reset_mid_body(10_000, 1_000))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/reset"), s.url("/always")], "retry.max_attempts=2") == 0
    lines = index(data)
    assert lines[s.url("/reset")]["state"] == "done"
    assert lines[s.url("/reset")]["attempts"] == 2
    always = lines[s.url("/always")]
    assert always["state"] == "failed"
    assert always["reason"] in ("connection_reset", "protocol_error")
    assert always["message"]


def test_stalled_headers_time_out(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/stall", site.stall_headers(30))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/stall")], "fetch.read_timeout=0.3", "retry.max_attempts=2") == 0
    line = index(data)[s.url("/stall")]
    assert (line["state"], line["reason"], line["attempts"]) == ("failed", "timeout", 2)


def test_trickle_is_cut_by_the_deadline(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/trickle", site.trickle(total=10_000, per_second=5))
    data = tmp_path / "crawl"
    started = time.monotonic()
    assert crawl(data, [s.url("/trickle")], "fetch.deadline=0.5", "retry.max_attempts=2") == 0
    assert time.monotonic() - started < 10
    line = index(data)[s.url("/trickle")]
    assert (line["state"], line["reason"], line["attempts"]) == ("failed", "deadline", 2)


def test_over_cap_body_is_kept_truncated(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/big", site.ok(b"y" * 50_000))
    s.route("/endless", site.endless())
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/big"), s.url("/endless")], "fetch.max_body_bytes=4096") == 0
    lines = index(data)
    for url in (s.url("/big"), s.url("/endless")):
        assert lines[url]["state"] == "done"
        assert lines[url]["truncated"] is True
        assert lines[url]["length"] == 4096
    response = next(
        r for r in warc_records(data) if r["url"] == s.url("/big") and r["type"] == "response"
    )
    assert response["headers"]["WARC-Truncated"] == "length"
    assert response["payload"] == b"y" * 4096


def test_gzip_bomb_costs_no_more_than_the_cap(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/bomb", site.gzip_bomb(256 * 1024 * 1024))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/bomb")], "fetch.max_body_bytes=1048576") == 0
    line = index(data)[s.url("/bomb")]
    assert line["state"] == "done"
    assert line["truncated"] is True
    assert line["decoded_length"] == 1048576  # never past the cap
    assert line["length"] < 1048576
    assert sum(p.stat().st_size for p in (data / "warc").iterdir()) < 2 * 1048576


def test_gzip_body_is_stored_raw_and_verified(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/gz", site.gzip_body(PAGE))
    s.route("/cut", site.truncated_gzip(PAGE * 10))
    s.route("/junk", site.corrupt_gzip())
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/gz"), s.url("/cut"), s.url("/junk")]) == 0
    lines = index(data)
    good = lines[s.url("/gz")]
    assert (good["state"], good["decoded_length"]) == ("done", len(PAGE))
    assert good["length"] < len(PAGE)
    for url in (s.url("/cut"), s.url("/junk")):
        assert (lines[url]["state"], lines[url]["reason"]) == ("failed", "bad_encoding")
        assert lines[url]["warc_file"] is not None


def test_redirect_chain_records_each_hop(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/a", site.redirect("/b", 301))
    s.route("/b", site.redirect(s.url("/c"), 302))
    s.route("/c", site.ok(b"landed"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/a")]) == 0
    lines = index(data)
    assert lines[s.url("/a")]["status"] == 301
    assert lines[s.url("/a")]["redirect_to"] == s.url("/b")
    assert lines[s.url("/b")]["discovered_from"] == s.url("/a")
    assert lines[s.url("/b")]["redirect_to"] == s.url("/c")
    assert (lines[s.url("/c")]["state"], lines[s.url("/c")]["status"]) == ("done", 200)
    assert all(line["state"] == "done" for line in lines.values())
    assert len([r for r in warc_records(data) if r["type"] == "response"]) == 3


def test_redirect_loop_and_hop_limit(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/loop1", site.redirect("/loop2"))
    s.route("/loop2", site.redirect("/loop1"))
    s.route("/self", site.redirect("/self"))
    for i in range(5):
        s.route(f"/hop{i}", site.redirect(f"/hop{i + 1}"))
    s.route("/hop5", site.ok(b"end"))
    data = tmp_path / "crawl"
    urls = [s.url("/loop1"), s.url("/self"), s.url("/hop0")]
    assert crawl(data, urls, "fetch.max_redirects=2") == 0
    lines = index(data)
    assert (lines[s.url("/loop2")]["state"], lines[s.url("/loop2")]["reason"]) == (
        "failed",
        "redirect_loop",
    )
    assert lines[s.url("/self")]["reason"] == "redirect_loop"
    assert [lines[s.url(f"/hop{i}")]["state"] for i in range(3)] == ["done", "done", "failed"]
    assert lines[s.url("/hop2")]["reason"] == "too_many_redirects"
    assert s.url("/hop3") not in lines
    assert len(s.hits_for("/loop1")) == 1


def test_private_addresses_are_blocked_by_default(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/secret", site.ok(b"internal"))
    port = s.port
    urls = [s.url("/secret"), f"http://localhost:{port}/secret", f"http://[::1]:{port}/x"]
    data = tmp_path / "crawl"
    assert crawl(data, urls, "network.allowed_networks=[]") == 0
    lines = index(data)
    assert {line["reason"] for line in lines.values()} == {"blocked_address"}
    assert {line["attempts"] for line in lines.values()} == {1}
    assert s.hits == []


def test_redirect_to_blocked_address_is_checked(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/out", site.redirect("http://10.255.255.1/internal"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/out")], 'network.allowed_networks=["127.0.0.1/32"]') == 0
    line = index(data)["http://10.255.255.1/internal"]
    assert (line["state"], line["reason"]) == ("failed", "blocked_address")


def test_numeric_spellings_of_loopback_are_blocked_without_a_request(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("*", site.ok(b"internal"))
    port = s.port
    hosts = ["0177.0.0.1", "0x7f.1", "2130706433", "127.1", "0x7f000001", "0177.0.1."]
    urls = [f"http://{host}:{port}/{n}" for n, host in enumerate(hosts)]
    data = tmp_path / "crawl"
    assert crawl(data, urls, "network.allowed_networks=[]", "robots.obey=true") == 0
    lines = index(data)
    assert sorted(lines) == sorted(f"http://127.0.0.1:{port}/{n}" for n in range(len(hosts)))
    assert {(line["state"], line["reason"]) for line in lines.values()} == {
        ("failed", "blocked_address")
    }
    assert s.hits == []


def test_an_allow_list_entry_with_a_port_opens_that_port_only(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    allowed, other = make_site(), make_site()  # two services on 127.0.0.1
    allowed.route("/page", site.ok(b"fine"))
    allowed.route("/jump", site.redirect(f"http://127.0.0.1:{other.port}/internal"))
    other.route("*", site.ok(b"internal"))
    urls = [f"http://0177.0.0.1:{allowed.port}/page", allowed.url("/jump"), other.url("/x")]
    data = tmp_path / "crawl"
    entry = f'network.allowed_networks=["127.0.0.1/32:{allowed.port}"]'
    assert crawl(data, urls, entry, "robots.obey=true") == 0
    lines = index(data)
    outcomes = {url: (line["state"], line["reason"], line["status"]) for url, line in lines.items()}
    assert outcomes == {
        allowed.url("/page"): ("done", None, 200),
        allowed.url("/jump"): ("done", None, 301),
        other.url("/internal"): ("failed", "blocked_address", None),
        other.url("/x"): ("failed", "blocked_address", None),
    }
    assert sorted(hit.path for hit in allowed.hits) == ["/jump", "/page", "/robots.txt"]
    assert other.hits == []


def test_a_bad_allow_list_entry_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = 'network.allowed_networks=["127.0.0.1/32:8603-8600"]'
    assert crawl(tmp_path / "crawl", ["http://a.example/"], entry) == 2
    err = capsys.readouterr().err
    assert "network.allowed_networks" in err
    assert "127.0.0.1/32:8603-8600" in err


def test_userinfo_in_a_redirect_or_link_is_never_sent_nor_stored(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    port = s.port
    location = f"http://user:pw@127.0.0.1:{port}/x"
    link = f'<a href="http://user:pw@0x7f.1:{port}/y">y</a>'
    s.route("/start", site.redirect(location))
    s.route("/x", site.ok(link.encode()))
    s.route("/y", site.ok(b"end"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/start")], "crawl.max_depth=1") == 0
    lines = index(data)
    assert lines[s.url("/start")]["redirect_to"] == s.url("/x")
    assert (lines[s.url("/x")]["state"], lines[s.url("/y")]["state"]) == ("done", "done")
    assert [hit.path for hit in s.hits] == ["/start", "/x", "/y"]
    assert all("authorization" not in hit.headers for hit in s.hits)
    stored = b"".join(path.read_bytes() for path in (data / "index").glob("*.jsonl"))
    for path in (data / "warc").glob("*.warc.gz"):
        with gzip.open(path) as handle:
            stored += handle.read()
    assert {r["url"] for r in warc_records(data) if r["url"]} == {
        s.url(p) for p in ("/start", "/x", "/y")
    }
    # Response records keep what the server sent (its Location header, the page's link);
    # nothing the crawler wrote (target URIs, request records, index lines) holds them.
    stored = stored.replace(f"Location: {location}".encode(), b"").replace(link.encode(), b"")
    for secret in (b"user:pw", b"user%3Apw", b"dXNlcjpwdw"):  # dXNlcjpwdw: base64 of user:pw
        assert secret not in stored


def test_bad_seed_lines_are_reported_and_skipped(
    tmp_path: Path, make_site: SiteFactory, capsys: object
) -> None:
    s = make_site()
    s.route("/good", site.ok(b"ok"))
    data = tmp_path / "crawl"
    urls = ["# comment", "", "ftp://example.com/x", "http://", s.url("/good"), "not a url"]
    assert crawl(data, urls) == 0
    assert list(index(data)) == [s.url("/good")]


def test_connection_refused_is_retried_then_failed(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    port = s.port
    s.stop()
    data = tmp_path / "crawl"
    assert crawl(data, [f"http://127.0.0.1:{port}/"], "retry.max_attempts=2") == 0
    line = index(data)[f"http://127.0.0.1:{port}/"]
    assert (line["state"], line["reason"], line["attempts"]) == ("failed", "connect", 2)


def test_urls_the_client_rejects_are_bad_seed_lines(
    tmp_path: Path, make_site: SiteFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    s = make_site()
    s.route("/fine", site.ok(b"fine"))
    bad = ["http://999.1.1.1/", "http://\u2603.net/"]  # never queued: they cannot be fetched
    data = tmp_path / "crawl"
    assert crawl(data, [*bad, s.url("/fine")]) == 0
    assert list(index(data)) == [s.url("/fine")]
    assert index(data)[s.url("/fine")]["state"] == "done"
    out = capsys.readouterr().out
    assert "not an IPv4 address" in out
    assert "not valid IDNA" in out


def test_dns_failure(tmp_path: Path) -> None:
    data = tmp_path / "crawl"
    assert crawl(data, ["http://no-such-host.invalid/"], "retry.max_attempts=1") == 0
    line = index(data)["http://no-such-host.invalid/"]
    assert (line["state"], line["reason"]) == ("failed", "dns")


def test_a_utf8_location_header_is_read_as_utf8(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    raw_utf8 = "/café".encode().decode("latin-1")  # the site sends header text as latin-1
    s.route("/old", site.redirect(raw_utf8))
    s.route("/caf%C3%A9", site.ok(b"<html>caf\xc3\xa9</html>"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/old")]) == 0
    lines = index(data)
    # the target as requested, percent-encoded (as a link's or a seed's: issue 14)
    assert lines[s.url("/old")]["redirect_to"] == s.url("/caf%C3%A9")
    assert lines[s.url("/caf%C3%A9")]["status"] == 200


def test_a_malformed_location_is_a_result_not_a_crash(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/bad", site.redirect("http://[::1"))
    s.route("/fine", site.ok(b"fine"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/bad"), s.url("/fine")]) == 0
    lines = index(data)
    assert (lines[s.url("/bad")]["state"], lines[s.url("/bad")]["status"]) == ("done", 301)
    assert "not followed" in lines[s.url("/bad")]["message"]
    assert lines[s.url("/fine")]["state"] == "done"


def test_userinfo_queued_by_an_older_version_is_never_sent_nor_stored(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """A crawl directory made before seeds with userinfo were refused may hold such URLs."""
    s = make_site()
    s.route("/old", site.ok(b"old page"))
    data = tmp_path / "crawl"
    assert crawl(data, []) == 0  # makes the crawl directory
    stored = f"http://user:pw@127.0.0.1:{s.port}/old"

    async def queue_it() -> None:
        frontier = await SQLiteFrontier.open(data / "crawl.db", fsync=False)
        try:
            await frontier.add([NewURL(key=1, url=stored, host=f"127.0.0.1:{s.port}")])
        finally:
            await frontier.aclose()

    anyio.run(queue_it)
    assert crawl(data, []) == 0

    assert [hit.path for hit in s.hits] == ["/old"]
    assert "authorization" not in s.hits[0].headers
    lines = index(data)
    assert list(lines) == [s.url("/old")]
    assert lines[s.url("/old")]["state"] == "done"
    assert [r["url"] for r in warc_records(data) if r["type"] == "response"] == [s.url("/old")]
