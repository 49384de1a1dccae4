"""Recrawl (issue 14): finished URLs due again, fetched with the validators of their last
visit, stored as revisits when unchanged. With the settings a user gets (robots.txt obeyed,
a second between requests to a host, fsync on), across restarts of `crawler run`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.recrawl import Schedule
from tests import servers as site
from tests.crawling import LOOPBACK, crawl, index_lines, warc_records, write_seeds
from tests.servers import SiteFactory
from tests.service import Service
from tests.waiting import eventually

NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
IDENTICAL = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
MONDAY = "Mon, 01 Jan 2024 00:00:00 GMT"


def _run(data: Path, *args: str, seeds: list[str] | None = None) -> int:
    """`crawler run` in-process with the defaults, but for loopback and what a test sets."""
    argv = ["run", "--data-dir", str(data), "--set", LOOPBACK]
    if seeds is not None:
        argv += ["--seeds", str(write_seeds(data.parent / "seeds.txt", seeds))]
    for assignment in args:
        argv += ["--set", assignment]
    return main(argv)


def _visits(data: Path) -> dict[str, list[str | None]]:
    """url -> the `revisit` of each of its index lines, in order."""
    found: dict[str, list[str | None]] = {}
    for line in index_lines(data):
        found.setdefault(line["url"], []).append(line["revisit"])
    return found


def _conditions(s: site.Site, path: str) -> list[dict[str, str]]:
    """The conditional headers of each request for `path`, in order."""
    names = ("if-none-match", "if-modified-since")
    return [
        {k: v for k, v in hit.headers.items() if k in names} for hit in s.hits if hit.path == path
    ]


def test_recrawl_across_restarts_sends_the_validators_of_the_last_visit(
    tmp_path: Path, make_site: SiteFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each `crawler run` fetches what is due when it starts and exits. A recrawl sends the
    ETag and Last-Modified of the URL's last visit, as kept in the frontier across restarts:
    a page changed since gets a 200 and its new validators, the next run sends those; a 304
    becomes a server-not-modified revisit naming the record that holds the payload; a 200
    with the same payload an identical-payload revisit. One index line per visit."""
    s = make_site("127.0.0.1")
    s.route("/robots.txt", site.ok(b"User-agent: *\nAllow: /\n", content_type="text/plain"))
    edited = site.Versioned(b"<html>first</html>", '"v1"', MONDAY)
    s.route("/edited", edited)
    s.route("/dated", site.Versioned(b"<html>dated</html>", None, MONDAY))
    s.route("/plain", site.ok(b"<html>no validators</html>"))
    data = tmp_path / "crawl"
    paths = ["/edited", "/dated", "/plain"]
    recrawl = "crawl.recrawl_after=1"

    assert _run(data, recrawl, seeds=[s.url(p) for p in paths]) == 0
    assert [c for p in paths for c in _conditions(s, p)] == [{}, {}, {}]  # first visits

    edited.change(b"<html>second</html>", '"v2"', "Tue, 02 Jan 2024 00:00:00 GMT")
    time.sleep(1.1)  # all due
    assert _run(data, recrawl) == 0
    time.sleep(1.1)
    assert _run(data, recrawl) == 0

    assert _conditions(s, "/edited") == [
        {},
        {"if-none-match": '"v1"', "if-modified-since": MONDAY},  # the first visit's
        {"if-none-match": '"v2"', "if-modified-since": "Tue, 02 Jan 2024 00:00:00 GMT"},
    ]
    assert _conditions(s, "/dated")[1:] == [{"if-modified-since": MONDAY}] * 2
    assert _conditions(s, "/plain") == [{}, {}, {}]
    assert _visits(data) == {
        s.url("/edited"): [None, None, "not_modified"],
        s.url("/dated"): [None, "not_modified", "not_modified"],
        s.url("/plain"): [None, "identical", "identical"],
    }

    records = warc_records(data)
    full = {
        (r["url"], r["headers"]["WARC-Date"]): r
        for r in records
        if r["type"] == "response" and r["url"] != s.url("/robots.txt")
    }
    revisits = [r for r in records if r["type"] == "revisit"]
    assert len(revisits) == 5
    for revisit in revisits:
        headers = revisit["headers"]
        held = full[(headers["WARC-Refers-To-Target-URI"], headers["WARC-Refers-To-Date"])]
        assert held["url"] == revisit["url"]  # its own earlier record
        assert headers["WARC-Payload-Digest"] == held["headers"]["WARC-Payload-Digest"]
        assert revisit["payload"] == b""
        if revisit["status"] == "304":
            assert headers["WARC-Profile"] == NOT_MODIFIED
        else:
            assert headers["WARC-Profile"] == IDENTICAL
    # /edited's last revisit names the second version's record, not the first
    last = [r for r in revisits if r["url"] == s.url("/edited")][-1]["headers"]
    second = next(
        r
        for r in full.values()
        if r["url"] == s.url("/edited") and r["payload"].endswith(b"second</html>")
    )
    assert last["WARC-Refers-To-Date"] == second["headers"]["WARC-Date"]

    # Not due: a run fetches nothing and exits.
    before = len(s.hits)
    assert _run(data, "crawl.recrawl_after=3600") == 0
    assert len(s.hits) == before

    capsys.readouterr()
    assert main(["status", "--data-dir", str(data), "--json"]) == 0
    visits = json.loads(capsys.readouterr().out)["visits"]
    assert visits == {"visits": 9, "not_modified": 3, "identical": 2}

    # Every WARC file: warcio checks its digests, cdxj-indexer indexes it as we did.
    bin_dir = Path(sys.executable).parent
    for warc in sorted((data / "warc").glob("*.warc.gz")):
        subprocess.run([str(bin_dir / "warcio"), "check", str(warc)], check=True)
        theirs = subprocess.run(
            [str(bin_dir / "cdxj-indexer"), "--sort", str(warc)], capture_output=True, check=True
        ).stdout
        ours = data / "index" / (warc.name.removesuffix(".warc.gz") + ".cdxj")
        assert ours.read_bytes() == theirs


@pytest.mark.slow
def test_serve_fetches_urls_as_they_come_due_and_on_request(
    tmp_path: Path,
    make_site: SiteFactory,
    services: list[Service],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`serve` without a schedule fetches a URL once; `POST /seeds?recrawl=true` makes it
    due now (a new URL is added). Restarted with `crawl.recrawl_after`, it fetches each URL
    again as it comes due, conditionally, for as long as it runs. `crawler seed --recrawl`
    makes listed URLs due for the next `crawler run`."""
    s = make_site("127.0.0.1")
    s.route("/v", site.Versioned(b"<html>v</html>", '"v1"'))
    s.route("/p", site.ok(b"<html>p</html>"))
    s.route("/new", site.ok(b"<html>new</html>"))
    data = tmp_path / "crawl"
    svc = Service(data)
    services.append(svc)
    svc.json("POST", "/seeds", "\n".join([s.url("/v"), s.url("/p")]).encode())
    svc.wait_final(2)
    answer = svc.json(
        "POST", "/seeds?recrawl=true", "\n".join([s.url("/v"), s.url("/new")]).encode()
    )
    assert (answer["accepted"], answer["duplicate"], answer["due"]) == (1, 1, 1)
    eventually(lambda: _conditions(s, "/v"), 20, "/v fetched again", until=lambda c: len(c) == 2)
    assert _conditions(s, "/v") == [{}, {"if-none-match": '"v1"'}]
    assert svc.call("POST", "/seeds?recrawl=maybe", b"")[0] == 400
    assert svc.stop() == 143
    assert len(_conditions(s, "/p")) == 1

    svc = Service(data, "crawl.recrawl_after=1")
    services.append(svc)
    eventually(
        lambda: len(_conditions(s, "/p")), 20, "/p fetched twice more", until=lambda n: n >= 3
    )
    status = svc.json("GET", "/status")
    assert status["visits"]["identical"] >= 1
    assert status["visits"]["not_modified"] >= 2
    assert svc.stop() == 143
    assert set(_visits(data)[s.url("/v")][1:]) == {"not_modified"}

    seeds = write_seeds(tmp_path / "again.txt", [s.url("/new")])
    before = len(_conditions(s, "/new"))
    assert main(["seed", "--data-dir", str(data), "--recrawl", str(seeds)]) == 0
    assert "due again 1" in capsys.readouterr().out
    assert _run(data) == 0  # (recrawl_after back to 0: no schedule any more)
    assert len(_conditions(s, "/new")) == before + 1


def test_hostile_validators_and_a_304_nobody_asked_for(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """An ETag too long to keep is not kept (no conditional request carries it); a 304 to a
    request that was not conditional is stored as the response it is; on the recrawl, the
    server's 304 refers to that record. Every record reads back with warcio."""
    s = make_site("127.0.0.1")
    s.route("/huge", site.ok(b"<html>huge</html>", headers={"ETag": '"' + "x" * 5000 + '"'}))
    s.route("/stubborn", site.status(304, {"ETag": '"s"'}))
    data = tmp_path / "crawl"
    urls = [s.url("/huge"), s.url("/stubborn")]

    assert crawl(data, urls) == 0
    assert (
        main(["seed", "--data-dir", str(data), "--recrawl", str(write_seeds(tmp_path / "x", urls))])
        == 0
    )
    assert crawl(data, urls) == 0

    assert _conditions(s, "/huge") == [{}, {}]
    assert _conditions(s, "/stubborn") == [{}, {"if-none-match": '"s"'}]
    assert _visits(data) == {
        s.url("/huge"): [None, "identical"],
        s.url("/stubborn"): [None, "not_modified"],
    }
    records = warc_records(data)
    first = next(r for r in records if r["url"] == s.url("/stubborn") and r["type"] == "response")
    assert first["status"] == "304"
    again = next(r for r in records if r["url"] == s.url("/stubborn") and r["type"] == "revisit")
    assert again["headers"]["WARC-Refers-To-Date"] == first["headers"]["WARC-Date"]
    bin_dir = Path(sys.executable).parent
    for warc in sorted((data / "warc").glob("*.warc.gz")):
        subprocess.run([str(bin_dir / "warcio"), "check", str(warc)], check=True)


def test_adaptive_intervals_converge_within_their_bounds() -> None:
    """A page that never changes is asked for less and less often, up to recrawl_max; one
    that changes at every visit more and more often, down to recrawl_min; a visit that
    tells nothing (a failure) keeps the interval."""
    schedule = Schedule(after=3600, adaptive=True, low=600, high=86400)
    interval: float | None = None
    seen = []
    for _ in range(12):
        due, interval = schedule.next(0.0, interval, changed=False)
        seen.append(interval)
        assert due == interval
    assert seen[0] == 3600 * 1.4
    assert seen == sorted(seen)
    assert seen[-1] == 86400
    for _ in range(30):
        _, interval = schedule.next(0.0, interval, changed=True)
    assert interval == 600
    assert schedule.next(5.0, 1000.0, changed=None) == (1005.0, 1000.0)
    assert Schedule(after=60).next(5.0, None, changed=True) == (65.0, None)  # fixed
    assert Schedule().next(5.0, 700.0, changed=False) == (None, 700.0)  # off
